"""Every digest check reports one way: ``<where>: <what> has <found>, but <claim> (<verdict>)``, as a DigestMismatch."""

from __future__ import annotations

import pytest

from airflow_provider_artiload.exceptions import ArchiveError, DigestMismatch
from airflow_provider_artiload.oci.verify import BLOB, DIFF_ID, mismatch, refused, require_digest, require_size

A, B = "sha256:" + "a" * 64, "sha256:" + "b" * 64


def test_a_matching_digest_or_size_passes():
    require_digest(A, A, what="layer x")
    require_size(10, 10, what="blob y")


def test_a_digest_mismatch_names_what_where_both_digests_and_who_claimed_otherwise():
    with pytest.raises(DigestMismatch) as caught:
        require_digest(A, B, what="layer l.tar", claim=DIFF_ID, how=" uncompressed", where="x.tar")
    assert str(caught.value) == f"x.tar: layer l.tar has sha256 {A} uncompressed, but the image config says its diff ID is {B} (corrupt)"
    assert isinstance(caught.value, ArchiveError)  # callers that catch any bad archive still do


def test_the_default_claim_is_the_image_naming_the_blob_and_nothing_read_is_named_none():
    with pytest.raises(DigestMismatch, match=rf"^blob b has sha256 None, but {BLOB} {B} \(corrupt\)$"):
        require_digest(None, B, what="blob b")


def test_size_and_free_form_mismatches_share_the_shape():
    with pytest.raises(DigestMismatch, match=r"^node: blob z has 3 bytes, but the image says its size is 4 \(store is corrupt\)$"):
        require_size(3, 4, what="blob z", where="node", verdict="store is corrupt")
    error = mismatch("blob z", "more than 4 bytes", "the image says its size is 4")
    assert str(error) == "blob z has more than 4 bytes, but the image says its size is 4 (corrupt)"


def test_a_refusal_by_a_store_that_hashed_the_bytes_itself():
    error = refused("containerd at unix:///run/c.sock", "a blob", A, "unexpected commit digest")
    assert isinstance(error, DigestMismatch)
    assert str(error) == f"containerd at unix:///run/c.sock refused a blob: its bytes are not {A} (unexpected commit digest)"


def test_a_load_holds_each_layer_to_the_checks_its_targets_leave_to_us():
    """A containerd store names a blob by the bytes it got (issue 21 item 2, seen on Docker 28.5): the blob
    digest is ours to check; a diff ID, only where the target will not unpack the layer."""
    from airflow_provider_artiload.oci.digests import Check
    from airflow_provider_artiload.oci.image import Image, Layer
    from airflow_provider_artiload.oci.verify import expect_layers, merged

    C, D = "sha256:" + "c" * 64, "sha256:" + "d" * 64
    image = Image(config_digest=C, layers=(Layer(diff_id=A, digest=B, path=f"blobs/sha256/{B[7:]}"),
                                           Layer(diff_id=D, digest=D, path="x/layer.tar")))
    blob = f"blobs/sha256/{B[7:]}"
    both = expect_layers(image, [A, D], frozenset({0, 1}), frozenset({0, 1}))
    assert both(blob, None) == Check(digest=B, diff_id=A)
    assert both("x/layer.tar", None) == Check(diff_id=D)  # a legacy member: its name claims no digest
    blobs_only = expect_layers(image, [A, D], frozenset(), frozenset({0, 1}))
    assert blobs_only(blob, None) == Check(digest=B)  # no inflation: the engine's unpack checks the diff ID
    assert blobs_only("x/layer.tar", None) is None  # nothing left to check on a legacy member
    assert expect_layers(image, [A, D], frozenset({0}))(blob, None) == Check(diff_id=A)
    assert expect_layers(image, [A, D], frozenset({1}))(blob, None) is None
    assert expect_layers(image, [A, D], frozenset()) is None
    # two targets of one stream, one leaving the blob digest to us, one the diff ID: both are checked
    assert merged(Check(digest=B), Check(diff_id=A)) == Check(digest=B, diff_id=A)


def test_a_stream_layer_is_held_against_the_digest_its_member_name_claims():
    """Another engine's export names each blob by its digest: with no model before the end, that name is the claim
    (an uncompressed layer's, which is its diff ID, is how a stream's member is placed)."""
    from airflow_provider_artiload.oci.digests import Check
    from airflow_provider_artiload.oci.verify import expect_layers

    name = f"blobs/sha256/{A[7:]}"
    assert expect_layers(None, [A], frozenset(), frozenset({0}))(name, None) == Check(digest=A)
    assert expect_layers(None, [A], frozenset({0}), frozenset())(name, None) == Check(diff_id=A)
    assert expect_layers(None, [A], frozenset(), frozenset({1}))(name, None) is None
