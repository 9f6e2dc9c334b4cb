"""The priority-queue actor: shards `put` their outputs, the gateway `collect`s events."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from typing import Any

from actors.market.sessions import SessionClock
from actors.priority_queue.ranking import _ANALYTICS_COLUMNS, COUNTS_EVERY, PriorityEventQueue
from config.settings import Settings
from schemas.api import Collected
from schemas.events import Event, MarketSession, ShardOutput
from schemas.records import AnalyticsRow, SessionCountRow


class PriorityQueueActor:
    """Async actor around `PriorityEventQueue`; merges shard analytics and watermarks.

    Shards call `put`; the gateway pulls with `collect` (pull = backpressure). Events and
    analytics are forwarded in batches to the persistence actor when one is attached.
    """

    def __init__(self, settings: Settings, persistence: Any = None) -> None:
        from actors.market.analytics import MarketAnalytics

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
