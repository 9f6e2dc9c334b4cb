"""`GatewayDeps` over the system's Ray actors: what the gateway uses when it runs on Ray.

`GatewayRayActor` (`cluster/graph.py`) builds one on the actor's loop from the queue, universe
and ingest handles (`actors.handles`); the account store and the event history open their own
SQL engine here (an engine cannot travel between processes), or fall back to memory / nothing
when storage is disabled.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from actors.handles import IngestHandle, QueueHandle, UniverseHandle
from config.settings import Settings
from gateway.deps import InMemoryUserStore, UserStore
from schemas.api import Collected, EventQuery, UserView

log = logging.getLogger(__name__)

INGEST_FIELDS = ("rows_in", "rows_sent", "batches_sent", "avg_batch_rows", "events",
                 "lost_on_restart", "state")


class RayDeps:
    """The gateway's view of the running system, over actor handles."""

    def __init__(
        self,
        queue: QueueHandle,
        universe: UniverseHandle,
        ingest: IngestHandle | None = None,
        *,
        user_store: UserStore | None = None,
        history: Any = None,
    ) -> None:
        self._queue = queue
        self._universe = universe
        self._ingest = ingest
        self.user_store: UserStore = user_store or InMemoryUserStore()
        self._history = history
        self._last_events: tuple[float, int] | None = None

    @classmethod
    def open(
        cls, settings: Settings, queue: QueueHandle, universe: UniverseHandle,
        ingest: IngestHandle | None = None,
    ) -> RayDeps:
        """Build over handles, with SQL accounts and history when storage is enabled."""
        if not settings.storage.enabled:
            return cls(queue, universe, ingest)
        from storage.database import engine_for
        from storage.history import EventHistory
        from storage.users import SqlUserStore

        engine = engine_for(settings.database_url(), settings.storage)
        return cls(
            queue, universe, ingest, user_store=SqlUserStore(engine), history=EventHistory(engine)
        )

    async def collect(self, max_events: int, timeout_s: float) -> Collected:
        return await self._queue.collect(max_events, timeout_s)

    async def user_view(self, user_id: str) -> UserView:
        return await self._universe.user_view(user_id)

    async def list_universes(self) -> dict[str, int]:
        return await self._universe.list_universes()

    async def universe_tickers(self, name: str) -> list[str]:
        return await self._universe.universe_tickers(name)

    async def select_universes(self, user_id: str, tracker: str, names: list[str]) -> UserView:
        return await self._universe.select(user_id, tracker, names)

    async def set_filters(self, user_id: str, filters: dict[str, Any]) -> UserView:
        return await self._universe.set_filters(user_id, filters)

    async def system_status(self) -> dict[str, Any]:
        """Feed state, lag, rates and queue depth from the ingest and queue actors."""
        calls = [self._queue.stats()]
        if self._ingest is not None:
            calls.append(self._ingest.stats())
        results = await asyncio.gather(*calls, return_exceptions=True)
        queue = results[0] if isinstance(results[0], dict) else {}
        ingest = results[1] if len(results) > 1 and isinstance(results[1], dict) else {}
        feed = (ingest.get("source_stats") or {}).get("feed") or {}
        return {
            # A live feed reports its connection state; other sources their run state.
            "feed": feed.get("state") or (ingest.get("state", "unknown") if ingest else "unknown"),
            "source": ingest.get("source"),
            "lag_ms": ingest.get("lag_ms"),
            "ticks_per_s": ingest.get("ticks_per_s"),
            "events_per_s": self._events_rate(ingest.get("events")),
            "queue_depth": queue.get("depth"),
            "dropped": queue.get("dropped", {}),
            "rejected": ingest.get("rejected", {}),
            "ingest": {k: ingest.get(k) for k in INGEST_FIELDS if k in ingest},
            "queue": {k: queue.get(k) for k in ("accepted", "delivered", "depth") if k in queue},
            "errors": [type(r).__name__ for r in results if isinstance(r, BaseException)],
        }

    def _events_rate(self, events: Any) -> float | None:
        if not isinstance(events, int):
            return None
        now = time.monotonic()
        last, self._last_events = self._last_events, (now, events)
        if last is None or now <= last[0]:
            return None
        return round(max(0, events - last[1]) / (now - last[0]), 1)

    async def event_history(self, query: EventQuery) -> list[dict[str, Any]]:
        if self._history is None:
            return []
        rows: list[dict[str, Any]] = await self._history.query(query)
        return rows
