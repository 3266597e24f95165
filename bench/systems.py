"""The systems under test: Squall (durable and volatile), Ceph RGW, moto, the bare
framework, and any external endpoint. Each starts, says where it listens, and stops
only what it started.

A system that cannot start raises ``Unavailable``; the run records why and goes on.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.loadgen import Endpoint
from squall.launcher import ServerProcess, answers_http, free_port

repository_root = Path(__file__).resolve().parent.parent
peers_directory = Path(
    os.environ.get("SQUALL_PEERS_DIR", repository_root.parent / "shared" / "peers")
)
rgw_start_timeout_seconds = 300.0  # includes apt-get on a fresh machine
process_start_timeout_seconds = 30.0
in_process_populate_batch = 256
bench_access_key = "squall-bench"
bench_secret_key = "squall-bench-secret-key-0123456789"


class Unavailable(Exception):
    """The system could not be started here; the message says why."""


def _port_avoiding_osd_range() -> int:
    """A free port outside 6800-7300, which the Ceph OSD binds to."""
    while True:
        port = free_port()
        if not 6800 <= port <= 7300:
            return port


class System:
    name = ""
    kind = "peer"  # squall | peer | limit
    description = ""
    populates_in_process = False

    def __init__(self) -> None:
        self.endpoint = Endpoint("http://127.0.0.1:0")
        self.started_seconds = 0.0
        self.notes: list[str] = []

    @property
    def server_pid(self) -> int | None:
        return None

    def populate_in_process(self, bucket: str, prefix: str, count: int, size_bytes: int) -> None:
        raise NotImplementedError

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError


class Squall(System):
    kind = "squall"
    populates_in_process = True

    def __init__(self, work_dir: Path, durable: bool) -> None:
        super().__init__()
        self.durable = durable
        self.name = "squall" if durable else "squall-volatile"
        mode = "durable: fsync before acknowledging" if durable else "--volatile: no fsync"
        self.description = f"squall serve ({mode})"
        self.data_dir = Path(tempfile.mkdtemp(prefix=f"{self.name}-", dir=work_dir))
        self.server: ServerProcess | None = None

    @property
    def server_pid(self) -> int | None:
        return self.server.process.pid if self.server and self.server.process else None

    def populate_in_process(self, bucket: str, prefix: str, count: int, size_bytes: int) -> None:
        """Through ``storage.client.open_embedded`` on the data dir, before the server
        starts (volatile: the close syncs once)."""
        asyncio.run(_populate_embedded(self.data_dir, bucket, prefix, count, size_bytes))

    def start(self) -> None:
        extra = ("--log-level", "warning") + (() if self.durable else ("--volatile",))
        self.server = ServerProcess(
            self.data_dir,
            access_key=bench_access_key,
            secret_key=bench_secret_key,
            extra_args=extra,
        )
        try:
            self.server.start()
        except RuntimeError as error:
            raise Unavailable(str(error)) from error
        self.started_seconds = self.server.started_seconds
        self.endpoint = Endpoint(self.server.url, bench_access_key, bench_secret_key)

    def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            self.server = None
        shutil.rmtree(self.data_dir, ignore_errors=True)


async def _populate_embedded(
    data_dir: Path, bucket: str, prefix: str, count: int, size_bytes: int
) -> None:
    from gateway.app import owner_for
    from storage.api import BucketAlreadyOwnedByYou, PutSpec
    from storage.client import open_embedded

    body = os.urandom(size_bytes)
    spec = PutSpec(etag=hashlib.md5(body).hexdigest())
    client = await open_embedded(data_dir, durable=False)
    try:
        try:
            await client.create_bucket(bucket, owner_for(bench_access_key).id)
        except BucketAlreadyOwnedByYou:
            pass

        async def put(index: int) -> None:
            async with client.open_upload(bucket, f"{prefix}/{index:08d}") as upload:
                await upload.write(body)
                await upload.commit(spec)

        for first in range(0, count, in_process_populate_batch):
            await asyncio.gather(
                *(put(i) for i in range(first, min(count, first + in_process_populate_batch)))
            )
    finally:
        await client.close()


class ChildProcess(System):
    """A server we spawn ourselves, output to a file, stopped with SIGTERM then SIGKILL."""

    command: list[str] = []

    def __init__(self, work_dir: Path) -> None:
        super().__init__()
        self.work_dir = work_dir
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def server_pid(self) -> int | None:
        return self.process.pid if self.process else None

    def start(self) -> None:
        port = free_port()
        log = open(self.work_dir / f"{self.name}.log", "wb")  # noqa: SIM115 - owned by the child
        began = time.monotonic()
        try:
            self.process = subprocess.Popen(
                self.command_for(port), stdout=log, stderr=subprocess.STDOUT, cwd=repository_root
            )
        except OSError as error:
            raise Unavailable(f"cannot run {self.command_for(port)[0]}: {error}") from error
        url = f"http://127.0.0.1:{port}"
        while not answers_http(url):
            if self.process.poll() is not None:
                raise Unavailable(
                    f"{self.name} exited with {self.process.returncode}; see {log.name}"
                )
            if time.monotonic() - began > process_start_timeout_seconds:
                self.stop()
                raise Unavailable(
                    f"{self.name} did not answer within {process_start_timeout_seconds} s"
                )
            time.sleep(0.1)
        self.started_seconds = time.monotonic() - began
        self.endpoint = self.endpoint_for(url)

    def command_for(self, port: int) -> list[str]:
        raise NotImplementedError

    def endpoint_for(self, url: str) -> Endpoint:
        return Endpoint(url, "bench", "bench-secret")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self.process = None


class Moto(ChildProcess):
    name = "moto"
    description = "moto's server (in-memory mock of AWS, Flask/werkzeug)"

    def command_for(self, port: int) -> list[str]:
        venv_moto = Path(sys.executable).parent / "moto_server"
        program = str(venv_moto) if venv_moto.exists() else shutil.which("moto_server")
        if program is None:
            raise Unavailable("moto_server not found (pip install 'moto[server]')")
        return [program, "-H", "127.0.0.1", "-p", str(port)]


class BareStarlette(ChildProcess):
    name = "starlette-bare"
    kind = "limit"
    description = "bare Starlette handler on uvicorn (httptools, uvloop): the framework ceiling"

    def command_for(self, port: int) -> list[str]:
        return [sys.executable, "-m", "bench.bare_app", "--port", str(port)]

    def endpoint_for(self, url: str) -> Endpoint:
        return Endpoint(url)  # unsigned: there is nothing to check a signature


class CephRgw(System):
    name = "rgw"
    description = "Ceph RGW 16.2 (Pacific), beast frontend, 1 mon + 1 BlueStore OSD on a file"

    def __init__(self, work_dir: Path) -> None:
        super().__init__()
        # Our own PEER_DIR and mon ports, so that an engineer's RGW is never touched.
        self.peer_dir = Path(os.environ.get("SQUALL_BENCH_RGW_DIR", "/tmp/squall-bench-rgw"))
        self.environment = dict(os.environ, PEER_DIR=str(self.peer_dir))
        self.started = False
        self.access_key = os.environ.get("MAIN_AK", "AKMAIN000000000000")
        self.secret_key = os.environ.get("MAIN_SK", "mainsecret000000000000000000000000000000")

    def start(self) -> None:
        script = peers_directory / "start-rgw.sh"
        if not script.exists():
            raise Unavailable(f"{script} not found (set SQUALL_PEERS_DIR)")
        port = _port_avoiding_osd_range()
        self.environment["MON_PORT"] = str(_port_avoiding_osd_range())
        self.environment["MON_PORT_V1"] = str(_port_avoiding_osd_range())
        log_path = self.peer_dir.parent / "squall-bench-rgw-start.log"
        self.peer_dir.mkdir(parents=True, exist_ok=True)
        began = time.monotonic()
        with open(log_path, "wb") as log:
            try:
                finished = subprocess.run(
                    [str(script), str(port)], env=self.environment, stdout=log, stderr=subprocess.STDOUT,
                    timeout=rgw_start_timeout_seconds, check=False,
                )  # fmt: skip
            except subprocess.TimeoutExpired as error:
                self.stop()
                raise Unavailable(
                    f"start-rgw.sh took over {rgw_start_timeout_seconds} s"
                ) from error
        self.started = True
        if finished.returncode != 0:
            tail = log_path.read_text(errors="replace").strip().splitlines()[-3:]
            self.stop()
            raise Unavailable(f"start-rgw.sh exited {finished.returncode}: {' | '.join(tail)}")
        self.started_seconds = time.monotonic() - began
        self.endpoint = Endpoint(f"http://127.0.0.1:{port}", self.access_key, self.secret_key)
        self.notes.append("beast frontend with tcp_nodelay=1; pool size 1; 512 RGW threads")

    @property
    def server_pid(self) -> int | None:
        pids = self.peer_dir / "peer.pids"
        if pids.exists():
            for line in pids.read_text().splitlines():
                name, _, pid = line.partition(" ")
                if name.startswith("rgw"):
                    return int(pid)
        return None

    def stop(self) -> None:
        if not self.started:
            return
        subprocess.run(
            [str(peers_directory / "stop-rgw.sh"), "--purge"], env=self.environment,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120, check=False,
        )  # fmt: skip
        self.started = False


class External(System):
    """Any S3 endpoint given on the command line; we neither start nor stop it."""

    def __init__(self, name: str, endpoint: Endpoint, server_pid: int | None = None) -> None:
        super().__init__()
        self.name = name
        self.description = f"external endpoint {endpoint.url}"
        self.endpoint = endpoint
        self._server_pid = server_pid  # given with --endpoint: its CPU is measured

    @property
    def server_pid(self) -> int | None:
        return self._server_pid

    def start(self) -> None:
        if not answers_http(self.endpoint.url):
            raise Unavailable(f"{self.endpoint.url} does not answer HTTP")

    def stop(self) -> None:
        pass


def s3_client(endpoint: Endpoint) -> Any:
    """boto3 for set-up only (buckets), never in the measured loop."""
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3", endpoint_url=endpoint.url, aws_access_key_id=endpoint.access_key,
        aws_secret_access_key=endpoint.secret_key, region_name=endpoint.region,
        config=Config(signature_version="s3v4", s3={"addressing_style": "path"}, retries={"max_attempts": 2}),
    )  # fmt: skip


def ensure_bucket(endpoint: Endpoint, bucket: str) -> None:
    client = s3_client(endpoint)
    try:
        client.create_bucket(Bucket=bucket)
    except client.exceptions.BucketAlreadyOwnedByYou:
        pass
