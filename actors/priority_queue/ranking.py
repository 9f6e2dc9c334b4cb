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

import bisect
import heapq
import itertools
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable
from typing import Any

from actors.market.sessions import SessionClock
from config.constants import INDEX_ETFS
from config.settings import QueueConfig
from schemas.events import Event, MarketSession

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
