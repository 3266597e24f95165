"""Where things live: bucket/key -> shard (jump consistent hash), shard -> members.

Theory: ``jump_consistent_hash`` (Lamping & Veach, 2014) maps a 64-bit hash onto
``shard_count`` shards so that growing from n to n+1 shards moves only 1/(n+1) of the
keys, with no table. Objects are placed by a stable hash (BLAKE2b, never Python's
salted ``hash``) of ``bucket + 0x00 + key``. A ``View`` is one epoch's membership: the
ordered members of every shard, the first being the shard's leader.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

_U64_MASK = (1 << 64) - 1
_JUMP_MULTIPLIER = 2862933555777941757


def jump_consistent_hash(key_hash: int, shard_count: int) -> int:
    assert shard_count > 0 and 0 <= key_hash <= _U64_MASK
    shard, candidate = -1, 0
    while candidate < shard_count:
        shard = candidate
        key_hash = (key_hash * _JUMP_MULTIPLIER + 1) & _U64_MASK
        candidate = int((shard + 1) * ((1 << 31) / ((key_hash >> 33) + 1)))
    return shard


def stable_hash64(data: bytes) -> int:
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "big")


@dataclass(frozen=True, slots=True)
class View:
    epoch: int
    # shards[i] = the node ids holding shard i, leader first.
    shards: tuple[tuple[str, ...], ...]

    def __post_init__(self) -> None:
        assert self.epoch >= 0
        assert self.shards and all(self.shards), "every shard needs at least one member"

    @property
    def shard_count(self) -> int:
        return len(self.shards)

    def shard_for_object(self, bucket: str, key: str) -> int:
        if len(self.shards) == 1:  # the embedded store: no hash to compute
            return 0
        placement_key = bucket.encode("utf-8") + b"\x00" + key.encode("utf-8")
        return jump_consistent_hash(stable_hash64(placement_key), self.shard_count)

    def leader(self, shard: int) -> str:
        return self.shards[shard][0]

    def members(self, shard: int) -> tuple[str, ...]:
        return self.shards[shard]


def single_node_view(node_id: str) -> View:
    """The embedded store: one shard, one member."""
    return View(epoch=0, shards=((node_id,),))
