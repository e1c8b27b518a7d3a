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
