"""A consistent copy of a store, taken while it serves (``squall backup``).

Rules and theory of operation:

* LMDB's compacting copy (``mdb_env_copyfd2`` with MDB_CP_COMPACT) writes the pages of
  ONE read transaction: a snapshot of every bucket, version, chunk, configuration and
  outbox entry at one instant, with no free pages. Writers are not stopped (LMDB
  readers never block the writer); a long copy only keeps the pages it reads from being
  reused until it ends.
* The copy is opened read-only in this process, beside the serving process (LMDB is
  multi-process: its lock file's reader table is shared), so nothing needs stopping.
* It streams through a pipe (``Snapshot``) into ``DEST/data.mdb``, counting bytes for
  progress against an upper bound (the pages in use); then the file and the directory
  are fsynced and the copy is opened read-only to count its entries, which the summary
  reports. The serving process streams the same ``Snapshot`` of its own environment to
  an admin request (``GET /_squall/backup``, ``StorageNode.snapshot``): ``squall backup
  --endpoint`` writes it and inspects it the same way.
* A backup is a store: ``squall serve --data-dir DEST`` serves it. An encrypted store's
  backup holds its data encrypted and opens only with the same key
  (``storage.engine.cipher``): keep the key, apart from the backup.
* DEST must not exist, or be an empty directory: a backup never overwrites anything.
"""

from __future__ import annotations

import os
import pathlib
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import lmdb

from storage.api import StorageError, limits
from storage.engine.store import META_ENCRYPTION_KEY_ID, SUB_DATABASES

DATA_FILE = "data.mdb"
_READ_BYTES = 1024 * 1024
PROGRESS_INTERVAL_S = 0.5  # how often progress is reported (squall backup, verify)

# (bytes copied so far, upper bound of the total)
Progress = Callable[[int, int], None]


class BackupError(StorageError):
    """The backup could not be taken (the message says why); nothing was left behind."""


@dataclass(frozen=True, slots=True)
class BackupSummary:
    bytes_written: int
    seconds: float
    entries: dict[str, int]  # per database: buckets, versions, chunks ...
    encryption_key_id: str  # '' for a store that is not encrypted


def open_read_only(directory: pathlib.Path) -> lmdb.Environment:
    """A store's environment, read-only, beside whatever process serves it."""
    return lmdb.open(str(directory), readonly=True, max_dbs=len(SUB_DATABASES),
                     map_size=limits.lmdb_map_size_bytes, max_readers=limits.lmdb_readers_max)


def backup(data_dir: pathlib.Path, dest_dir: pathlib.Path,
           progress: Progress | None = None) -> BackupSummary:
    """Copy the store in ``data_dir`` (served or not) to ``dest_dir``."""
    if not (data_dir / DATA_FILE).is_file():
        raise BackupError(f"{data_dir} holds no store ({DATA_FILE} not found)")
    check_destination(dest_dir)
    try:
        source = open_read_only(data_dir)
    except lmdb.Error as error:
        raise BackupError(f"cannot open the store in {data_dir}: {error}") from None
    with source:
        snapshot = Snapshot(source)
        try:
            return save(dest_dir, iter(snapshot.read, b""), snapshot.bound, progress)
        finally:
            snapshot.close()


def check_destination(dest_dir: pathlib.Path) -> None:
    if dest_dir.exists() and (not dest_dir.is_dir() or any(dest_dir.iterdir())):
        raise BackupError(f"{dest_dir} exists and is not an empty directory")


def save(dest_dir: pathlib.Path, chunks: Iterable[bytes], bound: int,
         progress: Progress | None = None) -> BackupSummary:
    """Write a snapshot's bytes (a ``Snapshot``'s, or a server's ``GET /_squall/backup``)
    as ``dest_dir/data.mdb``, fsync it, and open it to count what it holds. On any
    failure nothing is left behind (a directory this call made is removed)."""
    check_destination(dest_dir)
    began = time.monotonic()
    created = not dest_dir.exists()
    dest_dir.mkdir(parents=True, exist_ok=True)
    target = dest_dir / DATA_FILE
    try:
        written = 0
        reported_at = 0.0
        with open(target, "xb") as out:
            for chunk in chunks:
                out.write(chunk)
                written += len(chunk)
                now = time.monotonic()
                if progress is not None and now - reported_at >= PROGRESS_INTERVAL_S:
                    progress(written, max(bound, written) if bound else 0)
                    reported_at = now
        if progress is not None:
            progress(written, written)
        fsync_path(target)
        fsync_path(dest_dir)
        try:
            entries, key_id = _inspect(dest_dir)
        except lmdb.Error as error:  # e.g. a stream cut short
            raise BackupError(f"the copy in {dest_dir} does not open: {error}") from None
    except BaseException:
        target.unlink(missing_ok=True)
        (dest_dir / "lock.mdb").unlink(missing_ok=True)
        if created:
            dest_dir.rmdir()
        raise
    return BackupSummary(written, time.monotonic() - began, entries, key_id)


class Snapshot:
    """The compacted copy of ``env``'s one read transaction, which LMDB writes into a
    pipe on a thread of its own; ``read`` it to the end (b''), then ``close``. Closing
    early stops the copy (LMDB's next write to the pipe fails and it gives up)."""

    def __init__(self, env: lmdb.Environment) -> None:
        info, stat = env.info(), env.stat()
        self.bound = (info["last_pgno"] + 1) * stat["psize"]  # the pages in use
        self._read_end, write_end = os.pipe()
        self._failure: BaseException | None = None

        def produce() -> None:
            try:
                env.copyfd(write_end, compact=True)
            except BaseException as error:  # reported by read, after the end
                self._failure = error
            finally:
                os.close(write_end)

        self._producer = threading.Thread(target=produce, name="squall-snapshot",
                                          daemon=True)
        self._producer.start()

    def read(self, size: int = _READ_BYTES) -> bytes:
        """The next bytes; b'' at the end. BackupError if LMDB's copy failed."""
        data = os.read(self._read_end, size)
        if not data:
            self._producer.join()
            if self._failure is not None:
                raise BackupError(f"the copy failed: {self._failure}") from self._failure
        return data

    def close(self) -> None:
        if self._read_end >= 0:
            os.close(self._read_end)
            self._read_end = -1
        self._producer.join()


def fsync_path(path: pathlib.Path) -> None:
    """fsync a file or a directory (a directory: its entries, e.g. after a rename)."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _inspect(directory: pathlib.Path) -> tuple[dict[str, int], str]:
    """Entries per database of the copy and the key id it records: proof that it opens."""
    with open_read_only(directory) as copy:
        databases = {name: copy.open_db(name, create=False) for name in SUB_DATABASES}
        with copy.begin() as txn:
            entries = {name.decode(): txn.stat(db)["entries"] for name, db in databases.items()}
            key_id = txn.get(META_ENCRYPTION_KEY_ID, db=databases[b"meta"]) or b""
    return entries, bytes(key_id).decode()
