"""Ranking: which events reach the gateway, in what order, and what is dropped under overload.

`PriorityEventQueue` (pure) is a bounded heap ordered by (priority, arrival); lower number
first, FIFO within a priority so a ticker's events keep their order. Index ETFs in the first
`index_etf_window_min` of the regular session rank 1, then highs/lows, then surges/trends.
Drops are counted per reason: `full`, `near_full` (only priority-1 events are admitted above
the near-full ratio), `stale` (waited longer than the maximum residency), `duplicate` (an
event id seen before: shards replay after a restart, and ids are deterministic).

Error policy: `put` never raises on bad events; it counts them (`invalid`).
"""

from __future__ import annotations

import bisect
import heapq
import itertools
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from actors.market.sessions import SessionClock, session_of
from config.constants import INDEX_ETFS
from config.settings import QueueConfig
from schemas.events import Event, MarketSession, SessionInfo

KIND_PRIORITY = {"high": 2, "low": 2, "surge": 3, "trend": 3}
DEFAULT_PRIORITY = 4
DEDUPE_IDS = 500_000  # event ids remembered for duplicate suppression


class PriorityEventQueue:
    """Bounded priority queue of events; pure (the clock is injected for residency).

    Events are held per market session and `pop` serves the oldest session first, one session
    per call, so a consumer sees every session change in order even when a fast replay crosses
    several sessions between two pulls.
    """

    def __init__(
        self, config: QueueConfig, clock: Callable[[], float] = time.monotonic,
        calendar: SessionClock | None = None,
    ) -> None:
        self._cfg = config
        self._clock = clock
        self._heaps: dict[int, list[tuple[int, int, float, Event]]] = {}
        self._keys: dict[int, tuple[str, str]] = {}  # session start -> (date, session)
        self._order: list[int] = []  # session starts seen and not yet passed, ascending
        self._serving = 0  # start of the session `pop` last served
        self._size = 0
        self._arrival = itertools.count()
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._calendar = calendar or SessionClock()  # for events that come without a session
        self.dropped: Counter[str] = Counter()
        self.accepted = 0
        self.delivered = 0
        self.late_session = 0

    def __len__(self) -> int:
        return self._size

    def priority(self, event: Event, session: SessionInfo) -> int:
        """1 for index ETFs in the first minutes of REGULAR, else by kind."""
        if event.ticker in INDEX_ETFS:
            opening_end = session.open_ms + self._cfg.index_etf_window_min * 60_000
            if session.session is MarketSession.REGULAR and event.time < opening_end:
                return 1
        return KIND_PRIORITY.get(event.kind, DEFAULT_PRIORITY)

    def _is_duplicate(self, event_id: str) -> bool:
        if event_id in self._seen:
            return True
        self._seen[event_id] = None
        if len(self._seen) > DEDUPE_IDS:
            self._seen.popitem(last=False)
        return False

    def note_session(self, info: SessionInfo) -> int:
        """Register a session (e.g. a watermark's) so it is served in order; return its start."""
        if info.start_ms not in self._keys:
            self._keys[info.start_ms] = info.key
            self._heaps[info.start_ms] = []
            bisect.insort(self._order, info.start_ms)
        return info.start_ms

    def put(self, events: Iterable[Event], sessions: Sequence[SessionInfo] = ()) -> int:
        """Admit events; return how many were accepted. `sessions` are the events' sessions
        as their shard computed them (an event outside them is looked up by its time)."""
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
            session = session_of(event.time, sessions, self._calendar)
            prio = self.priority(event, session)
            if self._size >= limit:
                self.dropped["full"] += 1
                continue
            if self._size >= near_full and prio > 1:
                self.dropped["near_full"] += 1
                continue
            start = self.note_session(session)
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
