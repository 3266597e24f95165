"""The real ``squall serve`` process: crash safety under kill -9, clean stop, start-up rules.

These drive the server exactly as a user does: a child process on loopback, real boto3
clients, real LMDB files on disk.
"""

from __future__ import annotations

import hashlib
import os
import random
import subprocess
import sys
import threading
import time
from pathlib import Path

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from squall.launcher import ServerProcess

ACCESS_KEY = "CRASHTESTROOT0000000"
SECRET_KEY = "crash-test-secret-000000000000000000000"
BUCKET = "crash-test"
WRITER_THREADS = 4
PUTS_PER_THREAD_MAX = 400  # bounds the run even if the kill never comes


def _client(url: str):  # type: ignore[no-untyped-def]
    return boto3.client(
        "s3",
        endpoint_url=url,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        region_name="us-east-1",
        config=Config(
            s3={"addressing_style": "path"},
            retries={"max_attempts": 1},
            connect_timeout=2,
            read_timeout=10,
        ),
    )


def _body(thread: int, sequence: int) -> bytes:
    # Mostly small objects (group commit), some spanning several 1 MiB chunks.
    size = 1536 * 1024 + sequence if sequence % 10 == 0 else 100 + sequence
    seed = hashlib.sha256(f"{thread}/{sequence}".encode()).digest()
    return (seed * (size // len(seed) + 1))[:size]


def _writer(url: str, thread: int, acknowledged: dict[str, str], stop: threading.Event) -> None:
    client = _client(url)
    try:
        for sequence in range(PUTS_PER_THREAD_MAX):
            if stop.is_set():
                return
            key = f"t{thread}/obj-{sequence:05d}"
            body = _body(thread, sequence)
            try:
                client.put_object(Bucket=BUCKET, Key=key, Body=body)
            except (BotoCoreError, ClientError):
                return  # the server died mid-request: this write was never acknowledged
            acknowledged[key] = hashlib.md5(body).hexdigest()
    finally:
        client.close()


@pytest.mark.slow
@pytest.mark.parametrize("round_number", [1, 2])
def test_kill_9_during_puts_loses_no_acknowledged_write(tmp_path: Path, round_number: int) -> None:
    data_dir = tmp_path / "data"
    acknowledged: dict[str, str] = {}
    with ServerProcess(data_dir, access_key=ACCESS_KEY, secret_key=SECRET_KEY) as server:
        setup = _client(server.url)
        setup.create_bucket(Bucket=BUCKET)
        setup.close()
        stop = threading.Event()
        writers = [
            threading.Thread(target=_writer, args=(server.url, n, acknowledged, stop))
            for n in range(WRITER_THREADS)
        ]
        for writer in writers:
            writer.start()
        time.sleep(random.Random(round_number).uniform(1.0, 3.0))
        server.kill()  # SIGKILL while PUTs are in flight
        stop.set()
        for writer in writers:
            writer.join(timeout=30)
    assert len(acknowledged) > 20, "too few writes were acknowledged before the kill"
    with ServerProcess(data_dir, access_key=ACCESS_KEY, secret_key=SECRET_KEY) as restarted:
        client = _client(restarted.url)
        for key, md5 in acknowledged.items():
            response = client.get_object(Bucket=BUCKET, Key=key)
            body = response["Body"].read()
            assert hashlib.md5(body).hexdigest() == md5, key
            assert response["ETag"] == f'"{md5}"'
        listed = client.list_objects_v2(Bucket=BUCKET, MaxKeys=1000)
        client.close()
    # Everything listed is whole: acknowledged keys plus, at most, writes that committed
    # just before the kill without their answer reaching the client.
    listed_keys = {entry["Key"] for entry in listed.get("Contents", [])}
    assert set(acknowledged) <= listed_keys or listed["IsTruncated"]


def test_sigterm_stops_cleanly_and_keeps_data(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    with ServerProcess(data_dir, access_key=ACCESS_KEY, secret_key=SECRET_KEY) as server:
        client = _client(server.url)
        client.create_bucket(Bucket=BUCKET)
        client.put_object(Bucket=BUCKET, Key="kept", Body=b"still here")
        client.close()
        assert server.stop() == 0
        assert "Application shutdown complete" in server.output()
    with ServerProcess(data_dir, access_key=ACCESS_KEY, secret_key=SECRET_KEY) as server:
        client = _client(server.url)
        assert client.get_object(Bucket=BUCKET, Key="kept")["Body"].read() == b"still here"
        client.close()


def _serve_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("SQUALL_ROOT_")}


def test_development_credentials_are_refused_off_loopback(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "squall", "serve", "--host", "0.0.0.0", "--port", "0",
         "--data-dir", str(tmp_path)],
        env=_serve_env(), capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert result.returncode == 2
    assert "refusing to listen on 0.0.0.0 with the development credentials" in result.stderr


def test_development_credentials_are_printed(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path, access_key="", secret_key="")
    env_backup = dict(os.environ)
    try:
        os.environ.pop("SQUALL_ROOT_USER", None)
        os.environ.pop("SQUALL_ROOT_PASSWORD", None)
        # ServerProcess passes its own (empty) credentials: empty means "unset".
        server.start()
        output = server.output()
    finally:
        server.close()
        os.environ.clear()
        os.environ.update(env_backup)
    assert "AWS_ACCESS_KEY_ID=squall-dev" in output
    assert "AWS_SECRET_ACCESS_KEY=" in output


def test_serving_does_not_import_tensorflow() -> None:
    """Start-up stays fast: nothing on the serve path imports TensorFlow."""
    code = (
        "import sys, squall.cli, gateway.app, storage.client; "
        "assert 'tensorflow' not in sys.modules, 'tensorflow imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
