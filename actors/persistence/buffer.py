"""Rows awaiting a database write: validated, converted and held in bounded queues (pure).

One queue per kind (events, per-session counts, analytics). Bad input is rejected with a counted
reason; past `max_rows` the oldest rows are dropped and counted; a failed write gives its rows
back to the front. No I/O, no clock: the persistence actor around it does both.
"""

from __future__ import annotations

import datetime as dt
import math
from collections import Counter, OrderedDict, deque
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Generic, TypeVar

import msgspec

from actors.market.sessions import SessionClock, SessionInfo
from schemas.events import Direction, Event, EventKind
from schemas.records import AnalyticsRow, SessionCountRow

T = TypeVar("T")

EVENTS = "events"
SESSION_COUNTS = "session_counts"
ANALYTICS = "analytics"
KINDS = (EVENTS, SESSION_COUNTS, ANALYTICS)

# (event_id, ticker, kind, direction, price, time, session, session_date, count, pct_change,
#  volume, extras JSON text) -- the order of `EVENT_COLUMNS`.
EventRow = tuple[str, str, str, str, float, int, str, dt.date, int, float, float, str | None]
SessionKey = tuple[str, dt.date, str]

MAX_TICKER_LEN = 16
MAX_ID_LEN = 128
MAX_TIME_MS = 2**53  # beyond any plausible Unix ms; guards BIGINT and float round-trips
COLUMN_FIELDS = frozenset(
    {"id", "ticker", "kind", "direction", "price", "time", "session", "count"}
    | {"pct_change", "volume"}
)
EVENT_KINDS = frozenset(k.value for k in EventKind)
DIRECTIONS = frozenset(d.value for d in Direction)
_json = msgspec.json.Encoder()


class RowQueue(Generic[T]):
    """FIFO of rows, at most `max_rows`; overflow drops the oldest, counted under `reason`."""

    def __init__(self, max_rows: int, dropped: Counter[str], reason: str) -> None:
        self._rows: deque[T] = deque()
        self._max = max_rows
        self._dropped = dropped
        self._reason = reason

    def __len__(self) -> int:
        return len(self._rows)

    def extend(self, rows: Iterable[T]) -> None:
        """Append rows, then enforce the bound."""
        self._rows.extend(rows)
        self._trim()

    def take(self, n: int) -> list[T]:
        """Remove and return up to `n` of the oldest rows."""
        rows = self._rows
        return [rows.popleft() for _ in range(min(n, len(rows)))]

    def restore(self, rows: Sequence[T]) -> None:
        """Put rows back in front after a failed write (they are the oldest again)."""
        self._rows.extendleft(reversed(rows))
        self._trim()

    def _trim(self) -> None:
        excess = len(self._rows) - self._max
        if excess > 0:
            for _ in range(excess):
                self._rows.popleft()
            self._dropped[self._reason] += excess


class LatestRows:
    """Session-count rows keyed by (ticker, date, session): only the newest row per key is kept."""

    def __init__(self, max_rows: int, dropped: Counter[str], reason: str) -> None:
        self._rows: OrderedDict[SessionKey, dict[str, Any]] = OrderedDict()
        self._max = max_rows
        self._dropped = dropped
        self._reason = reason

    def __len__(self) -> int:
        return len(self._rows)

    def put(self, row: dict[str, Any]) -> None:
        """Replace the row of its key (a newer total supersedes an older one)."""
        key = session_key(row)
        self._rows.pop(key, None)
        self._rows[key] = row
        self._trim()

    def take(self, n: int) -> list[dict[str, Any]]:
        """Remove and return up to `n` rows, least recently updated first."""
        rows = self._rows
        return [rows.popitem(last=False)[1] for _ in range(min(n, len(rows)))]

    def restore(self, rows: Sequence[dict[str, Any]]) -> None:
        """Put back rows that failed to write, unless a newer row for the key arrived meanwhile."""
        for row in reversed(rows):
            key = session_key(row)
            if key not in self._rows:
                self._rows[key] = row
                self._rows.move_to_end(key, last=False)
        self._trim()

    def _trim(self) -> None:
        excess = len(self._rows) - self._max
        for _ in range(max(excess, 0)):
            self._rows.popitem(last=False)
        if excess > 0:
            self._dropped[self._reason] += excess


def session_key(row: Mapping[str, Any]) -> SessionKey:
    """The identity of a session-count row."""
    return (row["ticker"], row["session_date"], row["session"])


def event_problem(event: Event) -> str | None:
    """Why an event cannot be stored (a counted reason), or None if it can."""
    if not event.id or len(event.id) > MAX_ID_LEN:
        return "event_bad_id"
    if not event.ticker or len(event.ticker) > MAX_TICKER_LEN:
        return "event_bad_ticker"
    if event.kind not in EVENT_KINDS or event.direction not in DIRECTIONS:
        return "event_bad_kind"
    if not (math.isfinite(event.price) and event.price > 0):
        return "event_bad_price"
    if not 0 < event.time < MAX_TIME_MS:
        return "event_bad_time"
    if not (math.isfinite(event.pct_change) and math.isfinite(event.volume)):
        return "event_not_finite"
    return None


class SessionLookup:
    """Session name and date of event times; O(1) while times stay in one session."""

    __slots__ = ("_clock", "_info")

    def __init__(self) -> None:
        self._clock = SessionClock()
        self._info: SessionInfo | None = None

    def at(self, ms: int) -> SessionInfo:
        """The session containing `ms`."""
        info = self._info
        if info is None or not info.start_ms <= ms < info.end_ms:
            info = self._info = self._clock.session_at(ms)
        return info


def event_row(event: Event, sessions: SessionLookup) -> EventRow:
    """Convert a (valid) event to an `event_history` row; kind-specific fields go to extras."""
    data = msgspec.to_builtins(event)  # defaults omitted: extras stay small
    extras = {k: v for k, v in data.items() if k not in COLUMN_FIELDS}
    info = sessions.at(event.time)
    return (
        event.id,
        event.ticker,
        event.kind,
        event.direction,
        float(event.price),
        int(event.time),
        event.session or info.session.value,  # the shard's session wins when it gave one
        info.date,
        int(event.count),
        float(event.pct_change),
        float(event.volume),
        _json.encode(extras).decode() if extras else None,
    )


class PersistenceBuffer:
    """Validated rows awaiting a write, one bounded queue per kind, with drop/reject counters."""

    def __init__(self, max_rows: int) -> None:
        self.dropped: Counter[str] = Counter()
        self.rejected: Counter[str] = Counter()
        self.events: RowQueue[EventRow] = RowQueue(max_rows, self.dropped, "events_buffer_full")
        self.session_counts = LatestRows(max_rows, self.dropped, "session_counts_buffer_full")
        self.analytics: RowQueue[dict[str, Any]] = RowQueue(
            max_rows, self.dropped, "analytics_buffer_full"
        )
        self._sessions = SessionLookup()

    def add_events(self, events: Iterable[Any]) -> int:
        """Queue events; return how many were accepted (the rest are counted as rejected)."""
        rows: list[EventRow] = []
        for item in events:
            event = _as_struct(item, Event)
            problem = "event_malformed" if event is None else event_problem(event)
            if problem or event is None:
                self.rejected[problem or "event_malformed"] += 1
                continue
            rows.append(event_row(event, self._sessions))
        self.events.extend(rows)
        return len(rows)

    def add_session_counts(self, rows: Iterable[Any]) -> int:
        """Queue per-session count totals; return how many were accepted."""
        accepted = 0
        for item in rows:
            row = _session_count_values(_as_struct(item, SessionCountRow))
            if row is None:
                self.rejected["session_count_malformed"] += 1
                continue
            self.session_counts.put(row)
            accepted += 1
        return accepted

    def add_analytics(self, rows: Iterable[Any]) -> int:
        """Queue 10-second analytics records; return how many were accepted."""
        values = []
        for item in rows:
            row = _analytics_values(_as_struct(item, AnalyticsRow))
            if row is None:
                self.rejected["analytics_malformed"] += 1
            else:
                values.append(row)
        self.analytics.extend(values)
        return len(values)

    def take(self, kind: str, n: int) -> list[Any]:
        """Remove up to `n` rows of `kind` for a write."""
        return self._queue(kind).take(n)

    def restore(self, kind: str, rows: Sequence[Any]) -> None:
        """Give back rows of `kind` whose write failed."""
        self._queue(kind).restore(rows)

    def sizes(self) -> dict[str, int]:
        """Rows waiting per kind."""
        return {kind: len(self._queue(kind)) for kind in KINDS}

    def _queue(self, kind: str) -> RowQueue[Any] | LatestRows:
        queues: dict[str, RowQueue[Any] | LatestRows] = {
            EVENTS: self.events,
            SESSION_COUNTS: self.session_counts,
            ANALYTICS: self.analytics,
        }
        return queues[kind]


S = TypeVar("S", bound=msgspec.Struct)


def _as_struct(item: Any, kind: type[S]) -> S | None:
    if isinstance(item, kind):
        return item
    try:
        return msgspec.convert(item, kind, from_attributes=True)
    except (msgspec.ValidationError, TypeError):
        return None


def _session_count_values(row: SessionCountRow | None) -> dict[str, Any] | None:
    if row is None or not row.ticker or len(row.ticker) > MAX_TICKER_LEN:
        return None
    try:
        day = dt.date.fromisoformat(row.session_date)
    except ValueError:
        return None
    values = msgspec.structs.asdict(row)
    values["session_date"] = day
    return values


def _analytics_values(row: AnalyticsRow | None) -> dict[str, Any] | None:
    if row is None or not 0 < row.time < MAX_TIME_MS:
        return None
    numbers = (row.net_score, row.buy_volume, row.sell_volume)
    if not all(math.isfinite(x) for x in numbers):
        return None
    values = msgspec.structs.asdict(row)
    values["extras"] = values["extras"] or None
    return values
