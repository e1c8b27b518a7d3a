"""The one gRPC status -> artiload error table, as BuildKit and containerd both read it."""

from __future__ import annotations

import grpc
import pytest

from airflow_provider_artiload.exceptions import BuildError, ConnectError, SSHAuthError, TransferError, TransferTimeout
from airflow_provider_artiload.transport.grpc import BridgedChannel, translate_rpc_error


class FakeRpcError(grpc.RpcError):
    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        self._code, self._details = code, details

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details


def buildkit(code: grpc.StatusCode, details: str = "boom", **kwargs):
    return translate_rpc_error(
        FakeRpcError(code, details), peer="BuildKit", where="tcp://bk:1234", what="Solve", fallback=BuildError, **kwargs
    )


@pytest.mark.parametrize(
    ("code", "started", "expected", "message"),
    [
        (grpc.StatusCode.UNAVAILABLE, False, ConnectError, "cannot reach BuildKit at tcp://bk:1234 (boom)"),
        (grpc.StatusCode.UNAVAILABLE, True, TransferError, "BuildKit at tcp://bk:1234: the connection broke during Solve (boom)"),
        (grpc.StatusCode.DEADLINE_EXCEEDED, False, TransferTimeout, "BuildKit at tcp://bk:1234: Solve timed out"),
        (grpc.StatusCode.CANCELLED, True, TransferError, "BuildKit at tcp://bk:1234: Solve was cancelled (boom)"),
        (grpc.StatusCode.CANCELLED, False, BuildError, "BuildKit at tcp://bk:1234: Solve failed: boom"),
        (grpc.StatusCode.INVALID_ARGUMENT, False, BuildError, "BuildKit at tcp://bk:1234: Solve failed: boom"),
    ],
)
def test_the_table_names_the_peer_and_the_phase(code, started, expected, message):
    error = buildkit(code, started=started)
    assert type(error) is expected and str(error) == message


def test_unavailable_after_a_failed_dial_is_the_dial_error():
    refused = SSHAuthError("ssh://node: the key was refused")
    error = buildkit(grpc.StatusCode.UNAVAILABLE, dial_error=refused)
    assert type(error) is SSHAuthError and str(error) == str(refused) and error is not refused
    plain = buildkit(grpc.StatusCode.UNAVAILABLE, dial_error=OSError("no such socket"))
    assert type(plain) is ConnectError and str(plain) == "cannot reach BuildKit at tcp://bk:1234: no such socket"


def test_bridged_channel_dials_nothing_until_used_and_reopens_after_close():
    def dial():
        raise AssertionError("must not dial")

    grpc_channel = BridgedChannel(dial, name="test")
    assert grpc_channel.dial_error is None
    first = grpc_channel.channel
    assert grpc_channel.channel is first
    grpc_channel.close()
    second = grpc_channel.channel
    assert second is not first
    grpc_channel.close()
