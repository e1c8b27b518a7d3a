"""BuildKitClient: the Control API (ListWorkers, Info, Solve+Status) with a client-side session.

The client is given dial functions, never an endpoint: ``grpc_dial()`` opens a
stream that speaks gRPC (a buildkitd socket, or an engine's ``/grpc``
upgrade) and the optional ``session_dial(headers)`` opens an engine's
``/session`` hijack. Without ``session_dial`` the session runs inside
``Control.Session``.

:meth:`BuildKitClient.solve` validates every option before connecting, then
runs the session, the Solve call and the Status stream together, rendering
Status as ``docker build --progress=plain`` does.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import secrets as _secrets
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import grpc

from airflow_provider_artiload.buildkit._proto import control_pb2, control_pb2_grpc
from airflow_provider_artiload.buildkit.session.auth import AuthProvider
from airflow_provider_artiload.transport.grpc import BridgedChannel, translate_rpc_error
from airflow_provider_artiload.buildkit.session.filesend import FileSend
from airflow_provider_artiload.buildkit.session.filesync import FileSync
from airflow_provider_artiload.buildkit.session.secrets import SecretsProvider, SecretValue
from airflow_provider_artiload.buildkit.session.session import Session, SessionDial
from airflow_provider_artiload.buildkit.status import StatusPrinter, describe_failure
from airflow_provider_artiload.exceptions import BuildError, DestinationError
from airflow_provider_artiload.oci.platform import InvalidPlatform, parse_list

log = logging.getLogger(__name__)

# export kind -> BuildKit exporter
EXPORTERS = {"image": "moby", "docker": "docker", "oci": "oci", "tar": "tar", "none": ""}
STREAMED = ("docker", "oci", "tar")
ALTERNATIVES = {
    "docker": "this BuildKit (the one inside a Docker Engine) cannot write docker archives: "
    "build with export='image', then save it with SaveImageOperator",
    "oci": "this BuildKit (the one inside a Docker Engine) cannot write OCI archives: "
    "build with export='image', then save it with SaveImageOperator",
    "image": "export='image' needs the BuildKit inside a Docker Engine (a docker:// connection); "
    "for a standalone buildkitd use export='docker' and load it with DockerLoadOperator",
}
_ARG_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# what a RUN step of a foreign platform meets when the builder host has no emulator for it
EXEC_FORMAT = "exec format error"
_STEP_PLATFORM = re.compile(r"^\[([a-z][a-z0-9_.-]*/[a-z0-9_.-]+(?:/[a-z0-9_.-]+)?)[ \]]")


@dataclass(frozen=True)
class Worker:
    id: str
    labels: dict[str, str]
    platforms: list[str]


@dataclass(frozen=True)
class BuildRequest:
    """A Dockerfile build, validated by :meth:`validate` before anything connects."""

    context: str
    dockerfile: str = "Dockerfile"
    export: str = "image"
    image: str | None = None
    output: Any = None  # an object with write(bytes) for docker/oci/tar
    build_args: Mapping[str, str] = field(default_factory=dict)
    target: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    secrets: Mapping[str, SecretValue] = field(default_factory=dict, repr=False)
    registry_auth: Mapping[str, tuple[str, str]] = field(default_factory=dict, repr=False)
    no_cache: bool = False
    platform: str | None = None  # one platform (a comma-separated list is taken too, as buildx takes it)
    platforms: tuple[str, ...] = ()  # several, built in one solve: an OCI index with a manifest per platform
    network: str | None = None  # RUN network for every step: "none", "host" or the daemon's default
    cache: Any = field(default=None, repr=False)  # a buildkit.cache.CachePlan: cache imports and exports

    @property
    def context_dir(self) -> str:
        return os.path.abspath(self.context)

    @property
    def dockerfile_path(self) -> str:
        return os.path.join(self.context_dir, self.dockerfile) if not os.path.isabs(self.dockerfile) else self.dockerfile

    def validate(self) -> None:
        if self.export not in EXPORTERS:
            raise BuildError(f"export must be one of {', '.join(EXPORTERS)}, got {self.export!r}")
        if not os.path.isdir(self.context_dir):
            what = "is not a directory" if os.path.exists(self.context_dir) else "does not exist"
            raise BuildError(f"build context {self.context_dir} {what}")
        if not os.path.isfile(self.dockerfile_path):
            raise BuildError(f"Dockerfile {self.dockerfile_path} does not exist")
        if self.export == "image" and not self.image:
            raise BuildError("export='image' needs image=NAME:TAG to name the built image")
        if self.export in STREAMED and self.output is None:
            raise BuildError(f"export={self.export!r} needs an output to write to")
        for name in self.build_args:
            if not _ARG_NAME.match(str(name)):
                raise BuildError(f"invalid build arg name {name!r}")
        for name in list(self.labels) + list(self.secrets):
            if not str(name) or "=" in str(name) or "," in str(name):
                raise BuildError(f"invalid label or secret name {name!r}")
        if self.network not in (None, "default", "none", "host"):
            raise BuildError(f"network must be 'default', 'none' or 'host', got {self.network!r}")
        self.target_platforms()

    def target_platforms(self) -> list[str]:
        """Every platform asked for (``platform``, then ``platforms``), normalised, each once, in order."""
        try:
            platforms = parse_list(self.platform, what="platform") + parse_list(self.platforms, what="platforms")
        except InvalidPlatform as exc:
            raise BuildError(f"invalid platform: {exc}") from None
        return list(dict.fromkeys(str(p) for p in platforms))

    def frontend_attrs(self) -> dict[str, str]:
        attrs = {"filename": os.path.basename(self.dockerfile_path)}
        if self.target:
            attrs["target"] = self.target
        if self.no_cache:
            attrs["no-cache"] = ""
        if platforms := self.target_platforms():
            attrs["platform"] = ",".join(platforms)
        if self.network and self.network != "default":
            attrs["force-network-mode"] = self.network
        if self.cache is not None:
            attrs.update(self.cache.frontend_attrs())
        attrs.update({f"build-arg:{k}": str(v) for k, v in self.build_args.items()})
        attrs.update({f"label:{k}": str(v) for k, v in self.labels.items()})
        return attrs

    def exporter(self) -> tuple[str, dict[str, str]]:
        attrs = {"name": self.image} if self.image and self.export in ("image", "docker", "oci") else {}
        if self.export == "docker" and len(self.target_platforms()) > 1:
            # BuildKit's docker exporter writes one platform ("does not currently support exporting manifest
            # lists"); its oci exporter writes the index, which every engine kind loads through artiload
            return EXPORTERS["oci"], attrs
        return EXPORTERS[self.export], attrs


@dataclass
class BuildResult:
    exporter_response: dict[str, str]
    image_id: str | None
    bytes_exported: int
    context_bytes: int
    seconds: float


class BuildKitClient:
    """A BuildKit Control client over injected dialers."""

    def __init__(
        self,
        grpc_dial: Callable[[], Any],
        session_dial: SessionDial | None = None,
        *,
        where: str = "buildkit",
        session_name: str = "artiload",
    ) -> None:
        self.where = where
        self._session_dial = session_dial
        self._session_name = session_name
        self._grpc = BridgedChannel(grpc_dial, name="buildkit-grpc")
        self._lock = threading.Lock()
        self._active: list[Any] = []
        self._cancelled = threading.Event()
        self.last_filesync: FileSync | None = None

    @property
    def stub(self) -> control_pb2_grpc.ControlStub:
        return control_pb2_grpc.ControlStub(self._grpc.channel)

    def _error(self, exc: grpc.RpcError, what: str) -> Exception:
        return translate_rpc_error(
            exc, peer="BuildKit", where=self.where, what=what, fallback=BuildError, dial_error=self._grpc.dial_error
        )

    def list_workers(self, timeout: float = 30.0) -> list[Worker]:
        try:
            reply = self.stub.ListWorkers(control_pb2.ListWorkersRequest(), timeout=timeout)
        except grpc.RpcError as exc:
            raise self._error(exc, "ListWorkers") from exc
        return [
            Worker(
                id=w.ID,
                labels=dict(w.Labels),
                platforms=["/".join(x for x in (p.OS, p.Architecture, p.Variant) if x) for p in w.platforms],
            )
            for w in reply.record
        ]

    def version(self, timeout: float = 30.0) -> str | None:
        """BuildKit's version from ``Info`` (v0.11+), or None when the daemon is older."""
        try:
            reply = self.stub.Info(control_pb2.InfoRequest(), timeout=timeout)
        except grpc.RpcError as exc:
            if exc.code() == grpc.StatusCode.UNIMPLEMENTED:
                return None
            raise self._error(exc, "Info") from exc
        return reply.buildkitVersion.version or None

    def solve(self, request: BuildRequest, *, log: Any = log) -> BuildResult:
        """Run a Dockerfile build; raise BuildError naming the failing step and its last lines.

        ``log`` gets the plain-progress lines (a logging.Logger or Airflow's task logger).
        """
        request.validate()
        started = time.monotonic()
        self._cancelled.clear()
        dockerfile_dir = os.path.dirname(request.dockerfile_path)
        filesync = FileSync({"context": request.context_dir, "dockerfile": dockerfile_dir})
        self.last_filesync = filesync
        attachables: list[Any] = [filesync]
        filesend = None
        if request.export in STREAMED:
            filesend = FileSend(request.output)
            attachables.append(filesend)
        if request.secrets:
            attachables.append(SecretsProvider(request.secrets))
        if request.registry_auth:
            attachables.append(AuthProvider(request.registry_auth))
        if request.cache is not None:
            attachables += request.cache.attachables()
        shared_key = hashlib.sha256(request.context_dir.encode()).hexdigest()[:32]
        session = Session(attachables, name=self._session_name, shared_key=shared_key).start()
        printer = StatusPrinter(log)
        ref = _secrets.token_hex(12)
        exporter, exporter_attrs = request.exporter()
        solve_request = control_pb2.SolveRequest(
            Ref=ref,
            Exporter=exporter,
            ExporterAttrs=exporter_attrs,
            Session=session.id,
            Frontend="dockerfile.v0",
            FrontendAttrs=request.frontend_attrs(),
            Cache=request.cache.options() if request.cache is not None else None,
        )
        status_thread = None
        try:
            stub = self.stub
            try:
                if self._session_dial is not None:
                    session.attach_hijacked(self._session_dial)
                else:
                    session.attach_control(stub)
            except grpc.RpcError as exc:
                raise self._error(exc, "Session") from exc
            future = stub.Solve.future(solve_request)
            status_call = stub.Status(control_pb2.StatusRequest(Ref=ref))
            with self._lock:
                self._active += [future, status_call]
            status_thread = threading.Thread(
                target=_consume_status, args=(status_call, printer), name="buildkit-status", daemon=True
            )
            status_thread.start()
            try:
                reply = future.result()
            except grpc.RpcError as exc:
                status_thread.join(timeout=5 if printer.vertices else 0.5)  # let the failing step's logs land
                raise self._solve_error(exc, request, printer, filesend, session) from None
            except grpc.FutureCancelledError:
                raise BuildError(f"the build on {self.where} was cancelled") from None
            status_thread.join(timeout=10)
        finally:
            with self._lock:
                for call in self._active:
                    call.cancel()
                self._active.clear()
            session.close()
        if filesend is not None and filesend.error is not None:
            raise _destination_error(filesend.error)
        response = dict(reply.ExporterResponse)
        if request.cache is not None:
            request.cache.finish(response, log=log)
        image_id = response.get("containerimage.digest") or response.get("containerimage.config.digest")
        return BuildResult(
            exporter_response=response,
            image_id=image_id,
            bytes_exported=filesend.bytes if filesend else 0,
            context_bytes=filesync.stats.data_bytes,
            seconds=time.monotonic() - started,
        )

    def _solve_error(
        self,
        exc: grpc.RpcError,
        request: BuildRequest,
        printer: StatusPrinter,
        filesend: FileSend | None,
        session: Session,
    ) -> Exception:
        code, details = exc.code(), exc.details() or ""
        if self._cancelled.is_set() or code == grpc.StatusCode.CANCELLED:
            return BuildError(f"the build on {self.where} was cancelled")
        if filesend is not None and filesend.error is not None:
            return _destination_error(filesend.error)
        if code == grpc.StatusCode.UNAVAILABLE:
            return self._error(exc, "Solve")
        unknown_cache = re.search(r'unknown cache (exporter|importer):? "?([^"\s]*)', details)
        if unknown_cache:
            return BuildError(
                f"BuildKit at {self.where} has no {unknown_cache.group(2)!r} cache {unknown_cache.group(1)}: a Docker "
                "Engine's BuildKit exports cache other than type=inline only with the containerd image store; "
                "use such an engine, a standalone BuildKit, or type=inline"
            )
        missing = re.search(r'exporter "([^"]*)" could not be found', details)
        if missing:
            hint = ALTERNATIVES.get(request.export, "")
            return BuildError(
                f"BuildKit at {self.where} has no {missing.group(1)!r} exporter (export={request.export!r})"
                + (f": {hint}" if hint else "")
            )
        if "dockerfile parse error" in details or "failed to create LLB definition" in details:
            return BuildError(f"Dockerfile {request.dockerfile_path} is invalid: {_short(details)}")
        failed = printer.failed()
        emulation = self._emulation_error(request, failed, details)
        if emulation is not None:
            return emulation
        lost = " (the session with this client was lost mid-build)" if session.closed.is_set() else ""
        return BuildError(f"build on {self.where} failed{lost}: " + describe_failure(failed, _short(details)))

    def _emulation_error(self, request: BuildRequest, failed: Any, details: str) -> BuildError | None:
        """A foreign platform's RUN step the builder host cannot execute (no QEMU/binfmt handler): say which, and the fix."""
        seen = " ".join([details, getattr(failed, "error", "") or "", *(getattr(failed, "lines", None) or [])])
        if EXEC_FORMAT not in seen:
            return None
        named = _STEP_PLATFORM.match(getattr(failed, "name", "") or "")
        platforms = [named.group(1)] if named else request.target_platforms()
        try:
            native = list(dict.fromkeys(p for w in self.list_workers(timeout=10) for p in w.platforms))
        except Exception:  # noqa: BLE001 - only for the message
            native = []
        which = " or ".join(platforms) or "a foreign platform"
        step = f"step #{failed.number} {failed.name}" if failed is not None else "a RUN step"
        return BuildError(
            f"build on {self.where} failed: {step} cannot run for {which} ({EXEC_FORMAT}): the builder host "
            f"executes no {which} programs"
            + (f" (its BuildKit runs {', '.join(native)})" if native else "")
            + ". Register QEMU user emulation for that architecture on the builder host (Debian: apt-get install "
            "qemu-user-static, and its binfmt_misc handler, e.g. cat /usr/lib/binfmt.d/qemu-aarch64.conf > "
            "/proc/sys/fs/binfmt_misc/register), or build that platform on a native builder"
        )

    def cancel(self) -> None:
        """Cancel the running build (the daemon stops it when the Solve call is cancelled)."""
        self._cancelled.set()
        with self._lock:
            calls = list(self._active)
        for call in calls:
            call.cancel()

    def close(self) -> None:
        self.cancel()
        self._grpc.close()


def _consume_status(call: Any, printer: StatusPrinter) -> None:
    try:
        for response in call:
            printer.feed(response)
    except grpc.RpcError as exc:
        if exc.code() != grpc.StatusCode.CANCELLED:
            log.debug("status stream ended: %s", exc.details())
    except Exception:  # noqa: BLE001 - rendering must never break the build
        log.exception("rendering build status failed")


def _short(details: str) -> str:
    """Drop the frontend's wrapper prefixes, keep the cause."""
    for prefix in ("failed to solve with frontend dockerfile.v0: ", "failed to solve: "):
        details = details.replace(prefix, "")
    return details.strip()


def _destination_error(exc: BaseException) -> Exception:
    if isinstance(exc, DestinationError):
        return DestinationError(str(exc))
    return DestinationError(f"cannot write the build output: {exc}")


__all__ = ["BuildKitClient", "BuildRequest", "BuildResult", "Worker"]
