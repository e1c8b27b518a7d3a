"""A private container registry for tests and benchmarks: Debian's ``docker-registry`` (CNCF distribution 2.8).

Its own config and storage under a work directory, plain HTTP on
``127.0.0.1:<free port>`` (engines talk plain HTTP to loopback registries
without any setting), optionally with htpasswd basic auth. Stops only the
process it started.

    python scripts/harness_registry.py DIR     # start one, print its address, wait for Ctrl-C
"""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import HarnessError, log_tail  # noqa: E402

BINARY = "docker-registry"


@dataclass
class Registry:
    host: str  # 127.0.0.1:PORT
    workdir: str
    pid: int
    log_path: str
    user: str | None = None
    password: str | None = None
    _proc: subprocess.Popen | None = field(default=None, repr=False, compare=False)

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    def get(self, path: str, *, accept: str = "") -> tuple[int, bytes]:
        """An HTTP GET against the registry's API (with our credentials when it has any)."""
        request = urllib.request.Request(self.url + path, headers={"Accept": accept} if accept else {})
        if self.user:
            token = base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
            request.add_header("Authorization", f"Basic {token}")
        try:
            with urllib.request.urlopen(request, timeout=10) as reply:
                return reply.status, reply.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    def stop(self, timeout: float = 10.0) -> None:
        if self._proc is None or self._proc.poll() is not None:
            return
        self._proc.send_signal(signal.SIGTERM)
        try:
            self._proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait(timeout=timeout)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _htpasswd(user: str, password: str) -> str:
    """An htpasswd line distribution accepts: ``{SHA}`` is refused, bcrypt is needed; use the Python bcrypt module."""
    try:
        import bcrypt
    except ImportError as exc:  # pragma: no cover - the test extra has it (paramiko needs it)
        raise HarnessError("bcrypt is needed for a registry with basic auth") from exc
    return f"{user}:{bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=5)).decode()}\n"


def start_registry(workdir: str | os.PathLike[str], *, user: str | None = None, password: str | None = None,
                   timeout: float = 30.0) -> Registry:
    """Start ``docker-registry serve`` on a free loopback port; FAIL (HarnessError) if it is missing or does not answer."""
    binary = shutil.which(BINARY) or (f"/usr/bin/{BINARY}" if os.path.exists(f"/usr/bin/{BINARY}") else None)
    if binary is None:
        raise HarnessError(f"{BINARY} is missing: apt-get install -y docker-registry (scripts/setup_lab.sh does)")
    work = Path(workdir).resolve()
    (work / "data").mkdir(parents=True, exist_ok=True)
    port = _free_port()
    auth = ""
    if user:
        (work / "htpasswd").write_text(_htpasswd(user, password or ""))
        auth = f"auth:\n  htpasswd:\n    realm: artiload-test\n    path: {work / 'htpasswd'}\n"
    secret = hashlib.sha256(os.urandom(16)).hexdigest()
    (work / "config.yml").write_text(
        "version: 0.1\nlog:\n  level: info\n"
        f"storage:\n  filesystem:\n    rootdirectory: {work / 'data'}\n  delete:\n    enabled: true\n"
        f"http:\n  addr: 127.0.0.1:{port}\n  secret: {secret}\n" + auth
    )
    log_path = str(work / "registry.log")
    log = open(log_path, "ab")
    proc = subprocess.Popen([binary, "serve", str(work / "config.yml")], stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    log.close()
    registry = Registry(f"127.0.0.1:{port}", str(work), proc.pid, log_path, user, password, proc)
    deadline = time.monotonic() + timeout
    while True:
        try:
            status, _ = registry.get("/v2/")
            if status in (200, 401):
                return registry
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            registry.stop()
            raise HarnessError(f"{BINARY} did not answer on {registry.host}:\n{log_tail(log_path)}")
        time.sleep(0.2)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    registry = start_registry(argv[0] if argv else "/tmp/artiload-registry")
    print(registry.host, flush=True)
    try:
        while registry._proc and registry._proc.poll() is None:
            time.sleep(1)
    except KeyboardInterrupt:
        pass
    finally:
        registry.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
