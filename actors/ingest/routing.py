"""Shard routing: `shard = stable_hash(ticker) % N`, identical in every process.

Python's `hash` is salted per process, so it would send a ticker to different shards after a
restart. CRC32 of the UTF-8 symbol is stable, fast, and well spread over short strings.
"""

from __future__ import annotations

import zlib
from functools import lru_cache

import numpy as np
import numpy.typing as npt

from schemas.batches import TradeBatch


def stable_hash(ticker: str) -> int:
    """A process-independent 32-bit hash of a ticker."""
    return zlib.crc32(ticker.encode())


@lru_cache(maxsize=65_536)
def shard_of(ticker: str, shards: int) -> int:
    """The shard that owns `ticker`."""
    return stable_hash(ticker) % shards


def shard_index(symbols: npt.NDArray[np.str_], shards: int) -> npt.NDArray[np.int64]:
    """Shard of every row (hashing each distinct symbol once)."""
    if shards == 1 or len(symbols) == 0:
        return np.zeros(len(symbols), dtype=np.int64)
    uniq, inverse = np.unique(symbols, return_inverse=True)
    table = np.fromiter((shard_of(str(s), shards) for s in uniq), dtype=np.int64, count=len(uniq))
    return table[inverse]


def split_by_shard(batch: TradeBatch, shards: int) -> dict[int, TradeBatch]:
    """Rows of `batch` per shard, each in arrival order."""
    if shards == 1:
        return {0: batch} if len(batch) else {}
    idx = shard_index(batch.sym, shards)
    return {int(k): batch.take(idx == k) for k in np.unique(idx)}
