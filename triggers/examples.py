"""Example python-kind functions (see docs/triggers.md). Each takes the write event and
the store API and returns a label, a (label, score) pair, or a mapping with 'label'."""

from __future__ import annotations

from storage.api import StorageClient, WriteEvent

small_object_bytes_max = 1024


def size_class(event: WriteEvent, store: StorageClient) -> tuple[str, float]:
    """'empty', 'small' or 'large': reads only the event's size, never copies the body."""
    if event.size_bytes == 0:
        return "empty", 1.0
    return ("small" if event.size_bytes <= small_object_bytes_max else "large"), 1.0


def first_byte(event: WriteEvent, store: StorageClient) -> dict[str, object]:
    """The first byte of the body, read through the zero-copy view, as a label."""
    if not event.body or not len(event.body[0]):
        return {"label": "none", "score": 1.0}
    return {"label": f"byte-{event.body[0][0]:02x}", "score": 1.0}


async def has_magic(event: WriteEvent, store: StorageClient) -> str:
    """An async function runs on the event loop: 'png', 'jpeg', 'npy' or 'other'."""
    head = bytes(event.body[0][:8]) if event.body else b""
    if head.startswith(b"\x89PNG"):
        return "png"
    if head.startswith(b"\xff\xd8"):
        return "jpeg"
    if head.startswith(b"\x93NUMPY"):
        return "npy"
    return "other"
