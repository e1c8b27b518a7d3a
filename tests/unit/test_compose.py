"""docker-compose.airflow.yml: parsed and checked here, and by `docker-compose config`.

The file cannot be started on our machines (no registry to pull images from),
so this is its whole check: the official Airflow 3 layout, the provider in the
image, the engine and BuildKit services, and connections that parse with the
provider's own code and point at those services through shared volumes.
`docker-compose config` must run: a missing binary FAILS (scripts/setup.sh
installs it), it never skips.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml

from airflow_provider_artiload.get_provider_info import get_provider_info
from airflow_provider_artiload.hooks.connection import endpoint_from_connection

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.airflow.yml"
DOCKERFILE = ROOT / "Dockerfile.airflow"
AIRFLOW_SERVICES = (
    "airflow-apiserver",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-worker",
    "airflow-triggerer",
    "airflow-init",
)
ENGINE, EDGE, BUILDKITD = "docker-engine", "edge-engine", "buildkitd"
KINDS = {"docker_engine": "engine", "buildkit": "buildkit"}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


@pytest.fixture(scope="module")
def services(compose) -> dict[str, Any]:
    return compose["services"]


@pytest.fixture(scope="module")
def connections(services) -> dict[str, dict[str, Any]]:
    """conn_id -> the JSON of its AIRFLOW_CONN_* variable, as the worker sees it."""
    env = services["airflow-worker"]["environment"]
    return {
        name[len("AIRFLOW_CONN_") :].lower(): json.loads(value)
        for name, value in env.items()
        if name.startswith("AIRFLOW_CONN_")
    }


def mounts(service: dict[str, Any]) -> dict[str, str]:
    """Container path -> source (a named volume or a host path) of a service's volumes."""
    result = {}
    for entry in service.get("volumes", []):
        spec = entry.removesuffix(":ro").removesuffix(":rw")  # the source may hold ${VAR:-default}
        source, target = spec.rsplit(":", 1)
        result[target] = source
    return result


def volume_at(service: dict[str, Any], path: str) -> str | None:
    """The named volume a service mounts at ``path`` or at a directory above it."""
    for target, source in mounts(service).items():
        if path == target or path.startswith(target.rstrip("/") + "/"):
            return source
    return None


def as_connection(conn_id: str, value: dict[str, Any]) -> SimpleNamespace:
    extra = value.get("extra") or {}
    return SimpleNamespace(
        conn_id=conn_id,
        conn_type=value.get("conn_type"),
        host=value.get("host"),
        port=value.get("port"),
        login=value.get("login"),
        password=value.get("password"),
        extra_dejson=json.loads(extra) if isinstance(extra, str) else extra,
    )


def test_header_says_it_was_not_started_here():
    header = COMPOSE.read_text().split("\n---", 1)[0]
    assert "NOT been started" in header
    assert "docker-compose -f docker-compose.airflow.yml config" in header


def test_official_airflow_3_services(services):
    expected = {"postgres", "redis", *AIRFLOW_SERVICES, ENGINE, EDGE, BUILDKITD}
    assert expected <= set(services)
    assert services["airflow-apiserver"]["command"] == "api-server"
    assert "8080:8080" in services["airflow-apiserver"]["ports"]
    assert services["airflow-scheduler"]["command"] == "scheduler"
    assert services["airflow-dag-processor"]["command"] == "dag-processor"
    assert services["airflow-worker"]["command"] == "celery worker"
    assert services["airflow-triggerer"]["command"] == "triggerer"
    init_env = services["airflow-init"]["environment"]
    assert init_env["_AIRFLOW_DB_MIGRATE"] == "true"
    for name in AIRFLOW_SERVICES:
        for dependency in ("postgres", "redis"):
            assert services[name]["depends_on"][dependency]["condition"] == "service_healthy", name
        if name != "airflow-init":
            assert services[name]["depends_on"]["airflow-init"]["condition"] == "service_completed_successfully"


def test_common_anchor(compose, services):
    text = COMPOSE.read_text()
    assert "x-airflow-common:\n  &airflow-common\n" in text
    common = compose["x-airflow-common"]
    env = common["environment"]
    assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://airflow-apiserver:8080/execution/"
    assert env["AIRFLOW__CELERY__BROKER_URL"].startswith("redis://")
    assert "@postgres/" in env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
    volumes = mounts(common)
    for folder in ("dags", "logs", "config", "plugins"):
        assert volumes[f"/opt/airflow/{folder}"].endswith(f"/{folder}")
    for name in AIRFLOW_SERVICES:  # every Airflow service is the anchor merged in
        service = services[name]
        assert service["image"] == common["image"] and service["build"] == common["build"], name
        assert service["volumes"] == common["volumes"], name
        for key, value in env.items():
            assert service["environment"][key] == value, (name, key)


def test_dags_folder_is_the_repositorys(compose):
    source = mounts(compose["x-airflow-common"])["/opt/airflow/dags"]
    assert source.replace("${AIRFLOW_PROJ_DIR:-.}", ".") == "./dags"
    assert (ROOT / "dags" / "artiload_demo.py").is_file()


def test_image_installs_this_provider(compose):
    build = compose["x-airflow-common"]["build"]
    assert build["context"] == "."
    assert (ROOT / build["dockerfile"]) == DOCKERFILE
    lines = [line.strip() for line in DOCKERFILE.read_text().splitlines() if line.strip() and not line.startswith("#")]
    assert lines[0] == "FROM apache/airflow:3.3.2"
    copied = " ".join(line for line in lines if line.startswith("COPY"))
    for needed in ("pyproject.toml", "README.md", "airflow_provider_artiload"):
        assert needed in copied
        assert (ROOT / needed).exists()
    install = next(line for line in lines if line.startswith("RUN pip install"))
    assert '"apache-airflow==3.3.2"' in install and install.endswith("/opt/artiload")


def endpoint_of(conn_id: str, connections: dict[str, dict[str, Any]]):
    value = connections[conn_id]
    get = lambda other: as_connection(other, connections[other])  # noqa: E731
    return endpoint_from_connection(as_connection(conn_id, value), kind=KINDS[value["conn_type"]], get_connection=get)


def test_connections_parse_with_the_providers_code(connections):
    conn_types = {c["connection-type"] for c in get_provider_info()["connection-types"]}
    assert {"docker_engine_default", "buildkit_default"} <= set(connections)
    for conn_id, value in connections.items():
        assert value["conn_type"] in conn_types, conn_id
        endpoint_of(conn_id, connections)
        engine_conn_id = (value.get("extra") or {}).get("engine_conn_id")
        if engine_conn_id:
            assert connections[engine_conn_id]["conn_type"] == "docker_engine"


def test_example_dags_find_their_connections_and_variables(services, connections):
    spec = importlib.util.spec_from_file_location("artiload_example_common", ROOT / "dags" / "_common.py")
    common = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(common)
    assert connections[common.BUILDER]["conn_type"] == "buildkit"
    # the DAGs build with export="image": only the BuildKit inside an engine has that exporter
    assert endpoint_of(common.BUILDER, connections).scheme == "docker"
    assert connections[common.BUILDER]["extra"]["engine_conn_id"] == common.BUILD_ENGINE
    for conn_id in (common.BUILD_ENGINE, common.LOCAL, common.REMOTE, *common.DEFAULT_FLEET):
        assert connections[conn_id]["conn_type"] == "docker_engine", conn_id
    env = services["airflow-worker"]["environment"]
    fleet = json.loads(env["AIRFLOW_VAR_ARTILOAD_FLEET"])
    assert fleet and all(connections[c]["conn_type"] == "docker_engine" for c in fleet)
    tarballs = env["AIRFLOW_VAR_ARTILOAD_TARBALLS"]
    assert "artiload_tarballs" in common.TARBALLS
    for path in (tarballs, env["ARTILOAD_DEMO_OUT"]):  # shared by every Airflow container, written by tasks
        volume = volume_at(services["airflow-worker"], path)
        assert volume and not volume.startswith(("/", ".", "$")), path
        assert all(volume_at(services[name], path) == volume for name in AIRFLOW_SERVICES)
    init = services["airflow-init"]["command"][-1]
    assert "chown" in init and "artifacts" in init


@pytest.mark.parametrize(("conn_id", "service_name"), [("docker_engine_default", ENGINE), ("artiload_remote", EDGE)])
def test_engine_connection_reaches_a_dind_engine_over_tls(services, connections, conn_id, service_name):
    dind = services[service_name]
    assert dind["image"].startswith("docker:") and "dind" in dind["image"]
    assert dind["privileged"] is True
    assert dind["environment"]["DOCKER_TLS_CERTDIR"] == "/certs"
    endpoint = endpoint_of(conn_id, connections)
    assert (endpoint.scheme, endpoint.port) == ("tcp", 2376)
    # dind's server certificate names its hostname: the URL must use it, and verification stays on.
    assert endpoint.host == dind["hostname"] == service_name
    assert endpoint.tls is not None and endpoint.tls.verify
    worker, client_volume = services["airflow-worker"], volume_at(dind, "/certs/client/key.pem")
    assert client_volume is not None and volume_at(dind, "/certs/ca/key.pem") != client_volume
    for path in (endpoint.tls.ca_cert, endpoint.tls.client_cert, endpoint.tls.client_key):
        assert path and path.startswith("/"), path
        assert volume_at(worker, path) == client_volume, path  # the worker reads what dind wrote
        assert os.path.basename(path) in ("ca.pem", "cert.pem", "key.pem")
    ca_volume = volume_at(dind, "/certs/ca/key.pem")
    assert ca_volume not in mounts(worker).values()  # the CA's private key stays in dind


def test_buildkit_connection_reaches_buildkitd(services, connections):
    buildkitd = services[BUILDKITD]
    assert buildkitd["image"].startswith("moby/buildkit")
    assert buildkitd["privileged"] is True
    endpoint = endpoint_of("buildkit_default", connections)
    assert endpoint.scheme == "unix"
    command = buildkitd["command"]
    assert command[command.index("--addr") + 1] == endpoint.url
    shared = volume_at(buildkitd, endpoint.address)
    assert shared is not None and volume_at(services["airflow-worker"], endpoint.address) == shared


def test_worker_waits_for_engine_and_buildkitd(services):
    depends = services["airflow-worker"]["depends_on"]
    for name in (ENGINE, EDGE, BUILDKITD):
        assert depends[name]["condition"] == "service_healthy"
        assert services[name]["healthcheck"]["test"]


def test_named_volumes_are_declared(compose, services):
    declared = set(compose["volumes"])
    used = {
        source
        for service in services.values()
        for source in mounts(service).values()
        if not source.startswith(("/", ".", "$", "~"))
    }
    assert used == declared


def compose_command() -> list[str]:
    """`docker-compose` (Debian's package, installed by scripts/setup.sh), else the `docker compose` plugin."""
    if binary := shutil.which("docker-compose"):
        return [binary]
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0:
        return [docker, "compose"]
    pytest.fail("neither docker-compose nor the docker compose plugin is installed (apt-get install docker-compose)")


def test_docker_compose_config_accepts_the_file(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW_", "COMPOSE_", "DOCKER_"))}
    result = subprocess.run(
        [*compose_command(), "-f", str(COMPOSE), "config"],
        cwd=tmp_path,  # the file's own folder is the project directory, wherever this runs from
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "WARN" not in result.stderr.upper(), result.stderr
    resolved = yaml.safe_load(result.stdout)
    assert set(resolved["services"]) == set(yaml.safe_load(COMPOSE.read_text())["services"])
    assert resolved["services"]["airflow-worker"]["build"]["context"] == str(ROOT)
