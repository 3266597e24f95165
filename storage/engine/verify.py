"""Check a store's object data against its version records (``squall verify``).

Rules and theory of operation:

* Read-only and beside a serving process (as ``backup``): the store is opened read-only
  and read in ONE read transaction, so the check sees one consistent state while
  writers go on.
* For every version of every bucket (delete markers aside): each chunk of its body's
  blob(s) is there and has the size the body's size implies (every chunk full but a
  blob's last), so the body reads back whole. A multipart body is checked segment by
  segment (one blob per part).
* For a single-blob body whose ETag is an MD5 (32 hex digits), the MD5 of the body read
  back must be the ETag: the bytes are the ones that were written. A multipart ETag is
  an MD5 of the parts' MD5s, which the record does not keep, so a multipart body gets
  the size checks only. In an encrypted store the MD5 needs the key (the chunks are
  decrypted first); without it only sizes are checked, and the report says so. An SSE-C
  body (encrypted with a customer's key, which the store never keeps) gets the size
  checks only, whatever key is given; its ETag is not an MD5 of its bytes anyway.
* Problems are collected, never repaired: each names the bucket, key and version.
"""

from __future__ import annotations

import hashlib
import pathlib
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import lmdb

from storage.api import StorageError, limits
from storage.engine import keys
from storage.engine.backup import DATA_FILE, PROGRESS_INTERVAL_S, open_read_only
from storage.engine.cipher import ChunkCipher
from storage.engine.records import VersionRecord, unpack_version
from storage.engine.store import META_ENCRYPTION_KEY_ID, SUB_DATABASES

_MD5_ETAG = re.compile(r"^[0-9a-f]{32}$")

# (versions checked, body bytes checked)
Progress = Callable[[int, int], None]


class VerifyError(StorageError):
    """The store could not be checked (the message says why)."""


@dataclass
class VerifyReport:
    versions: int = 0
    bodies_hashed: int = 0  # single-blob bodies whose MD5 was compared with the ETag
    # SSE-C bodies: sizes checked, MD5 not (the customer's key is not in the store).
    customer_key_bodies: int = 0
    bytes_checked: int = 0
    problems: list[str] = field(default_factory=list)
    # Why MD5s were not compared ('' when they were): an encrypted store without its key.
    md5_skipped: str = ""


def verify(data_dir: pathlib.Path, cipher: ChunkCipher | None = None,
           progress: Progress | None = None) -> VerifyReport:
    if not (data_dir / DATA_FILE).is_file():
        raise VerifyError(f"{data_dir} holds no store ({DATA_FILE} not found)")
    try:
        env = open_read_only(data_dir)
    except lmdb.Error as error:
        raise VerifyError(f"cannot open the store in {data_dir}: {error}") from None
    report = VerifyReport()
    with env:
        dbs = {name.decode(): env.open_db(name, create=False) for name in SUB_DATABASES}
        with env.begin(buffers=True) as txn:
            key_id = bytes(txn.get(META_ENCRYPTION_KEY_ID, db=dbs["meta"]) or b"").decode()
            if key_id and cipher is None:
                report.md5_skipped = (f"the store is encrypted (key id {key_id}) and no key "
                                      "was given: sizes only")
            elif key_id and cipher is not None and cipher.key_id != key_id:
                raise VerifyError(f"the store is encrypted with key id {key_id}, not with the "
                                  f"given key (id {cipher.key_id})")
            reader = _Reader(txn, dbs["chunks"], cipher if key_id else None,
                             hash_bodies=not report.md5_skipped)
            reported_at = 0.0
            buckets = [bytes(name) for name, _ in txn.cursor(db=dbs["buckets"])]
            for bucket_raw in buckets:
                cursor = txn.cursor(db=dbs["versions"])
                scope = keys.bucket_prefix(bucket_raw)
                if not cursor.set_range(scope):
                    continue
                for key_raw, hlc, packed in keys.iterate_versions(cursor, bucket_raw, scope):
                    record = unpack_version(hlc, packed)
                    if record.is_delete_marker:
                        continue
                    report.versions += 1
                    where = (f"{bucket_raw.decode(errors='replace')}/"
                             f"{key_raw.decode(errors='replace')} (version {record.version_id})")
                    _check_version(reader, record, where, report)
                    now = time.monotonic()
                    if progress is not None and now - reported_at >= PROGRESS_INTERVAL_S:
                        progress(report.versions, report.bytes_checked)
                        reported_at = now
    if progress is not None:
        progress(report.versions, report.bytes_checked)
    return report


class _Reader:
    def __init__(self, txn: lmdb.Transaction, chunks: lmdb._Database,
                 cipher: ChunkCipher | None, hash_bodies: bool) -> None:
        self.txn, self.chunks, self.cipher, self.hash_bodies = txn, chunks, cipher, hash_bodies

    def blob(self, blob_id: bytes, size: int, digest: hashlib._Hash | None) -> str:
        """'' when the blob's chunks are all there with the right sizes, else why not;
        ``digest`` is updated with the (decrypted) bytes."""
        chunk_size = limits.chunk_size_bytes
        count = -(-size // chunk_size)
        for index in range(count):
            chunk = self.txn.get(keys.chunk_key(blob_id, index), db=self.chunks)
            if chunk is None:
                return f"chunk {index} of {count} is missing"
            expected = chunk_size if index < count - 1 else size - chunk_size * (count - 1)
            if len(chunk) != expected:
                return f"chunk {index} has {len(chunk)} bytes, not {expected}"
            if digest is not None:
                digest.update(chunk if self.cipher is None
                              else self.cipher.apply(blob_id, index, chunk))
        following = self.txn.get(keys.chunk_key(blob_id, count), db=self.chunks)
        if following is not None:
            return f"it has a chunk {count} past its size"
        return ""


def _check_version(reader: _Reader, record: VersionRecord, where: str,
                   report: VerifyReport) -> None:
    if record.segments:
        parts = [(blob, size) for blob, size in record.segments if size > 0]
        if sum(size for _, size in record.segments) != record.size_bytes:
            report.problems.append(f"{where}: its parts add up to "
                                   f"{sum(s for _, s in record.segments)} bytes, not "
                                   f"{record.size_bytes}")
        for number, (blob, size) in enumerate(parts, start=1):
            problem = "no blob" if blob is None else reader.blob(blob, size, None)
            if problem:
                report.problems.append(f"{where}: part {number}: {problem}")
            report.bytes_checked += size
        return
    if record.customer_key is not None:
        report.customer_key_bodies += 1
    if record.size_bytes == 0:
        return
    if record.blob_id is None:
        report.problems.append(f"{where}: {record.size_bytes} bytes but no blob")
        return
    hashed = (reader.hash_bodies and record.customer_key is None
              and bool(_MD5_ETAG.match(record.etag)))
    digest = hashlib.md5() if hashed else None
    problem = reader.blob(record.blob_id, record.size_bytes, digest)
    report.bytes_checked += record.size_bytes
    if problem:
        report.problems.append(f"{where}: {problem}")
    elif digest is not None:
        report.bodies_hashed += 1
        if digest.hexdigest() != record.etag:
            report.problems.append(f"{where}: its bytes' MD5 is {digest.hexdigest()}, its "
                                   f"ETag {record.etag}: the body changed after it was "
                                   "written")
