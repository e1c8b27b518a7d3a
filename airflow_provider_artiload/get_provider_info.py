"""Provider metadata for Airflow: hooks, operators and the two connection forms."""

from __future__ import annotations

from typing import Any


def _text(label: str, description: str, *, secret: bool = False) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": ["string", "null"]}
    if secret:
        schema["format"] = "password"
    return {"label": label, "schema": schema, "description": description}


def _flag(label: str, description: str, *, default: bool) -> dict[str, Any]:
    return {"label": label, "schema": {"type": ["boolean", "null"], "default": default}, "description": description}


def _number(label: str, description: str, *, default: float) -> dict[str, Any]:
    return {"label": label, "schema": {"type": ["number", "null"], "default": default}, "description": description}


TLS_FIELDS = {
    "tls": _flag("TLS", "For tcp:// endpoints. Off only when explicitly false.", default=True),
    "tls_verify": _flag("Verify TLS", "Verify the server certificate against the CA.", default=True),
    "tls_ca_cert": _text("CA certificate", "Path to a PEM file, or inline PEM."),
    "tls_client_cert": _text("Client certificate", "Path to a PEM file, or inline PEM."),
    "tls_client_key": _text("Client key", "Path to a PEM file, or inline PEM.", secret=True),
    "tls_hostname": _text("TLS server name", "Name to verify if it differs from the host."),
}
SSH_FIELDS = {
    "ssh_conn_id": _text("SSH connection id", "Reuse an Airflow ssh connection's host, user and keys."),
    "socket_path": _text("Remote socket path", "For ssh://: the daemon's socket on the remote host."),
    "key_file": _text("SSH key file", "Path to a private key on the worker."),
    "private_key": _text("SSH private key", "Inline private key (OpenSSH or PEM).", secret=True),
    "private_key_passphrase": _text("SSH key passphrase", "Passphrase of the private key.", secret=True),
    "host_key": _text("SSH host key", "Expected host key, e.g. 'ssh-ed25519 AAAA...'."),
    "known_hosts": _text("known_hosts file", "Path; default ~/.ssh/known_hosts."),
    "no_host_key_check": _flag("Skip host key check", "Insecure: accept any host key.", default=False),
    "look_for_keys": _flag("Look for keys", "Also try ~/.ssh keys and the SSH agent.", default=True),
    "allow_host_key_change": _flag("Allow host key change", "Insecure: accept a changed host key.", default=False),
    "disabled_algorithms": _text("Disabled SSH algorithms", 'JSON, e.g. {"pubkeys": ["rsa-sha2-512"]}.'),
    "compress": _flag("SSH compression", "Compress the SSH stream (rarely faster for images).", default=False),
    "ciphers": _text("SSH ciphers", "Comma-separated preference; default prefers AES-GCM."),
    "conn_timeout": _number("SSH connect timeout", "Seconds.", default=10),
}
ENGINE_FIELDS = {
    **TLS_FIELDS,
    **SSH_FIELDS,
    "timeout": _number("API timeout", "Seconds for each API call.", default=60),
    "transfer_timeout": _number("Stall timeout", "Seconds without progress before a transfer is abandoned.", default=300),
}
BUILDKIT_FIELDS = {
    "engine_conn_id": _text("Engine connection id", "With host docker://: use the BuildKit inside this engine."),
    "network": _text("RUN network", "default, none or host (engines without a bridge need none)."),
    "registry_conn_ids": _text("Registry connections", "Connection ids whose credentials BuildKit may ask for."),
    "context_roots": _text("Allowed context roots", "Directories build contexts must lie in (comma-separated)."),
    **TLS_FIELDS,
    **SSH_FIELDS,
}


def _behaviour(placeholder: str) -> dict[str, Any]:
    return {
        "hidden-fields": ["schema"],
        "relabeling": {"host": "Endpoint URL", "login": "SSH user", "password": "SSH password"},
        "placeholders": {
            "host": placeholder,
            "login": "user for ssh:// endpoints (or in the URL)",
            "port": "if the URL has none",
        },
    }


def get_provider_info() -> dict[str, Any]:
    return {
        "package-name": "airflow-provider-artiload",
        "name": "artiload",
        "description": "Build container artifacts with BuildKit and stream them into Docker Engines "
        "over unix sockets, TCP+TLS and SSH.",
        "versions": ["0.1.0"],
        "integrations": [
            {"integration-name": "artiload", "external-doc-url": "https://pypi.org/project/airflow-provider-artiload/"}
        ],
        "hooks": [
            {
                "integration-name": "artiload",
                "python-modules": ["airflow_provider_artiload.hooks.engine", "airflow_provider_artiload.hooks.buildkit"],
            }
        ],
        "operators": [
            {
                "integration-name": "artiload",
                "python-modules": [
                    "airflow_provider_artiload.operators.save",
                    "airflow_provider_artiload.operators.load",
                    "airflow_provider_artiload.operators.copy",
                    "airflow_provider_artiload.operators.cleanup",
                    "airflow_provider_artiload.operators.build",
                ],
            }
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
        ],
    }
