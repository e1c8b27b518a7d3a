"""Real processes for artiload's integration tests and demos.

Starts private Docker Engines (unix socket, optionally TCP+TLS), a private
OpenSSH sshd on loopback, and makes TLS material and a busybox base image
without any registry. Used by ``tests/conftest.py`` and as a CLI::

    python scripts/harness.py engine start DIR     # prints unix:///DIR/docker.sock
    python scripts/harness.py engine stop DIR
    python scripts/harness.py base-image SOCKET [TAG]

Only stdlib, ``cryptography`` and docker-py: it must not import artiload.
Everything a process leaves behind stays inside its workdir; ``stop()``
kills every process and unmounts every mount there, so the workdir can be
removed with ``shutil.rmtree`` afterwards.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import datetime
import io
import ipaddress
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

BASE_TAG = "artiload-test/busybox:latest"
BASE_DOCKERFILE = 'FROM scratch\nCOPY busybox /bin/busybox\nRUN ["/bin/busybox","--install","-s","/bin"]\n'
SSH_PASSPHRASE = "s3cret-pass"
_UNIX_PATH_MAX = 107  # sun_path is 108 bytes including the trailing NUL


class HarnessError(RuntimeError):
    """A process could not be started or an image not built; the message holds the log tail."""


# ---------------------------------------------------------------- TLS material


@dataclass(frozen=True)
class TLSMaterial:
    """PEM files: a CA, a server cert for 127.0.0.1/::1/localhost, a clientAuth cert, an unrelated CA."""

    ca_cert: str
    server_cert: str
    server_key: str
    client_cert: str
    client_key: str
    other_ca_cert: str


def make_tls_material(directory: str | os.PathLike[str]) -> TLSMaterial:
    """Write a fresh CA, server and client certs (EC P-256) and a second, unrelated CA."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.timezone.utc)

    def issue(cn, key, issuer=None, *, ca=False, sans=(), eku=None):
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
        issuer_name, issuer_key = (issuer[0].subject, issuer[1]) if issuer else (name, key)
        b = (x509.CertificateBuilder().subject_name(name).issuer_name(issuer_name)
             .public_key(key.public_key()).serial_number(x509.random_serial_number())
             .not_valid_before(now - datetime.timedelta(days=1))
             .not_valid_after(now + datetime.timedelta(days=365))
             .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
             .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
             .add_extension(x509.KeyUsage(digital_signature=not ca, content_commitment=False,
                                          key_encipherment=False, data_encipherment=False,
                                          key_agreement=False, key_cert_sign=ca, crl_sign=ca,
                                          encipher_only=False, decipher_only=False), critical=True))
        if issuer:
            b = b.add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
                                critical=False)
        if sans:
            b = b.add_extension(x509.SubjectAlternativeName(list(sans)), critical=False)
        if eku:
            b = b.add_extension(x509.ExtendedKeyUsage([eku]), critical=False)
        return b.sign(issuer_key, hashes.SHA256())

    def write(filename, data, mode=0o644):
        path = out / filename
        path.write_bytes(data)
        path.chmod(mode)
        return str(path)

    def pem_key(key):
        return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                 serialization.NoEncryption())

    keys = {n: ec.generate_private_key(ec.SECP256R1()) for n in ("ca", "server", "client", "other")}
    ca = issue("artiload test CA", keys["ca"], ca=True)
    other = issue("artiload unrelated CA", keys["other"], ca=True)
    sans = [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.IPAddress(ipaddress.ip_address("::1")),
            x509.DNSName("localhost")]
    server = issue("localhost", keys["server"], (ca, keys["ca"]), sans=sans,
                   eku=ExtendedKeyUsageOID.SERVER_AUTH)
    client = issue("artiload test client", keys["client"], (ca, keys["ca"]),
                   eku=ExtendedKeyUsageOID.CLIENT_AUTH)
    pem = serialization.Encoding.PEM
    return TLSMaterial(
        ca_cert=write("ca.pem", ca.public_bytes(pem)),
        server_cert=write("server-cert.pem", server.public_bytes(pem)),
        server_key=write("server-key.pem", pem_key(keys["server"]), 0o600),
        client_cert=write("cert.pem", client.public_bytes(pem)),
        client_key=write("key.pem", pem_key(keys["client"]), 0o600),
        other_ca_cert=write("other-ca.pem", other.public_bytes(pem)),
    )


# ---------------------------------------------------------------- processes


def _binary(name: str, hint: str) -> str:
    """Absolute path of a program (sshd refuses to re-exec from a relative path)."""
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin:/sbin:/bin")
    if not found:
        raise HarnessError(f"{name} not found on PATH or in /usr/sbin: install {hint}")
    return found


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def log_tail(path: str | os.PathLike[str], limit: int = 6000) -> str:
    """The end of a log file, for failure messages."""
    try:
        data = Path(path).read_bytes()[-limit:]
    except OSError as exc:
        return f"(no log: {exc})"
    return data.decode(errors="replace")


def _proc_table() -> dict[int, tuple[int, str, str, list[str]]]:
    """pid -> (ppid, state, comm, argv) for every process we can read."""
    table = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            argv = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        comm = stat[stat.index("(") + 1: stat.rindex(")")]
        state, ppid = stat[stat.rindex(")") + 2:].split()[:2]
        table[int(entry)] = (int(ppid), state, comm, [a.decode(errors="replace") for a in argv if a])
    return table


def _with_descendants(roots: Iterable[int], table: dict[int, tuple[int, str, str, list[str]]]) -> set[int]:
    found, todo = set(), list(roots)
    while todo:
        pid = todo.pop()
        if pid not in found:
            found.add(pid)
            todo.extend(p for p, row in table.items() if row[0] == pid)
    return found


def _alive(pid: int, proc: subprocess.Popen | None = None) -> bool:
    """True while ``pid`` runs; a zombie counts as dead (it may not be ours to reap)."""
    if proc is not None and proc.pid == pid:
        return proc.poll() is None
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] not in "ZX"


def _wait_dead(pids: Iterable[int], timeout: float, proc: subprocess.Popen | None = None) -> bool:
    pids, deadline = list(pids), time.monotonic() + timeout
    while any(_alive(p, proc) for p in pids):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _signal_all(pids: Iterable[int], sig: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def _terminate(pids: Iterable[int], timeout: float, proc: subprocess.Popen | None = None) -> None:
    """SIGTERM, wait up to ``timeout``, then SIGKILL whatever is left (and its process group)."""
    pids = [p for p in pids if _alive(p, proc)]
    _signal_all(pids, signal.SIGTERM)
    if _wait_dead(pids, timeout, proc):
        return
    for pid in pids:
        with contextlib.suppress(OSError):
            if os.getpgid(pid) == pid:
                os.killpg(pid, signal.SIGKILL)
    _signal_all(pids, signal.SIGKILL)
    _wait_dead(pids, 5, proc)


def _mount_points() -> list[str]:
    unescape = lambda s: re.sub(r"\\([0-7]{3})", lambda m: chr(int(m[1], 8)), s)  # noqa: E731
    with open("/proc/self/mountinfo") as f:
        return [unescape(line.split()[4]) for line in f]


def _unmount_under(root: str) -> None:
    """Lazily unmount everything at or below ``root``, deepest first (overlays, netns, bind mounts)."""
    libc = ctypes.CDLL(None, use_errno=True)
    for _ in range(20):  # stacked mounts need several passes
        points = [p for p in _mount_points() if p == root or p.startswith(root + "/")]
        if not points:
            return
        for point in sorted(set(points), key=len, reverse=True):
            libc.umount2(point.encode(), 2)  # MNT_DETACH
    raise HarnessError(f"mounts left under {root}: {points}")


# ---------------------------------------------------------------- Docker Engine


ROOT = Path(__file__).resolve().parents[1]
ENGINE_KINDS = ("system", "28-classic", "28-containerd")


@dataclass(frozen=True)
class EngineKind:
    """Which dockerd and which image store: ``system`` (the machine's docker.io, classic store),
    ``28-classic`` or ``28-containerd`` (Docker 28 from Debian sid, fetched by scripts/fetch_engines.sh)."""

    name: str = "system"

    @property
    def store(self) -> str:
        return "containerd" if self.name.endswith("containerd") else "classic"

    @property
    def private_root(self) -> Path | None:
        return None if self.name == "system" else ROOT / ".engines" / "sid" / "root"

    def dockerd(self) -> str:
        if self.private_root is None:
            return _binary("dockerd", "docker.io")
        path = self.private_root / "usr" / "sbin" / "dockerd"
        if not path.exists():
            raise HarnessError(f"{path} is missing: run scripts/fetch_engines.sh (scripts/setup_lab.sh does)")
        return str(path)

    def env(self) -> dict[str, str]:
        """dockerd finds its containerd, shim and docker-init on PATH; runc stays the machine's."""
        env = dict(os.environ)
        if self.private_root is not None:
            env["PATH"] = f"{self.private_root}/usr/bin:{self.private_root}/usr/sbin:{env.get('PATH', '')}"
        return env

    def daemon_config(self) -> dict:
        return {"features": {"containerd-snapshotter": True}} if self.store == "containerd" else {}


def engine_kind(name: str | None = None) -> EngineKind:
    """The kind named, or by ``ARTILOAD_TEST_ENGINE`` (default ``system``)."""
    name = name or os.environ.get("ARTILOAD_TEST_ENGINE") or "system"
    if name not in ENGINE_KINDS:
        raise HarnessError(f"unknown engine kind {name!r}: use one of {', '.join(ENGINE_KINDS)}")
    return EngineKind(name)


@dataclass
class Engine:
    """A private dockerd; everything it owns lives under ``workdir``."""

    socket_path: str
    unix_url: str
    tcp_url: str | None
    tls: TLSMaterial | None
    workdir: str
    pid: int
    name: str = "engine"
    log_path: str = ""
    _proc: subprocess.Popen | None = field(default=None, repr=False, compare=False)
    kind: EngineKind = field(default_factory=EngineKind)

    def stop(self, timeout: float = 20.0) -> None:
        """Stop dockerd, its containerd, shims and containers; unmount what is left. Idempotent."""
        _stop_engine(self.workdir, self.pid, self._proc, timeout)

    def temp_entries(self) -> list[str]:
        """The engine's TMPDIR (<data-root>/tmp): where a classic-store engine unpacks an upload it loads.
        It must be empty again once an upload is aborted."""
        return self._entries("tmp")

    def upload_entries(self) -> list[str]:
        """Every place an upload in progress lands: TMPDIR, and the containerd store's content ingest
        directory (a blob being written). containerd keeps an aborted blob's partial ingest there (to
        resume the same ref; `docker load` interrupted leaves it too) until the engine restarts."""
        return self._entries("tmp") + self._entries("containerd/daemon/io.containerd.content.v1.content/ingest")

    def _entries(self, sub: str) -> list[str]:
        path = os.path.join(self.workdir, "root", sub)
        return [f"{sub}/{name}" for name in sorted(os.listdir(path))] if os.path.isdir(path) else []


def _ping(socket_path: str, timeout: float = 2.0) -> bool:
    """``GET /_ping`` over the unix socket with nothing but the stdlib."""
    try:
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(timeout)
            s.connect(socket_path)
            s.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
            data = b""
            while chunk := s.recv(4096):
                data += chunk
    except OSError:
        return False
    return data.split(b"\r\n", 1)[0].split(b" ")[1:2] == [b"200"] and data.endswith(b"OK")


def start_engine(workdir: str | os.PathLike[str], *, tls: TLSMaterial | None = None,
                 name: str = "engine", timeout: float = 30.0, kind: EngineKind | None = None) -> Engine:
    """Start dockerd with its own data-root, exec-root (so its own managed containerd), socket and pidfile."""
    kind = kind or engine_kind()
    dockerd = kind.dockerd()
    work = os.path.realpath(workdir)
    if len(f"{work}/exec/containerd/containerd.sock.ttrpc") > _UNIX_PATH_MAX:
        raise HarnessError(f"workdir {work!r} is too long for unix socket paths: use a short one under /tmp")
    os.makedirs(work, exist_ok=True)
    sock = f"{work}/docker.sock"
    argv = [dockerd, "--config-file", f"{work}/daemon.json", "--data-root", f"{work}/root",
            "--exec-root", f"{work}/exec", "-H", f"unix://{sock}", "--pidfile", f"{work}/docker.pid",
            "--bridge=none", "--iptables=false", "--ip6tables=false"]
    tcp_url = None
    if tls is not None:
        tcp_url = f"tcp://127.0.0.1:{_free_port()}"
        argv += ["-H", tcp_url, "--tlsverify", "--tlscacert", tls.ca_cert,
                 "--tlscert", tls.server_cert, "--tlskey", tls.server_key]
    # Our own daemon.json ignores the host's /etc/docker/daemon.json. Engines before 23.0 derive their
    # ID from /etc/docker/key.json, so side-by-side engines would share one ID unless each has its own
    # key; if an engine rejects that setting, start it with an empty config instead.
    base = kind.daemon_config()
    for config in ({**base, "deprecated-key-path": f"{work}/key.json"}, base):
        Path(work, "daemon.json").write_text(json.dumps(config))
        result = _launch_engine(argv, sock, tcp_url, tls, work, name, timeout, kind)
        if isinstance(result, Engine):
            return result
        if "deprecated-key-path" not in config or "deprecated-key-path" not in result:
            raise HarnessError(result)
    raise AssertionError("unreachable")


def _launch_engine(argv: list[str], sock: str, tcp_url: str | None, tls: TLSMaterial | None,
                   work: str, name: str, timeout: float, kind: EngineKind) -> Engine | str:
    """Start dockerd and wait for /_ping; on failure stop it and return the reason with the log tail."""
    log_path = f"{work}/dockerd.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                cwd=work, start_new_session=True, env=kind.env())
    engine = Engine(sock, f"unix://{sock}", tcp_url, tls, work, proc.pid, name, log_path, proc, kind)
    deadline = time.monotonic() + timeout
    while not _ping(sock):
        if proc.poll() is not None or time.monotonic() > deadline:
            why = f"exited with {proc.returncode}" if proc.poll() is not None else f"not ready after {timeout:.0f}s"
            engine.stop(timeout=5)
            return f"dockerd {name!r} {why}; {log_path} ends with:\n{log_tail(log_path)}"
        time.sleep(0.1)
    return engine


def _engine_processes(work: str) -> set[int]:
    """dockerd/containerd/shims/runc whose arguments point into ``work``, plus their descendants."""
    table = _proc_table()
    roots = [pid for pid, (_, _, comm, argv) in table.items()
             if comm.startswith(("dockerd", "containerd", "runc")) and any(work + "/" in a for a in argv)]
    return _with_descendants(roots, table) - {os.getpid()}


def _stop_engine(workdir: str, pid: int | None, proc: subprocess.Popen | None, timeout: float) -> None:
    work = os.path.realpath(workdir)
    if pid and _alive(pid, proc):
        _terminate([pid], timeout, proc)  # dockerd stops its containers and its containerd itself
    leftovers = _engine_processes(work)  # after a SIGKILL: containerd, shims and their containers
    if leftovers:
        _signal_all(leftovers, signal.SIGKILL)
        _wait_dead(leftovers, 5)
    _unmount_under(work)


def stop_engine(workdir: str | os.PathLike[str], *, timeout: float = 20.0) -> None:
    """Stop the engine whose workdir is ``workdir`` (found by its pidfile), e.g. one the CLI started."""
    work = os.path.realpath(workdir)
    pid = None
    with contextlib.suppress(OSError, ValueError):
        pid = int(Path(work, "docker.pid").read_text().strip())
    if pid is not None and pid not in _engine_processes(work):
        pid = None  # stale pidfile: the number may now belong to someone else
    _stop_engine(work, pid, None, timeout)


# ---------------------------------------------------------------- sshd


@dataclass
class Sshd:
    """A private OpenSSH sshd on 127.0.0.1 with key-only root login; all files under ``workdir``."""

    host: str
    port: int
    user: str
    client_key: str
    client_key_rsa: str
    client_key_protected: str
    protected_passphrase: str
    wrong_key: str
    host_key_line: str
    known_hosts: str
    other_known_hosts: str
    workdir: str
    pid: int
    engine_sockets_allowed: bool = True
    log_path: str = ""
    _proc: subprocess.Popen | None = field(default=None, repr=False, compare=False)

    def ssh_command(self, key: str | None = None, known_hosts: str | None = None) -> list[str]:
        """argv for the OpenSSH client, isolated from ~/.ssh; append the remote command."""
        return ["ssh", "-F", "/dev/null", "-i", key or self.client_key, "-p", str(self.port),
                "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
                "-o", f"UserKnownHostsFile={known_hosts or self.known_hosts}",
                "-o", "GlobalKnownHostsFile=/dev/null", "-o", "StrictHostKeyChecking=yes",
                f"{self.user}@{self.host}"]

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the listener and any session processes it forked. Idempotent."""
        table = _proc_table()
        if _alive(self.pid, self._proc):
            _terminate(_with_descendants([self.pid], table), timeout, self._proc)


def _keygen(path: Path, kind: str, passphrase: str = "", *extra: str) -> str:
    """Run ssh-keygen; return the public key as ``type base64`` (no comment)."""
    for p in (path, path.with_name(path.name + ".pub")):
        p.unlink(missing_ok=True)
    subprocess.run([_binary("ssh-keygen", "openssh-client"), "-q", "-t", kind, "-N", passphrase,
                    "-C", f"artiload-{path.name}", "-f", str(path), *extra],
                   check=True, stdin=subprocess.DEVNULL, capture_output=True)
    return " ".join(path.with_name(path.name + ".pub").read_text().split()[:2])


def start_sshd(workdir: str | os.PathLike[str], *, engine_sockets_allowed: bool = True,
               timeout: float = 15.0) -> Sshd:
    """Start sshd -D on a free loopback port with fresh host keys and authorized client keys."""
    sshd = _binary("sshd", "openssh-server")
    work = Path(os.path.realpath(workdir))
    work.mkdir(parents=True, exist_ok=True)
    os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # privilege separation directory
    port = _free_port()
    host_keys = [_keygen(work / "ssh_host_ed25519_key", "ed25519"),
                 _keygen(work / "ssh_host_rsa_key", "rsa", "", "-b", "2048")]
    others = [_keygen(work / "other_host_ed25519_key", "ed25519"),
              _keygen(work / "other_host_rsa_key", "rsa", "", "-b", "2048")]
    authorized = [_keygen(work / "client_key", "ed25519"),
                  _keygen(work / "client_key_rsa", "rsa", "", "-b", "2048", "-m", "PEM"),
                  _keygen(work / "client_key_protected", "ed25519", SSH_PASSPHRASE)]
    _keygen(work / "wrong_key", "ed25519")
    (work / "authorized_keys").write_text("".join(k + "\n" for k in authorized))
    pattern = f"[127.0.0.1]:{port}"
    (work / "known_hosts").write_text("".join(f"{pattern} {k}\n" for k in host_keys))
    (work / "other_known_hosts").write_text("".join(f"{pattern} {k}\n" for k in others))
    config, log_path = work / "sshd_config", work / "sshd.log"
    config.write_text("\n".join([
        "ListenAddress 127.0.0.1", f"Port {port}",
        f"HostKey {work}/ssh_host_ed25519_key", f"HostKey {work}/ssh_host_rsa_key",
        f"PidFile {work}/sshd.pid", f"AuthorizedKeysFile {work}/authorized_keys",
        "PermitRootLogin prohibit-password", "PasswordAuthentication no",
        "KbdInteractiveAuthentication no", "PubkeyAuthentication yes", "StrictModes no", "UsePAM no",
        f"AllowStreamLocalForwarding {'yes' if engine_sockets_allowed else 'no'}",
        "Subsystem sftp internal-sftp",  # tarballs at sftp:// paths (ObjectStoragePath)
        "LogLevel VERBOSE", ""]))
    with open(log_path, "ab") as log:
        proc = subprocess.Popen([sshd, "-D", "-f", str(config), "-E", str(log_path)],
                                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                cwd=work, start_new_session=True)
    server = Sshd("127.0.0.1", port, "root", str(work / "client_key"), str(work / "client_key_rsa"),
                  str(work / "client_key_protected"), SSH_PASSPHRASE, str(work / "wrong_key"),
                  host_keys[0], str(work / "known_hosts"), str(work / "other_known_hosts"), str(work),
                  proc.pid, engine_sockets_allowed, str(log_path), proc)
    deadline = time.monotonic() + timeout
    while not _ssh_banner(port):
        if proc.poll() is not None or time.monotonic() > deadline:
            why = f"exited with {proc.returncode}" if proc.poll() is not None else f"not ready after {timeout:.0f}s"
            server.stop(timeout=5)
            raise HarnessError(f"sshd {why}; {log_path} ends with:\n{log_tail(log_path)}")
        time.sleep(0.05)
    return server


def _ssh_banner(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
            return s.recv(256).startswith(b"SSH-2.0")
    except OSError:
        return False


# ---------------------------------------------------------------- images


def build_image(socket_path: str, tag: str, dockerfile_text: str,
                files: Mapping[str, bytes] | None = None) -> str:
    """Build ``tag`` from an in-memory context with the classic builder, no network; return the image id."""
    import docker

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in {"Dockerfile": dockerfile_text.encode(), **(files or {})}.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o755
            tar.addfile(info, io.BytesIO(data))
    buf.seek(0)
    base_url = socket_path if socket_path.startswith("unix://") else f"unix://{socket_path}"
    with contextlib.closing(docker.DockerClient(base_url=base_url, version="auto", timeout=300)) as client:
        try:
            image, _ = client.images.build(fileobj=buf, custom_context=True, tag=tag, rm=True,
                                           forcerm=True, network_mode="none")
        except docker.errors.BuildError as exc:
            log = "".join(str(c.get("stream") or c.get("error") or "") for c in exc.build_log)
            raise HarnessError(f"building {tag} failed: {exc.msg}\n{log}") from exc
    return image.id


def build_base_image(socket_path: str, tag: str = BASE_TAG) -> str:
    """A busybox image made from the host's static busybox: no registry needed."""
    path = _binary("busybox", "busybox-static")
    data = Path(path).read_bytes()
    if b"/ld-linux" in data[:4096]:  # a dynamic busybox has its ELF interpreter path up front
        raise HarnessError(f"{path} is dynamically linked: install busybox-static")
    return build_image(socket_path, tag, BASE_DOCKERFILE, {"busybox": data})


# ---------------------------------------------------------------- CLI


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    eng = sub.add_parser("engine", help="start or stop a private dockerd").add_subparsers(dest="action", required=True)
    eng.add_parser("start", help="start it, print its unix:// URL, leave it running").add_argument("dir")
    eng.add_parser("stop", help="stop the engine whose workdir is DIR").add_argument("dir")
    base = sub.add_parser("base-image", help="build the busybox base image in an engine")
    base.add_argument("socket", help="socket path or unix:// URL")
    base.add_argument("tag", nargs="?", default=BASE_TAG)
    args = parser.parse_args(argv)
    try:
        if args.command == "base-image":
            print(build_base_image(args.socket.removeprefix("unix://"), args.tag))
        elif args.action == "start":
            print(start_engine(args.dir).unix_url)
        else:
            stop_engine(args.dir)
    except HarnessError as exc:
        print(f"harness: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
