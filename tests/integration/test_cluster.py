"""A replicated cluster of real processes: three ``squall node`` processes and a
``squall serve --cluster`` gateway on loopback, two shards each replicated on all three
nodes, driven by boto3.

One scenario (processes take seconds to start, and the failures build on each other):
PUT/GET/list/multipart; every replica holds the same versions; lifecycle expiry (a day
of one second) removes objects on every replica; kill -9 a follower while
a writer acknowledges PUTs continuously: writes go on after the view change; restart it:
it catches up and is back in the view; kill -9 a shard leader the same way: a new
leader, and every acknowledged write is readable byte for byte; restart it: it catches
up (from a snapshot: it missed more entries than a log keeps) and every replica holds
the same versions again; stop (SIGSTOP) two nodes: the remaining one is a minority and
takes no write and installs no view; resume them: writes flow again; kill -9 all three
and restart them: every acknowledged write is still there.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import json
import os
import pathlib
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from squall.launcher import free_ports
from storage.api import StorageError
from storage.engine.backup import open_read_only
from storage.transport.base import Operation, Request
from storage.transport.tcp import TcpTransport

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
NODES = ("n1", "n2", "n3")
SECRET = "test-cluster-secret-0123456789"
ROOT_USER, ROOT_PASSWORD = "clusteradmin", "clusteradminsecret"
BUCKET = "replicated"
WRITE_TIMEOUT_MS = 3000
RETRY_MS = 8000
LOG_ENTRIES_MAX = 16


class Cluster:
    def __init__(self, root: pathlib.Path) -> None:
        self.root = root
        ports = free_ports(2 * len(NODES) + 1)
        self.addresses = {node: ("127.0.0.1", ports[i]) for i, node in enumerate(NODES)}
        raft = {node: f"127.0.0.1:{ports[len(NODES) + i]}" for i, node in enumerate(NODES)}
        self.gateway_port = ports[-1]
        (root / "secret").write_text(SECRET)
        self.config_path = root / "cluster.json"
        self.config_path.write_text(json.dumps({
            "nodes": {node: {"address": f"{host}:{port}", "raft": raft[node]}
                      for node, (host, port) in self.addresses.items()},
            "shards": 2, "replication_factor": 3, "secret_file": "secret"}))
        self.processes: dict[str, subprocess.Popen[bytes]] = {}

    def _spawn(self, name: str, arguments: list[str]) -> subprocess.Popen[bytes]:
        log = open(self.root / f"{name}.log", "ab")  # noqa: SIM115 (closed with the process)
        environment = {**os.environ, "SQUALL_ROOT_USER": ROOT_USER,
                       "SQUALL_ROOT_PASSWORD": ROOT_PASSWORD}
        environment.pop("SQUALL_CLUSTER_SECRET", None)
        process = subprocess.Popen([sys.executable, "-m", "squall", *arguments], cwd=REPO_ROOT,
                                   stdout=log, stderr=subprocess.STDOUT, env=environment)
        log.close()
        self.processes[name] = process
        return process

    def start_node(self, node: str) -> None:
        self._spawn(node, ["node", "--node-id", node, "--data-dir", str(self.root / node),
                           "--cluster", str(self.config_path),
                           "--write-timeout-ms", str(WRITE_TIMEOUT_MS),
                           # A short log, so a node that comes back after missing more
                           # writes than that is given a snapshot (checked below).
                           "--replication-log-entries-max", str(LOG_ENTRIES_MAX),
                           # A lifecycle day of one second, swept twice a second.
                           "--lifecycle-day-seconds", "1",
                           "--lifecycle-period-seconds", "0.5"])

    def start_gateway(self) -> None:
        self._spawn("gateway", ["serve", "--cluster", str(self.config_path), "--port",
                                str(self.gateway_port), "--cluster-retry-ms", str(RETRY_MS),
                                "--lifecycle-day-seconds", "1"])
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(
                    ("127.0.0.1", self.gateway_port), timeout=1):
                return
            assert self.processes["gateway"].poll() is None, self.log("gateway")
            time.sleep(0.1)
        raise AssertionError("the gateway did not start\n" + self.log("gateway"))

    def kill(self, node: str) -> None:
        process = self.processes.pop(node)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)

    def log(self, name: str) -> str:
        return (self.root / f"{name}.log").read_text(errors="replace")[-3000:]

    def s3(self) -> Any:
        return boto3.client(
            "s3", endpoint_url=f"http://127.0.0.1:{self.gateway_port}",
            aws_access_key_id=ROOT_USER, aws_secret_access_key=ROOT_PASSWORD,
            region_name="us-east-1",
            config=Config(retries={"max_attempts": 1}, read_timeout=60, connect_timeout=5))

    def health(self) -> int:
        url = f"http://127.0.0.1:{self.gateway_port}/_squall/health"
        try:
            with urllib.request.urlopen(url, timeout=30) as answer:
                return int(answer.status)
        except urllib.error.HTTPError as error:
            return int(error.code)

    def views(self, nodes: tuple[str, ...] = NODES) -> dict[str, tuple[int, tuple[Any, ...]]]:
        """Each reachable node's view, asked over the storage transport."""
        async def ask() -> dict[str, tuple[int, tuple[Any, ...]]]:
            transport = TcpTransport({n: self.addresses[n] for n in nodes})
            answers = {}
            try:
                for node in nodes:
                    try:
                        async with asyncio.timeout(1):
                            epoch, shards = await transport.call(node,
                                                                 Request(Operation.GET_VIEW))
                    except (TimeoutError, StorageError):
                        continue
                    answers[node] = (epoch, tuple(tuple(m) for m in shards))
            finally:
                await transport.close()
            return answers

        return asyncio.run(ask())

    def wait_for_view(self, predicate: Any, timeout_s: float = 30) -> tuple[int, Any]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for epoch, shards in self.views().values():
                if predicate(shards):
                    return epoch, shards
            time.sleep(0.2)
        raise AssertionError(f"no such view within {timeout_s} s: {self.views()}")

    def versions(self, node: str, shard: int) -> list[tuple[bytes, bytes]]:
        """The shard's version records as the node's environment holds them."""
        env = open_read_only(self.root / node / f"shard-{shard}")
        try:
            with env.begin() as txn:
                db = env.open_db(b"versions", txn=txn, create=False)
                return [(bytes(k), bytes(v)) for k, v in txn.cursor(db=db)]
        finally:
            env.close()

    def wait_for_equal_replicas(self, nodes: tuple[str, ...], timeout_s: float = 20) -> int:
        deadline = time.monotonic() + timeout_s
        while True:
            counts = 0
            equal = True
            for shard in (0, 1):
                held = [self.versions(node, shard) for node in nodes]
                equal = equal and all(h == held[0] for h in held)
                counts += len(held[0])
            if equal:
                return counts
            if time.monotonic() > deadline:
                raise AssertionError(f"replicas of {nodes} differ after {timeout_s} s")
            time.sleep(0.2)

    def close(self) -> None:
        for process in self.processes.values():
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGCONT)
                process.send_signal(signal.SIGKILL)
            process.wait(timeout=30)
        self.processes.clear()


@pytest.fixture
def cluster(tmp_path: pathlib.Path) -> Iterator[Cluster]:
    running = Cluster(tmp_path)
    try:
        for node in NODES:
            running.start_node(node)
        running.start_gateway()
        yield running
    finally:
        running.close()


class Writer:
    """PUTs ``prefix-N`` continuously on a thread, recording each acknowledged one."""

    def __init__(self, cluster: Cluster, prefix: str) -> None:
        self.s3 = cluster.s3()
        self.prefix = prefix
        self.acknowledged: dict[str, bytes] = {}
        self.ack_times: list[float] = []
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Writer:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(timeout=60)

    def _run(self) -> None:
        index = 0
        while not self._stop.is_set():
            key = f"{self.prefix}-{index:05d}"
            body = hashlib.sha256(key.encode()).digest() * (1 + index % 300)
            try:
                self.s3.put_object(Bucket=BUCKET, Key=key, Body=body)
            except ClientError as error:
                self.failures.append(f"{key}: {error}")
            else:
                self.acknowledged[key] = body
                self.ack_times.append(time.monotonic())
            index += 1

    def wait_for_acks(self, count: int, timeout_s: float = 30) -> None:
        target = len(self.acknowledged) + count
        deadline = time.monotonic() + timeout_s
        while len(self.acknowledged) < target:
            assert time.monotonic() < deadline, (len(self.acknowledged), self.failures[-3:])
            time.sleep(0.05)

    def longest_gap_s(self) -> float:
        return max((b - a for a, b in itertools.pairwise(self.ack_times)), default=0.0)


def _check_readable(s3: Any, acknowledged: dict[str, bytes]) -> None:
    for key, body in acknowledged.items():
        assert s3.get_object(Bucket=BUCKET, Key=key)["Body"].read() == body, key


def _shard_leaders(cluster: Cluster) -> tuple[str, ...]:
    epoch, shards = max(cluster.views().values())
    return tuple(members[0] for members in shards)


@pytest.mark.slow
def test_a_replicated_cluster_survives_kill_9(cluster: Cluster) -> None:
    s3 = cluster.s3()
    assert cluster.health() == 200  # every shard leader answers
    # --- the S3 surface through the cluster ---------------------------------------------
    s3.create_bucket(Bucket=BUCKET)
    objects = {f"obj-{i}": os.urandom(i * 7000) for i in range(12)}
    for key, body in objects.items():
        s3.put_object(Bucket=BUCKET, Key=key, Body=body)
    big = os.urandom(3 * 1024 * 1024 + 17)  # staged in chunks, then a commit with a tail
    s3.put_object(Bucket=BUCKET, Key="big", Body=big)
    objects["big"] = big
    upload = s3.create_multipart_upload(Bucket=BUCKET, Key="multi")["UploadId"]
    parts = [os.urandom(5 * 1024 * 1024), os.urandom(1000)]
    etags = [s3.upload_part(Bucket=BUCKET, Key="multi", UploadId=upload, PartNumber=n + 1,
                            Body=part)["ETag"] for n, part in enumerate(parts)]
    s3.complete_multipart_upload(Bucket=BUCKET, Key="multi", UploadId=upload, MultipartUpload={
        "Parts": [{"PartNumber": n + 1, "ETag": etag} for n, etag in enumerate(etags)]})
    objects["multi"] = b"".join(parts)
    _check_readable(s3, objects)
    for configuration in (
            {"QueueConfigurations": [{"QueueArn": "arn:squall:sqs::hook:webhook",
                                      "Events": ["s3:ObjectCreated:*"]}]},
            {"LambdaFunctionConfigurations": [{
                "LambdaFunctionArn": "arn:squall:function:labeller",
                "Events": ["s3:ObjectCreated:*"]}]}):
        with pytest.raises(ClientError, match="runs no pre-commit functions"):
            s3.put_bucket_notification_configuration(
                Bucket=BUCKET, NotificationConfiguration=configuration)
    listed = [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET)["Contents"]]
    assert listed == sorted(objects)
    assert cluster.wait_for_equal_replicas(NODES) == len(objects)

    # --- lifecycle expiry: decided by each shard's leader, applied through its log ------
    s3.create_bucket(Bucket="expiring")
    s3.put_bucket_lifecycle_configuration(Bucket="expiring", LifecycleConfiguration={
        "Rules": [{"ID": "soon", "Status": "Enabled", "Filter": {"Prefix": ""},
                   "Expiration": {"Days": 1}}]})
    for i in range(6):
        s3.put_object(Bucket="expiring", Key=f"gone-{i}", Body=b"short-lived")
    deadline = time.monotonic() + 20
    while s3.list_objects_v2(Bucket="expiring").get("KeyCount", 0):
        assert time.monotonic() < deadline, "the lifecycle expired nothing in 20 s"
        time.sleep(0.3)
    assert cluster.wait_for_equal_replicas(NODES) == len(objects)  # gone on every replica
    s3.delete_bucket(Bucket="expiring")

    # --- kill -9 a follower of both shards --------------------------------------------
    leaders = _shard_leaders(cluster)
    follower = next(node for node in NODES if node not in leaders)
    with Writer(cluster, "during-follower-kill") as writer:
        writer.wait_for_acks(10)
        cluster.kill(follower)
        cluster.wait_for_view(lambda shards: all(follower not in m for m in shards))
        writer.wait_for_acks(20)
    assert not writer.failures, writer.failures[:3]
    follower_gap_s = writer.longest_gap_s()
    acknowledged = dict(writer.acknowledged)

    # --- restart it: it catches up and rejoins (Raft needs it back: with one node dead,
    # the death of a second would leave a minority, which must not change the view) ------
    cluster.start_node(follower)
    cluster.wait_for_view(lambda shards: all(len(m) == 3 for m in shards), timeout_s=40)
    s3.put_object(Bucket=BUCKET, Key="after-rejoin", Body=b"back")
    objects["after-rejoin"] = b"back"
    cluster.wait_for_equal_replicas(NODES)

    # --- kill -9 the leader of shard 0 ------------------------------------------------
    leader = _shard_leaders(cluster)[0]
    with Writer(cluster, "during-leader-kill") as writer:
        writer.wait_for_acks(10)
        cluster.kill(leader)
        cluster.wait_for_view(lambda shards: all(leader not in m for m in shards))
        writer.wait_for_acks(20)
    leader_gap_s = writer.longest_gap_s()
    acknowledged |= writer.acknowledged
    # A write in flight when its leader died may be answered 503 (never acknowledged);
    # every acknowledged one is readable byte for byte from the new leaders.
    assert len(writer.failures) <= 2, writer.failures
    _check_readable(s3, acknowledged | objects)
    print(f"write stall: follower kill {follower_gap_s:.2f} s, leader kill {leader_gap_s:.2f} s")

    # --- restart it: it catches up (it missed writes) and rejoins -----------------------
    cluster.start_node(leader)
    cluster.wait_for_view(lambda shards: all(len(m) == 3 for m in shards), timeout_s=40)
    # (a write answered 503 during the leader kill may have been stored all the same)
    assert cluster.wait_for_equal_replicas(NODES) >= len(objects) + len(acknowledged)
    # It missed more entries than the leaders keep: it was brought back by snapshot.
    assert "installed a snapshot up to index" in cluster.log(leader)

    # --- a minority side cannot take writes -------------------------------------------
    with Writer(cluster, "before-partition") as writer:  # both shards take writes again
        writer.wait_for_acks(6, timeout_s=40)
    leaders = _shard_leaders(cluster)
    alone = leaders[0]
    stopped = [node for node in NODES if node != alone]
    epoch_before = cluster.views((alone,))[alone][0]
    for node in stopped:
        cluster.processes[node].send_signal(signal.SIGSTOP)
    try:
        began = time.monotonic()
        with pytest.raises(ClientError) as refused:
            s3.put_object(Bucket=BUCKET, Key="minority", Body=b"must not be acknowledged")
        assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503
        # Bounded: the gateway's retries of each step of the PUT, each step at most the
        # write timeout past the retry window.
        refused_after_s = time.monotonic() - began
        assert refused_after_s < 3 * (RETRY_MS + WRITE_TIMEOUT_MS) / 1000
        assert cluster.views((alone,))[alone][0] == epoch_before  # no view installed
        assert cluster.health() == 503
    finally:
        for node in stopped:
            cluster.processes[node].send_signal(signal.SIGCONT)
    with Writer(cluster, "after-partition") as writer:
        writer.wait_for_acks(5, timeout_s=40)
    _check_readable(s3, writer.acknowledged)
    acknowledged |= writer.acknowledged
    print(f"minority write refused after {refused_after_s:.1f} s")

    # --- the whole cluster killed -9 and restarted: everything acknowledged is there ------
    for node in NODES:
        cluster.kill(node)
    for node in NODES:
        cluster.start_node(node)
    _check_readable(s3, acknowledged | objects)
