import logging

from airflow_provider_artiload.progress import Progress, human


def test_progress_is_throttled_and_ends_with_a_summary(caplog):
    log = logging.getLogger("artiload-test-progress")
    ticks = iter([0.0, 1.0, 2.0, 6.0, 7.0, 12.5, 13.0])
    progress = Progress(log, "Loading x.tar into unix:///e.sock", total=10 << 20, interval=5.0, clock=lambda: next(ticks))
    with caplog.at_level(logging.INFO, logger=log.name):
        for _ in range(5):
            progress.add(1 << 20)
        progress.finish()
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 3  # at t=6 and t=12.5 only, then the summary
    assert lines[0] == "Loading x.tar into unix:///e.sock: 3.0 MiB / 10.0 MiB (30%), 0.5 MB/s"
    assert lines[1].startswith("Loading x.tar into unix:///e.sock: 5.0 MiB / 10.0 MiB (50%), ")
    assert lines[2].startswith("Loading x.tar into unix:///e.sock: done, 5.0 MiB in 13.00 s")


def test_human_sizes():
    assert human(512) == "512 B"
    assert human(1536) == "1.5 KiB"
    assert human(3 << 30) == "3.0 GiB"
