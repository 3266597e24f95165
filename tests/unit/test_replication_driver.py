"""The replication driver (storage/replication/driver.py) with real cores and real engines,
three nodes in one event loop, messages through the wire encoding, views installed by
the test: writes commit on every replica; a follower crashes and writes go on; it comes
back from its disk, catches up as a learner (by snapshot when the leader trimmed its log)
and is reported caught up; the leader crashes and the new one holds every acknowledged
write; a follower refuses writes with the leader's name."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import pathlib
import shutil
from typing import Any

import pytest

from storage.api import NotShardLeader, PutSpec
from storage.cluster_node import ShardHolder
from storage.engine.backup import Snapshot
from storage.engine.entries import make_entry
from storage.placement import View
from storage.replication import core
from storage.replication.driver import ShardDriver
from storage.replication.messages import decode_message, encode_message

NODES = ("a", "b", "c")
SETTINGS = core.Settings(log_entries_max=8)  # short: a returning node needs a snapshot


class Membership:
    """The agreement's part, in memory: ready confirmations and caught-up reports."""

    def __init__(self) -> None:
        self.view = View(0, (NODES,))
        self.caught_up: set[tuple[str, int]] = set()

    async def confirm_ready(self, shard: int, epoch: int) -> bool:
        return epoch == self.view.epoch

    async def report_caught_up(self, shard: int, node: str, epoch: int) -> None:
        self.caught_up.add((node, epoch))


class Network:
    """``Peers`` for every node: delivers each message (encoded and decoded) on the next
    loop turn unless either end is down."""

    def __init__(self, root: pathlib.Path) -> None:
        self.root = root
        self.drivers: dict[str, ShardDriver] = {}
        self.holders: dict[str, ShardHolder] = {}
        self.tasks: dict[str, asyncio.Task[None]] = {}
        self.membership = Membership()

    def peers_of(self, node: str) -> Any:
        network = self

        class Peers:
            def send(self, to: str, shard: int, message: core.Message) -> None:
                control, payload = encode_message(message)
                asyncio.get_running_loop().call_soon(network.deliver, node, to, control,
                                                     payload)

            async def fetch_snapshot(self, source: str, shard: int,
                                     staged_dir: pathlib.Path) -> None:
                staged_dir.mkdir(parents=True)
                snapshot = Snapshot(network.holders[source].node.engine.env)
                try:
                    with open(staged_dir / "data.mdb", "xb") as out:
                        while chunk := snapshot.read():
                            out.write(chunk)
                finally:
                    snapshot.close()

        return Peers()

    def deliver(self, sender: str, to: str, control: bytes, payload: bytes | None) -> None:
        if sender in self.tasks and to in self.tasks:
            self.drivers[to].received(sender, decode_message(control, payload))

    def start(self, node: str) -> None:
        holder = ShardHolder(node, self.root / node / "shard-0", durable=False)
        self.holders[node] = holder
        driver = ShardDriver(node, 0, holder, self.peers_of(node), self.membership,
                             settings=SETTINGS, tick_ms=2)
        self.drivers[node] = driver
        self.tasks[node] = asyncio.create_task(driver.run(self.membership.view))

    async def crash(self, node: str) -> None:
        task = self.tasks.pop(node)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await self.holders.pop(node).close()

    def install(self, members: tuple[str, ...]) -> None:
        view = View(self.membership.view.epoch + 1, (members,))
        self.membership.view = view
        for node in self.tasks:
            self.drivers[node].view_installed(view)

    async def write_until_committed(self, key: str, timeout_s: float = 10) -> Any:
        """A client's retry loop, for a PUT of ``key``."""
        body = hashlib.sha256(key.encode()).digest()
        entry = make_entry("commit_version", {
            "bucket": "b", "key": key, "blob_id": None, "size_bytes": len(body),
            "spec": PutSpec(etag=hashlib.md5(body).hexdigest())}, body)
        return await self.write_when_led(entry, timeout_s)

    async def write_when_led(self, entry: Any, timeout_s: float = 10) -> Any:
        """``entry`` through the current leader, again while it is not ready."""
        async with asyncio.timeout(timeout_s):
            while True:
                leader = self.membership.view.leader(0)
                try:
                    return await self.drivers[leader].write(entry)
                except NotShardLeader:
                    await asyncio.sleep(0.01)

    def versions(self, node: str) -> list[tuple[bytes, bytes]]:
        engine = self.holders[node].node.engine
        with engine.env.begin() as txn:
            return [(bytes(k), bytes(v)) for k, v in txn.cursor(db=engine.versions)]

    async def wait_equal(self, nodes: tuple[str, ...], timeout_s: float = 10) -> int:
        async with asyncio.timeout(timeout_s):
            while True:
                held = [self.versions(node) for node in nodes]
                if all(h == held[0] for h in held):
                    return len(held[0])
                await asyncio.sleep(0.02)

    async def close(self) -> None:
        for node in list(self.tasks):
            await self.crash(node)


def test_the_driver_replicates_survives_crashes_and_catches_up(
        tmp_path: pathlib.Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="storage.replication.driver")

    async def scenario() -> None:
        network = Network(tmp_path)
        try:
            for node in NODES:
                network.start(node)
            bucket = make_entry("create_bucket", {"name": "b", "owner_id": "o"})
            await network.write_when_led(bucket)
            acknowledged = [await network.write_until_committed(f"k{i}") for i in range(5)]
            assert await network.wait_equal(NODES) == 5
            with pytest.raises(NotShardLeader) as refused:
                await network.drivers["b"].write(bucket)
            assert refused.value.leader == "a"

            # A follower crashes; the view drops it; writes go on.
            await network.crash("c")
            network.install(("a", "b"))
            acknowledged += [await network.write_until_committed(f"m{i}") for i in range(20)]
            # It comes back from its disk, outside the view: a learner, and the leader
            # trimmed the entries it misses (log of 8), so it gets a snapshot.
            network.start("c")
            async with asyncio.timeout(10):
                while ("c", network.membership.view.epoch) not in network.membership.caught_up:
                    await asyncio.sleep(0.02)
            assert "shard 0: installed a snapshot" in caplog.text
            network.install(("a", "b", "c"))
            acknowledged.append(await network.write_until_committed("back"))
            assert await network.wait_equal(NODES) == 26

            # The leader crashes: the next view's leader holds every acknowledged write.
            await network.crash("a")
            network.install(("b", "c"))
            acknowledged.append(await network.write_until_committed("after"))
            assert await network.wait_equal(("b", "c")) == 27
            engine = network.holders["b"].node.engine
            for version in acknowledged:
                stored = engine.get_version("b", version.key, version.version_id)
                assert stored.etag == version.etag
        finally:
            await network.close()
            shutil.rmtree(tmp_path, ignore_errors=True)

    asyncio.run(scenario())


def test_a_failed_disk_operation_stops_the_driver(tmp_path: pathlib.Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """A Persist the writer could not make durable: the replica must not go on (its disk
    no longer follows its log): run() raises ReplicaFailed, the waiting write is
    answered ReplicationUnavailable."""
    from storage.api import ReplicationUnavailable
    from storage.engine.replica import ReplicaState
    from storage.engine.writer import WriteOperation
    from storage.replication.driver import ReplicaFailed

    def failing_persist(self: ReplicaState, entries: Any) -> WriteOperation:
        def apply(engine: Any, txn: Any) -> None:
            raise OSError("disk full")
        return WriteOperation(apply, name="persist", changes=())

    async def scenario() -> None:
        network = Network(tmp_path)
        network.membership.view = View(0, (("a",),))
        network.start("a")
        try:
            bucket = make_entry("create_bucket", {"name": "b", "owner_id": "o"})
            await network.write_when_led(bucket)
            monkeypatch.setattr(ReplicaState, "persist", failing_persist)
            with pytest.raises(ReplicationUnavailable):
                await network.drivers["a"].write(make_entry("delete_bucket", {"name": "b"}))
            with pytest.raises(ReplicaFailed, match="disk full"):
                async with asyncio.timeout(10):
                    await network.tasks.pop("a")
        finally:
            await network.holders.pop("a").close()

    asyncio.run(scenario())
