"""Provider metadata for Airflow: hooks, operators, asset URIs and the three connection forms
(docker_engine, buildkit, containerd).

The UI's connection form saves every declared field into the extras, with the
schema's ``default`` or null. So no field declares a default: an untouched
field is saved as null, which the hooks read as unset (their own default
applies, stated in the description as "Default: ..."). Booleans are a
three-way choice (default / on / off) rather than a switch, because a switch
cannot show "unset" and would display "off" for settings that default to on.
Every description starts with the endpoint schemes the field applies to.
tests/unit/test_provider_info.py checks the stated defaults against the hooks. No text may look
like rich markup (``[x]``, ``[/x]``): ``airflow providers get --full`` prints it through rich, which
fails on ``[/variant]`` (tests/unit/test_provider_cli.py checks every string and runs that command).
"""

from __future__ import annotations

from typing import Any

from airflow_provider_artiload.hooks.secrets import register_secret_names  # imports nothing from airflow

TCP = "tcp://"
SSH = "ssh://"
ANY = "All endpoints"


def _describe(applies: str, text: str, default: str | None) -> str:
    where = applies if applies == ANY else f"{applies} only"
    return f"{where}. {text}" + (f" Default: {default}." if default is not None else "")


def _text(label: str, applies: str, text: str, *, default: str | None = None, secret: bool = False) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": ["string", "null"]}
    if secret:
        schema["format"] = "password"
    return {"label": label, "schema": schema, "description": _describe(applies, text, default)}


def _flag(label: str, applies: str, text: str, *, default: bool) -> dict[str, Any]:
    """A three-way choice saved as null (unset), "true" or "false"; the hooks parse the strings strictly."""
    shown = "on" if default else "off"
    schema = {
        "type": ["string", "null"],
        "enum": [None, "true", "false"],
        "values_display": {"None": f"default ({shown})", "true": "on", "false": "off"},
    }
    return {"label": label, "schema": schema, "description": _describe(applies, text, shown)}


def _seconds(label: str, applies: str, text: str, *, default: float, note: str = "") -> dict[str, Any]:
    shown = f"{default:g}" + (f" {note}" if note else "")
    return {"label": label, "schema": {"type": ["number", "null"], "exclusiveMinimum": 0},
            "description": _describe(applies, f"Seconds. {text}", shown)}


TLS_FIELDS = {
    "tls": _flag("TLS", TCP, "Off means plain TCP (port 2375); then leave the other TLS fields empty.", default=True),
    "tls_verify": _flag("Verify TLS", TCP, "Verify the server certificate and name against the CA.", default=True),
    "tls_ca_cert": _text("CA certificate", TCP, "Path to a PEM file on the worker, or inline PEM.", default="system CAs"),
    "tls_client_cert": _text("Client certificate", TCP, "For mutual TLS: path to a PEM file, or inline PEM."),
    "tls_client_key": _text("Client key", TCP, "Key of the client certificate: path or inline PEM.", secret=True),
    "tls_hostname": _text("TLS server name", TCP, "Name to verify when it differs from the URL's host."),
}


SOCKETS = {"buildkit": "/run/buildkit/buildkitd.sock", "engine": "/var/run/docker.sock",
           "containerd": "/run/containerd/containerd.sock"}


def _ssh_fields(*, buildkit: bool, kind: str | None = None) -> dict[str, Any]:
    fields = {
        "ssh_conn_id": _text("SSH connection id", SSH, "Reuse an Airflow ssh connection's host, user and keys."),
        "socket_path": _text(
            "Remote socket path", SSH, "The daemon's socket on the remote host when the URL has no path.",
            default=SOCKETS[kind or ("buildkit" if buildkit else "engine")],
        ),
        "key_file": _text("SSH key file", SSH, "Path to a private key on the worker."),
        "private_key": _text("SSH private key", SSH, "Inline private key (OpenSSH or PEM).", secret=True),
        "private_key_passphrase": _text("SSH key passphrase", SSH, "Passphrase of the private key.", secret=True),
        "host_key": _text("SSH host key", SSH, "The only host key accepted, e.g. 'ssh-ed25519 AAAA...'."),
        "known_hosts": _text("known_hosts file", SSH, "Used when no host key is set.", default="~/.ssh/known_hosts"),
        "no_host_key_check": _flag("Skip host key check", SSH, "Insecure: accept any host key.", default=False),
        "look_for_keys": _flag("Look for keys", SSH, "Also try ~/.ssh keys and the SSH agent.", default=True),
        "allow_host_key_change": _flag("Allow host key change", SSH, "Insecure: accept any host key.", default=False),
        "disabled_algorithms": _text("Disabled SSH algorithms", SSH, 'JSON, e.g. {"pubkeys": ["rsa-sha2-512"]}.'),
        "compress": _flag("SSH compression", SSH, "Compress the SSH stream (rarely faster for images).", default=False),
        "ciphers": _text("SSH ciphers", SSH, "Comma-separated preference.", default="AES-GCM first"),
    }
    if buildkit:
        fields["conn_timeout"] = _seconds(
            "Connect timeout", ANY, "To open a connection to the daemon (for docker://, also the engine API "
            "timeout).", default=30, note="(for ssh://, the SSH handshake's own default is 10)",
        )
    else:
        fields["conn_timeout"] = _seconds(
            "SSH connect timeout", SSH, "For connect, banner, authentication and opening a channel.", default=10
        )
    return fields


ENGINE_FIELDS = {
    **TLS_FIELDS,
    **_ssh_fields(buildkit=False),
    "timeout": _seconds("API timeout", ANY, "For each API call (inspect, tag, version...).", default=60),
    "transfer_timeout": _seconds(
        "Stall timeout", ANY, "Without progress before a save or load is abandoned.", default=300
    ),
    "platform": _text("Platform", ANY, "os/arch or os/arch/variant (e.g. linux/arm64) this engine takes images of: "
                      "overrides what it reports, e.g. an amd64 host with QEMU that should hold arm64 images.",
                      default="what the engine reports (/version, /info)"),
}
BUILDKIT_FIELDS = {
    "engine_conn_id": _text("Engine connection id", "docker://", "The BuildKit inside this docker_engine connection's engine."),
    "network": {
        "label": "RUN network",
        "schema": {"type": ["string", "null"], "enum": [None, "default", "none", "host"],
                   "values_display": {"None": "daemon default", "default": "default", "none": "none", "host": "host"}},
        "description": _describe(ANY, "Network of every RUN step (engines without a bridge need none).", "daemon default"),
    },
    "registry_conn_ids": _text("Registry connections", ANY, "Connection ids whose credentials BuildKit may ask for "
                               "(comma-separated or a JSON list)."),
    "context_roots": _text("Allowed context roots", ANY, "Directories build contexts must lie in (comma-separated "
                           "or a JSON list).", default="anywhere"),
    **TLS_FIELDS,
    **_ssh_fields(buildkit=True),
}


CONTAINERD_FIELDS = {
    "namespace": _text("Namespace", ANY, "containerd namespace to load into (kubelet and k3s use k8s.io).", default="k8s.io"),
    "snapshotter": _text("Snapshotter", ANY, "Where images are unpacked for pods.", default="overlayfs"),
    "platform": _text("Platform", ANY, "os/arch or os/arch/variant (e.g. linux/arm64/v8) this node takes images of: "
                      "overrides what containerd reports.",
                      default="what containerd's plugins serve (introspection), else linux/amd64"),
    "pin": _flag("Pin images", ANY, "In k8s.io, label the images artiload loads io.cri-containerd.pinned=pinned, "
                 "so kubelet's image GC keeps them.", default=True),
    **_ssh_fields(buildkit=False, kind="containerd"),
    "timeout": _seconds("API timeout", ANY, "For each containerd call.", default=60),
}


def _behaviour(placeholder: str) -> dict[str, Any]:
    return {
        "hidden-fields": ["schema"],
        "relabeling": {"host": "Endpoint URL", "login": "SSH user", "password": "SSH password"},
        "placeholders": {
            "host": placeholder,
            "login": "ssh:// only: the user, if the URL has none",
            "password": "ssh:// only",
            "port": "tcp:// and ssh://: if the URL has none",
        },
    }


def get_provider_info() -> dict[str, Any]:
    # Airflow calls this in every process that lists providers (the API server too): from then on its secrets
    # masker hides every secret extra by name, tls_client_key included (hooks/secrets.py says why).
    register_secret_names()
    return {
        "package-name": "airflow-provider-artiload",
        "name": "artiload",
        "description": "Build container artifacts with BuildKit and stream them into Docker Engines "
        "and containerd nodes over unix sockets, TCP+TLS and SSH.",
        "versions": ["0.1.0"],
        "integrations": [
            {"integration-name": "artiload", "external-doc-url": "https://pypi.org/project/airflow-provider-artiload/"}
        ],
        "hooks": [
            {
                "integration-name": "artiload",
                "python-modules": [
                    "airflow_provider_artiload.hooks.engine",
                    "airflow_provider_artiload.hooks.buildkit",
                    "airflow_provider_artiload.hooks.containerd",
                ],
            }
        ],
        "operators": [
            {
                "integration-name": "artiload",
                "python-modules": [
                    "airflow_provider_artiload.operators.save",
                    "airflow_provider_artiload.operators.load",
                    "airflow_provider_artiload.operators.copy",
                    "airflow_provider_artiload.operators.rollback",
                    "airflow_provider_artiload.operators.cleanup",
                    "airflow_provider_artiload.operators.build",
                    "airflow_provider_artiload.operators.cache_cleanup",
                ],
            }
        ],
        "asset-uris": [
            {"schemes": ["docker-image"], "handler": "airflow_provider_artiload.operators._assets.sanitize_image_uri"}
        ],
        "connection-types": [
            {
                "connection-type": "docker_engine",
                "hook-class-name": "airflow_provider_artiload.hooks.engine.DockerEngineHook",
                "hook-name": "Docker Engine (artiload)",
                "conn-fields": ENGINE_FIELDS,
                "ui-field-behaviour": _behaviour("unix:///var/run/docker.sock | tcp://host:2376 | ssh://user@host"),
            },
            {
                "connection-type": "buildkit",
                "hook-class-name": "airflow_provider_artiload.hooks.buildkit.BuildKitHook",
                "hook-name": "BuildKit (artiload)",
                "conn-fields": BUILDKIT_FIELDS,
                "ui-field-behaviour": _behaviour(
                    "docker://unix:///var/run/docker.sock | unix:///run/buildkit/buildkitd.sock | tcp://host:1234"
                ),
            },
            {
                "connection-type": "containerd",
                "hook-class-name": "airflow_provider_artiload.hooks.containerd.ContainerdHook",
                "hook-name": "containerd node (artiload)",
                "conn-fields": CONTAINERD_FIELDS,
                "ui-field-behaviour": _behaviour(
                    "unix:///run/containerd/containerd.sock | ssh://user@node/run/k3s/containerd/containerd.sock"
                ),
            },
        ],
    }
