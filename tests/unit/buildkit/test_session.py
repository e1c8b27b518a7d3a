"""The session's gRPC server and services, called over a real grpcio channel on its unix socket.

The peer here is a small gRPC client playing the daemon's part, to pin the
packet rules (file ids, end of listing, hardlinks never requested, FIN) and
error codes; the real daemon drives the same code in tests/integration/test_build.py.
"""

from __future__ import annotations

import io
import os
import queue

import grpc
import pytest

from airflow_provider_artiload.buildkit._proto import auth_pb2, filesync_pb2, fsutil_pb2, secrets_pb2
from airflow_provider_artiload.buildkit.session.auth import AuthProvider
from airflow_provider_artiload.buildkit.session.filesend import FileSend
from airflow_provider_artiload.buildkit.session.filesync import FileSync
from airflow_provider_artiload.buildkit.session.secrets import SecretsProvider
from airflow_provider_artiload.buildkit.session.session import HEADER_METHOD, Session, check_health

Packet = fsutil_pb2.Packet


@pytest.fixture
def tree(tmp_path):
    root = tmp_path / "ctx"
    (root / "d").mkdir(parents=True)
    (root / "d" / "big").write_bytes(os.urandom(3 << 20))
    (root / "a").write_text("A")
    os.link(root / "a", root / "d" / "hard")
    os.symlink("a", root / "s")
    (root / "skip.log").write_text("x")
    return root


def _session(*attachables):
    return Session(list(attachables), shared_key="k").start()


def test_advertised_methods_come_from_what_is_registered(tree):
    with _session(FileSync({"context": str(tree)}), SecretsProvider({})) as session:
        health = [m for m in session.methods if m.startswith("/grpc.health.v1.Health/")]
        assert "/grpc.health.v1.Health/Check" in health  # Watch (and List on newer grpcio) too
        assert session.methods[len(health) :] == [
            "/moby.filesync.v1.FileSync/DiffCopy",
            "/moby.buildkit.secrets.v1.Secrets/GetSecret",
        ]
        assert [v for k, v in session.headers() if k == HEADER_METHOD] == session.methods
        assert check_health(f"unix:{session.path}") == "SERVING"


def _diffcopy(channel, metadata, on_packet):
    requests: queue.Queue = queue.Queue()

    def outgoing():
        while (item := requests.get()) is not None:
            yield item

    call = channel.stream_stream(
        "/moby.filesync.v1.FileSync/DiffCopy",
        request_serializer=Packet.SerializeToString,
        response_deserializer=Packet.FromString,
    )(outgoing(), metadata=metadata)
    received = []
    try:
        for packet in call:
            received.append(packet)
            for reply in on_packet(packet):
                requests.put(reply)
    finally:
        requests.put(None)
    return received


def test_filesync_sends_stats_in_order_and_data_on_request(tree):
    sync = FileSync({"context": str(tree)})
    with _session(sync) as session, grpc.insecure_channel(f"unix:{session.path}") as channel:
        stats: list = []
        data: dict[int, bytearray] = {}

        def daemon(packet):
            if packet.type == Packet.PACKET_STAT:
                if not packet.HasField("stat"):
                    wanted = [i for i, s in enumerate(stats) if s.mode & (1 << 31 | 1 << 27) == 0 and not s.linkname]
                    return [Packet(type=Packet.PACKET_REQ, ID=i) for i in wanted]
                stats.append(packet.stat)
            elif packet.type == Packet.PACKET_DATA:
                if packet.data:
                    data.setdefault(packet.ID, bytearray()).extend(packet.data)
                else:
                    data.setdefault(packet.ID, bytearray())
                    if len(data) == 2:
                        return [Packet(type=Packet.PACKET_FIN)]
            return []

        received = _diffcopy(channel, [("dir-name", "context"), ("exclude-patterns", "*.log")], daemon)
    assert [s.path for s in stats] == [b"a", b"d", b"d/big", b"d/hard", b"s"]
    assert stats[3].linkname == b"a" and stats[4].linkname == b"a" and stats[4].mode & (1 << 27)
    assert stats[1].mode & (1 << 31) and all(s.uid == 0 and s.gid == 0 for s in stats)
    assert bytes(data[0]) == b"A" and bytes(data[2]) == (tree / "d" / "big").read_bytes()
    assert received[-1].type == Packet.PACKET_FIN
    assert sync.stats.files_requested == 2 and sync.stats.data_bytes == (3 << 20) + 1


def test_filesync_refuses_an_unknown_directory(tree):
    with _session(FileSync({"context": str(tree)})) as session, grpc.insecure_channel(f"unix:{session.path}") as channel:
        with pytest.raises(grpc.RpcError) as caught:
            _diffcopy(channel, [("dir-name", "/etc")], lambda p: [])
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND and "/etc" in caught.value.details()


def test_filesend_writes_chunks_in_order_and_reports_write_errors():
    target = io.BytesIO()
    sink = FileSend(target)
    with _session(sink) as session, grpc.insecure_channel(f"unix:{session.path}") as channel:
        send = channel.stream_stream(
            "/moby.filesync.v1.FileSend/DiffCopy",
            request_serializer=filesync_pb2.BytesMessage.SerializeToString,
            response_deserializer=filesync_pb2.BytesMessage.FromString,
        )
        chunks = [os.urandom(32 << 10) for _ in range(40)]
        assert list(send(iter(filesync_pb2.BytesMessage(data=c) for c in chunks))) == []
    assert target.getvalue() == b"".join(chunks) and sink.bytes == 40 << 15

    class Full:
        def write(self, data):
            raise OSError(28, "No space left on device")

    broken = FileSend(Full())
    with _session(broken) as session, grpc.insecure_channel(f"unix:{session.path}") as channel:
        send = channel.stream_stream(
            "/moby.filesync.v1.FileSend/DiffCopy",
            request_serializer=filesync_pb2.BytesMessage.SerializeToString,
            response_deserializer=filesync_pb2.BytesMessage.FromString,
        )
        with pytest.raises(grpc.RpcError) as caught:
            list(send(iter([filesync_pb2.BytesMessage(data=b"x")])))
    assert "No space left" in caught.value.details() and isinstance(broken.error, OSError)


def test_secrets_and_auth_answer_by_id_and_host():
    provider = SecretsProvider({"token": b"v4lue", "lazy": lambda: "from-callable"})
    auth = AuthProvider({"registry.example:5000": ("bob", "pw"), "https://index.docker.io/v1/": ("hub", "tok")})
    assert "v4lue" not in repr(provider)
    with _session(provider, auth) as session, grpc.insecure_channel(f"unix:{session.path}") as channel:
        get = channel.unary_unary(
            "/moby.buildkit.secrets.v1.Secrets/GetSecret",
            request_serializer=secrets_pb2.GetSecretRequest.SerializeToString,
            response_deserializer=secrets_pb2.GetSecretResponse.FromString,
        )
        assert get(secrets_pb2.GetSecretRequest(ID="token")).data == b"v4lue"
        assert get(secrets_pb2.GetSecretRequest(ID="lazy")).data == b"from-callable"
        with pytest.raises(grpc.RpcError) as caught:
            get(secrets_pb2.GetSecretRequest(ID="other"))
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND
        creds = channel.unary_unary(
            "/moby.filesync.v1.Auth/Credentials",
            request_serializer=auth_pb2.CredentialsRequest.SerializeToString,
            response_deserializer=auth_pb2.CredentialsResponse.FromString,
        )
        assert creds(auth_pb2.CredentialsRequest(Host="registry.example:5000")).Username == "bob"
        assert creds(auth_pb2.CredentialsRequest(Host="registry-1.docker.io")).Secret == "tok"
        assert creds(auth_pb2.CredentialsRequest(Host="unknown.example")) == auth_pb2.CredentialsResponse()
