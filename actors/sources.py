"""Tick sources behind one interface: synthetic, replay (recorded files) and polygon.

A source is an async iterator of `TradeBatch | BarBatch` in event-time order. Sources pace
themselves (synthetic at its rate, replay at its speed multiplier); the ingest batches, routes
and applies backpressure. Event time comes from the data (replay, polygon) or from a
deterministic simulated clock (synthetic), never from the wall clock.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from actors.readers import ReadStats, read_file
from actors.sessions import ET, last_session_open
from config.settings import IngestConfig
from schemas.batches import BarBatch, TradeBatch

log = logging.getLogger(__name__)
Batch = TradeBatch | BarBatch


class Source(Protocol):
    """What the ingest needs from a source."""

    name: str

    def batches(self) -> AsyncIterator[Batch]: ...

    def stats(self) -> dict[str, Any]: ...

    async def close(self) -> None: ...


# -- synthetic -------------------------------------------------------------------------------


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


# -- replay ----------------------------------------------------------------------------------


def _batch_time(batch: Batch) -> np.ndarray:
    return batch.t if isinstance(batch, TradeBatch) else batch.end


def load_replay(paths: Sequence[str | Path], stats: ReadStats) -> list[Batch]:
    """All files merged into one event-time-ordered list of chunks (trades and bars)."""
    trades: list[TradeBatch] = []
    bars: list[BarBatch] = []
    for path in paths:
        for item in read_file(path, stats):
            (trades if isinstance(item, TradeBatch) else bars).append(item)  # type: ignore[arg-type]
    out: list[Batch] = []
    if trades:
        merged = TradeBatch.concat(trades)
        if len(paths) > 1:
            merged = merged.take(np.argsort(merged.t, kind="stable"))
        out.extend(merged.take(slice(i, i + 65_536)) for i in range(0, len(merged), 65_536))
    if bars:
        mb = BarBatch.concat(bars)
        mb = mb.take(np.argsort(mb.end, kind="stable"))
        out.extend(mb.take(slice(i, i + 65_536)) for i in range(0, len(mb), 65_536))
    out.sort(key=lambda b: int(_batch_time(b)[0]))
    return _resequence(out)


def _resequence(chunks: list[Batch]) -> list[Batch]:
    """Number rows 0.. across all files in replay order (file row numbers collide)."""
    out: list[Batch] = []
    seq = 0
    for chunk in chunks:
        numbers = np.arange(seq, seq + len(chunk), dtype=np.int64)
        seq += len(chunk)
        out.append(dataclasses.replace(chunk, seq=numbers))
    return out


class ReplaySource:
    """Recorded files at a speed multiplier (0 = as fast as the pipeline takes them)."""

    name = "replay"

    def __init__(
        self, paths: Sequence[str | Path], speed: float, loop: bool = False,
        slice_ms: int = 50, sleep: Callable[[float], Any] = asyncio.sleep,
    ) -> None:
        missing = [str(p) for p in paths if not Path(p).exists()]
        if missing:
            raise FileNotFoundError(f"replay file(s) not found: {', '.join(missing)}")
        if not paths:
            raise ValueError("--source replay needs at least one --replay FILE")
        self._paths = list(paths)
        self._speed = speed
        self._loop = loop
        self._slice_ms = slice_ms
        self._sleep = sleep
        self.read_stats = ReadStats()
        self._emitted = 0
        self._total = 0
        self._replay_ms = 0
        self._passes = 0
        self._closed = False
        self.done = False

    async def batches(self) -> AsyncIterator[Batch]:
        chunks = await asyncio.to_thread(load_replay, self._paths, self.read_stats)
        self._total = sum(len(c) for c in chunks)
        while not self._closed:
            async for piece in self._paced(chunks):
                yield piece
            self._passes += 1
            if not self._loop:
                break
        self.done = True

    async def _paced(self, chunks: list[Batch]) -> AsyncIterator[Batch]:
        if not chunks:
            return
        t0 = int(_batch_time(chunks[0])[0])
        wall0 = time.monotonic()
        for chunk in chunks:
            if self._closed:
                return
            times = _batch_time(chunk)
            if self._speed <= 0:
                self._account(chunk, times)
                yield chunk
                await asyncio.sleep(0)
                continue
            step = max(int(self._slice_ms * self._speed), 1)
            first = int(times[0]) - int(times[0]) % step + step
            edges = np.arange(first, int(times[-1]) + step, step)
            cuts = np.searchsorted(times, edges, side="left")
            start = 0
            for cut in [*cuts.tolist(), len(chunk)]:
                if cut <= start:
                    continue
                piece = chunk.take(slice(start, cut))
                start = cut
                delay = wall0 + (int(times[cut - 1]) - t0) / 1000 / self._speed - time.monotonic()
                if delay > 0:
                    await self._sleep(delay)
                self._account(piece, _batch_time(piece))
                yield piece

    def _account(self, piece: Batch, times: np.ndarray) -> None:
        self._emitted += len(piece)
        self._replay_ms = int(times[-1])

    def stats(self) -> dict[str, Any]:
        return {
            "files": len(self._paths),
            "rows_total": self._total,
            "rows_emitted": self._emitted,
            "replay_time_ms": self._replay_ms,
            "passes": self._passes,
            "done": self.done,
            "read_rejected": dict(self.read_stats.rejected),
            "read_skipped": dict(self.read_stats.skipped),
        }

    async def close(self) -> None:
        self._closed = True
