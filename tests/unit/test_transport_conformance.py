"""One suite, every transport: the client's behaviours over ``local``, ``tcp`` and ``rdma``.

Each test runs the same ``ShardedStorageClient`` scenario over every transport kind
(``transport_harness.open_store``: ``tcp`` twice, on asyncio's own loop and on uvloop);
``rdma`` skips where it cannot run, with the reason.
What may differ between transports, and only this: a stream that a node refuses
(Overloaded, NoSuchVersion) is refused by ``read_body`` itself in-process, and on its
first step over a network; either way before any byte. The tests accept both.
"""

from __future__ import annotations

import asyncio
import gc
import hashlib
import pathlib
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest

from storage import limits
from storage.api import (
    BucketAlreadyOwnedByYou,
    BucketNotEmpty,
    EntityTooSmall,
    InvalidArgument,
    InvalidPart,
    InvalidPartOrder,
    NoSuchBucket,
    NoSuchKey,
    NoSuchUpload,
    NoSuchVersion,
    Overloaded,
    PreconditionFailed,
    PutSpec,
    StorageClient,
    Verdict,
    WriteConditions,
    WriteDiscarded,
    WriteEvent,
    WriteRejected,
)
from tests.unit.transport_harness import (
    CUSTOMER_KEY,
    CUSTOMER_KEY_KINDS,
    TRANSPORT_KINDS,
    Store,
    deep_equal,
    eventually,
    exercise_customer_keys,
    exercise_every_operation,
    first_piece,
    open_store,
    put_object,
    read_all,
    run_async,
    run_over,
    skip_if_unavailable,
)

CHUNK = limits.chunk_size_bytes


@pytest.fixture(params=TRANSPORT_KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    skip_if_unavailable(request.param)
    return str(request.param)


def test_every_operation(kind: str, tmp_path: pathlib.Path) -> None:
    run_over(kind, tmp_path, exercise_every_operation)


def test_customer_keys_travel_only_over_encrypted_links(
    kind: str, tmp_path: pathlib.Path
) -> None:
    """SSE-C works in-process and over TLS; a plain network link refuses to carry the key
    (InvalidArgument, before anything is sent) and stores nothing."""
    if kind in CUSTOMER_KEY_KINDS:
        run_over(kind, tmp_path, exercise_customer_keys)
        return

    async def scenario(store: Store) -> None:
        client = store.client
        await client.create_bucket("sse", "owner")
        with pytest.raises(InvalidArgument, match="unencrypted connection"):
            async with client.open_upload("sse", "k", CUSTOMER_KEY) as upload:
                await upload.write(b"s" * (CHUNK + 1))
                await upload.commit(PutSpec(etag="e", customer_key=CUSTOMER_KEY.new_record()))
        counts = store.nodes[0].engine.entry_counts()
        assert (counts["staging"], counts["chunks"], counts["versions"]) == (0, 0, 0)
        version = await put_object(client, "sse", "plain", b"plain")
        with pytest.raises(InvalidArgument, match="unencrypted connection"):
            await first_piece(lambda: client.read_body(version, customer_key=CUSTOMER_KEY))

    run_over(kind, tmp_path, scenario)


def test_every_operation_over_three_shards(kind: str, tmp_path: pathlib.Path) -> None:
    run_over(kind, tmp_path, exercise_every_operation, shards=3)


def test_put_get_range_list_delete(kind: str, tmp_path: pathlib.Path) -> None:
    async def scenario(store: Store) -> None:
        client = store.client
        await client.create_bucket("b", "owner")
        body = bytes(range(256)) * (CHUNK // 100)  # a bit over 2.5 chunks
        written = await put_object(client, "b", "dir/obj", body)
        assert written.size_bytes == len(body) and written.s3_version_id == "null"
        version = await client.get_version("b", "dir/obj")
        assert version.etag == hashlib.md5(body).hexdigest()
        assert await read_all(client, version) == body
        assert await read_all(client, version, CHUNK - 10, CHUNK + 10) == body[
            CHUNK - 10:CHUNK + 10]
        assert await read_all(client, version, len(body) - 1) == body[-1:]
        page = await client.list_objects("b", delimiter="/")
        assert page.common_prefixes == ("dir/",)
        await client.delete_object("b", "dir/obj")
        with pytest.raises(NoSuchKey):
            await client.get_version("b", "dir/obj")
        await client.delete_bucket("b")
        assert await client.list_buckets("owner") == []

    run_over(kind, tmp_path, scenario)


def test_large_bodies_in_many_chunks(kind: str, tmp_path: pathlib.Path) -> None:
    async def scenario(store: Store) -> None:
        client = store.client
        await client.create_bucket("b", "owner")
        body = hashlib.sha256(b"seed").digest() * ((16 * CHUNK + 12345) // 32)
        for piece_bytes in (CHUNK, 3 * CHUNK + 7):  # chunk-aligned, and bytes by reference
            written = await put_object(client, "b", f"big{piece_bytes}", body, piece_bytes)
            pieces = [bytes(p) async for p in client.read_body(written)]
            assert b"".join(pieces) == body
            assert len(pieces) == -(-len(body) // CHUNK)  # chunk by chunk
            assert max(len(p) for p in pieces) == CHUNK
        async with client.open_upload("b", "bytes") as upload:  # immutable input, by reference
            await upload.write(b"x")
            await upload.write(body[1:])
            version = await upload.commit(PutSpec(etag="e"))
        assert await read_all(client, version) == b"x" + body[1:]

    run_over(kind, tmp_path, scenario)


def test_leaving_without_commit_frees_staged_chunks(kind: str, tmp_path: pathlib.Path) -> None:
    async def scenario(store: Store) -> None:
        client = store.client
        await client.create_bucket("b", "owner")
        with pytest.raises(RuntimeError):
            async with client.open_upload("b", "k") as upload:
                await upload.write(b"s" * (3 * CHUNK))
                raise RuntimeError("client went away")
        counts = store.nodes[0].engine.entry_counts()
        assert (counts["staging"], counts["chunks"]) == (0, 0)
        await put_object(client, "b", "first", b"first")
        async with client.open_upload("b", "first") as upload:
            await upload.write(b"s" * (2 * CHUNK + 1))
            with pytest.raises(PreconditionFailed):
                await upload.commit(PutSpec(etag="e"), WriteConditions(if_none_match_any=True))
        counts = store.nodes[0].engine.entry_counts()
        assert (counts["staging"], counts["chunks"], counts["versions"]) == (0, 1, 1)

    run_over(kind, tmp_path, scenario)


def test_versioning(kind: str, tmp_path: pathlib.Path) -> None:
    async def scenario(store: Store) -> None:
        client = store.client
        await client.create_bucket("b", "owner")
        await client.set_bucket_versioning("b", "Enabled")
        first = await put_object(client, "b", "k", b"one")
        await put_object(client, "b", "k", b"two")
        assert (await client.delete_object("b", "k")).delete_marker
        assert (await client.get_version("b", "k")).is_delete_marker
        old = await client.get_version("b", "k", version_id=first.version_id)
        assert await read_all(client, old) == b"one"
        as_of = await client.get_version("b", "k", as_of_ms=first.last_modified_ms)
        assert as_of.last_modified_ms == first.last_modified_ms  # (versions may share a ms)
        versions = await client.list_object_versions("b")
        assert [v.is_delete_marker for v in versions.versions] == [True, False, False]

    run_over(kind, tmp_path, scenario)


async def _failures(client: StorageClient) -> list[tuple[type[BaseException], str]]:
    """Each of these calls fails: (type, message) of each failure, in order."""
    await client.create_bucket("b", "owner")
    version = await put_object(client, "b", "k", b"v")  # type: ignore[arg-type]
    upload = await client.create_multipart_upload("b", "mp", PutSpec(etag=""))
    for number in (1, 2):
        async with client.upload_part("b", "mp", upload.upload_id, number) as part:
            await part.write(b"p" * 10)
            await part.commit("e")
    calls = [
        lambda: client.get_bucket("nope"),
        lambda: client.create_bucket("b", "owner"),
        lambda: client.create_bucket("b", "someone-else"),
        lambda: client.delete_bucket("b"),
        lambda: client.get_version("b", "missing"),
        lambda: client.get_version("b", "k", version_id="0000000000000001"),
        lambda: client.get_version("nope", "k"),
        lambda: client.set_bucket_versioning("b", "Sideways"),
        lambda: client.replace_tags("b", "k", "0000000000000001", {}),
        lambda: client.list_parts("b", "mp", "no-such-upload"),
        lambda: client.complete_multipart_upload("b", "mp", upload.upload_id, [], "e"),
        lambda: client.complete_multipart_upload(
            "b", "mp", upload.upload_id, [_part(2), _part(1)], "e"),
        lambda: client.complete_multipart_upload(
            "b", "mp", upload.upload_id, [_part(1, "wrong")], "e"),
        lambda: client.complete_multipart_upload(
            "b", "mp", upload.upload_id, [_part(1), _part(2)], "e"),
        lambda: client.update_object_lock("b", "k", version.version_id, _lock_update()),
        lambda: client.put_bucket_config("nope", "cors", b"x"),
    ]
    failures = []
    for call in calls:
        try:
            await call()
        except Exception as error:  # noqa: BLE001  collected and compared below
            failures.append((type(error), str(error)))
        else:
            failures.append((type(None), "no error"))
    return failures


def _part(number: int, etag: str = "e") -> Any:
    from storage.api import CompletedPart

    return CompletedPart(number, etag)


def _lock_update() -> Any:
    from storage.api import ObjectLockUpdate

    return ObjectLockUpdate(legal_hold=True)


def test_typed_errors_arrive_as_the_same_class_and_message(
    kind: str, tmp_path: pathlib.Path
) -> None:
    """Each failing call fails over ``kind`` exactly as in-process: class and message."""
    results: dict[str, list[tuple[type[BaseException], str]]] = {}

    async def main() -> None:
        for index, name in enumerate(("local", kind)):
            async with open_store(name, tmp_path / f"{index}-{name}") as store:
                results[name if index == 0 else "other"] = await _failures(store.client)

    run_async(kind, main)
    expected_types = [NoSuchBucket, BucketAlreadyOwnedByYou, Exception, BucketNotEmpty,
                      NoSuchKey, NoSuchVersion, NoSuchBucket, InvalidArgument, NoSuchVersion,
                      NoSuchUpload, Exception, InvalidPartOrder, InvalidPart, EntityTooSmall,
                      Exception, NoSuchBucket]
    local = results["local"]
    assert all(issubclass(got, want)
               for (got, _), want in zip(local, expected_types, strict=True)), local
    assert all(got is not type(None) for got, _ in local), local
    assert results["other"] == local


class VerdictHook:
    """A pre-commit hook by key prefix: reject/, discard/ and annotate/ are judged."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []

    async def start(self, storage: StorageClient) -> None:
        """Nothing to read."""

    async def bindings(self, bucket: str, key: str, event_name: str) -> Sequence[str]:
        return ("judge",) if key.split("/")[0] in ("reject", "discard", "annotate") else ()

    async def judge(self, event: WriteEvent, functions: Sequence[str]) -> Verdict:
        self.bodies.append(bytes(event.body_view()))
        summary = {"steps": [{"function": "judge", "score": 0.25}], "final": True}
        action = {"reject": "reject", "discard": "discard"}.get(event.key.split("/")[0],
                                                                 "store")
        return Verdict("judge", action=action, label="blue", score=0.25, model_version="m1",
                       reason="too blue" if action == "reject" else "",
                       annotations={"squall-label": "blue"}, store_annotations=True,
                       tag_annotations=True, summary=summary)

    async def close(self) -> None:
        """Nothing to release."""


def test_pre_commit_verdicts_and_their_errors(kind: str, tmp_path: pathlib.Path) -> None:
    hook = VerdictHook()

    async def scenario(store: Store) -> None:
        client = store.client
        await client.create_bucket("b", "owner")
        body = b"r" * (CHUNK + 10)
        with pytest.raises(WriteRejected) as rejected:
            await put_object(client, "b", "reject/x", body)
        assert rejected.value.verdict.action == "reject"
        assert rejected.value.verdict.summary["steps"][0]["score"] == 0.25
        assert str(rejected.value) == "too blue"
        with pytest.raises(WriteDiscarded) as discarded:
            await put_object(client, "b", "discard/x", b"d")
        assert discarded.value.verdict.label == "blue"
        assert "discarded" in str(discarded.value)
        stored = await put_object(client, "b", "annotate/x", b"a")
        assert stored.verdict is not None and stored.verdict.annotations == {
            "squall-label": "blue"}
        assert stored.user_metadata["squall-label"] == "blue"
        assert hook.bodies == [body, b"d", b"a"]
        counts = store.nodes[0].engine.entry_counts()
        assert (counts["staging"], counts["versions"]) == (0, 1)

    run_over(kind, tmp_path, scenario, pre_commit_hook=hook)


def test_too_many_open_streams_is_overloaded(
    kind: str, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(limits, "read_streams_max", 2)

    async def scenario(store: Store) -> None:
        client, node = store.client, store.nodes[0]
        await client.create_bucket("b", "owner")
        # Longer than a stream's window: a network node cannot finish it ahead of its
        # reader (and give its slot back early, which it does for short bodies).
        size = (limits.transport_stream_window_pieces + 4) * CHUNK
        version = await put_object(client, "b", "k", b"x" * size)
        streams = [client.read_body(version) for _ in range(2)]
        for stream in streams:
            assert len(await anext(stream)) == CHUNK
        with pytest.raises(Overloaded):
            await first_piece(lambda: client.read_body(version))
        await streams[0].aclose()
        await eventually(lambda: node.open_stream_count == 1)
        again = client.read_body(version)
        assert b"".join([bytes(p) async for p in again]) == b"x" * size
        await eventually(lambda: node.open_stream_count == 1)  # exhausted: released
        client.read_body(version)  # left unopened/unclosed: closing must still clean up

    run_over(kind, tmp_path, scenario)


def test_closing_a_stream_early_gives_its_slot_back(kind: str, tmp_path: pathlib.Path) -> None:
    async def scenario(store: Store) -> None:
        client, node = store.client, store.nodes[0]
        await client.create_bucket("b", "owner")
        version = await put_object(client, "b", "k", b"y" * (10 * CHUNK))
        for _ in range(3):
            stream = client.read_body(version)
            assert bytes(await anext(stream)) == b"y" * CHUNK
            assert node.open_stream_count == 1
            await stream.aclose()
            await eventually(lambda: node.open_stream_count == 0)
        # Dropped without aclose: collected, and the slot still comes back.
        stream = client.read_body(version)
        await anext(stream)
        del stream
        gc.collect()
        await eventually(lambda: node.open_stream_count == 0)
        # A snapshot closed early lets the next one start.
        snapshot = client.snapshot(0)
        await anext(snapshot)
        with pytest.raises(Overloaded):
            await first_piece(lambda: client.snapshot(0))
        await snapshot.aclose()
        await eventually(lambda: node._snapshots == 0)
        assert len(await first_piece(lambda: client.snapshot(0))) > 0

    run_over(kind, tmp_path, scenario)


def test_a_refused_stream_fails_before_any_byte(kind: str, tmp_path: pathlib.Path) -> None:
    async def scenario(store: Store) -> None:
        client = store.client
        await client.create_bucket("b", "owner")
        old = await put_object(client, "b", "k", b"old")
        await put_object(client, "b", "k", b"new")
        with pytest.raises(NoSuchVersion):
            await first_piece(lambda: client.read_body(old))
        current = await client.get_version("b", "k")
        with pytest.raises(InvalidArgument):
            await first_piece(lambda: client.read_body(current, 2, 1))
        assert await read_all(client, current) == b"new"

    run_over(kind, tmp_path, scenario)


def test_concurrent_calls_and_streams(kind: str, tmp_path: pathlib.Path) -> None:
    async def scenario(store: Store) -> None:
        client = store.client
        await client.create_bucket("b", "owner")
        bodies = {f"k{i:03d}": bytes([i % 251]) * (i * 997 % (2 * CHUNK + 1)) for i in range(60)}

        async def put_then_read(key: str) -> bytes:
            written = await put_object(client, "b", key, bodies[key], 100_000)
            version = await client.get_version("b", key)
            assert version.version_id == written.version_id
            return await read_all(client, version)

        got = await asyncio.gather(*(put_then_read(key) for key in bodies),
                                   *(client.list_objects("b") for _ in range(10)))
        assert got[:len(bodies)] == list(bodies.values())
        page = await client.list_objects("b")
        assert [o.key for o in page.objects] == sorted(bodies)
        versions = await asyncio.gather(*(client.get_version("b", k) for k in bodies))
        streams = [client.read_body(v) for v in versions]  # many streams at once
        read = await asyncio.gather(*(_join(s) for s in streams))
        assert read == list(bodies.values())

    run_over(kind, tmp_path, scenario)


async def _join(stream: AsyncIterator[Any]) -> bytes:
    return b"".join([bytes(piece) async for piece in stream])


def test_three_shards_route_and_list_like_one(kind: str, tmp_path: pathlib.Path) -> None:
    async def scenario(store: Store) -> None:
        client = store.client
        await client.create_bucket("b", "owner")
        keys = [f"{i % 4}/{i:03d}" for i in range(40)]
        for key in keys:
            await put_object(client, "b", key, key.encode())
        per_node = [len(node.engine.list_objects("b").objects) for node in store.nodes]
        assert sum(per_node) == 40 and max(per_node) < 40
        marker, listed = "", []
        while True:
            page = await client.list_objects("b", start_after=marker, max_keys=7)
            listed += [o.key for o in page.objects]
            if not page.is_truncated:
                break
            marker = page.next_marker or ""
        assert listed == sorted(keys)
        for key in keys[:5]:
            assert await read_all(client, await client.get_version("b", key)) == key.encode()

    run_over(kind, tmp_path, scenario, shards=3)


def test_bucket_config_documents(kind: str, tmp_path: pathlib.Path) -> None:
    async def scenario(store: Store) -> None:
        client = store.client
        await client.create_bucket("b", "owner")
        assert await client.get_bucket_config("b", "cors") is None
        document = b"<CORSConfiguration>" + b"x" * 100_000 + b"</CORSConfiguration>"
        await client.put_bucket_config("b", "cors", document)
        assert await client.get_bucket_config("b", "cors") == document
        await client.put_bucket_config("b", "cors", None)
        assert await client.get_bucket_config("b", "cors") is None
        with pytest.raises(NoSuchBucket):
            await client.put_bucket_config("nope", "cors", b"x")

    run_over(kind, tmp_path, scenario)


def test_results_are_deep_equal_to_in_process(kind: str, tmp_path: pathlib.Path) -> None:
    """The same records, with the same types, as the in-process transport returns."""

    async def main() -> None:
        async with open_store(kind, tmp_path / "k") as store:
            client = store.client
            await client.create_bucket("b", "owner")
            written = await put_object(client, "b", "k", b"body", tags={"a": "1"},
                                       user_metadata={"m": "v"})
            version = await client.get_version("b", "k", inline_body_bytes_max=100)
            page = await client.list_objects("b")
            direct = store.nodes[0]
            assert deep_equal(written, dataclasses_replace_none(
                await direct.get_version("b", "k"), written))
            assert deep_equal(version, await direct.get_version("b", "k",
                                                                 inline_body_bytes_max=100))
            assert deep_equal(page, await direct.list_objects("b"))
            assert deep_equal(await client.list_buckets("owner"),
                              await direct.list_buckets("owner"))

    run_async(kind, main)


def dataclasses_replace_none(version: Any, like: Any) -> Any:
    """``version`` with the get-only fields as a commit returns them (unset)."""
    import dataclasses

    return dataclasses.replace(version, bucket_versioning=like.bucket_versioning,
                               inline_body=like.inline_body)
