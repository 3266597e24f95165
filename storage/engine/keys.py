"""LMDB key layouts of the engine's sub-databases, and their order-preserving encodings.

``versions`` keys::

    bucket utf-8  0x00  escape(object key utf-8)  0x00 0x00  (2**64-1 - hlc) big-endian u64

``escape`` turns every 0x00 of the object key into 0x00 0xFF. This keeps byte order: two
keys compare as their escapes do, and the terminator 0x00 0x00 sorts before any escaped
continuation (0x00 0xFF) and before any other byte, so a key sorts before all longer keys
it prefixes. Inside one key the inverted HLC puts the newest version first.

Useful bounds (UTF-8 never contains 0xFE or 0xFF, and escape never makes 0x00 0x01):

* ``after_key(K)``  = prefix + escape(K) + 0x00 0x01: the first position past every
  version of K and before any other key.
* ``after_prefix(P)`` = prefix + escape(P) + 0xFF: past every key that starts with P.

``chunks`` keys are ``blob_id (16 bytes) + chunk index (u32 big-endian)``.
"""

from __future__ import annotations

import base64
import binascii
import struct
from collections.abc import Iterator

import lmdb

from storage.api import InvalidArgument, KeyTooLong, limits

BLOB_ID_BYTES = 16
_U64 = struct.Struct(">Q")
_U32 = struct.Struct(">I")
HLC_MASK = (1 << 64) - 1
KEY_TERMINATOR = b"\x00\x00"
HLC_SUFFIX_BYTES = 8


def bucket_bytes(bucket: str) -> bytes:
    encoded = bucket.encode("utf-8")
    if not encoded or b"\x00" in encoded:
        raise InvalidArgument(f"invalid bucket name: {bucket!r}")
    return encoded


def object_key_bytes(key: str) -> bytes:
    encoded = key.encode("utf-8")
    if not encoded:
        raise InvalidArgument("object key must not be empty")
    if len(encoded) > limits.key_bytes_max:
        raise KeyTooLong(f"object key is {len(encoded)} bytes; at most {limits.key_bytes_max}")
    return encoded


def escape(raw: bytes) -> bytes:
    return raw.replace(b"\x00", b"\x00\xff")


def unescape(escaped: bytes) -> bytes:
    return escaped.replace(b"\x00\xff", b"\x00")


def bucket_config_key(bucket: str, name: str) -> bytes:
    """``bucket_configs`` keys: bucket 0x00 document name (both plain UTF-8)."""
    return bucket_prefix(bucket_bytes(bucket)) + name.encode("utf-8")


def bucket_prefix(bucket_raw: bytes) -> bytes:
    return bucket_raw + b"\x00"


def key_prefix(bucket_raw: bytes, key_raw: bytes) -> bytes:
    """Every version of the key starts with this (and nothing else does)."""
    return bucket_raw + b"\x00" + escape(key_raw) + KEY_TERMINATOR


def version_key(bucket_raw: bytes, key_raw: bytes, hlc: int) -> bytes:
    return key_prefix(bucket_raw, key_raw) + _U64.pack(HLC_MASK - hlc)


def checked_version_key(bucket_raw: bytes, key_raw: bytes, hlc: int, key_size_max: int) -> bytes:
    lmdb_key = version_key(bucket_raw, key_raw, hlc)
    if len(lmdb_key) > key_size_max:
        raise KeyTooLong(f"encoded key is {len(lmdb_key)} bytes; LMDB allows {key_size_max}")
    return lmdb_key


def after_key(bucket_raw: bytes, key_raw: bytes) -> bytes:
    return bucket_raw + b"\x00" + escape(key_raw) + b"\x00\x01"


def after_prefix(bucket_raw: bytes, prefix_raw: bytes) -> bytes:
    return bucket_raw + b"\x00" + escape(prefix_raw) + b"\xff"


def split_version_key(bucket_raw: bytes, lmdb_key: bytes | memoryview) -> tuple[bytes, int]:
    """(object key raw bytes, hlc) of a ``versions`` key of ``bucket_raw``."""
    raw = bytes(lmdb_key)  # no copy when it is bytes already
    start = len(bucket_raw) + 1
    end = len(raw) - HLC_SUFFIX_BYTES - len(KEY_TERMINATOR)
    assert raw[end : end + 2] == KEY_TERMINATOR, "corrupt versions key"
    (inverted,) = _U64.unpack_from(raw, end + 2)
    escaped = raw[start:end]
    # Called once per listed key: most keys hold no 0x00 and need no unescaping.
    return (unescape(escaped) if b"\x00" in escaped else escaped), HLC_MASK - inverted


def iterate_versions(
    cursor: lmdb.Cursor, bucket_raw: bytes, scope: bytes
) -> Iterator[tuple[bytes, int, bytes | memoryview]]:
    """(object key raw bytes, hlc, record) of each ``versions`` entry of ``bucket_raw``
    from the cursor's position while its LMDB key starts with ``scope``.

    ``split_version_key`` inlined, and the cursor stepped in C (``iternext``): listings
    call this once per entry, up to 1000 a page."""
    key_start = len(bucket_raw) + 1
    suffix_bytes = len(KEY_TERMINATOR) + HLC_SUFFIX_BYTES
    for lmdb_key, record in cursor.iternext():
        raw = bytes(lmdb_key)  # no copy when the transaction gives bytes
        if not raw.startswith(scope):
            return
        end = len(raw) - suffix_bytes
        assert raw[end : end + 2] == KEY_TERMINATOR, "corrupt versions key"
        escaped = raw[key_start:end]
        yield (
            unescape(escaped) if b"\x00" in escaped else escaped,
            HLC_MASK - _U64.unpack_from(raw, end + 2)[0],
            record,
        )


def chunk_key(blob_id: bytes, chunk_index: int) -> bytes:
    assert len(blob_id) == BLOB_ID_BYTES
    return blob_id + _U32.pack(chunk_index)


def new_blob_id(hlc: int, random_bytes: bytes) -> bytes:
    assert len(random_bytes) == BLOB_ID_BYTES - 8
    return _U64.pack(hlc) + random_bytes


# --- multipart uploads -------------------------------------------------------------------
#
# ``uploads`` keys are ``key_prefix(bucket, key) + upload id raw``; the raw id is the
# initiating HLC (u64 big-endian) + 16 random bytes, so one key's uploads sort by
# initiation and the id cannot be guessed. ``parts`` keys are ``upload id raw + part
# number (u32 big-endian)``: one upload's parts are adjacent, in part order.

UPLOAD_ID_RANDOM_BYTES = 16
UPLOAD_ID_RAW_BYTES = 8 + UPLOAD_ID_RANDOM_BYTES


def new_upload_id_raw(hlc: int, random_bytes: bytes) -> bytes:
    assert len(random_bytes) == UPLOAD_ID_RANDOM_BYTES
    return _U64.pack(hlc) + random_bytes


def encode_upload_id(raw: bytes) -> str:
    assert len(raw) == UPLOAD_ID_RAW_BYTES
    return base64.urlsafe_b64encode(raw).decode("ascii")  # 32 characters, no padding


def decode_upload_id(upload_id: str) -> bytes | None:
    """The raw id, or None when ``upload_id`` cannot be one we handed out."""
    if len(upload_id) != 32:
        return None
    try:
        raw = base64.urlsafe_b64decode(upload_id.encode("ascii"))
    except (binascii.Error, UnicodeEncodeError, ValueError):
        return None
    return raw if encode_upload_id(raw) == upload_id else None


def upload_key(bucket_raw: bytes, key_raw: bytes, upload_id_raw: bytes) -> bytes:
    return key_prefix(bucket_raw, key_raw) + upload_id_raw


def split_upload_key(bucket_raw: bytes, lmdb_key: bytes | memoryview) -> tuple[bytes, bytes]:
    """(object key raw bytes, upload id raw) of an ``uploads`` key of ``bucket_raw``."""
    raw = bytes(lmdb_key)
    end = len(raw) - UPLOAD_ID_RAW_BYTES - len(KEY_TERMINATOR)
    assert raw[end : end + 2] == KEY_TERMINATOR, "corrupt uploads key"
    return unescape(raw[len(bucket_raw) + 1 : end]), raw[end + 2 :]


def part_key(upload_id_raw: bytes, part_number: int) -> bytes:
    assert len(upload_id_raw) == UPLOAD_ID_RAW_BYTES
    return upload_id_raw + _U32.pack(part_number)


def split_part_key(lmdb_key: bytes | memoryview) -> tuple[bytes, int]:
    raw = bytes(lmdb_key)
    return raw[:UPLOAD_ID_RAW_BYTES], _U32.unpack_from(raw, UPLOAD_ID_RAW_BYTES)[0]
