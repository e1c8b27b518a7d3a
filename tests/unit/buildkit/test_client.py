"""BuildRequest validation and mapping: every option is checked before anything is dialled."""

from __future__ import annotations

import pytest

from airflow_provider_artiload.buildkit.client import BuildKitClient, BuildRequest
from airflow_provider_artiload.exceptions import BuildError


def never_dial():
    raise AssertionError("validation must fail before dialling")


@pytest.fixture
def ctx(tmp_path):
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "Alt.dockerfile").write_text("FROM scratch\n")
    return tmp_path


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"export": "zip"}, "export must be one of"),
        ({"image": None}, "export='image' needs image="),
        ({"export": "tar"}, "export='tar' needs an output"),
        ({"dockerfile": "nope"}, "Dockerfile .*/nope does not exist"),
        ({"build_args": {"BAD-NAME": "1"}}, "invalid build arg name"),
        ({"labels": {"a=b": "1"}}, "invalid label or secret name"),
        ({"platform": "amd64"}, "invalid platform"),
        ({"network": "bridge2"}, "network must be"),
    ],
)
def test_bad_options_fail_before_connecting(ctx, kwargs, message):
    request = BuildRequest(**{"context": str(ctx), "image": "x/y:1", **kwargs})
    with pytest.raises(BuildError, match=message):
        BuildKitClient(never_dial).solve(request)


def test_missing_context(tmp_path):
    with pytest.raises(BuildError, match="build context .*/gone does not exist"):
        BuildKitClient(never_dial).solve(BuildRequest(context=str(tmp_path / "gone"), image="x:1"))
    (tmp_path / "file").write_text("")
    with pytest.raises(BuildError, match="is not a directory"):
        BuildKitClient(never_dial).solve(BuildRequest(context=str(tmp_path / "file"), image="x:1"))


def test_frontend_and_exporter_attributes(ctx):
    request = BuildRequest(
        context=str(ctx),
        dockerfile="sub/Alt.dockerfile",
        image="reg.example:5000/app:2",
        build_args={"A": "1"},
        labels={"org.x": "y"},
        target="final",
        no_cache=True,
        platform="linux/amd64",
        network="none",
    )
    request.validate()
    assert request.dockerfile_path == str(ctx / "sub" / "Alt.dockerfile")
    assert request.frontend_attrs() == {
        "filename": "Alt.dockerfile",
        "target": "final",
        "no-cache": "",
        "platform": "linux/amd64",
        "force-network-mode": "none",
        "build-arg:A": "1",
        "label:org.x": "y",
    }
    assert request.exporter() == ("moby", {"name": "reg.example:5000/app:2"})
    assert BuildRequest(context=str(ctx), export="tar", output=object()).exporter() == ("tar", {})


def test_secret_values_stay_out_of_the_repr(ctx):
    request = BuildRequest(context=str(ctx), image="x:1", secrets={"token": b"hunter2"})
    assert "hunter2" not in repr(request)
