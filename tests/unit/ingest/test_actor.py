"""The ingest actor's loops with fakes: the source's batches in one go, subscriptions followed."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import Any

import numpy as np

from actors.ingest.actor import IngestActor
from config.settings import load_settings
from schemas.batches import BarBatch, TradeBatch
from tests.conftest import eventually
from tests.fakes import FakeShard, FakeUniverse


class ListSource:
    """A source that hands over prepared batches, then waits to be closed."""

    name = "list"

    def __init__(self, batches: list[TradeBatch], lag_ms: int | None = None) -> None:
        self._batches = batches
        self._lag_ms = lag_ms
        self.subscriptions: list[list[str]] = []
        self.closed = asyncio.Event()

    async def batches(self) -> AsyncIterator[TradeBatch | BarBatch]:
        for batch in self._batches:
            yield batch
        await self.closed.wait()

    def set_subscriptions(self, tickers: Sequence[str]) -> None:
        self.subscriptions.append(list(tickers))

    def stats(self) -> dict[str, Any]:
        return {"lag_ms": self._lag_ms}

    async def close(self) -> None:
        self.closed.set()


def one_trade(sym: str, t: int) -> TradeBatch:
    return TradeBatch.from_columns([sym], [t], [10.0], [100.0])


def actor(source: ListSource, universe: FakeUniverse, shard: FakeShard) -> IngestActor:
    settings = load_settings(env={}, overrides={"ingest": {"batch_max_ms": 10}})
    return IngestActor(settings, [shard], universe, source=source)


async def test_small_source_batches_reach_the_shard_joined() -> None:
    parts = [one_trade("AAPL", t) for t in range(200)]  # one frame's trades at a time
    source, shard = ListSource(parts), FakeShard()
    ingest = actor(source, FakeUniverse(["AAPL"]), shard)
    await ingest.start()
    await eventually(lambda: sum(len(b) for b in shard.batches) == 200, timeout=10)
    assert len(shard.batches) < 20  # waiting parts are taken together, never one call each
    assert shard.seqs() == list(range(200))
    assert all(b.valid is not None and b.valid.all() for b in shard.batches)
    await ingest.stop()


async def test_subscription_changes_reach_the_engine_and_the_source() -> None:
    universe = FakeUniverse(["AAPL"])
    source, shard = ListSource([]), FakeShard()
    ingest = actor(source, universe, shard)
    await ingest.start()
    assert source.subscriptions == [["AAPL"]]
    universe.publish(["AAPL", "MSFT"])
    await eventually(lambda: source.subscriptions[-1] == ["AAPL", "MSFT"], timeout=5)
    stats = await ingest.stats()
    assert stats["subscription_version"] == 1
    await ingest.stop()


async def test_unsubscribed_symbols_are_counted_and_the_lag_comes_from_the_source() -> None:
    batch = TradeBatch.from_columns(["AAPL", "ZZZZ"], np.arange(2), [10.0, 10.0], [1.0, 1.0])
    source, shard = ListSource([batch], lag_ms=42), FakeShard()
    ingest = actor(source, FakeUniverse(["AAPL"]), shard)
    await ingest.start()
    await eventually(lambda: shard.batches, timeout=5)
    stats = await ingest.stats()
    assert stats["rejected"] == {"unknown_symbol": 1}
    assert stats["lag_ms"] == 42
    assert shard.batches[0].sym.tolist() == ["AAPL"]
    await ingest.stop()
