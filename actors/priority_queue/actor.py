"""The priority-queue actor: shards `put` their outputs, the gateway `collect`s what to show.

A plain async class (`cluster/graph.py` applies `ray.remote`); four roles, each in its own
pure module, meet here:

- ranking (`ranking.py`): which events are admitted and in what order they are served;
- market analytics (`actors/market/analytics.py`): the shard deltas merged into the gauge and
  the activity block that travel with every `collect`;
- session roll-over (`rollover.py`): the deployment's session from the newest watermark; when
  it changes, the ended session's counts are persisted and the analytics start afresh;
- persistence forwarding (`forwarding.py`): events, counts and gauge records sent in batches
  every `storage.flush_interval_s` through the persistence handle.

The sessions of a shard's events and watermark come with its output (`ShardOutput.sessions`),
computed once by the shard. Error policy: `put` never raises on bad input (the ranking counts
it); a persistence actor that is down loses the rows of that flush, counted by kind.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from actors import PersistenceUnavailable
from actors.market.analytics import MarketAnalytics
from actors.market.sessions import SessionClock, session_of
from actors.priority_queue.forwarding import PersistenceForwarder
from actors.priority_queue.ranking import PriorityEventQueue
from actors.priority_queue.rollover import SessionRollover
from config.settings import Settings
from schemas.api import Collected
from schemas.events import Event, MarketSession, ShardOutput
from schemas.records import AnalyticsRow, SessionCountRow

log = logging.getLogger(__name__)
COUNTS_EVERY = 5  # forward flushes between two upserts of the current session's counts


class PersistencePort(Protocol):
    """What the queue needs of the persistence actor (`actors.handles.PersistenceHandle`)."""

    async def put_events(self, events: list[Event]) -> int: ...

    async def put_session_counts(self, rows: list[SessionCountRow]) -> int: ...

    async def put_analytics(self, rows: list[AnalyticsRow]) -> int: ...


class PriorityQueueActor:
    """Admits shard outputs, serves events with the market state, forwards rows to storage."""

    def __init__(self, settings: Settings, persistence: PersistencePort | None = None) -> None:
        self._settings = settings
        self._calendar = SessionClock()  # only for data that comes without its session
        self._queue = PriorityEventQueue(settings.queue, calendar=self._calendar)
        self._analytics = MarketAnalytics(settings.detection.analytics, calendar=self._calendar)
        self._rollover = SessionRollover()
        self._forwarder = PersistenceForwarder() if persistence is not None else None
        self._persistence = persistence
        self._has_data = asyncio.Event()
        self._puts = 0
        self._rows = 0
        self._rejected: Counter[str] = Counter()
        self._persist_task: asyncio.Task[None] | None = None
        if persistence is not None:
            self._persist_task = asyncio.get_running_loop().create_task(self._forward_loop())

    @property
    def watermark(self) -> int:
        return self._rollover.watermark

    async def put(self, output: ShardOutput) -> int:
        """Admit one shard output (events, analytics delta, watermark); return events taken."""
        self._puts += 1
        self._rows += output.rows
        self._rejected.update(output.rejected)
        if output.watermark:
            session = session_of(output.watermark, output.sessions, self._calendar)
            ended = self._rollover.observe(output.shard, output.watermark, session)
            if ended is not None:
                self._on_session_end(ended, session.key)
            self._queue.note_session(session)
        if output.analytics:  # event counts arrive in the shard deltas (counted once)
            self._analytics.merge(output.analytics, output.sessions)
        accepted = self._queue.put(output.events, output.sessions)
        if output.events and self._forwarder is not None:
            self._forwarder.add_events(output.events)
        if accepted:
            self._has_data.set()
        return accepted

    def _on_session_end(self, ended: tuple[str, str], started: tuple[str, str]) -> None:
        """Persist the ended session's counts, then start the analytics afresh."""
        if self._forwarder is not None:
            counts = self._analytics.per_ticker_counts()
            self._forwarder.add_counts(ended, counts, self.watermark)
        self._analytics.reset_session(started)

    async def collect(self, max_events: int = 1000, timeout_s: float = 0.5) -> Collected:
        """Events of the oldest pending session in priority order (waits up to `timeout_s`
        when empty) plus the market state; the session reported is the events' session."""
        if not len(self._queue):
            self._has_data.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._has_data.wait(), timeout_s)
        key = self._queue.current_session()
        events = self._queue.pop(max_events)
        return Collected(
            events=events,
            watermark=self.watermark,
            session=key[1] if key else MarketSession.CLOSED.value,
            session_date=key[0] if key else "",
            analytics=self._snapshot(),
            dropped=dict(self._queue.dropped),
        )

    def _snapshot(self) -> dict[str, Any]:
        wm = self.watermark
        if not wm:
            return {}
        snapshot = self._analytics.snapshot(wm, self._rollover.session)
        key = self._rollover.key
        if self._forwarder is not None and key is not None:
            self._forwarder.add_analytics(snapshot, key[1])
        return snapshot

    async def stats(self) -> dict[str, Any]:
        return {
            **self._queue.stats(),
            "puts": self._puts,
            "rows": self._rows,
            "watermark": self.watermark,
            "rejected": dict(self._rejected),
            "pending_persist": self._forwarder.pending() if self._forwarder is not None else 0,
        }

    async def session_counts(self) -> dict[str, Any]:
        """Per-ticker counts of the current session (for notebooks and persistence)."""
        return self._analytics.per_ticker_counts()

    async def _forward_loop(self) -> None:
        """Forward events, session counts and analytics to the persistence actor in batches."""
        assert self._forwarder is not None
        assert self._persistence is not None
        interval = self._settings.storage.flush_interval_s
        ticks = 0
        while True:
            await asyncio.sleep(interval)
            ticks += 1
            key = self._rollover.key
            if ticks % COUNTS_EVERY == 0 and key is not None:
                counts = self._analytics.per_ticker_counts()
                self._forwarder.add_counts(key, counts, self.watermark)
            events, counts_rows, analytics = self._forwarder.take()
            await self._forward("put_events", events, self._persistence.put_events)
            await self._forward("put_session_counts", counts_rows,
                                self._persistence.put_session_counts)
            await self._forward("put_analytics", analytics, self._persistence.put_analytics)

    async def _forward(
        self, method: str, rows: list[Any], send: Callable[[list[Any]], Awaitable[int]]
    ) -> None:
        if not rows:
            return
        try:
            await send(rows)
        except PersistenceUnavailable:  # restarting: count, keep going
            self._rejected[f"persist_{method}_failed"] += len(rows)
        except Exception:  # a bug on the other side: the same, and say so
            log.exception("forwarding %d rows to %s failed", len(rows), method)
            self._rejected[f"persist_{method}_failed"] += len(rows)

    async def ping(self) -> str:
        return "ok"
