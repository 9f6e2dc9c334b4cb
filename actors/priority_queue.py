"""The priority queue between detector shards and the gateway.

Pure core (`PriorityEventQueue`): a bounded heap ordered by (priority, arrival); lower number
first, FIFO within a priority so a ticker's events keep their order. Drops are counted per
reason: `full`, `near_full` (only priority-1 events are admitted above the near-full ratio),
`stale` (waited longer than the maximum residency), `duplicate` (an event id seen before:
shards replay after a restart, and ids are deterministic).

Error policy: `put` never raises on bad events; it counts them (`invalid`). `collect` returns
what is there (possibly nothing) after at most `timeout_s`.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import heapq
import itertools
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable
from typing import Any

from actors.sessions import SessionClock
from config.constants import INDEX_ETFS
from config.settings import QueueConfig, Settings
from schemas.api import Collected
from schemas.events import Event, MarketSession, ShardOutput
from schemas.records import AnalyticsRow, SessionCountRow

KIND_PRIORITY = {"high": 2, "low": 2, "surge": 3, "trend": 3}
DEFAULT_PRIORITY = 4
DEDUPE_IDS = 500_000  # event ids remembered for duplicate suppression
COUNTS_EVERY = 5  # persist flushes between two session-count upserts
_ANALYTICS_COLUMNS = frozenset({"net_score", "buy_volume", "sell_volume", "activity_level"})


class PriorityEventQueue:
    """Bounded priority queue of events; pure (the clock is injected for residency).

    Events are held per market session and `pop` serves the oldest session first, one session
    per call, so a consumer sees every session change in order even when a fast replay crosses
    several sessions between two pulls.
    """

    def __init__(self, config: QueueConfig, clock: Callable[[], float] = time.monotonic) -> None:
        self._cfg = config
        self._clock = clock
        self._heaps: dict[int, list[tuple[int, int, float, Event]]] = {}
        self._keys: dict[int, tuple[str, str]] = {}  # session start -> (date, session)
        self._order: list[int] = []  # session starts seen and not yet passed, ascending
        self._serving = 0  # start of the session `pop` last served
        self._size = 0
        self._arrival = itertools.count()
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._sessions = SessionClock()
        self.dropped: Counter[str] = Counter()
        self.accepted = 0
        self.delivered = 0
        self.late_session = 0

    def __len__(self) -> int:
        return self._size

    def priority(self, event: Event) -> int:
        """1 for index ETFs in the first minutes of REGULAR, else by kind."""
        if event.ticker in INDEX_ETFS:
            info = self._sessions.session_at(event.time)
            window_ms = self._cfg.index_etf_window_min * 60_000
            if info.session is MarketSession.REGULAR and event.time < info.open_ms + window_ms:
                return 1
        return KIND_PRIORITY.get(event.kind, DEFAULT_PRIORITY)

    def _is_duplicate(self, event_id: str) -> bool:
        if event_id in self._seen:
            return True
        self._seen[event_id] = None
        if len(self._seen) > DEDUPE_IDS:
            self._seen.popitem(last=False)
        return False

    def note_time(self, ms: int) -> int:
        """Register the session of an event time (e.g. a watermark); return its start."""
        info = self._sessions.session_at(ms)
        if info.start_ms not in self._keys:
            self._keys[info.start_ms] = info.key
            self._heaps[info.start_ms] = []
            bisect.insort(self._order, info.start_ms)
        return info.start_ms

    def put(self, events: Iterable[Event]) -> int:
        """Admit events; return how many were accepted."""
        accepted = 0
        limit = self._cfg.max_size
        near_full = int(limit * self._cfg.near_full_ratio)
        now = self._clock()
        for event in events:
            if not isinstance(event, Event):
                self.dropped["invalid"] += 1
                continue
            if self._is_duplicate(event.id):
                self.dropped["duplicate"] += 1
                continue
            prio = self.priority(event)
            if self._size >= limit:
                self.dropped["full"] += 1
                continue
            if self._size >= near_full and prio > 1:
                self.dropped["near_full"] += 1
                continue
            start = self.note_time(event.time)
            if start < self._serving:
                # A slower shard's event of a session already passed: deliver it now, in the
                # session being served, rather than announce the old session again.
                start = self._serving
                self.late_session += 1
            heapq.heappush(self._heaps[start], (prio, next(self._arrival), now, event))
            self._size += 1
            accepted += 1
        self.accepted += accepted
        return accepted

    def current_session(self) -> tuple[str, str] | None:
        """(date, session) that the next `pop` serves, or None before any data."""
        self._skip_passed()
        return self._keys[self._order[0]] if self._order else None

    def _skip_passed(self) -> None:
        while len(self._order) > 1 and not self._heaps[self._order[0]]:
            passed = self._order.pop(0)
            del self._heaps[passed], self._keys[passed]

    def pop(self, max_events: int) -> list[Event]:
        """Up to `max_events` events of the oldest pending session, in priority order; stale
        ones are dropped and counted."""
        self._skip_passed()
        if not self._order:
            return []
        self._serving = self._order[0]
        heap = self._heaps[self._serving]
        out: list[Event] = []
        max_age_s = self._cfg.max_event_age_ms / 1000
        now = self._clock()
        while heap and len(out) < max_events:
            _, _, enqueued, event = heapq.heappop(heap)
            self._size -= 1
            if now - enqueued > max_age_s:
                self.dropped["stale"] += 1
                continue
            out.append(event)
        self.delivered += len(out)
        return out

    def stats(self) -> dict[str, Any]:
        return {
            "depth": self._size,
            "accepted": self.accepted,
            "delivered": self.delivered,
            "dropped": dict(self.dropped),
            "sessions_pending": len(self._order),
            "late_session": self.late_session,
        }


class PriorityQueueActor:
    """Async actor around `PriorityEventQueue`; merges shard analytics and watermarks.

    Shards call `put`; the gateway pulls with `collect` (pull = backpressure). Events and
    analytics are forwarded in batches to the persistence actor when one is attached.
    """

    def __init__(self, settings: Settings, persistence: Any = None) -> None:
        from actors.analytics import MarketAnalytics

        self._settings = settings
        self._queue = PriorityEventQueue(settings.queue)
        self._analytics = MarketAnalytics(settings.detection.analytics)
        self._sessions = SessionClock()
        self._watermarks: dict[int, int] = {}
        self._has_data = asyncio.Event()
        self._persistence = persistence
        self._to_persist: list[Event] = []
        self._counts_to_persist: list[SessionCountRow] = []
        self._analytics_to_persist: list[AnalyticsRow] = []
        self._sent_counts: dict[tuple[tuple[str, str], str], dict[str, int]] = {}
        self._last_gauge_window: int | None = None
        self._puts = 0
        self._rows = 0
        self._rejected: Counter[str] = Counter()
        self._session_key: tuple[str, str] | None = None
        self._persist_task: asyncio.Task[None] | None = None
        if persistence is not None:
            self._persist_task = asyncio.get_running_loop().create_task(self._persist_loop())

    @property
    def watermark(self) -> int:
        return max(self._watermarks.values(), default=0)

    async def put(self, output: ShardOutput) -> int:
        """Admit one shard output (events, analytics delta, watermark)."""
        self._puts += 1
        self._rows += output.rows
        self._rejected.update(output.rejected)
        prev = self._watermarks.get(output.shard, 0)
        self._watermarks[output.shard] = max(prev, output.watermark)
        self._roll_session()
        if output.watermark:
            self._queue.note_time(output.watermark)
        if output.analytics:  # event counts arrive in the shard deltas (counted once)
            self._analytics.merge(output.analytics)
        accepted = self._queue.put(output.events)
        if output.events and self._persistence is not None:
            self._to_persist.extend(output.events)
        if accepted:
            self._has_data.set()
        return accepted

    def _roll_session(self) -> None:
        """On a market-session change, persist the ending session's counts, then reset."""
        wm = self.watermark
        if not wm:
            return
        key = self._sessions.session_at(wm).key
        if key == self._session_key:
            return
        if self._session_key is not None:
            self._queue_counts(self._session_key, wm)
            self._analytics.reset_session(key)
        self._session_key = key

    def _queue_counts(self, key: tuple[str, str], updated_ms: int) -> None:
        counts = self._analytics.per_ticker_counts()
        rows = [
            SessionCountRow(
                ticker=ticker, session_date=key[0], session=key[1], high_count=c["highs"],
                low_count=c["lows"], surge_count=c["surges"], trend_count=c["trends"],
                updated_ms=updated_ms,
            )
            for ticker, c in counts.items()
            if self._sent_counts.get((key, ticker)) != c
        ]
        for row in rows:
            self._sent_counts[(key, row.ticker)] = counts[row.ticker]
        self._counts_to_persist.extend(rows)

    def _queue_analytics(self, snapshot: dict[str, Any]) -> None:
        gauge = snapshot.get("gauge") or {}
        start = gauge.get("window_start")
        if not start or start == self._last_gauge_window or self._session_key is None:
            return
        self._last_gauge_window = start
        extras = {k: v for k, v in gauge.items() if k not in _ANALYTICS_COLUMNS}
        extras["activity"] = snapshot.get("activity", {})
        self._analytics_to_persist.append(AnalyticsRow(
            time=int(start), session=self._session_key[1],
            net_score=float(gauge.get("net_score", 0.0)),
            buy_volume=float(gauge.get("buy_volume", 0.0)),
            sell_volume=float(gauge.get("sell_volume", 0.0)),
            activity_level=str(gauge.get("activity_level", "")), extras=extras,
        ))

    async def collect(self, max_events: int = 1000, timeout_s: float = 0.5) -> Collected:
        """Events of the oldest pending session in priority order (waits up to `timeout_s`
        when empty) plus the market state; the session reported is the events' session."""
        if not len(self._queue):
            self._has_data.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._has_data.wait(), timeout_s)
        key = self._queue.current_session()
        events = self._queue.pop(max_events)
        wm = self.watermark
        return Collected(
            events=events,
            watermark=wm,
            session=key[1] if key else MarketSession.CLOSED.value,
            session_date=key[0] if key else "",
            analytics=self._snapshot(wm),
            dropped=dict(self._queue.dropped),
        )

    def _snapshot(self, wm: int) -> dict[str, Any]:
        if not wm:
            return {}
        snapshot = self._analytics.snapshot(wm)
        if self._persistence is not None:
            self._queue_analytics(snapshot)
        return snapshot

    async def stats(self) -> dict[str, Any]:
        return {
            **self._queue.stats(),
            "puts": self._puts,
            "rows": self._rows,
            "watermark": self.watermark,
            "rejected": dict(self._rejected),
            "pending_persist": len(self._to_persist),
        }

    async def session_counts(self) -> dict[str, Any]:
        """Per-ticker counts of the current session (for notebooks and persistence)."""
        return self._analytics.per_ticker_counts()

    async def _persist_loop(self) -> None:
        """Forward events, session counts and analytics to the persistence actor in batches."""
        interval = self._settings.storage.flush_interval_s
        ticks = 0
        while True:
            await asyncio.sleep(interval)
            ticks += 1
            if ticks % COUNTS_EVERY == 0 and self._session_key is not None:
                self._queue_counts(self._session_key, self.watermark)
            await self._forward("put_events", "_to_persist")
            await self._forward("put_session_counts", "_counts_to_persist")
            await self._forward("put_analytics", "_analytics_to_persist")

    async def _forward(self, method: str, attr: str) -> None:
        batch = getattr(self, attr)
        if not batch:
            return
        setattr(self, attr, [])
        try:
            await getattr(self._persistence, method).remote(batch)
        except Exception:  # the persistence actor is restarting: count, keep going
            self._rejected[f"persist_{method}_failed"] += len(batch)

    async def ping(self) -> str:
        return "ok"
