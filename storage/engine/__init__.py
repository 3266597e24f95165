"""LMDB versioned object store for ONE node: sync, no networking (see ``store``)."""

from storage.engine.store import BodyReader, Engine, StagedTail
from storage.engine.writer import GroupCommitWriter, WriteOperation, WriterClosed

__all__ = [
    "BodyReader",
    "Engine",
    "GroupCommitWriter",
    "StagedTail",
    "WriteOperation",
    "WriterClosed",
]
