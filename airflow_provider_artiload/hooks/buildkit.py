"""BuildKitHook: an Airflow connection to a BuildKit daemon, and Dockerfile builds with artifacts.

Endpoints (the connection's host field): ``docker://<engine>`` (the BuildKit
inside a Docker Engine, through its ``/grpc`` and ``/session`` upgrades, over
the engine's unix, TCP+TLS or SSH transport), or a standalone buildkitd on
``unix://``, ``tcp://`` (+mTLS) or ``ssh://``. Without a ``buildkit_default``
connection the docker CLI's engine defaults apply (``docker://$DOCKER_HOST``).

Extras (besides the TLS and SSH ones of the shared connection model):

- ``engine_conn_id``: with host ``docker://`` or empty, the BuildKit of that
  ``docker_engine`` connection's engine;
- ``network``: the network of every ``RUN`` step: ``default``, ``none`` or
  ``host`` (engines started with ``--bridge=none`` need ``none``);
- ``registry_conn_ids``: connections (host = registry, login, password)
  whose credentials the daemon may ask for (a JSON list or comma-separated);
- ``conn_timeout``: seconds to open a connection (default 30);
- ``context_roots``: directories build contexts must lie in (a JSON list or
  comma-separated); a context or Dockerfile outside them is refused;
- ``secret_roots``: directories file secrets (``{"file": PATH}``) must lie in;
  without it, ``context_roots`` confine them too.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import replace
from functools import cached_property
from typing import Any

from airflow.sdk import BaseHook
from airflow.utils.net import get_hostname

from airflow_provider_artiload.artifacts import DockerArchive, ImageArtifact, RootfsTar
from airflow_provider_artiload.buildkit.client import STREAMED, BuildKitClient, BuildRequest
from airflow_provider_artiload.buildkit.session.secrets import resolve_secret_file
from airflow_provider_artiload.endpoints import Endpoint, default_engine_url, parse_endpoint, parse_float, parse_list
from airflow_provider_artiload.oci.archive import ArchiveScanner
from airflow_provider_artiload.engine.client import EngineClient
from airflow_provider_artiload.oci.reference import parse_reference
from airflow_provider_artiload.exceptions import ArtiloadError, BuildError, EndpointError
from airflow_provider_artiload.hooks.cache import cache_plan, engine_store, parse_entries
from airflow_provider_artiload.hooks.connection import ConnectionBacked, default_endpoint, endpoint_from_connection
from airflow_provider_artiload.hooks.paths import as_target
from airflow_provider_artiload.transfer.save import Sink, archive_sink
from airflow_provider_artiload.transport import open_dialer

SECRET_SOURCES = ("conn_id", "variable", "env", "file")


class BuildKitHook(ConnectionBacked, BaseHook):
    """A BuildKit daemon; nothing connects until a method needs it.

    :param buildkit_conn_id: the ``buildkit`` connection.
    """

    conn_name_attr = "buildkit_conn_id"
    default_conn_name = "buildkit_default"
    conn_type = "buildkit"
    hook_name = "BuildKit (artiload)"

    def __init__(self, buildkit_conn_id: str = default_conn_name) -> None:
        super().__init__()
        self.buildkit_conn_id = buildkit_conn_id

    @property
    def engine_conn_id(self) -> str | None:
        """The ``docker_engine`` connection whose engine's BuildKit this is (extra ``engine_conn_id``), if any."""
        return self._extras.get("engine_conn_id") or None

    @cached_property
    def endpoint(self) -> Endpoint:
        """The BuildKit endpoint; for ``docker://`` its ``engine`` is always filled in."""
        if self._connection is None:
            endpoint = default_endpoint("buildkit")
        else:
            endpoint = endpoint_from_connection(self._connection, kind="buildkit", get_connection=self.get_connection)
        if endpoint.scheme != "docker":
            return endpoint
        engine_conn_id = self.engine_conn_id
        if engine_conn_id:
            if endpoint.engine is not None:
                raise EndpointError(
                    f"connection {self.buildkit_conn_id!r}: set either an engine URL after docker:// "
                    f"or engine_conn_id ({engine_conn_id!r}), not both"
                )
            from airflow_provider_artiload.hooks.engine import DockerEngineHook

            return replace(endpoint, engine=DockerEngineHook(engine_conn_id).endpoint)
        if endpoint.engine is None:
            url, extras = default_engine_url()
            return replace(endpoint, engine=parse_endpoint(url, kind="engine", extras=extras))
        return endpoint

    @cached_property
    def network(self) -> str | None:
        value = self._extras.get("network") or None
        if value not in (None, "default", "none", "host"):
            raise EndpointError(f"connection {self.buildkit_conn_id!r}: extra 'network' must be default, none or host, got {value!r}")
        return value

    @cached_property
    def client(self) -> BuildKitClient:
        endpoint = self.endpoint
        timeout = parse_float(self._extras.get("conn_timeout"), name="conn_timeout", default=30.0)
        if endpoint.scheme == "docker":
            assert endpoint.engine is not None
            engine = EngineClient(open_dialer(endpoint.engine), timeout=timeout)
            return BuildKitClient(
                lambda: engine.open_upgraded("/grpc"),
                lambda headers: engine.open_upgraded("/session", headers=headers),
                where=endpoint.url,
            )
        dialer = open_dialer(endpoint, alpn=("h2",))

        def dial():
            stream = dialer.dial(timeout=timeout)
            stream.settimeout(None)
            return stream

        return BuildKitClient(dial, where=endpoint.url)

    def test_connection(self) -> tuple[bool, str]:
        try:
            workers = self.client.list_workers()
            version = self.client.version()
        except ArtiloadError as exc:
            return False, str(exc)
        finally:
            self.close()
        platforms = sorted({p for w in workers for p in w.platforms})
        what = f"BuildKit {version}" if version else "BuildKit (older than v0.11: no Info call)"
        return True, f"{what} at {self.endpoint}: {len(workers)} worker(s), platforms {', '.join(platforms) or '?'}"

    def resolve_secrets(self, spec: Mapping[str, Any] | None) -> dict[str, bytes]:
        """``{"id": {"conn_id": C} | {"variable": V} | {"env": E} | {"file": F}}`` -> values; never logged."""
        values: dict[str, bytes] = {}
        for secret_id, source in (spec or {}).items():
            if not isinstance(source, Mapping) or len(source) != 1 or next(iter(source)) not in SECRET_SOURCES:
                raise BuildError(
                    f"secret {secret_id!r}: the source must be one of "
                    + ", ".join(f'{{"{k}": ...}}' for k in SECRET_SOURCES)
                )
            kind, name = next(iter(source.items()))
            values[secret_id] = _encode(self._secret_value(secret_id, kind, str(name)))
        return values

    def _secret_value(self, secret_id: str, kind: str, name: str) -> str | bytes:
        if kind == "conn_id":
            password = self.get_connection(name).password
            if not password:
                raise BuildError(f"secret {secret_id!r}: connection {name!r} has no password")
            return password
        if kind == "variable":
            from airflow.sdk import Variable

            return Variable.get(name)
        if kind == "env":
            if name not in os.environ:
                raise BuildError(f"secret {secret_id!r}: environment variable {name!r} is not set")
            return os.environ[name]
        return resolve_secret_file(secret_id, name, self.secret_roots)

    @cached_property
    def context_roots(self) -> list[str]:
        """Directories build contexts must lie in (extra ``context_roots``); empty means anywhere."""
        return [os.path.realpath(root) for root in parse_list(self._extras.get("context_roots"), name="context_roots")]

    @cached_property
    def secret_roots(self) -> list[str]:
        """Directories file secrets must lie in: extra ``secret_roots``, else ``context_roots``; empty means anywhere."""
        own = parse_list(self._extras.get("secret_roots"), name="secret_roots")
        return [os.path.realpath(root) for root in own] if own else self.context_roots

    def check_context(self, context: str, dockerfile: str) -> None:
        """Refuse, before connecting, a context or Dockerfile outside the configured roots (symlinks resolved)."""
        if not self.context_roots:
            return
        for what, path in (("context", context), ("Dockerfile", os.path.join(context, dockerfile))):
            real = os.path.realpath(path)
            if not any(real == root or real.startswith(root + os.sep) for root in self.context_roots):
                raise BuildError(
                    f"the build {what} {path!r} (resolved: {real}) is outside the allowed roots "
                    f"{self.context_roots} of connection {self.buildkit_conn_id!r} (extra 'context_roots')"
                )

    def registry_auth(self) -> dict[str, tuple[str, str]]:
        ids = parse_list(self._extras.get("registry_conn_ids"), name="registry_conn_ids")
        auth = {}
        for conn_id in ids:
            conn = self.get_connection(conn_id)
            auth[conn.host or conn_id] = (conn.login or "", conn.password or "")
        return auth

    def build(
        self,
        *,
        context: str,
        dockerfile: str = "Dockerfile",
        export: str = "image",
        image: str | None = None,
        output: str | None = None,
        build_args: Mapping[str, str] | None = None,
        target: str | None = None,
        labels: Mapping[str, str] | None = None,
        secrets: Mapping[str, bytes] | None = None,
        no_cache: bool = False,
        platform: str | None = None,
        cache_from: Any = None,
        cache_to: Any = None,
        platforms: Any = None,
    ) -> dict[str, Any]:
        """Build and return the artifact as XCom: an ``image``, a ``docker-archive`` or a ``tar`` file.

        ``cache_from`` / ``cache_to``: see :mod:`airflow_provider_artiload.buildkit.cache`.
        ``platforms``: several platforms in one solve (a list, or comma-separated), one artifact: an
        OCI index with a manifest per platform.
        """
        cache_entries = parse_entries(cache_from, cache_to)  # bad entries fail here, before any I/O
        self.check_context(str(context), str(dockerfile))
        if image:
            parse_reference(image)
        if export in STREAMED and not output:
            raise BuildError(f"export={export!r} needs output=PATH for the tarball")
        request = BuildRequest(
            context=str(context),
            dockerfile=str(dockerfile),
            export=export,
            image=image,
            output=object() if export in STREAMED else None,  # placeholder until the file is open
            build_args=dict(build_args or {}),
            target=target or None,
            labels=dict(labels or {}),
            secrets=dict(secrets or {}),
            registry_auth=self.registry_auth(),
            no_cache=no_cache,
            platform=platform or None,
            platforms=tuple(p for p in (platforms.split(",") if isinstance(platforms, str) else platforms or ())
                            if not isinstance(p, str) or p.strip()),  # a template rendering "" asks for nothing
            network=self.network,
        )
        request.validate()
        self._check_multi_platform_image(request)
        if request.exporter()[0] != request.export and export == "docker":
            self.log.info("export='docker' of %s: writing BuildKit's OCI index (its docker exporter writes one "
                          "platform); every engine kind loads it through artiload", ", ".join(request.target_platforms()))
        if cache_entries:
            timeout = parse_float(self._extras.get("conn_timeout"), name="conn_timeout", default=30.0)
            request = replace(request, cache=cache_plan(cache_entries, endpoint=self.endpoint, log=self.log, timeout=timeout))
        self.log.info("Building %s (Dockerfile %s) on %s, export=%s", request.context_dir, request.dockerfile, self.endpoint, export)
        if export not in STREAMED:
            result = self.client.solve(request, log=self.log)
            self._log_result(result)
            if export == "none":
                return {"kind": "none", "exporter_response": result.exporter_response}
            if not result.image_id:
                raise BuildError(f"{self.endpoint}: the build succeeded but reported no image ID: {result.exporter_response}")
            engine = self.endpoint.engine.url if self.endpoint.engine else self.endpoint.url
            return ImageArtifact(image=str(image), image_id=result.image_id, engine=engine).to_xcom()
        return self._build_to_file(request, output)

    def _check_multi_platform_image(self, request: BuildRequest) -> None:
        """export='image' of several platforms: only a containerd-store engine can hold the result; refuse before building."""
        platforms = request.target_platforms()
        if request.export != "image" or len(platforms) < 2:
            return
        timeout = parse_float(self._extras.get("conn_timeout"), name="conn_timeout", default=30.0)
        if engine_store(self.endpoint, timeout) == "classic":
            where = self.endpoint.engine.url if self.endpoint.engine else self.endpoint.url
            raise BuildError(
                f"the engine at {where} uses the classic image store, which holds one platform per image: it cannot "
                f"hold a multi-platform image of {', '.join(platforms)}. Build with export='oci' (or 'docker') and "
                "output=PATH, then DockerLoadOperator gives every engine the image of its platform; or enable the "
                'containerd image store on that engine ({"features": {"containerd-snapshotter": true}})'
            )

    def _build_to_file(self, request: BuildRequest, output: Any) -> dict[str, Any]:
        """Stream the exporter's tarball to ``output``: a local path or an object-storage URI."""
        target = as_target(output)
        output = str(target)
        with archive_sink(target, f"Exporting {request.export}", self.log) as sink:
            scanner = ArchiveScanner() if request.export in ("docker", "oci") else None
            writer = _Writer(sink, scanner)
            result = self.client.solve(replace(request, output=writer), log=self.log)
            index = scanner.finish() if scanner else None
            if index is not None:
                index.check_complete()
        self._log_result(result)
        if index is None:
            return RootfsTar(path=output, sha256=sink.sha256, size=sink.size).to_xcom()
        return DockerArchive.of_index(index, path=output, sha256=sink.sha256, size=sink.size,
                                      hostname=get_hostname()).to_xcom()

    def _log_result(self, result: Any) -> None:
        self.log.info(
            "Build finished in %.1f s; context data sent: %d bytes", result.seconds, result.context_bytes
        )

    def cancel(self) -> None:
        """Cancel the running build (``on_kill``)."""
        if "client" in self.__dict__:
            self.client.cancel()

    def close(self) -> None:
        if "client" in self.__dict__:
            self.client.close()
            del self.__dict__["client"]


class _Writer:
    """FileSend target: into the archive's sink, through the archive scanner when there is one."""

    def __init__(self, sink: Sink, scanner: ArchiveScanner | None) -> None:
        self._sink = sink
        self._scanner = scanner

    def write(self, data: bytes) -> None:
        if self._scanner is not None:
            self._scanner.feed(data)
        self._sink.write(data)


def _encode(value: str | bytes) -> bytes:
    return value if isinstance(value, bytes) else str(value).encode()
