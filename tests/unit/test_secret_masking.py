"""Every secret extra goes through Airflow's secrets masker, whatever its name (issue 16; the real api-server
is in tests/integration/test_secret_extras.py)."""

from __future__ import annotations

from airflow_provider_artiload.endpoints.extras import SECRET_EXTRAS
from airflow_provider_artiload.get_provider_info import get_provider_info
from airflow_provider_artiload.hooks.secrets import mask_connection_secrets


def test_every_secret_extra_is_hidden_by_name_in_the_api_servers_and_the_task_sdks_masker():
    from airflow._shared.secrets_masker import redact as core_redact
    from airflow.sdk._shared.secrets_masker import redact as sdk_redact

    get_provider_info()
    extras = {name: f"value of {name} 123456" for name in SECRET_EXTRAS} | {"tls_client_cert": "/etc/cert.pem"}
    for redact in (core_redact, sdk_redact):
        shown = redact(extras)
        assert {name: shown[name] for name in SECRET_EXTRAS} == dict.fromkeys(SECRET_EXTRAS, "***")
        assert shown["tls_client_cert"] == "/etc/cert.pem"
    assert {"tls_client_key", "private_key", "private_key_passphrase", "password"} <= SECRET_EXTRAS


def test_the_values_of_secret_extras_are_masked_wherever_they_appear():
    from airflow.sdk._shared.secrets_masker import redact

    key = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC0001\n-----END PRIVATE KEY-----\n"
    mask_connection_secrets({"tls_client_key": key, "namespace": "k8s.io"}, password="hunter2-password")
    message = redact(f"failed with key {key} and hunter2-password, one line: MIIEvQIBADANBgkqhkiG9w0BAQEFAASC0001")
    assert "MIIEvQ" not in message and "hunter2" not in message
