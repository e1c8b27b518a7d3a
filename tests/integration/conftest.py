"""Fixtures shared by the integration tests: a real S3-compatible server (moto) and a connection to it."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

BUCKET = "artiload-test"
MOTO = str(Path(sys.executable).with_name("moto_server"))


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    """moto_server on a free loopback port, one for the whole run; FAILS (never skips) when moto is not installed.

    One for the run, not one per module: Airflow keeps the filesystem it made for a connection (``moto``),
    endpoint included, for the life of the process, so a second server on another port would be
    unreachable through ``s3://moto@...`` paths once the first one stopped.
    """
    if not os.access(MOTO, os.X_OK):
        pytest.fail(f"{MOTO} is missing: pip install -e '.[test]' (moto[server])", pytrace=False)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = open(tmp_path_factory.mktemp("moto") / "moto.log", "wb")
    server = subprocess.Popen([MOTO, "-H", "127.0.0.1", "-p", str(port)], stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"moto_server did not start (exit {server.poll()})", pytrace=False)
                time.sleep(0.2)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()


@pytest.fixture
def s3(monkeypatch, s3_server):
    """An ``aws`` connection ``moto`` to the server, and a boto3 client to look behind artiload's back."""
    import boto3

    extra = {"endpoint_url": s3_server, "region_name": "us-east-1"}
    monkeypatch.setenv("AIRFLOW_CONN_MOTO", json.dumps(
        {"conn_type": "aws", "login": "testing", "password": "testing", "extra": extra}))
    client = boto3.client("s3", endpoint_url=s3_server, region_name="us-east-1",
                          aws_access_key_id="testing", aws_secret_access_key="testing")
    try:
        client.create_bucket(Bucket=BUCKET)
    except client.exceptions.BucketAlreadyOwnedByYou:
        pass
    return client
