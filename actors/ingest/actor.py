"""The ingest actor: runs one source through an `IngestEngine` until stopped or done."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Sequence
from typing import Any

import ray

from actors.ingest.engine import PENDING_POLL_S, IngestEngine
from actors.sources.base import Batch, Source
from actors.sources.replay import ReplaySource
from actors.sources.synthetic import SyntheticSource, synthetic_start_ms
from config.settings import Settings

log = logging.getLogger(__name__)


class IngestActor:
    """Async Ray actor: runs a source through an `IngestEngine` until stopped or done."""

    def __init__(self, settings: Settings, shards: Sequence[Any], universe: Any) -> None:
        self._settings = settings
        self._engine = IngestEngine(settings, shards, universe)
        self._universe = universe
        self._source: Source | None = None
        self._state = "created"
        self._error = ""
        self._started_at = 0.0
        self._done = asyncio.Event()
        self._rate = RateMeter()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._queue: asyncio.Queue[Batch | None] = asyncio.Queue(maxsize=8)

    def _make_source(self) -> Source:
        cfg = self._settings.ingest
        if cfg.source == "replay":
            return ReplaySource(cfg.replay_files, cfg.speed, cfg.loop)
        if cfg.source == "polygon":
            from actors.sources.polygon import PolygonSource

            return PolygonSource(self._settings, self._universe)
        return SyntheticSource(
            self._synthetic_tickers(), cfg.synthetic_rate, cfg.synthetic_seed,
            synthetic_start_ms(cfg, int(time.time() * 1000)),
        )

    def _synthetic_tickers(self) -> list[str]:
        from actors.universe.registry import load_named_universes

        core = sorted(load_named_universes(self._settings.universe)["CORE"])
        n = self._settings.ingest.synthetic_tickers
        return core[:n] if n else core

    async def start(self) -> str:
        """Start the source and the send loop (idempotent)."""
        if self._state in ("running", "done"):
            return self._state
        try:
            self._source = self._make_source()
        except (OSError, ValueError) as e:
            self._state, self._error = "error", str(e)
            raise
        await self._engine.refresh_universe()
        self._state = "running"
        self._started_at = time.monotonic()
        for coro in (self._produce(), self._consume(), self._refresh_loop()):
            task = asyncio.get_running_loop().create_task(coro)
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return self._state

    async def _produce(self) -> None:
        assert self._source is not None
        try:
            async for batch in self._source.batches():
                await self._queue.put(batch)
        except asyncio.CancelledError:
            raise
        except Exception as e:
            log.exception("source %s failed", self._source.name)
            self._state, self._error = "error", f"{type(e).__name__}: {e}"
        await self._queue.put(None)

    async def _consume(self) -> None:
        wait_s = self._settings.ingest.batch_max_ms / 1000
        while True:
            # Rows held for a busy shard go out as soon as it acks: look again soon.
            timeout = min(wait_s, PENDING_POLL_S) if self._engine.has_pending() else wait_s
            try:
                item = await asyncio.wait_for(self._queue.get(), timeout)
            except TimeoutError:
                await self._engine.flush_due()
                continue
            if item is None:
                break
            before = self._engine.rows_in
            await self._engine.accept(item)
            self._rate.add(self._engine.rows_in - before)
            await self._engine.flush_due()
        await self._engine.finish()
        if self._state == "running":
            self._state = "done"
        self._done.set()

    async def _refresh_loop(self) -> None:
        while True:
            await asyncio.sleep(2.0)
            try:
                await self._engine.refresh_universe()
            except ray.exceptions.RayActorError:
                log.warning("universe coordinator unavailable; keeping the last subscription set")

    async def wait_done(self, timeout_s: float | None = None) -> bool:
        """True once a finite source (replay) has been fully delivered and flushed."""
        if self._done.is_set():
            return True
        try:
            await asyncio.wait_for(self._done.wait(), timeout_s)
        except TimeoutError:
            return False
        return True

    async def stop(self) -> None:
        if self._source is not None:
            await self._source.close()
        for task in list(self._tasks):
            task.cancel()
        self._state = "stopped"

    async def stats(self) -> dict[str, Any]:
        e = self._engine
        return {
            "state": self._state,
            "error": self._error,
            "source": self._settings.ingest.source,
            "rows_in": e.rows_in,
            "rows_sent": e.rows_sent,
            "batches_sent": e.batches_sent,
            "avg_batch_rows": round(e.rows_sent / e.batches_sent, 1) if e.batches_sent else 0,
            "ticks_per_s": round(self._rate.rate(), 1),
            "events": e.events,
            "last_event_ms": e.last_event_ms,
            "lag_ms": self._lag_ms(),
            "rejected": dict(e.rejected),
            "lost_on_restart": e.lost_on_restart,
            "shards": e.lane_stats(),
            "source_stats": self._source.stats() if self._source is not None else {},
            "uptime_s": round(time.monotonic() - self._started_at, 1) if self._started_at else 0,
        }

    def _lag_ms(self) -> int | None:
        """Receive time behind event time; only a live feed has one (replays run on their own
        clock, the synthetic market on a simulated one)."""
        if self._settings.ingest.source != "polygon":
            return None
        return _lag_ms(self._engine.last_event_ms)

    async def ping(self) -> str:
        return "ok"


def _lag_ms(last_event_ms: int) -> int | None:
    """Wall time behind the newest event (meaningful for live feeds, not replays)."""
    return max(0, int(time.time() * 1000) - last_event_ms) if last_event_ms else None


class RateMeter:
    """Rows per second over a sliding window of wall time (status display only)."""

    def __init__(self, window_s: float = 5.0) -> None:
        self._window = window_s
        self._marks: deque[tuple[float, int]] = deque()

    def add(self, rows: int) -> None:
        now = time.monotonic()
        self._marks.append((now, rows))
        while self._marks and now - self._marks[0][0] > self._window:
            self._marks.popleft()

    def rate(self) -> float:
        if len(self._marks) < 2:
            return 0.0
        span = max(time.monotonic() - self._marks[0][0], 1e-3)
        return sum(r for _, r in self._marks) / span
