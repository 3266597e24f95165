"""Encryption at rest of object data: AES-256-CTR per chunk, one key per blob.

Rules and theory of operation:

* A store is created encrypted or not (``squall serve --encryption-key-file``), and
  stays so: the engine records which key (its id, never the key) in its ``meta``
  database at first open and refuses to open with another key, without one, or with one
  when it was created without (``Engine._check_encryption``). Turning encryption on for
  an existing store would need its data rewritten, which Squall does not do.
* Every chunk of every blob is stored encrypted: the writer thread encrypts in
  ``Engine.apply_stage_chunk`` (the one place chunks are written); readers decrypt what
  they take out (``BodyReader``, the inline body of a small GET, the views a pre-commit
  function reads). Metadata (bucket and key names, version records, tags, user
  metadata, configurations, the outbox) is not encrypted.
* Keys: the master key is 32 bytes. Each blob gets its own AES-256 key,
  HMAC-SHA256(master, "squall chunk key" || blob id): blob ids are unique (a clock tick
  and 8 random bytes), so no two blobs share a key stream. Chunk ``i``'s counter block
  is ``i`` (8 bytes) || the 16-byte block index within the chunk (8 bytes), so every
  (blob, chunk, block) has its own counter and a read can start at any offset.
* SSE-C (a customer-provided key, ``api.CustomerKey``): the blobs of such an object are
  encrypted with ``ChunkCipher.for_customer_key(key)`` INSTEAD of the master key's (not
  both: the customer key alone protects them), with blob keys
  HMAC-SHA256(customer key, "squall customer chunk key" || blob id), so the raw key
  encrypts nothing itself and no two blobs share a key stream. The engine never keeps
  the customer key: a version records only ``api.CustomerKeyRecord``.
* CTR keeps sizes: a stored chunk is exactly as long as the data, so offsets, sizes and
  staging checks are unchanged. It is not authenticated: it protects data on a disk or
  a backup that leaves the host (the threat SSE-S3 answers), not against someone who
  can write the store's files, which LMDB does not detect either.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import pathlib
import struct

from cryptography.hazmat.primitives.ciphers import Cipher
from cryptography.hazmat.primitives.ciphers.algorithms import AES
from cryptography.hazmat.primitives.ciphers.modes import CTR

KEY_BYTES = 32
_BLOCK_BYTES = 16
_COUNTER = struct.Struct(">QQ")
_BLOB_KEY_LABEL = b"squall chunk key\x00"
_CUSTOMER_BLOB_KEY_LABEL = b"squall customer chunk key\x00"
_KEY_ID_LABEL = b"squall key id\x00"


class KeyFileError(ValueError):
    """The key file does not hold a usable key (the message says why)."""


class ChunkCipher:
    def __init__(self, master_key: bytes, *, blob_key_label: bytes = _BLOB_KEY_LABEL) -> None:
        if len(master_key) != KEY_BYTES:
            raise KeyFileError(f"an encryption key is {KEY_BYTES} bytes, not {len(master_key)}")
        self._master_key = bytes(master_key)
        self._blob_key_label = blob_key_label
        # Names the key in the store and in errors without revealing it.
        self.key_id = hmac.new(self._master_key, _KEY_ID_LABEL, hashlib.sha256).hexdigest()[:16]

    @classmethod
    def for_customer_key(cls, customer_key: bytes) -> ChunkCipher:
        """The cipher of an SSE-C object's blobs (see the module's rules)."""
        return cls(customer_key, blob_key_label=_CUSTOMER_BLOB_KEY_LABEL)

    def apply(self, blob_id: bytes, chunk_index: int, data: bytes | bytearray | memoryview,
              offset: int = 0) -> bytes:
        """Encrypt, or decrypt (CTR is its own inverse), ``data`` found at ``offset`` in
        chunk ``chunk_index`` of blob ``blob_id``."""
        block, skip = divmod(offset, _BLOCK_BYTES)
        blob_key = hmac.new(self._master_key, self._blob_key_label + blob_id,
                            hashlib.sha256).digest()
        stream = Cipher(AES(blob_key), CTR(_COUNTER.pack(chunk_index, block))).encryptor()
        if skip:
            stream.update(bytes(skip))  # the part of the first block before ``offset``
        return stream.update(data)


def load_key(path: pathlib.Path) -> bytes:
    """The 32-byte key in ``path``: the raw bytes (``head -c 32 /dev/urandom``), 64 hex
    digits, or base64 (``openssl rand -base64 32``), a trailing newline allowed."""
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise KeyFileError(f"cannot read the encryption key file {path}: "
                           f"{error.strerror or error}") from None
    if len(raw) == KEY_BYTES:
        return raw
    text = raw.strip()
    if len(text) == 2 * KEY_BYTES:
        try:
            return bytes.fromhex(text.decode("ascii"))
        except (UnicodeDecodeError, ValueError):
            pass
    try:
        decoded = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        decoded = b""
    if len(decoded) == KEY_BYTES:
        return decoded
    raise KeyFileError(f"{path} holds {len(raw)} bytes: an encryption key is {KEY_BYTES} "
                       f"raw bytes, {2 * KEY_BYTES} hex digits or the base64 of {KEY_BYTES} "
                       "bytes (openssl rand -base64 32)")
