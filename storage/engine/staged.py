"""Zero-copy views of a staged (not yet committed) body, for pre-commit functions.

A ``StagedBody`` holds ONE read transaction open for its life and hands out the staged
chunks as memoryviews of LMDB's memory map, plus the tail chunk that the commit itself
carries (still in the caller's buffer). Nothing is copied, except in an encrypted store
(``cipher``) or for an SSE-C body (the customer key's cipher, which the write carries),
whose staged chunks are decrypted into copies. Views are valid until
``close``; the staging entry cannot be collected meanwhile (only an abort or the commit
removes it, and both come after the judgement).
"""

from __future__ import annotations

from collections.abc import Sequence

import lmdb

from storage.api import CustomerKey, InvalidArgument
from storage.engine import keys
from storage.engine.store import Engine


class StagedBody:
    """``blobs``: (blob id, chunk count) in body order — one staged blob for a PUT, the
    named parts' blobs for a CompleteMultipartUpload; ``customer_key``: the SSE-C key they
    are encrypted with (checked by the caller against the record)."""

    def __init__(
        self,
        engine: Engine,
        blobs: Sequence[tuple[bytes, int]],
        tail: bytes | bytearray | memoryview | None,
        customer_key: CustomerKey | None = None,
    ) -> None:
        self._txn: lmdb.Transaction | None = engine.env.begin(buffers=True)
        cipher = engine.blob_cipher(customer_key)
        views: list[memoryview] = []
        try:
            for blob_id, chunk_count in blobs:
                for chunk_index in range(chunk_count):
                    chunk = self._txn.get(keys.chunk_key(blob_id, chunk_index),
                                          db=engine.chunks)
                    if chunk is None:
                        raise InvalidArgument("the staged body is missing chunks")
                    if cipher is None:
                        views.append(memoryview(chunk))
                    else:  # a decrypted copy, not a view
                        views.append(memoryview(cipher.apply(blob_id, chunk_index, chunk)))
        except BaseException:
            self.close()
            raise
        if tail:
            views.append(memoryview(tail).cast("B"))
        self.views: tuple[memoryview, ...] = tuple(views)

    def close(self) -> None:
        if self._txn is not None:
            self.views = ()
            self._txn.abort()
            self._txn = None

    def __enter__(self) -> StagedBody:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
