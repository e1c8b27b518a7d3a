import logging

from airflow_provider_artiload.logs import quiet_libraries
from airflow_provider_artiload.progress import PLAIN, Progress, human


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


def test_buildkit_plain_sizes_are_decimal_with_two_places_and_no_gap():
    """What ``docker build --progress=plain`` prints, so build logs read like the CLI's."""
    assert human(143, PLAIN) == "143B"
    assert human(2048, PLAIN) == "2.05kB"
    assert human(3 * 10**12, PLAIN) == "3000.00GB"


def test_a_fast_transfer_still_logs_every_quarter_before_done(caplog):
    log = logging.getLogger("artiload-test-progress-steps")
    progress = Progress(log, "Saving x", total=8 << 20, clock=lambda: 0.0)  # no time passes at all
    with caplog.at_level(logging.INFO, logger=log.name):
        for _ in range(8):
            progress.add(1 << 20)
        progress.finish()
    lines = [r.getMessage() for r in caplog.records]
    assert [line.split(": ")[1].split(",")[0] for line in lines] == [
        "2.0 MiB / 8.0 MiB (25%)", "4.0 MiB / 8.0 MiB (50%)", "6.0 MiB / 8.0 MiB (75%)", "done"]


def test_a_big_chunk_crossing_several_steps_logs_once_and_tiny_transfers_only_finish(caplog):
    log = logging.getLogger("artiload-test-progress-big")
    with caplog.at_level(logging.INFO, logger=log.name):
        progress = Progress(log, "Loading y", total=40 << 20, clock=lambda: 0.0)
        progress.add(31 << 20)  # 77%: one line, not three
        progress.add(9 << 20)  # 100%: the closing line says it
        progress.finish()
        tiny = Progress(log, "Loading z", total=100 << 10, clock=lambda: 0.0)
        tiny.add(100 << 10)
        tiny.finish()
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 3 and "(78%)" in lines[0] and "done" in lines[1] and lines[2].startswith("Loading z: done")




def test_library_info_lines_are_dropped_inside_and_restored_after(caplog):
    ssh = logging.getLogger("asyncssh")
    paramiko = logging.getLogger("paramiko.transport")
    ours = logging.getLogger("airflow_provider_artiload.test")
    ssh.setLevel(logging.NOTSET)
    with caplog.at_level(logging.INFO):
        with quiet_libraries():
            ssh.info("Opening SSH connection")
            paramiko.info("Connected (version 2.0)")
            ssh.warning("host key changed")
            ours.info("Loading x.tar: 25%")
            with quiet_libraries():  # nested: the outer one restores
                ssh.info("nested chatter")
            ssh.info("still quiet")
        ssh.info("after: shown again")
    assert [r.getMessage() for r in caplog.records] == ["host key changed", "Loading x.tar: 25%", "after: shown again"]
    assert ssh.level == logging.NOTSET
