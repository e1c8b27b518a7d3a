import pytest

from airflow_provider_artiload.engine.reference import InvalidReference, parse_reference


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        ("app", ("app", "latest")),
        ("app:20240131", ("app", "20240131")),
        ("team/app:v1.2_3-rc", ("team/app", "v1.2_3-rc")),
        ("registry.local:5000/team/app:1", ("registry.local:5000/team/app", "1")),
        ("localhost:5000/app", ("localhost:5000/app", "latest")),
        ("localhost/app", ("localhost/app", "latest")),
        ("Registry.Example.com/app:1", ("Registry.Example.com/app", "1")),
    ],
)
def test_valid(ref, expected):
    assert parse_reference(ref) == expected


@pytest.mark.parametrize(
    ("ref", "needle"),
    [
        ("App:1", "invalid image name 'App'"),
        ("Upper/case:1", "invalid image name 'Upper/case'"),
        ("app:-x", "invalid tag '-x'"),
        ("app:" + "t" * 129, "invalid tag"),
        ("app@sha256:" + "0" * 64, "digest reference"),
        ("", "invalid image name ''"),
        ("a//b:1", "invalid image name 'a//b'"),
        ("app:{{ds}}", "invalid tag"),
    ],
)
def test_invalid_names_the_part(ref, needle):
    with pytest.raises(InvalidReference, match=needle.replace("(", r"\(")):
        parse_reference(ref)
