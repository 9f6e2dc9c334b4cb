"""The `replay` source: recorded files merged into one event-time order, paced by a speed.

Speed 0 hands chunks on as fast as the ingest takes them; a speed X > 0 releases rows when
the replay clock (event time / X) reaches them, in slices of `slice_ms` of wall time.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from actors.sources.readers import ReadStats, read_file
from schemas.batches import BarBatch, Batch, TradeBatch


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

    def set_subscriptions(self, tickers: Sequence[str]) -> None:
        """Recorded and generated data hold what they hold: nothing to subscribe to."""

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
