"""The retention policy, once for every target kind: markers, which versions go, rollback's choice."""

from __future__ import annotations

import logging

import pytest

from airflow_provider_artiload.exceptions import RetentionError
from airflow_provider_artiload.oci.reference import parse_reference
from airflow_provider_artiload.transfer import retention
from airflow_provider_artiload.transfer.retention import Version, decide

log = logging.getLogger("test_retention")
REPO = "docker.io/library/app"


def v(n: int, when: str, *, foreign: tuple[str, ...] = ()) -> Version:
    image_id = f"sha256:{n:064x}"
    marker = f"app:{retention.marker_tag(when)}"
    return Version(image_id, when, (marker, f"app:v{n}"), (marker,), foreign, 100 * n)


def t(minute: int) -> str:
    return f"2026-12-07T01:{minute:02d}:00.000000Z"


def test_marker_is_a_valid_tag_and_gives_its_time_back():
    when = "2026-12-07T01:21:10.123456Z"
    tag = retention.marker_tag(when)
    assert tag == "artiload-20261207T012110.123456Z"
    assert parse_reference(f"app:{tag}") == ("app", tag)
    assert retention.marker_time(tag) == when
    assert retention.marker_time(retention.marker_tag(retention.now())) is not None
    for other in ("latest", "artiload-2026", "artiload-20261207T012110Z", "v20261207T012110.123456Z"):
        assert retention.marker_time(other) is None


def test_repositories_are_compared_fully_qualified():
    assert retention.repository_of("app:1") == retention.repository_of("docker.io/library/app") == REPO
    assert retention.repository_of("localhost:5000/team/app:2") == "localhost:5000/team/app"
    assert retention.split_name("app:artiload-x") == (REPO, "artiload-x")
    assert retention.split_name("app@sha256:" + "a" * 64) is None
    assert retention.repositories(["app:1", "docker.io/library/app:2", "other:1"]) == [REPO, "docker.io/library/other"]


def test_newest_by_load_time_not_by_tag_spelling():
    # v9 was loaded first: its tag spelling sorts last, its load time first
    versions = [v(9, t(1)), v(1, t(2)), v(2, t(3)), v(3, t(4)), v(4, t(5))]
    kept, removable = decide(versions, 2, protect=set(), in_use=set())
    assert [k.image_id for k, _ in kept] == [versions[4].image_id, versions[3].image_id]
    assert {r.image_id for r in removable} == {versions[i].image_id for i in (0, 1, 2)}


def test_in_use_protected_and_foreign_versions_stay():
    versions = [v(1, t(1)), v(2, t(2)), v(3, t(3), foreign=("mirror/app:3",)), v(4, t(4)), v(5, t(5))]
    kept, removable = decide(versions, 1, protect={versions[3].image_id}, in_use={versions[0].image_id})
    why = {k.image_id: reason for k, reason in kept}
    assert "container" in why[versions[0].image_id]
    assert "rollback" in why[versions[3].image_id]
    assert "outside" in why[versions[2].image_id]
    assert [r.image_id for r in removable] == [versions[1].image_id]
    with pytest.raises(RetentionError, match="at least 1"):
        decide(versions, 0, protect=set(), in_use=set())


class FakeLifecycle:
    url = "fake://engine"

    def __init__(self, versions: list[Version], tags: dict[str, str | None]) -> None:
        self._versions = versions
        self.tags = tags
        self.removed: list[Version] = []

    def pointed(self, tags):
        return {tag: self.tags.get(tag) for tag in tags}

    def versions(self, repository):
        assert repository == REPO
        return [x for x in self._versions if x not in self.removed]

    def in_use(self, versions):
        return set()

    def remove(self, versions, log):
        self.removed += versions
        return list(versions), sum(x.size or 0 for x in versions)

    def point(self, tag, version):
        self.tags[tag] = version.image_id


def test_prune_reports_and_dry_run_removes_nothing():
    versions = [v(n, t(n)) for n in range(1, 6)]
    fake = FakeLifecycle(versions, {})
    dry = retention.prune(fake, "app", 2, dry_run=True, log=log)
    assert fake.removed == [] and dry.dry_run and dry.freed_bytes == 0
    assert {r["image_id"] for r in dry.removed} == {x.image_id for x in versions[:3]}
    real = retention.prune(fake, "app", 2, log=log)
    assert fake.removed == versions[:3] or set(fake.removed) == set(versions[:3])
    assert real.freed_bytes == 600 and len(real.kept) == 2
    assert real.to_xcom()["removed"][0].keys() >= {"image_id", "loaded_at", "names", "size"}


def test_rollback_goes_one_version_back_by_load_time_and_fails_clearly_at_the_oldest():
    versions = [v(1, t(1)), v(2, t(2)), v(3, t(3))]
    fake = FakeLifecycle(versions, {"app:latest": versions[2].image_id})
    out = retention.rollback(fake, "app:latest", log)
    assert out["from"] == versions[2].image_id and out["to"] == versions[1].image_id
    retention.rollback(fake, "app:latest", log)
    assert fake.tags["app:latest"] == versions[0].image_id
    with pytest.raises(RetentionError, match=r"fake://engine.*oldest.*docker.io/library/app.*versions"):
        retention.rollback(fake, "app:latest", log)
    fake.tags["app:latest"] = "sha256:" + "f" * 64
    with pytest.raises(RetentionError, match="not a version artiload loaded"):
        retention.rollback(fake, "app:latest", log)


class RoomyLifecycle(FakeLifecycle):
    """Free space grows by what it removes."""

    def __init__(self, versions, free: int | None) -> None:
        super().__init__(versions, {})
        self.free = free

    def free_space(self):
        return None if self.free is None else (self.free + sum(x.size or 0 for x in self.removed), "/var/lib/docker")


def test_make_room_prunes_first_when_short_and_says_how_much_was_needed_and_found(caplog):
    from airflow_provider_artiload.exceptions import DestinationError

    versions = [v(n, t(n)) for n in range(1, 6)]  # sizes 100..500
    enough = RoomyLifecycle(versions, 10_000)
    assert retention.make_room(enough, [REPO], 1000, 2, protect=set(), dry_run=False, log=log) == []
    assert enough.removed == []
    short = RoomyLifecycle(versions, 200)
    with caplog.at_level(logging.INFO, logger="test_retention"):
        [report] = retention.make_room(short, [REPO], 700, 2, protect=set(), dry_run=False, log=log)
    assert {x.image_id for x in short.removed} == {x.image_id for x in versions[:4]}  # room for the new one: keep 1
    assert report.freed_bytes == 1000
    assert "needs about 700 B, found only 200 B free in /var/lib/docker" in caplog.text
    assert "found 1.2 KiB free" in caplog.text
    hopeless = RoomyLifecycle([v(n, t(n)) for n in range(1, 6)], 0)
    with pytest.raises(DestinationError, match=r"needs about 9.8 KiB, /var/lib/docker has 1000 B free after pruning"):
        retention.make_room(hopeless, [REPO], 10_000, 2, protect=set(), dry_run=False, log=log)
    unknown = RoomyLifecycle(versions, None)
    assert retention.make_room(unknown, [REPO], 10**12, 2, protect=set(), dry_run=False, log=log) == []


def test_the_loads_tags_are_put_back_if_a_concurrent_prune_took_them():
    versions = [v(1, t(1)), v(2, t(2))]
    fake = FakeLifecycle(versions, {"app:latest": None, "app:v2": versions[1].image_id})
    retention.keep_tags(fake, versions[1].image_id, ["app:latest", "app:v2"], log)
    assert fake.tags == {"app:latest": versions[1].image_id, "app:v2": versions[1].image_id}

    class Stubborn(FakeLifecycle):
        def point(self, tag, version):
            pass  # every re-tag lost again

    with pytest.raises(RetentionError, match="keep losing"):
        retention.keep_tags(Stubborn(versions, {"app:latest": None}), versions[1].image_id, ["app:latest"], log)
