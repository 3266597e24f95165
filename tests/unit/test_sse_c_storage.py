"""SSE-C in storage: the customer key's record (``storage.api.CustomerKey``), the blob
cipher derived from it (``storage.engine.cipher``), and an engine on real LMDB that
encrypts with it, with or without a master key: nothing written is plaintext, the key
itself is never written, reads need the key (and only that key), ranges and multipart
segments decrypt at any offset, a pre-commit function's views are plaintext, and
``squall verify`` does not call an SSE-C body damaged."""

from __future__ import annotations

import base64
import hashlib
import os
import pathlib
from collections.abc import Iterator

import pytest

from storage.api import (
    CompletedPart,
    CustomerKey,
    CustomerKeyMismatch,
    CustomerKeyNotApplicable,
    CustomerKeyRequired,
    ObjectVersion,
    PartInfo,
    PutSpec,
    check_customer_key,
    limits,
)
from storage.engine import StagedTail, operations
from storage.engine.cipher import ChunkCipher
from storage.engine.staged import StagedBody
from storage.engine.verify import verify
from tests.unit.test_encryption_at_rest import KEY as MASTER_KEY
from tests.unit.test_encryption_at_rest import (
    MARKER,
    EncryptedStore,
    body_with_markers,
    files_contain,
)

CHUNK = limits.chunk_size_bytes
CUSTOMER = CustomerKey.of(bytes(range(100, 132)))
OTHER = CustomerKey.of(bytes(range(200, 232)))


# --- the key and its record --------------------------------------------------------------


def test_the_md5_is_aws_s() -> None:
    raw = os.urandom(32)
    assert CustomerKey.of(raw).key_md5 == base64.b64encode(hashlib.md5(raw).digest()).decode()


def test_a_record_opens_with_its_key_only_and_never_holds_it() -> None:
    record = CUSTOMER.new_record()
    assert CUSTOMER.opens(record) and not OTHER.opens(record)
    assert record.key_md5 == CUSTOMER.key_md5
    assert CUSTOMER.key not in record.salt + record.verifier
    again = CUSTOMER.new_record()
    assert again.salt != record.salt and again.verifier != record.verifier  # salted
    assert CUSTOMER.opens(again)
    assert CUSTOMER.key.hex() not in repr(CUSTOMER) and str(CUSTOMER.key) not in repr(CUSTOMER)
    with pytest.raises(AssertionError):
        CustomerKey(b"short", "md5")


def test_check_customer_key() -> None:
    record = CUSTOMER.new_record()
    check_customer_key(None, None)
    check_customer_key(record, CUSTOMER)
    with pytest.raises(CustomerKeyRequired):
        check_customer_key(record, None)
    with pytest.raises(CustomerKeyMismatch):
        check_customer_key(record, OTHER)
    with pytest.raises(CustomerKeyNotApplicable):
        check_customer_key(None, CUSTOMER)


def test_the_etag_is_keyed_not_the_plaintext_md5() -> None:
    record, md5 = CUSTOMER.new_record(), hashlib.md5(b"body").digest()
    etag = CUSTOMER.etag(record, md5)
    assert len(etag) == 32 and int(etag, 16) >= 0 and etag != md5.hex()
    assert CUSTOMER.etag(record, md5) == etag  # a part's ETag at Complete is the same
    assert CUSTOMER.etag(CUSTOMER.new_record(), md5) != etag  # another object: unlinkable
    assert OTHER.etag(record, md5) != etag


def test_the_customer_cipher_is_not_the_master_scheme_of_the_same_bytes() -> None:
    """Blob keys are derived from the customer key and the blob id, with a label of
    their own: the same 32 bytes as a master key give other key streams."""
    blob, zeros = os.urandom(16), bytes(64)
    customer = ChunkCipher.for_customer_key(CUSTOMER.key)
    streams = {customer.apply(blob, 0, zeros), customer.apply(os.urandom(16), 0, zeros),
               ChunkCipher(CUSTOMER.key).apply(blob, 0, zeros),
               ChunkCipher.for_customer_key(OTHER.key).apply(blob, 0, zeros)}
    assert len(streams) == 4
    data = os.urandom(5000)
    sealed = customer.apply(blob, 2, data)
    assert customer.apply(blob, 2, sealed[17:4001], 17) == data[17:4001]


# --- an engine writing SSE-C objects -------------------------------------------------------


@pytest.fixture(params=["no master key", "master key"])
def store(request: pytest.FixtureRequest, tmp_path: pathlib.Path) -> Iterator[EncryptedStore]:
    made = EncryptedStore(tmp_path, key=None if request.param == "no master key" else MASTER_KEY)
    made.create_bucket()
    try:
        yield made
    finally:
        made.close()


def put_sealed(store: EncryptedStore, key: str, body: bytes,
               customer_key: CustomerKey = CUSTOMER) -> ObjectVersion:
    """What the client does for an SSE-C PutObject: stage every full chunk with the key,
    commit the tail with it and a record of it."""
    chunk_count = -(-len(body) // CHUNK)
    blob_id = store.engine.new_blob_id() if chunk_count > 1 else None
    for index in range(chunk_count - 1):
        assert blob_id is not None
        store.write(operations.stage_chunk(blob_id, index, body[index * CHUNK:(index + 1) * CHUNK],
                                           customer_key))
    record = customer_key.new_record()
    tail = None
    if chunk_count:
        tail = StagedTail(chunk_count - 1, body[(chunk_count - 1) * CHUNK:])
    return store.write(operations.commit_version(
        "b", key, blob_id=blob_id, size_bytes=len(body),
        spec=PutSpec(etag=customer_key.etag(record, hashlib.md5(body).digest()),
                     customer_key=record),
        tail=tail, customer_key=customer_key))


def read(store: EncryptedStore, version: ObjectVersion, start: int = 0, end: int | None = None,
         customer_key: CustomerKey | None = CUSTOMER) -> bytes:
    reader = store.engine.open_body(version, start, end, customer_key)
    try:
        return b"".join(bytes(piece) for piece in reader)
    finally:
        reader.close()


def test_an_sse_c_body_is_encrypted_with_the_customer_key_and_read_only_with_it(
        store: EncryptedStore, tmp_path: pathlib.Path) -> None:
    body = body_with_markers(2 * CHUNK + 4321)
    version = put_sealed(store, "sealed", body)
    store.engine.env.sync(True)
    assert not files_contain(tmp_path, MARKER)
    assert not files_contain(tmp_path, CUSTOMER.key)  # the key is never written
    assert version.customer_key is not None and CUSTOMER.opens(version.customer_key)
    assert version.etag != hashlib.md5(body).hexdigest()
    assert read(store, version) == body
    for start, end in ((0, 1), (1, 17), (CHUNK - 5, CHUNK + 11), (2 * CHUNK + 1, len(body))):
        assert read(store, version, start, end) == body[start:end]
    with pytest.raises(CustomerKeyRequired):
        read(store, version, customer_key=None)
    with pytest.raises(CustomerKeyMismatch):
        read(store, version, customer_key=OTHER)
    plain = store.put("b", "plain", b"not sealed")
    with pytest.raises(CustomerKeyNotApplicable):
        read(store, plain)
    assert read(store, plain, customer_key=None) == b"not sealed"


def test_with_a_master_key_the_customer_key_alone_encrypts(tmp_path: pathlib.Path) -> None:
    """Not both: the stored chunk is the customer cipher's output, not the master's."""
    store = EncryptedStore(tmp_path, key=MASTER_KEY)
    try:
        store.create_bucket()
        body = os.urandom(1000)
        put_sealed(store, "k", body)
        with store.engine.env.begin(buffers=True) as txn:
            [(chunk_key, stored)] = [(bytes(k), bytes(v))
                                     for k, v in txn.cursor(db=store.engine.chunks)]
        blob_id = chunk_key[:16]
        assert ChunkCipher.for_customer_key(CUSTOMER.key).apply(blob_id, 0, stored) == body
        assert ChunkCipher(MASTER_KEY).apply(blob_id, 0, stored) != body
    finally:
        store.close()


def test_a_small_sse_c_get_gets_no_inline_body(store: EncryptedStore) -> None:
    """It could not be decrypted without the key, which a metadata read does not take."""
    put_sealed(store, "small", b"tiny secret")
    latest = store.engine.get_version("b", "small", inline_body_bytes_max=CHUNK)
    assert latest.inline_body is None and latest.customer_key is not None
    by_id = store.engine.get_version("b", "small", version_id=latest.version_id,
                                     inline_body_bytes_max=CHUNK)
    assert by_id.inline_body is None and by_id.customer_key == latest.customer_key
    assert read(store, latest) == b"tiny secret"


def test_a_commit_checks_its_key_against_the_record_it_stores(store: EncryptedStore) -> None:
    record = CUSTOMER.new_record()
    for spec_record, key, error in ((record, OTHER, CustomerKeyMismatch),
                                    (record, None, CustomerKeyRequired),
                                    (None, CUSTOMER, CustomerKeyNotApplicable)):
        with pytest.raises(error):
            store.write(operations.commit_version(
                "b", "k", blob_id=None, size_bytes=3, spec=PutSpec(etag="e",
                                                                   customer_key=spec_record),
                tail=StagedTail(0, b"abc"), customer_key=key))
    assert store.engine.entry_counts()["versions"] == 0
    assert store.engine.entry_counts()["chunks"] == 0  # the child transaction wrote nothing


def test_a_function_reads_an_sse_c_staged_body_in_plaintext(store: EncryptedStore) -> None:
    body = body_with_markers(CHUNK + 77)
    blob_id = store.engine.new_blob_id()
    store.write(operations.stage_chunk(blob_id, 0, body[:CHUNK], CUSTOMER))
    with StagedBody(store.engine, [(blob_id, 1)], body[CHUNK:], CUSTOMER) as staged:
        assert b"".join(bytes(view) for view in staged.views) == body
    store.write(operations.abort_upload(blob_id))


# --- multipart ----------------------------------------------------------------------------


def upload_sealed_part(store: EncryptedStore, upload_id: str, number: int, body: bytes,
                       key: CustomerKey | None, etag: str) -> PartInfo:
    blob_id = store.engine.new_blob_id()
    full = len(body) // CHUNK if len(body) % CHUNK else len(body) // CHUNK - 1
    for index in range(full):
        store.write(operations.stage_chunk(blob_id, index, body[index * CHUNK:(index + 1) * CHUNK],
                                           key))
    return store.write(operations.commit_part(
        "b", "mp", upload_id, number, blob_id=blob_id, size_bytes=len(body), etag=etag,
        checksum="", tail=StagedTail(full, body[full * CHUNK:]), customer_key=key))


def test_an_sse_c_upload_takes_parts_with_its_key_only(store: EncryptedStore,
                                                       tmp_path: pathlib.Path) -> None:
    record = CUSTOMER.new_record()
    upload_id = store.create_upload("b", "mp", PutSpec(etag="", customer_key=record))
    parts = [body_with_markers(limits.part_size_bytes_min + 3), body_with_markers(999)]
    infos = []
    for number, body in enumerate(parts, start=1):
        etag = CUSTOMER.etag(record, hashlib.md5(body).digest())
        infos.append(upload_sealed_part(store, upload_id, number, body, CUSTOMER, etag))
    for key, error in ((OTHER, CustomerKeyMismatch), (None, CustomerKeyRequired)):
        with pytest.raises(error):
            upload_sealed_part(store, upload_id, 3, b"wrong", key, "0" * 32)
    with pytest.raises(CustomerKeyMismatch):  # Complete needs no key, but not a wrong one
        store.write(operations.complete_multipart_upload(
            "b", "mp", upload_id, [CompletedPart(1, infos[0].etag)], etag="e-1",
            checksums={}, customer_key=OTHER))
    version = store.write(operations.complete_multipart_upload(
        "b", "mp", upload_id, [CompletedPart(n, i.etag) for n, i in enumerate(infos, 1)],
        etag="e-2", checksums={}))
    assert version.customer_key == record
    store.engine.env.sync(True)
    assert not files_contain(tmp_path, MARKER)
    whole = b"".join(parts)
    assert read(store, version) == whole
    boundary = len(parts[0])
    assert read(store, version, boundary - 9, boundary + 9) == whole[boundary - 9:boundary + 9]
    with pytest.raises(CustomerKeyRequired):
        read(store, version, customer_key=None)
    # Parts committed with a wrong key were refused whole: their staged chunks remain
    # only until the client aborts them, as for any failed commit.
    assert store.engine.entry_counts()["parts"] == 0


def test_a_plain_upload_refuses_a_keyed_part(store: EncryptedStore) -> None:
    upload_id = store.create_upload("b", "mp")
    with pytest.raises(CustomerKeyNotApplicable):
        upload_sealed_part(store, upload_id, 1, b"x", CUSTOMER, "0" * 32)


# --- squall verify -------------------------------------------------------------------------


@pytest.mark.parametrize("master", [None, MASTER_KEY])
def test_verify_checks_sse_c_bodies_by_size_and_calls_them_healthy(
        tmp_path: pathlib.Path, master: bytes | None) -> None:
    store = EncryptedStore(tmp_path, key=master)
    try:
        store.create_bucket()
        put_sealed(store, "sealed", os.urandom(CHUNK + 5))
        store.put("b", "plain", b"plain body")
    finally:
        store.close()
    report = verify(tmp_path, None if master is None else ChunkCipher(master))
    assert report.problems == []
    assert report.customer_key_bodies == 1
    assert report.bodies_hashed == 1  # the plain body only


# --- a model object stored with SSE-C ----------------------------------------------------------


def test_a_model_object_stored_with_sse_c_is_a_clear_error(tmp_path: pathlib.Path) -> None:
    """The server never has the key, so a tensorflow function whose model (or labels)
    is an SSE-C object cannot load it: InvalidArgument naming the object and why, before
    any read, at registration (``resolve``) and at load (a write it judges is then
    refused with that message, not a crash)."""
    import asyncio

    from storage.api import InvalidArgument
    from storage.client import open_embedded
    from triggers.config import ObjectRef
    from triggers.models import ModelCache, resolve

    async def scenario() -> str:
        storage = await open_embedded(tmp_path, durable=False, lifecycle=None)
        try:
            await storage.create_bucket("models", "owner")
            record = CUSTOMER.new_record()
            async with storage.open_upload("models", "m.keras", CUSTOMER) as upload:
                await upload.write(b"not really a model")
                await upload.commit(PutSpec(etag="0" * 32, customer_key=record))
            with pytest.raises(InvalidArgument) as raised:
                await ModelCache(storage).get(ObjectRef("models", "m.keras"))
            with pytest.raises(InvalidArgument, match="SSE-C"):  # what registration checks
                await resolve(storage, ObjectRef("models", "m.keras"))
            return str(raised.value)
        finally:
            await storage.close()

    message = asyncio.run(scenario())
    assert "s3://models/m.keras" in message and "customer-provided key (SSE-C)" in message
