"""The `synthetic` source: a seedable random walk over the core universe on a simulated clock."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import numpy as np

from actors.market.sessions import ET, last_session_open
from config.settings import IngestConfig
from schemas.batches import Batch, TradeBatch


class SyntheticSource:
    """A seedable random walk over a ticker list at a fixed rate of trades per second.

    Event time runs on a simulated clock that starts at `start_ms` (by default the latest
    regular open) and advances 1/rate s per trade, so the same seed gives the same trades.
    """

    name = "synthetic"

    def __init__(
        self, tickers: Sequence[str], rate: float, seed: int, start_ms: int,
        tick_s: float = 0.05, sleep: Callable[[float], Any] = asyncio.sleep,
    ) -> None:
        if not tickers:
            raise ValueError("synthetic source needs at least one ticker")
        self._tickers = np.asarray(sorted(tickers))
        self._rate = rate
        self._rng = np.random.default_rng(seed)
        n = len(self._tickers)
        self._prices = np.round(self._rng.uniform(5, 400, n), 2)
        self._vol = self._rng.uniform(0.0002, 0.002, n)  # per-trade log-return sd
        activity = self._rng.pareto(1.2, n) + 1
        self._weights = activity / activity.sum()
        self._start_ms = start_ms
        self._generated = 0
        self._tick_s = tick_s
        self._sleep = sleep
        self._closed = False

    def _make(self, count: int) -> TradeBatch:
        idx = self._rng.choice(len(self._tickers), size=count, p=self._weights)
        steps = self._rng.normal(0, 1, count) * self._vol[idx]
        jumps = self._rng.random(count) < 0.002
        steps[jumps] *= 12
        # Per-ticker cumulative log-returns, vectorized: sort by ticker, cumsum within groups.
        order = np.argsort(idx, kind="stable")
        sorted_idx = idx[order]
        cum = np.cumsum(steps[order])
        group_start = np.r_[0, np.flatnonzero(np.diff(sorted_idx)) + 1]
        sizes = np.diff(np.r_[group_start, count])
        base = np.repeat(cum[group_start] - steps[order][group_start], sizes)
        walked = self._prices[sorted_idx] * np.exp(cum - base)
        prices = np.empty(count)
        prices[order] = walked
        last = np.r_[group_start[1:] - 1, count - 1]
        self._prices[sorted_idx[last]] = walked[last]
        prices = np.round(prices, 2)
        sizes = self._rng.choice([100, 100, 100, 200, 300, 500, 1000], size=count).astype(float)
        offsets = (np.arange(self._generated, self._generated + count) * 1000 / self._rate)
        self._generated += count
        return TradeBatch.from_columns(
            self._tickers[idx], self._start_ms + offsets.astype(np.int64), prices, sizes,
        )

    async def batches(self) -> AsyncIterator[Batch]:
        started = time.monotonic()
        while not self._closed:
            due = int((time.monotonic() - started) * self._rate) - self._generated
            if due > 0:
                yield self._make(min(due, int(self._rate) + 1))
            await self._sleep(self._tick_s)

    def set_subscriptions(self, tickers: Sequence[str]) -> None:
        """Recorded and generated data hold what they hold: nothing to subscribe to."""

    def stats(self) -> dict[str, Any]:
        return {"generated": self._generated, "tickers": len(self._tickers), "rate": self._rate}

    async def close(self) -> None:
        self._closed = True


def synthetic_start_ms(config: IngestConfig, now_ms: int) -> int:
    """The simulated clock's start: the configured ET date-time, else the latest open."""
    if config.synthetic_start:
        local = dt.datetime.fromisoformat(config.synthetic_start)
        if local.tzinfo is None:
            local = local.replace(tzinfo=ET)
        return int(local.timestamp() * 1000)
    return last_session_open(now_ms)
