"""Replication messages on the wire: small control apart from the entries' payload bytes.

Rules:

* A message (``core.Message``) travels as one transport request
  (``Operation.REPLICATE``): control arguments ``shard``, ``sender``, ``message``
  (msgpack bytes: ``[kind, *fields]``) and, as the request's payload, the payloads of
  the entries it carries, concatenated in order. Inside the control part an entry is
  ``[index, epoch, round, write_id, entry control or None, payload length or -1]``
  (-1: no payload; None: a leader's no-op), so a payload is never re-encoded by msgpack.
* Terms are ``[epoch, round]``. Only the message kinds of ``core`` are known; anything
  else, or a payload whose length does not add up, is ``MessageError``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import msgpack

from storage.api import StorageError
from storage.engine.entries import EntryCodecError, decode_write_entry, encode_write_entry
from storage.replication import core
from storage.replication.core import LogEntry, Term

_KINDS: dict[str, type] = {cls.__name__: cls for cls in (
    core.StateRequest, core.StateReply, core.FetchRequest, core.FetchReply, core.Append,
    core.AppendReply, core.SnapshotNeeded, core.CatchUpRequest)}


class MessageError(StorageError):
    """Bytes that are not a replication message."""


def _encode_value(value: object, payloads: list[Any]) -> object:
    if isinstance(value, Term):
        return ["T", value.epoch, value.round]
    if isinstance(value, tuple) and value and isinstance(value[0], LogEntry):
        return ["E", [_encode_entry(entry, payloads) for entry in value]]
    if isinstance(value, tuple) and not value:
        return ["E", []]
    return value


def _encode_entry(entry: LogEntry, payloads: list[Any]) -> list[object]:
    control: bytes | None = None
    length = -1
    if entry.payload is not None:
        control, payload = encode_write_entry(entry.payload)  # type: ignore[arg-type]
        if payload is not None:
            payloads.append(payload)
            length = len(payload)
    return [entry.index, entry.term.epoch, entry.term.round, entry.write_id, control, length]


def encode_message(message: core.Message) -> tuple[bytes, bytes | None]:
    """(control bytes, concatenated entry payloads or None)."""
    payloads: list[Any] = []
    fields = [_encode_value(getattr(message, f.name), payloads)
              for f in dataclasses.fields(message)]  # type: ignore[arg-type]
    control: bytes = msgpack.packb([type(message).__name__, *fields], use_bin_type=True)
    return control, (b"".join(payloads) if payloads else None)


def decode_message(control: bytes | memoryview, payload: bytes | bytearray | memoryview | None
                   ) -> core.Message:
    try:
        kind, *fields = msgpack.unpackb(control, raw=False, use_list=True)
        cls = _KINDS.get(kind)
        if cls is None:
            raise MessageError(f"unknown replication message {kind!r}")
        view = memoryview(payload) if payload is not None else memoryview(b"")
        offset = [0]
        values = [_decode_value(value, view, offset) for value in fields]
        if offset[0] != len(view):
            raise MessageError("the payload is longer than the message's entries")
        message: core.Message = cls(*values)
        return message
    except (ValueError, TypeError, KeyError, EntryCodecError, msgpack.UnpackException) as error:
        raise MessageError(f"not a replication message: {error!r}") from None


def _decode_value(value: object, view: memoryview, offset: list[int]) -> object:
    if isinstance(value, list) and value and value[0] == "T":
        return Term(int(value[1]), int(value[2]))
    if isinstance(value, list) and value and value[0] == "E":
        return tuple(_decode_entry(item, view, offset) for item in value[1])
    return value


def _decode_entry(item: Sequence[Any], view: memoryview, offset: list[int]) -> LogEntry:
    index, epoch, round_, write_id, control, length = item
    if isinstance(write_id, list):
        write_id = tuple(write_id)
    entry = None
    size_bytes = 0
    if control is not None:
        payload = None
        if length >= 0:
            end = offset[0] + length
            if end > len(view):
                raise MessageError("an entry's payload runs past the message")
            payload = bytes(view[offset[0]:end])  # the log keeps it: it must own it
            offset[0] = end
        entry = decode_write_entry(control, payload)
        size_bytes = len(control) + max(length, 0)
    return LogEntry(index, Term(epoch, round_), write_id, entry, size_bytes)


def entry_size_bytes(entry: object) -> int:
    """The size the core counts for a client write's entry (control + payload)."""
    control, payload = encode_write_entry(entry)  # type: ignore[arg-type]
    return len(control) + (0 if payload is None else len(payload))
