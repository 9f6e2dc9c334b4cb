"""IngestEngine with fake shards: judging, routing, batching, recovery after a crash."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from actors.ingest.engine import IngestEngine
from actors.ingest.routing import shard_of
from config.settings import load_settings
from schemas.batches import TradeBatch
from tests.fakes import FakeShard

TICKERS = ["AAPL", "MSFT", "SPY", "IBM", "BAC", "AIG"]


def trades(n: int, start: int = 0) -> TradeBatch:
    syms = [TICKERS[i % len(TICKERS)] for i in range(start, start + n)]
    times = np.arange(start, start + n)
    return TradeBatch.from_columns(syms, times, np.full(n, 10.0), np.full(n, 100.0))


def engine(shards: list[FakeShard], **ingest: Any) -> IngestEngine:
    settings = load_settings(env={}, overrides={"ingest": {"batch_max_rows": 500, **ingest}})
    return IngestEngine(settings, shards)


async def test_batches_are_columnar_and_routed_by_shard() -> None:
    shards = [FakeShard(), FakeShard()]
    eng = engine(shards)
    for i in range(10):
        await eng.accept(trades(300, i * 300))
    await eng.finish()
    total = sum(len(b) for s in shards for b in s.batches)
    assert total == 3000
    calls = sum(s.calls for s in shards)
    assert calls <= 10  # 3,000 rows in a handful of calls, never one per tick
    for k, shard in enumerate(shards):
        for b in shard.batches:
            assert all(shard_of(t, 2) == k for t in b.sym.tolist())
            assert len(b) <= 500
        assert shard.seqs() == sorted(shard.seqs())


async def test_bad_prices_and_unknown_symbols_counted() -> None:
    shards = [FakeShard()]
    eng = engine(shards)
    eng.set_subscriptions(1, TICKERS[:4])  # as the coordinator's loop hands them over
    batch = TradeBatch.from_columns(
        ["AAPL", "MSFT", "ZZZZ", "SPY", "IBM", "AAPL"], np.arange(6),
        [10.0, -1.0, 10.0, float("nan"), 2e7, 11.0], np.full(6, 100.0),
    )
    await eng.accept(batch)
    await eng.finish()
    assert eng.rejected == {"bad_price": 3, "unknown_symbol": 1}
    assert shards[0].batches[0].valid.tolist() == [True, True]  # the verdict travels on
    assert shards[0].batches[0].sym.tolist() == ["AAPL", "AAPL"]


async def test_crashed_shard_gets_every_row_after_its_checkpoint() -> None:
    shard = FakeShard()
    eng = engine([shard], max_inflight_per_shard=1)
    for i in range(4):
        await eng.accept(trades(500, i * 500))
    shard.restored_seq = 700  # the restarted shard's checkpoint covers seqs 0..700
    shard.crash_next = True
    for i in range(4, 6):
        await eng.accept(trades(500, i * 500))
    await eng.finish()
    assert shard.seqs() == list(range(3000))  # nothing lost, nothing twice
    assert eng.lane_stats()[0]["restarts"] == 1
    assert eng.lost_on_restart == 0


@pytest.mark.parametrize("retain", [600])
async def test_rows_beyond_retention_are_counted_as_lost(retain: int) -> None:
    shard = FakeShard()
    eng = engine([shard], max_inflight_per_shard=1, retain_rows_per_shard=retain)
    for i in range(4):
        await eng.accept(trades(500, i * 500))
    shard.restored_seq = 99
    shard.crash_next = True
    await eng.accept(trades(500, 2000))
    await eng.finish()
    assert eng.lost_on_restart > 0
    assert eng.rejected["retention_overflow"] > 0
