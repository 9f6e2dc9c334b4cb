"""The ingest actor: one source, one `IngestEngine`, and the detector shards behind it.

A plain async class (`cluster/graph.py` applies `ray.remote` to `IngestRayActor`, which wraps
the shard and universe actors in handles). Three tasks share the actor's event loop:

- produce: the source's batches, as the source made them, into the inbox (bounded by rows; a
  full inbox blocks the source, which is the backpressure that reaches a live feed);
- consume: what the inbox gathered (a batch's worth of rows, or what arrived within
  `batch_max_ms`), through the engine (judge, number, route), then the lanes that are due
  are shipped to their shards;
- follow the subscription set: one long poll on the universe coordinator; each new set goes
  to the engine (what is routed) and to the source (what a live feed subscribes to).

Error policy: a failing source ends the run in state `error` (its message in `stats`); an
unreachable coordinator keeps the last subscription set and is asked again; the engine owns
shard failures. `CancelledError` always propagates.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Sequence
from typing import Any, Protocol

from actors import UniverseUnavailable
from actors.ingest.engine import PENDING_POLL_S, IngestEngine, ShardLink, join_runs
from actors.ingest.inbox import Inbox
from actors.sources.base import Source
from config.settings import Settings
from schemas.batches import Batch

log = logging.getLogger(__name__)
SUBSCRIPTION_WAIT_S = 30.0  # the long poll returns at least this often, changed or not
UNIVERSE_RETRY_S = 2.0  # wait before asking an unreachable coordinator again


class SubscriptionFeed(Protocol):
    """What the ingest needs of the universe coordinator (`actors.handles.UniverseHandle`)."""

    async def subscription_set(self) -> tuple[int, list[str]]: ...

    async def next_subscription_set(self, after: int, timeout_s: float) -> tuple[int, list[str]]:
        ...


class IngestActor:
    """Runs a source through an `IngestEngine` until stopped or, for a replay, done."""

    def __init__(
        self, settings: Settings, shards: Sequence[ShardLink], universe: SubscriptionFeed,
        source: Source | None = None,
    ) -> None:
        """`source`: the source to run (default: the one `settings.ingest` names, built at
        `start`)."""
        self._settings = settings
        self._engine = IngestEngine(settings, shards)
        self._universe = universe
        cfg = settings.ingest
        self._inbox: Inbox[Batch] = Inbox(
            cfg.inbox_max_rows, min_rows=cfg.batch_max_rows, max_wait_s=cfg.batch_max_ms / 1000
        )
        self._source: Source | None = source
        self._state = "created"
        self._error = ""
        self._started_at = 0.0
        self._done = asyncio.Event()
        self._rate = RateMeter()
        self._tasks: set[asyncio.Task[Any]] = set()

    def _make_source(self) -> Source:
        cfg = self._settings.ingest
        if cfg.source == "replay":
            from actors.sources.replay import ReplaySource

            return ReplaySource(cfg.replay_files, cfg.speed, cfg.loop)
        if cfg.source == "polygon":
            from actors.sources.polygon import PolygonSource

            return PolygonSource(self._settings)
        from actors.sources.synthetic import SyntheticSource, synthetic_start_ms

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
        """Start the source and the loops (idempotent); raise if the source cannot start."""
        if self._state in ("running", "done"):
            return self._state
        try:
            self._source = self._source or self._make_source()
        except (OSError, ValueError) as e:
            self._state, self._error = "error", str(e)
            raise
        self._apply_subscriptions(*await self._universe.subscription_set())
        self._state = "running"
        self._started_at = time.monotonic()
        for coro in (self._produce(), self._consume(), self._follow_subscriptions()):
            task = asyncio.get_running_loop().create_task(coro)
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return self._state

    async def _produce(self) -> None:
        assert self._source is not None
        try:
            async for batch in self._source.batches():
                await self._inbox.put(batch)
        except asyncio.CancelledError:
            raise
        except Exception as e:
            log.exception("source %s failed", self._source.name)
            self._state, self._error = "error", f"{type(e).__name__}: {e}"
        self._inbox.close()

    async def _consume(self) -> None:
        wait_s = self._settings.ingest.batch_max_ms / 1000
        while True:
            # Rows held for a busy shard go out as soon as it acks: look again soon.
            timeout = min(wait_s, PENDING_POLL_S) if self._engine.has_pending() else wait_s
            taken = await self._inbox.take(timeout)
            if taken is None:
                break
            before = self._engine.rows_in
            for batch in join_runs(taken.items):
                await self._engine.accept(batch, arrived=taken.arrived)
            self._rate.add(self._engine.rows_in - before)
            await self._engine.flush_due()
        await self._engine.finish()
        if self._state == "running":
            self._state = "done"
        self._done.set()

    async def _follow_subscriptions(self) -> None:
        """Hand every new subscription set to the engine and the source, as it changes."""
        while True:
            try:
                version, tickers = await self._universe.next_subscription_set(
                    self._engine.subscription_version, SUBSCRIPTION_WAIT_S
                )
            except UniverseUnavailable:
                log.warning("universe coordinator unavailable; keeping the last subscription set")
                await asyncio.sleep(UNIVERSE_RETRY_S)
                continue
            self._apply_subscriptions(version, tickers)

    def _apply_subscriptions(self, version: int, tickers: list[str]) -> None:
        if version == self._engine.subscription_version:
            return
        self._engine.set_subscriptions(version, tickers)
        if self._source is not None:
            self._source.set_subscriptions(tickers)

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
        source = self._source.stats() if self._source is not None else {}
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
            "lag_ms": source.get("lag_ms"),  # only a live feed has one
            "inbox_rows": self._inbox.rows,
            "subscription_version": e.subscription_version,
            "rejected": dict(e.rejected),
            "lost_on_restart": e.lost_on_restart,
            "shards": e.lane_stats(),
            "source_stats": source,
            "uptime_s": round(time.monotonic() - self._started_at, 1) if self._started_at else 0,
        }

    async def ping(self) -> str:
        return "ok"


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
