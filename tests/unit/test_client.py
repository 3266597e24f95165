"""The embedded client through asyncio (pytest without plugins: asyncio.run per test)."""

from __future__ import annotations

import asyncio
import hashlib
import pathlib
from collections.abc import Awaitable, Callable

import pytest

from storage import limits
from storage.api import (
    BucketNotEmpty,
    InvalidArgument,
    NoSuchBucket,
    NoSuchKey,
    NoSuchVersion,
    Overloaded,
    PreconditionFailed,
    PutSpec,
    StorageClient,
    WriteConditions,
)
from storage.client import ShardedStorageClient, open_embedded
from storage.node import StorageNode
from storage.placement import View, jump_consistent_hash
from storage.transport.local import LocalTransport

CHUNK = limits.chunk_size_bytes


def run(
    data_dir: pathlib.Path, scenario: Callable[[ShardedStorageClient], Awaitable[None]]
) -> None:
    async def main() -> None:
        client = await open_embedded(data_dir, durable=False)
        try:
            await scenario(client)
        finally:
            await client.close()

    asyncio.run(main())


async def put(client: StorageClient, key: str, body: bytes, pieces_bytes: int = 65536):
    async with client.open_upload("b", key) as upload:
        for offset in range(0, len(body), pieces_bytes):
            await upload.write(memoryview(body)[offset : offset + pieces_bytes])
        return await upload.commit(PutSpec(etag=hashlib.md5(body).hexdigest()))


async def read(client: StorageClient, version, start: int = 0, end: int | None = None) -> bytes:
    return b"".join([bytes(piece) async for piece in client.read_body(version, start, end)])


def test_put_get_range_list_delete(tmp_path: pathlib.Path) -> None:
    async def scenario(client: ShardedStorageClient) -> None:
        await client.create_bucket("b", "owner")
        body = bytes(range(256)) * (CHUNK // 100)  # a bit over 2.5 chunks
        written = await put(client, "dir/obj", body)
        assert written.size_bytes == len(body) and written.s3_version_id == "null"
        version = await client.get_version("b", "dir/obj")
        assert version.etag == hashlib.md5(body).hexdigest()
        assert await read(client, version) == body
        assert await read(client, version, CHUNK - 10, CHUNK + 10) == body[CHUNK - 10 : CHUNK + 10]
        page = await client.list_objects("b", delimiter="/")
        assert page.common_prefixes == ("dir/",)
        await client.delete_object("b", "dir/obj")
        with pytest.raises(NoSuchKey):
            await client.get_version("b", "dir/obj")
        await client.delete_bucket("b")
        assert await client.list_buckets("owner") == []

    run(tmp_path, scenario)


def test_bytes_input_larger_than_a_chunk(tmp_path: pathlib.Path) -> None:
    async def scenario(client: ShardedStorageClient) -> None:
        await client.create_bucket("b", "owner")
        body = b"q" * (3 * CHUNK + 3)
        async with client.open_upload("b", "k") as upload:
            await upload.write(b"x")
            await upload.write(body[1:])  # immutable bytes: full chunks staged by reference
            assert upload.size_bytes == len(body)
            version = await upload.commit(PutSpec(etag="e"))
        assert await read(client, version) == b"x" + body[1:]

    run(tmp_path, scenario)


def test_leaving_without_commit_aborts_and_frees_staged_chunks(tmp_path: pathlib.Path) -> None:
    async def scenario(client: ShardedStorageClient) -> None:
        await client.create_bucket("b", "owner")
        with pytest.raises(RuntimeError):
            async with client.open_upload("b", "k") as upload:
                await upload.write(b"s" * (3 * CHUNK))
                raise RuntimeError("client went away")
        counts = client._owned_nodes[0].engine.entry_counts()
        assert (counts["staging"], counts["chunks"]) == (0, 0)
        with pytest.raises(NoSuchKey):
            await client.get_version("b", "k")

    run(tmp_path, scenario)


def test_failed_condition_then_exit_frees_staged_chunks(tmp_path: pathlib.Path) -> None:
    async def scenario(client: ShardedStorageClient) -> None:
        await client.create_bucket("b", "owner")
        await put(client, "k", b"first")
        async with client.open_upload("b", "k") as upload:
            await upload.write(b"s" * (2 * CHUNK + 1))
            with pytest.raises(PreconditionFailed):
                await upload.commit(PutSpec(etag="e"), WriteConditions(if_none_match_any=True))
        counts = client._owned_nodes[0].engine.entry_counts()
        assert (counts["staging"], counts["chunks"], counts["versions"]) == (0, 1, 1)
        assert await read(client, await client.get_version("b", "k")) == b"first"

    run(tmp_path, scenario)


def test_versioning_through_the_client(tmp_path: pathlib.Path) -> None:
    async def scenario(client: ShardedStorageClient) -> None:
        await client.create_bucket("b", "owner")
        await client.set_bucket_versioning("b", "Enabled")
        first = await put(client, "k", b"one")
        await put(client, "k", b"two")
        marker = await client.delete_object("b", "k")
        assert marker.delete_marker
        assert (await client.get_version("b", "k")).is_delete_marker
        old = await client.get_version("b", "k", version_id=first.version_id)
        assert await read(client, old) == b"one"
        versions = await client.list_object_versions("b")
        assert [v.is_delete_marker for v in versions.versions] == [True, False, False]

    run(tmp_path, scenario)


def test_too_many_open_streams_is_overloaded(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(limits, "read_streams_max", 2)

    async def scenario(client: ShardedStorageClient) -> None:
        await client.create_bucket("b", "owner")
        version = await put(client, "k", b"x" * 10)
        streams = [client.read_body(version) for _ in range(2)]
        with pytest.raises(Overloaded):
            client.read_body(version)
        await streams[0].aclose()
        again = client.read_body(version)
        assert [bytes(p) async for p in again] == [b"x" * 10]  # exhausted: slot released
        client.read_body(version)  # left open: close() must still clean up

    run(tmp_path, scenario)


def test_read_of_an_overwritten_version_fails_before_streaming(tmp_path: pathlib.Path) -> None:
    async def scenario(client: ShardedStorageClient) -> None:
        await client.create_bucket("b", "owner")
        old = await put(client, "k", b"old")
        await put(client, "k", b"new")
        with pytest.raises(NoSuchVersion):
            client.read_body(old)

    run(tmp_path, scenario)


def test_upload_size_is_bounded(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(limits, "object_size_bytes_max", 10)

    async def scenario(client: ShardedStorageClient) -> None:
        await client.create_bucket("b", "owner")
        async with client.open_upload("b", "k") as upload:
            with pytest.raises(InvalidArgument):
                await upload.write(b"x" * 11)

    run(tmp_path, scenario)


def test_concurrent_small_puts_share_groups(tmp_path: pathlib.Path) -> None:
    async def scenario(client: ShardedStorageClient) -> None:
        await client.create_bucket("b", "owner")
        writer = client._owned_nodes[0].writer
        before = writer.stats.groups_committed
        await asyncio.gather(*(put(client, f"k{i}", b"v" * 4096) for i in range(200)))
        assert writer.stats.groups_committed - before < 200
        page = await client.list_objects("b", max_keys=1000)
        assert len(page.objects) == 200

    run(tmp_path, scenario)


def test_jump_hash_is_stable_and_moves_few_keys() -> None:
    keys = range(2000)
    before = [jump_consistent_hash(k * 0x9E3779B97F4A7C15 % 2**64, 10) for k in keys]
    after = [jump_consistent_hash(k * 0x9E3779B97F4A7C15 % 2**64, 11) for k in keys]
    moved = sum(a != b for a, b in zip(before, after, strict=True))
    assert all(0 <= s < 10 for s in before)
    assert moved < 2000 * 2 / 11
    view = View(epoch=1, shards=(("n0",), ("n1", "n2")))
    assert view.shard_for_object("b", "k") == view.shard_for_object("b", "k")
    assert view.leader(1) == "n1"


def test_three_shards_list_like_one(tmp_path: pathlib.Path) -> None:
    async def main() -> None:
        nodes = tuple(
            StorageNode.open(f"n{i}", tmp_path / f"n{i}", durable=False) for i in range(3)
        )
        view = View(epoch=1, shards=tuple((node.node_id,) for node in nodes))
        sharded = ShardedStorageClient(view, LocalTransport({n.node_id: n for n in nodes}), nodes)
        single = await open_embedded(tmp_path / "single", durable=False)
        try:
            for client in (sharded, single):
                await client.create_bucket("b", "owner")
                for i in range(60):
                    async with client.open_upload("b", f"{i % 4}/{i:03d}") as upload:
                        await upload.write(b"x")
                        await upload.commit(PutSpec(etag="e"))
            assert {len(n.engine.list_objects("b").objects) for n in nodes} != {60}
            for delimiter in ["", "/"]:
                for max_keys in [1, 7, 1000]:
                    marker, pages = "", []
                    while True:
                        got = await sharded.list_objects("b", "", delimiter, marker, max_keys)
                        want = await single.list_objects("b", "", delimiter, marker, max_keys)
                        assert [o.key for o in got.objects] == [o.key for o in want.objects]
                        assert got.common_prefixes == want.common_prefixes
                        assert (got.is_truncated, got.next_marker) == (
                            want.is_truncated,
                            want.next_marker,
                        )
                        pages.append(got)
                        if not got.is_truncated:
                            break
                        marker = got.next_marker or ""
            got_versions = await sharded.list_object_versions("b", max_keys=1000)
            assert [v.key for v in got_versions.versions] == sorted(
                f"{i % 4}/{i:03d}" for i in range(60)
            )
            for client in (sharded, single):
                for i in range(0, 60, 5):
                    await client.create_multipart_upload("b", f"{i % 4}/{i:03d}", PutSpec(etag=""))
            for delimiter in ["", "/"]:
                for max_keys in [1, 7, 1000]:
                    key_marker = ""
                    while True:  # versions and uploads page across shards like one shard
                        got_v = await sharded.list_object_versions(
                            "b", delimiter=delimiter, key_marker=key_marker, max_keys=max_keys)
                        want_v = await single.list_object_versions(
                            "b", delimiter=delimiter, key_marker=key_marker, max_keys=max_keys)
                        assert [v.key for v in got_v.versions] == [
                            v.key for v in want_v.versions]
                        assert got_v.common_prefixes == want_v.common_prefixes
                        assert (got_v.is_truncated, got_v.next_key_marker) == (
                            want_v.is_truncated, want_v.next_key_marker)
                        got_u = await sharded.list_multipart_uploads(
                            "b", delimiter=delimiter, key_marker=key_marker,
                            max_uploads=max_keys)
                        want_u = await single.list_multipart_uploads(
                            "b", delimiter=delimiter, key_marker=key_marker,
                            max_uploads=max_keys)
                        assert [u.key for u in got_u.uploads] == [u.key for u in want_u.uploads]
                        assert got_u.common_prefixes == want_u.common_prefixes
                        if not got_v.is_truncated:
                            break
                        key_marker = got_v.next_key_marker or ""
        finally:
            await sharded.close()
            await single.close()

    asyncio.run(main())


def test_bucket_config_documents(tmp_path: pathlib.Path) -> None:
    async def scenario(client: ShardedStorageClient) -> None:
        await client.create_bucket("b", "owner")
        assert await client.get_bucket_config("b", "cors") is None
        await client.put_bucket_config("b", "cors", b"<CORSConfiguration/>")
        await client.put_bucket_config("b", "tagging", b"{}")
        assert await client.get_bucket_config("b", "cors") == b"<CORSConfiguration/>"
        await client.put_bucket_config("b", "cors", None)
        assert await client.get_bucket_config("b", "cors") is None
        with pytest.raises(NoSuchBucket):
            await client.put_bucket_config("nope", "cors", b"x")
        # Deleting the bucket drops its documents: a new bucket of that name has none.
        await client.delete_bucket("b")
        await client.create_bucket("b", "owner")
        assert await client.get_bucket_config("b", "tagging") is None

    run(tmp_path, scenario)


def test_cached_bucket_configs_follow_every_change(tmp_path: pathlib.Path) -> None:
    """``get_bucket_config`` answers from its cache only while the bucket's configuration
    change counter stands still: a put, a removal, deleting the bucket (NoSuchBucket
    again) and re-creating it are each seen by the very next read."""

    async def scenario(client: ShardedStorageClient) -> None:
        await client.create_bucket("cfg", "owner")
        assert await client.get_bucket_config("cfg", "cors") is None
        await client.put_bucket_config("cfg", "cors", b"<one/>")
        assert await client.get_bucket_config("cfg", "cors") == b"<one/>"
        assert await client.get_bucket_config("cfg", "cors") == b"<one/>"  # cached
        await client.put_bucket_config("cfg", "cors", b"<two/>")
        assert await client.get_bucket_config("cfg", "cors") == b"<two/>"
        await client.put_bucket_config("cfg", "cors", None)
        assert await client.get_bucket_config("cfg", "cors") is None
        await client.put_bucket_config("cfg", "cors", b"<three/>")
        assert await client.get_bucket_config("cfg", "cors") == b"<three/>"
        await client.delete_bucket("cfg")
        with pytest.raises(NoSuchBucket):
            await client.get_bucket_config("cfg", "cors")
        await client.create_bucket("cfg", "owner")
        assert await client.get_bucket_config("cfg", "cors") is None

    run(tmp_path, scenario)


def test_deleting_a_non_empty_bucket_leaves_it_on_every_shard(tmp_path: pathlib.Path) -> None:
    """With several shards, a bucket whose objects live on one shard only must not be
    dropped from the others before that one refuses."""
    async def main() -> None:
        nodes = tuple(
            StorageNode.open(f"n{i}", tmp_path / f"n{i}", durable=False) for i in range(3)
        )
        view = View(epoch=1, shards=tuple((node.node_id,) for node in nodes))
        client = ShardedStorageClient(view, LocalTransport({n.node_id: n for n in nodes}), nodes)
        try:
            await client.create_bucket("b", "owner")
            key = next(f"k{i}" for i in range(100) if view.shard_for_object("b", f"k{i}") == 2)
            async with client.open_upload("b", key) as upload:
                await upload.write(b"x")
                await upload.commit(PutSpec(etag=hashlib.md5(b"x").hexdigest()))
            with pytest.raises(BucketNotEmpty):
                await client.delete_bucket("b")
            for node in nodes:  # still there on every shard
                assert (await node.get_bucket("b")).name == "b"
            await client.delete_object("b", key)
            await client.delete_bucket("b")
            for node in nodes:
                with pytest.raises(NoSuchBucket):
                    await node.get_bucket("b")
        finally:
            await client.close()

    asyncio.run(main())
