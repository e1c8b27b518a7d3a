"""Task logs a user reads: the SSH, SFTP and S3 libraries' INFO chatter is lowered during artiload's work.

paramiko logs every connect and auth step, asyncssh (under sshfs, the sftp:// object storage) about nine
INFO lines per transfer, botocore and s3fs their credential lookups; none of it says anything about the
image. :func:`quiet_libraries` raises those loggers to WARNING for the duration of a transfer and restores
them afterwards (nested and concurrent uses in one process are counted; the last one out restores).
Warnings and errors still show.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager

NOISY = ("paramiko", "asyncssh", "sshfs", "s3fs", "botocore", "aiobotocore", "boto3", "urllib3", "fsspec")

_lock = threading.Lock()
_depth = 0
_saved: dict[str, int] = {}


@contextmanager
def quiet_libraries(level: int = logging.WARNING, names: tuple[str, ...] = NOISY) -> Iterator[None]:
    """Loggers in ``names`` (and their children) log only ``level`` and above inside the block."""
    global _depth
    with _lock:
        if _depth == 0:
            for name in names:
                logger = logging.getLogger(name)
                _saved[name] = logger.level
                if logger.getEffectiveLevel() < level:
                    logger.setLevel(level)
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                for name, old in _saved.items():
                    logging.getLogger(name).setLevel(old)
                _saved.clear()
