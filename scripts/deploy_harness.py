"""A real multi-process Airflow deployment on one machine, for tests/integration/test_celery.py.

Postgres and Redis from Debian's packages (on loopback, private data
directories), Airflow 3 with CeleryExecutor: api-server, scheduler,
dag-processor, triggerer, and Celery workers, each worker started under
``unshare -m --propagation private`` with its own directory bind-mounted over
the local tarball path, so a local path written by one worker is absent on the
other, as on separate machines. Each worker has its own hostname (through
``[core] hostname_callable``) and log server port.

Everything is started by :func:`start_deployment` and stopped by
``Deployment.stop()``; nothing outside the work directory is touched except
the bind mounts, which live in the workers' private mount namespaces.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

PG_BIN = Path("/usr/lib/postgresql")
RUNUSER = shutil.which("runuser") or "/usr/sbin/runuser"  # in /usr/sbin, often not on a test's PATH
AIRFLOW = str(Path(sys.executable).with_name("airflow"))


class DeployError(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_port(port: int, proc: subprocess.Popen, what: str, log: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise DeployError(f"{what} exited with {proc.returncode}:\n{_tail(log)}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.5)
    raise DeployError(f"{what} did not listen on {port} within {timeout:.0f} s:\n{_tail(log)}")


def _tail(path: Path, size: int = 3000) -> str:
    try:
        return path.read_text(errors="replace")[-size:]
    except OSError:
        return "(no log)"


@dataclass
class Deployment:
    workdir: Path
    env: dict[str, str]
    api_url: str
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)
    token: str = ""
    pgdata: Path | None = None

    def start(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> subprocess.Popen:
        log = open(self.workdir / f"{name}.log", "wb")
        proc = subprocess.Popen(argv, env=env or self.env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True, cwd=self.workdir)
        log.close()
        self.procs[name] = proc
        return proc

    def log(self, name: str) -> str:
        return _tail(self.workdir / f"{name}.log", 6000)

    def request(self, method: str, path: str, body: dict | None = None) -> dict:
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": "application/json", "Authorization": f"Bearer {self.token}"}
        req = urllib.request.Request(self.api_url + path, data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(req, timeout=30) as response:
                return json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as exc:
            raise DeployError(f"{method} {path}: {exc.code} {exc.read()[:2000]!r}") from exc

    def stop(self) -> None:
        for name, proc in reversed(list(self.procs.items())):
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + 30
        for proc in self.procs.values():
            try:
                proc.wait(timeout=max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait(timeout=10)
        if self.pgdata is not None:
            if (self.pgdata / "postmaster.pid").exists():
                subprocess.run([RUNUSER, "-u", "postgres", "--", str(_pg_bin("pg_ctl")), "-D", str(self.pgdata),
                                "-m", "fast", "stop"], capture_output=True, timeout=60)
            shutil.rmtree(self.pgdata.parent, ignore_errors=True)


def _pg_bin(name: str) -> Path:
    versions = sorted(PG_BIN.glob("*/bin/" + name))
    if not versions:
        raise DeployError(f"{name} not found under {PG_BIN}: apt-get install postgresql")
    return versions[-1]


def start_postgres(dep: Deployment) -> str:
    """A private cluster owned by the postgres user, on loopback; returns the SQLAlchemy URL."""
    # a directory the postgres user can reach (pytest's tmp dirs are root-only)
    parent = Path(tempfile.mkdtemp(prefix="al-pg-", dir="/tmp"))
    os.chmod(parent, 0o755)
    pgdata, port = parent / "data", free_port()
    pgdata.mkdir(mode=0o700)
    shutil.chown(pgdata, "postgres", "postgres")
    dep.pgdata = pgdata
    init = subprocess.run([RUNUSER, "-u", "postgres", "--", str(_pg_bin("initdb")), "-D", str(pgdata), "-A", "trust",
                           "-U", "postgres"], capture_output=True, text=True, timeout=120)
    if init.returncode:
        raise DeployError(f"initdb failed: {init.stdout[-1500:]}{init.stderr[-1500:]}")
    proc = dep.start("postgres", [RUNUSER, "-u", "postgres", "--", str(_pg_bin("postgres")), "-D", str(pgdata),
                                  "-p", str(port), "-k", str(pgdata), "-c", "listen_addresses=127.0.0.1",
                                  "-c", "fsync=off", "-c", "max_connections=200"])
    _wait_port(port, proc, "postgres", dep.workdir / "postgres.log")
    for sql in ("CREATE USER airflow PASSWORD 'airflow'", "CREATE DATABASE airflow OWNER airflow"):
        for _ in range(20):
            done = subprocess.run([RUNUSER, "-u", "postgres", "--", "psql", "-h", str(pgdata), "-p", str(port),
                                   "-c", sql], capture_output=True, text=True, timeout=30)
            if done.returncode == 0:
                break
            time.sleep(0.5)
        else:
            raise DeployError(f"psql {sql!r}: {done.stderr}")
    return f"postgresql+psycopg2://airflow:airflow@127.0.0.1:{port}/airflow"


def start_redis(dep: Deployment) -> str:
    redis = shutil.which("redis-server")
    if not redis:
        raise DeployError("redis-server not found: apt-get install redis-server")
    port = free_port()
    proc = dep.start("redis", [redis, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                               "--appendonly", "no", "--dir", str(dep.workdir)])
    _wait_port(port, proc, "redis", dep.workdir / "redis.log")
    return f"redis://127.0.0.1:{port}/0"


HOSTNAME_MODULE = '''import os


def worker_hostname() -> str:
    """Each worker's own name (they share one host in the test)."""
    return os.environ.get("ARTILOAD_WORKER_NAME") or os.uname().nodename
'''


def start_deployment(workdir: str | Path, *, dags_folder: str, extra_env: dict[str, str],
                     workers: dict[str, tuple[str, str]], local_path: str,
                     local_settings: str = "") -> Deployment:
    """Start everything; ``workers`` maps a worker name to (its queues, its private directory for ``local_path``)."""
    workdir = Path(workdir)
    (workdir / "py").mkdir(parents=True, exist_ok=True)
    (workdir / "py" / "deploy_hostname.py").write_text(HOSTNAME_MODULE)
    if local_settings:
        (workdir / "py" / "airflow_local_settings.py").write_text(local_settings)
    api_port = free_port()
    dep = Deployment(workdir=workdir, env={}, api_url=f"http://127.0.0.1:{api_port}")
    try:
        db, broker = start_postgres(dep), start_redis(dep)
        home = workdir / "home"
        home.mkdir()
        dep.env = {
            **os.environ,
            **extra_env,
            "PYTHONPATH": os.pathsep.join([str(workdir / "py"), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": dags_folder,
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
            "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
            "AIRFLOW__CORE__HOSTNAME_CALLABLE": "deploy_hostname.worker_hostname",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{dep.api_url}/execution/",
            "AIRFLOW__CORE__FERNET_KEY": "",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": db,
            "AIRFLOW__CELERY__BROKER_URL": broker,
            "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + db,
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_hex(16),
            "AIRFLOW__API__SECRET_KEY": secrets.token_hex(16),
            "AIRFLOW__SCHEDULER__DAG_DIR_LIST_INTERVAL": "5",
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
        }
        migrate = subprocess.run([AIRFLOW, "db", "migrate"], env=dep.env, capture_output=True, text=True, timeout=600)
        if migrate.returncode:
            raise DeployError(f"airflow db migrate failed:\n{(migrate.stdout + migrate.stderr)[-3000:]}")
        api = dep.start("api-server", [AIRFLOW, "api-server", "--host", "127.0.0.1", "-p", str(api_port)])
        for name in ("scheduler", "dag-processor", "triggerer"):
            dep.start(name, [AIRFLOW, name])
        for name, (queues, private_dir) in workers.items():
            env = {**dep.env, "ARTILOAD_WORKER_NAME": name,
                   "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port())}
            os.makedirs(private_dir, exist_ok=True)
            script = (f"mkdir -p {local_path} && mount --bind {private_dir} {local_path} && "
                      f"exec {AIRFLOW} celery worker -q {queues} --concurrency 2 --celery-hostname {name}@%h")
            dep.start(f"worker-{name}", ["unshare", "-m", "--propagation", "private", "sh", "-c", script], env=env)
        _wait_port(api_port, api, "api-server", workdir / "api-server.log", timeout=240)
        password = json.loads((home / "simple_auth_manager_passwords.json.generated").read_text())["admin"]
        req = urllib.request.Request(dep.api_url + "/auth/token", method="POST",
                                     data=json.dumps({"username": "admin", "password": password}).encode(),
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as response:
            dep.token = json.loads(response.read())["access_token"]
        for name, proc in dep.procs.items():
            if proc.poll() is not None:
                raise DeployError(f"{name} exited with {proc.returncode}:\n{dep.log(name)}")
        return dep
    except BaseException:
        dep.stop()
        raise


def wait_for_dag(dep: Deployment, dag_id: str, timeout: float = 240) -> None:
    """Until the dag-processor has serialized ``dag_id``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            dep.request("GET", f"/api/v2/dags/{dag_id}/details")
            return
        except DeployError:
            time.sleep(2)
    raise DeployError(f"DAG {dag_id} was not parsed within {timeout:.0f} s:\n{dep.log('dag-processor')}")


def unpause(dep: Deployment, dag_id: str) -> None:
    wait_for_dag(dep, dag_id)
    dep.request("PATCH", f"/api/v2/dags/{dag_id}", {"is_paused": False})


def run_dag(dep: Deployment, dag_id: str, logical_date: str, timeout: float = 420) -> tuple[str, list[dict]]:
    """Unpause, trigger through the REST API, wait for the run to finish; its state and task instances."""
    unpause(dep, dag_id)
    run = dep.request("POST", f"/api/v2/dags/{dag_id}/dagRuns", {"logical_date": logical_date})
    run_id = run["dag_run_id"]
    deadline = time.monotonic() + timeout
    state = run["state"]
    while time.monotonic() < deadline:
        state = dep.request("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}")["state"]
        if state in ("success", "failed"):
            break
        time.sleep(3)
    tis = dep.request("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances")["task_instances"]
    return state, tis
