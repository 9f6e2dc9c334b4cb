"""Per-user emission state: session lists, filtered payloads, seq, resume window (pure).

The gateway's emission loop feeds every `Collected` pull into `Emitter.advance`, which returns
the steps to deliver in order: payloads per connected user and, on a market-session change, a
`SessionReset`. No I/O, no clock: cycles are counted by calls to `advance`.

Fan-out cost: each event is JSON-encoded once (`msgspec.Raw`) and shared by every payload that
carries it; a cycle's events are indexed by ticker, so a user with a universe costs a set
intersection, not a scan; users with the same view (tickers + filters) share one selection.
Each payload is encoded once, when it is built (`msgspec.Raw`, sent verbatim by the gateway's
codec), and the resume rings keep only those bytes: hundreds of thousands of kept payloads
then cost the garbage collector nothing (as dicts they made every full collection a pause of
a second or more with 1,000 users).

Seq: every user has one stream; each non-empty payload gets the next seq and is kept in a
ring of `resume_payloads`. A connection that comes back with `last_seq` inside the ring gets
exactly the payloads after it; anything else gets a snapshot of the session so far. Streams
of users without connections keep recording for `resume_payloads` cycles, then are dropped;
a new stream starts above every seq ever issued, so an old `last_seq` can never alias.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from itertools import chain
from operator import itemgetter
from typing import Any

import msgspec

from config.settings import GatewayConfig
from schemas.api import Collected, UserFilters, UserView
from schemas.events import Event, event_decoder, event_encoder

# The six lists of a payload, by slot index.
SLOTS: tuple[str, ...] = ("highs", "lows", "surge_up", "surge_down", "trend_up", "trend_down")
_SLOT_OF: dict[tuple[str, str], int] = {
    ("surge", "up"): 2,
    ("surge", "down"): 3,
    ("trend", "up"): 4,
    ("trend", "down"): 5,
}
_STRENGTH_RANK = {"any": 0, "weak": 1, "moderate": 2, "strong": 3}

Payload = msgspec.Raw  # one `stock_data` payload, JSON-encoded once
Lists = list[list[msgspec.Raw]]
Kept = tuple[int, int, Payload]  # a ring entry: (seq, events, payload); a tuple of atoms
_payload_encoder = msgspec.json.Encoder()


class Payloads(list[Payload]):
    """Payloads in order, with the number of events they carry in all (for metrics)."""

    events: int = 0


def slot_of(event: Event) -> int | None:
    """The payload list an event belongs in, or None for an unknown kind/direction."""
    if event.kind == "high":
        return 0
    if event.kind == "low":
        return 1
    return _SLOT_OF.get((event.kind, event.direction))


def price_band(price: float) -> str:
    """The surge filter's price range of a price: penny < $1, low < $25, mid < $100, high."""
    if price < 1:
        return "penny"
    if price < 25:
        return "low"
    if price < 100:
        return "mid"
    return "high"


def decode_payload(payload: Payload | dict[str, Any]) -> dict[str, Any]:
    """A payload as plain data (events as dicts), e.g. for tests and notebooks."""
    return msgspec.json.decode(msgspec.json.encode(payload))  # type: ignore[no-any-return]


def _choice(value: str | Sequence[str]) -> frozenset[str] | None:
    """A filter choice as a set; None means any."""
    values = [value] if isinstance(value, str) else list(value)
    return None if not values or "any" in values else frozenset(values)


class CompiledView:
    """A `UserView` ready for fan-out: a ticker set and an event predicate."""

    __slots__ = ("_bands", "_triggers", "filters", "invalid", "key", "tickers", "trivial")

    def __init__(self, view: UserView | None) -> None:
        tickers = None if view is None or view.tickers is None else frozenset(view.tickers)
        raw_filters = {} if view is None else view.filters
        self.invalid = False
        try:
            self.filters = msgspec.convert(raw_filters, UserFilters)
        except msgspec.ValidationError:
            self.filters, self.invalid = UserFilters(), True  # keep-all beats hiding events
        self.tickers = tickers
        self.trivial = self.filters == UserFilters()
        self._triggers = _choice(self.filters.surge.trigger_type)
        self._bands = _choice(self.filters.surge.price_range)
        self.key: Hashable = (tickers, msgspec.json.encode(self.filters))

    def accepts(self, event: Event) -> bool:
        """Whether the user's filters keep `event` (the ticker set is checked separately)."""
        kind = event.kind
        if kind in ("high", "low"):
            hl = self.filters.highlow
            return event.count >= hl.min_count and event.volume >= hl.min_volume
        if kind == "trend":
            tr = self.filters.trends
            rank = _STRENGTH_RANK.get(event.strength or "", 0)
            if rank < _STRENGTH_RANK[tr.strength]:
                return False
            return tr.vwap_position == "any" or event.vwap_position == tr.vwap_position
        if kind == "surge":
            sf = self.filters.surge
            if abs(event.magnitude or 0.0) < sf.magnitude:
                return False
            if self._triggers is not None and event.trigger not in self._triggers:
                return False
            return self._bands is None or price_band(event.price) in self._bands
        return True


# An event of this cycle with its place in the arrival order, its payload slot and its wire
# JSON (encoded once): (order, slot, event, raw).
Encoded = tuple[int, int, Event, msgspec.Raw]
# A session-list entry: (ticker, raw). Only atoms, so the garbage collector stops tracking it:
# the lists hold up to 6 x 20,000 events, and as tracked objects they added ~70 ms to every
# full collection (a late joiner's filters decode the few events they need again).
Listed = tuple[str, msgspec.Raw]


@dataclass(frozen=True, slots=True)
class SessionReset:
    """The market session changed; clients clear their lists."""

    session: str
    session_date: str
    previous: str
    previous_date: str

    def to_dict(self) -> dict[str, str]:
        """The `session_reset` message."""
        return {
            "session": self.session,
            "session_date": self.session_date,
            "previous": self.previous,
        }


@dataclass(frozen=True, slots=True)
class Delivery:
    """Payloads to emit now, one per connected user (users without one got nothing new)."""

    payloads: dict[str, Payload]
    events: int = 0  # events carried by these payloads in all (for metrics)


Step = SessionReset | Delivery


@dataclass(slots=True)
class _Stream:
    view: CompiledView
    head: int  # the last seq issued (or the stream's start)
    start: int  # resumable history begins after this seq
    ring: deque[Kept]
    connections: int = 0
    idle_cycles: int = 0


@dataclass(slots=True)
class _Batch:
    events: list[Encoded]
    by_ticker: dict[str, list[Encoded]] = field(default_factory=dict)


class Emitter:
    """Session lists and per-user streams; turns pulls from the queue into payloads."""

    def __init__(self, config: GatewayConfig, *, seq_base: int = 0) -> None:
        self._cfg = config
        self._lists: list[deque[Listed]] = [deque(maxlen=config.session_events_max) for _ in SLOTS]
        self._streams: dict[str, _Stream] = {}
        self._seq_high = seq_base
        self._order = 0
        self._key: tuple[str, str] | None = None  # (session_date, session)
        self.watermark = 0
        self.analytics: dict[str, Any] = {}
        self.dropped: dict[str, int] = {}
        self.counters: Counter[str] = Counter()
        self._snapshots: dict[Hashable, Lists] = {}

    # -- connections ------------------------------------------------------------------------

    @property
    def session(self) -> str:
        """The current market session ("" until the first watermark)."""
        return self._key[1] if self._key else ""

    @property
    def session_date(self) -> str:
        """The current session's ISO date ("" until the first watermark)."""
        return self._key[0] if self._key else ""

    def attach(self, user_id: str, view: UserView | None = None) -> None:
        """Count a connection of `user_id`; start their stream if there is none."""
        stream = self._streams.get(user_id)
        if stream is None:
            self._seq_high += 1  # above every seq issued, so no old last_seq aliases
            stream = _Stream(CompiledView(view), self._seq_high, self._seq_high, self._ring())
            self._streams[user_id] = stream
            self.counters["streams_started"] += 1
        elif view is not None:
            stream.view = CompiledView(view)
        stream.connections += 1
        stream.idle_cycles = 0
        if stream.view.invalid:
            self.counters["invalid_filters"] += 1

    def detach(self, user_id: str) -> None:
        """Count a closed connection; the stream keeps recording for the resume window."""
        stream = self._streams.get(user_id)
        if stream is not None and stream.connections > 0:
            stream.connections -= 1

    def set_view(self, user_id: str, view: UserView) -> None:
        """Apply a changed universe selection or filters to later payloads."""
        stream = self._streams.get(user_id)
        if stream is not None:
            stream.view = CompiledView(view)

    def is_connected(self, user_id: str) -> bool:
        """Whether `user_id` has at least one attached connection."""
        stream = self._streams.get(user_id)
        return stream is not None and stream.connections > 0

    def head(self, user_id: str) -> int | None:
        """The last seq of the user's stream (None without a stream)."""
        stream = self._streams.get(user_id)
        return None if stream is None else stream.head

    def _ring(self) -> deque[Kept]:
        return deque(maxlen=self._cfg.resume_payloads)

    # -- catching up ------------------------------------------------------------------------

    def catch_up(self, user_id: str, last_seq: int | None) -> Payloads:
        """What a just-attached connection must receive before live payloads, in order.

        With a `last_seq` inside the resume window: the payloads after it (possibly none).
        Otherwise: one snapshot of the session's events so far (none if there are none).
        """
        stream = self._streams[user_id]
        out = Payloads()
        if last_seq is not None and self._resumable(stream, last_seq):
            self.counters["resumes"] += 1
            for seq, events, payload in stream.ring:
                if seq > last_seq:
                    out.append(payload)
                    out.events += events
            return out
        if last_seq is not None:
            self.counters["resume_misses"] += 1
        lists = self._snapshot_lists(stream.view)
        if not any(lists):
            return out
        self.counters["snapshots"] += 1
        out.append(self._payload(stream.head, lists))
        out.events = sum(map(len, lists))
        return out

    @staticmethod
    def _resumable(stream: _Stream, last_seq: int) -> bool:
        floor = max(stream.start, stream.ring[0][0] - 1) if stream.ring else stream.head
        return floor <= last_seq <= stream.head

    def _snapshot_lists(self, view: CompiledView) -> Lists:
        cached = self._snapshots.get(view.key)
        if cached is None:
            cached = [self._latest(lst, view) for lst in self._lists]
            self._snapshots[view.key] = cached
        return cached

    def _latest(self, events: deque[Listed], view: CompiledView) -> list[msgspec.Raw]:
        """The newest `late_join_per_list` events of one list that the view keeps, oldest first."""
        limit = self._cfg.late_join_per_list
        picked: list[msgspec.Raw] = []
        for ticker, raw in reversed(events):
            if view.tickers is not None and ticker not in view.tickers:
                continue
            if view.trivial or view.accepts(event_decoder.decode(raw)):
                picked.append(raw)
                if len(picked) >= limit:
                    break
        picked.reverse()
        return picked

    # -- cycles -----------------------------------------------------------------------------

    def advance(self, collected: Collected) -> list[Step]:
        """Take one pull from the queue; return what to deliver, in order."""
        self._snapshots.clear()
        self.watermark = max(self.watermark, collected.watermark)
        self.dropped = dict(collected.dropped)
        steps: list[Step] = []
        key = (collected.session_date, collected.session) if collected.session_date else None
        events = collected.events
        if key is not None and self._key is not None and key != self._key:
            late = [e for e in events if e.session and e.session != key[1]]
            if late:  # events of the ending session still go out under its name
                events = [e for e in events if not (e.session and e.session != key[1])]
                steps.extend(self._deliver(late))
            steps.append(self._reset(key))
        elif key is not None and self._key is None:
            self._key = key
        if collected.analytics:
            self.analytics = collected.analytics
        steps.extend(self._deliver(events))
        self._age_streams()
        return steps

    def _reset(self, key: tuple[str, str]) -> SessionReset:
        previous = self._key or ("", "")
        self._key = key
        for lst in self._lists:
            lst.clear()
        for stream in self._streams.values():
            stream.ring.clear()
            stream.start = stream.head  # nothing before a reset can be resumed
        self.analytics = {}
        self.counters["session_resets"] += 1
        return SessionReset(key[1], key[0], previous[1], previous[0])

    def _deliver(self, events: Iterable[Event]) -> list[Step]:
        batch = self._encode(events)
        if not batch.events:
            return []
        selections: dict[Hashable, Lists | None] = {}
        payloads: dict[str, Payload] = {}
        carried = 0
        for user_id, stream in self._streams.items():
            view = stream.view
            if view.key not in selections:
                selections[view.key] = self._select(view, batch)
            lists = selections[view.key]
            if lists is None:
                continue
            stream.head += 1
            self._seq_high = max(self._seq_high, stream.head)
            payload = self._payload(stream.head, lists)
            count = sum(map(len, lists))
            stream.ring.append((stream.head, count, payload))
            self.counters["payloads_built"] += 1
            if stream.connections:
                payloads[user_id] = payload
                carried += count
        return [Delivery(payloads, carried)] if payloads else []

    def _encode(self, events: Iterable[Event]) -> _Batch:
        batch = _Batch([])
        for event in events:
            slot = slot_of(event)
            if slot is None:
                self.counters["rejected_unknown_kind"] += 1
                continue
            self._order += 1
            raw = msgspec.Raw(event_encoder.encode(event))
            enc = (self._order, slot, event, raw)
            lst = self._lists[slot]
            if len(lst) == lst.maxlen:
                self.counters["session_list_evicted"] += 1
            lst.append((event.ticker, raw))
            batch.events.append(enc)
            batch.by_ticker.setdefault(event.ticker, []).append(enc)
        self.counters["events_in"] += len(batch.events)
        return batch

    @staticmethod
    def _select(view: CompiledView, batch: _Batch) -> Lists | None:
        """The batch's events that `view` keeps, split into the six lists; None if none."""
        if view.tickers is None:
            candidates: Iterable[Encoded] = batch.events
        else:
            common = batch.by_ticker.keys() & view.tickers
            if not common:
                return None
            if len(common) == 1:
                candidates = batch.by_ticker[next(iter(common))]
            else:
                found = chain.from_iterable(batch.by_ticker[t] for t in common)
                candidates = sorted(found, key=itemgetter(0))
        lists: Lists = [[] for _ in SLOTS]
        for enc in candidates:
            if view.trivial or view.accepts(enc[2]):
                lists[enc[1]].append(enc[3])
        return lists if any(lists) else None

    def _payload(self, seq: int, lists: Lists) -> Payload:
        """The `stock_data` payload, encoded (events are spliced in as they were encoded)."""
        return msgspec.Raw(_payload_encoder.encode({
            "seq": seq,
            "session": self.session,
            "highs": lists[0],
            "lows": lists[1],
            "surging": {"up": lists[2], "down": lists[3]},
            "trending": {"up": lists[4], "down": lists[5]},
            "activity": self.analytics.get("activity", {}),
            "gauge": self.analytics.get("gauge", {}),
        }))

    def _age_streams(self) -> None:
        expired = []
        for user_id, stream in self._streams.items():
            if stream.connections:
                continue
            stream.idle_cycles += 1
            if stream.idle_cycles > self._cfg.resume_payloads:
                expired.append(user_id)
        for user_id in expired:
            del self._streams[user_id]
            self.counters["streams_expired"] += 1

    # -- introspection ----------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """Plain-data state for `/api/metrics` and notebooks."""
        return {
            "session": self.session,
            "session_date": self.session_date,
            "watermark": self.watermark,
            "streams": len(self._streams),
            "users_connected": sum(1 for s in self._streams.values() if s.connections),
            "session_events": {
                name: len(lst) for name, lst in zip(SLOTS, self._lists, strict=True)
            },
            **self.counters,
        }
