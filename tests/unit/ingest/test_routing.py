"""Shard routing is stable across processes and spreads tickers."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter

import numpy as np

from actors.ingest.routing import shard_index, shard_of, split_by_shard
from actors.universe.registry import UniverseRegistry
from config.settings import UniverseConfig
from schemas.batches import TradeBatch

TICKERS = ["AAPL", "MSFT", "SPY", "BRK.B", "GOOG", "AMZN", "IBM", "BAC", "AIG", "QQQ"]


def test_same_shards_in_a_fresh_process_with_other_hash_seed() -> None:
    code = ("from actors.ingest.routing import shard_of;"
            f"print([shard_of(t, 7) for t in {TICKERS!r}])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={"PYTHONHASHSEED": "12345", "PATH": ""}, check=True,
                         cwd=str(__import__("pathlib").Path(__file__).resolve().parents[2]))
    assert out.stdout.strip() == str([shard_of(t, 7) for t in TICKERS])


def test_vectorized_index_matches_scalar() -> None:
    syms = np.asarray(TICKERS * 3, dtype="<U12")
    assert shard_index(syms, 4).tolist() == [shard_of(t, 4) for t in TICKERS * 3]


def test_core_universe_spreads_evenly() -> None:
    core = UniverseRegistry(UniverseConfig()).core
    counts = Counter(shard_of(t, 4) for t in core)
    assert len(counts) == 4
    assert max(counts.values()) < 1.3 * len(core) / 4


def test_split_keeps_arrival_order_per_shard() -> None:
    batch = TradeBatch.from_columns(TICKERS * 2, list(range(20)), [1.0] * 20, [100.0] * 20)
    parts = split_by_shard(batch, 3)
    assert sum(len(p) for p in parts.values()) == 20
    for k, part in parts.items():
        assert all(shard_of(s, 3) == k for s in part.sym.tolist())
        assert part.t.tolist() == sorted(part.t.tolist())
