"""The per-shard detection engine: validation, sessions, HighLow, bars, Surge, Trend, analytics.

Pure (no Ray, no wall clock). For every trade batch:

1. validate (`actors/detection/validation.py`: duplicates, then the value rules only if the
   batch carries no verdict yet, then per-ticker order and jumps; counted by reason);
2. order the rows by ticker once (stable, so each ticker keeps its arrival order; tickers in
   sorted order) and split them by market session (event time), computed once per batch and
   reported as `sessions` for the shard's output;
3. per session, for all its tickers at once: HighLow on the effective flags (Form T resolved
   for the session), then the trades that may set the last price (`FLAG_LAST`, with their size
   when `FLAG_VOLUME`) go to the per-second bar builder and the analytics, which take the
   validator's verdict as it is;
4. bars that the engine watermark (max event time seen) has closed go to Surge and Trend.

A live shard gets thousands of tickers with a few rows each per batch, so steps 2-3 never loop
over tickers in Python: the detectors keep per-ticker state in arrays indexed by the ids of one
`TickerTable` and work on the whole batch with segment-wise numpy operations
(`actors/detection/ticker_table.py`); Python loops only over rows that fire.

A batch spanning more event time than half the bar builder's capacity is processed in time
slices, draining bars after each. Volume-only prints (odd lots) do not reach the bar builder,
which takes priced trades only, so built bars undercount volume where odd lots trade.

A ticker's first trade (or bar) in a new session resets its state in each detector: HighLow on
trades, Surge/Trend on the first bar of the new session (bars are handed out in event-time
order, so an old-session bar is never judged with new-session state), the shard analytics when
the engine's rows enter a new session.

Bar inputs (`process_bars`: Polygon `A`/`AM`, Lean and Alpha Vantage minute bars) drive HighLow
as four trades per bar, each with the bar's volume as its size: the open at `start`, then the
extreme nearer the open at start + d/3, the other extreme at start + 2d/3 and the close at
end − 1 (d = end − start; the high goes first on a tie). A bar's path is unknown; visiting the
nearer extreme first is the usual assumption (it is what a random walk most likely did), and
the trade times keep the cooldown meaningful inside a minute bar (validation counts rejects
per such trade). The bars themselves go to Surge/Trend through `SecondBarBuilder.add_bars`.
Feed a ticker either trades or bars: both would show HighLow the same prices twice.

Determinism: the same rows in the same order give the same events for any batch split (given
a time-ordered stream: bars are handed out by watermark). Events of one call are sorted by
(time, ticker, kind, id).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from itertools import pairwise
from typing import Any

import msgpack
import numpy as np
import numpy.typing as npt

from actors.detection.analytics import ShardAnalytics
from actors.detection.bars import Bar, SecondBarBuilder
from actors.detection.highlow import NEVER, HighLowDetector
from actors.detection.surge import SurgeDetector
from actors.detection.ticker_table import Groups, TickerTable, grow
from actors.detection.trend import TrendDetector
from actors.detection.validation import Validator
from actors.market.sessions import SessionClock, SessionInfo
from config.detection import DetectionConfig
from schemas.batches import (
    F64,
    FLAG_FORM_T,
    FLAG_LAST,
    FLAG_VOLUME,
    FLAGS_REGULAR,
    I64,
    U8,
    BarBatch,
    TradeBatch,
)
from schemas.events import Event, MarketSession

SNAPSHOT_VERSION = 1
EXTENDED = frozenset({MarketSession.PRE, MarketSession.AFTER})
Rows = npt.NDArray[np.int64]


def effective_flags_array(flags: U8, extended: bool) -> U8:
    """`conditions.effective_flags` over an array: resolve Form T for the session."""
    form_t = (flags & FLAG_FORM_T) != 0
    if not form_t.any():
        return flags
    resolved = flags & (FLAGS_REGULAR if extended else FLAG_VOLUME)
    return np.where(form_t, resolved, flags).astype(np.uint8)


def group_rows(sym: npt.NDArray[np.str_]) -> list[tuple[str, Rows]]:
    """(ticker, row indices) per distinct ticker, tickers sorted, rows in arrival order."""
    n = len(sym)
    if n == 0:
        return []
    if (sym == sym[0]).all():
        return [(str(sym[0]), np.arange(n, dtype=np.int64))]
    uniq, inverse = np.unique(sym, return_inverse=True)
    order = np.argsort(inverse, kind="stable")
    cuts = np.cumsum(np.bincount(inverse))[:-1]
    return list(zip(uniq.tolist(), np.split(order, cuts), strict=True))


def time_slices(t: I64, span_ms: int) -> list[slice]:
    """Row ranges of a time-ordered column covering at most `span_ms` each (one if unordered)."""
    n = len(t)
    if n == 0 or int(t[-1]) - int(t[0]) <= span_ms or (np.diff(t) < 0).any():
        return [slice(0, n)]
    edges = np.arange(int(t[0]) + span_ms, int(t[-1]) + 1, span_ms)
    cuts = [0, *np.searchsorted(t, edges, side="left").tolist(), n]
    return [slice(a, b) for a, b in pairwise(cuts) if b > a]


def _only(ok: npt.NDArray[np.bool_], part: slice) -> npt.NDArray[np.bool_]:
    if part == slice(0, len(ok)):
        return ok
    out = np.zeros_like(ok)
    out[part] = ok[part]
    return out


def event_order(event: Event) -> tuple[int, str, str, str]:
    """The deterministic order of events inside one engine call."""
    return event.time, event.ticker, event.kind, event.id


class DetectorEngine:
    """All detectors of one shard; see the module docstring for the data path."""

    def __init__(self, config: DetectionConfig | None = None, shard: int = 0) -> None:
        self.config = config or DetectionConfig()
        self.shard = shard
        self._clock = SessionClock()  # the one calendar of this engine and its detectors
        self._table = TickerTable()  # one id per ticker, shared by the per-ticker detectors
        self._validator = Validator(self.config.validation, self._table)
        self._highlow = HighLowDetector(self.config.highlow, self._table, self._clock)
        self._bars, self._surge, self._trend, self._analytics = _build_detectors(
            self.config, self._table, self._clock
        )
        self._call_sessions: list[SessionInfo] = []  # the sessions the current call met
        # A batch spanning more time than the bar builder holds is processed in slices, with
        # bars drained after each, so no bar is dropped for want of a drain.
        self._slice_ms = max(self.config.bars.max_pending_bars * 1000 // 2, 1000)
        self._watermark = 0
        self._rejected: Counter[str] = Counter()
        self._ticker_session = np.full(0, NEVER, np.int64)  # id -> start of its trade session
        self._bar_session: dict[str, int] = {}  # ticker -> start of its Surge/Trend session
        self._shard_session = 0  # start of the newest session the analytics are in

    # -- properties ----------------------------------------------------------------------

    @property
    def watermark(self) -> int:
        """The maximum event time seen (Unix ms; 0 before any row)."""
        return self._watermark

    @property
    def last_seq(self) -> int:
        """The highest ingest `seq` processed (trades and bars share the sequence); -1: none."""
        return max(self._validator.last_seq, -1)

    @property
    def sessions(self) -> tuple[SessionInfo, ...]:
        """The market sessions of the last call's rows, bars and events, and of the watermark,
        oldest first: computed once here, they travel on with the shard's output."""
        known = self._call_sessions
        if self._watermark and not any(s.holds(self._watermark) for s in known):
            known = [*known, self._clock.session_at(self._watermark)]
        return tuple(sorted(known, key=lambda s: s.start_ms))

    def _met(self, session: SessionInfo) -> SessionInfo:
        """Remember that the current call met `session`; return it."""
        if session not in self._call_sessions:
            self._call_sessions.append(session)
        return session

    @property
    def highlow(self) -> HighLowDetector:
        """The HighLow detector (read-only use: state inspection)."""
        return self._highlow

    # -- trades --------------------------------------------------------------------------

    def process_trades(self, batch: TradeBatch) -> list[Event]:
        """Detect on one batch of trades; return its events in deterministic order."""
        self._call_sessions = []
        if len(batch) == 0:
            return []
        ok = self._validator.accept_rows(batch)
        events: list[Event] = []
        for part in time_slices(batch.t, self._slice_ms):
            events.extend(self._detect(batch, _only(ok, part), feed=True))
            events.extend(self._run_bars(self._drain()))
        return self._finish(events)

    def _detect(self, batch: TradeBatch, ok: npt.NDArray[np.bool_], feed: bool) -> list[Event]:
        """HighLow (and, with `feed`, bars and analytics) on the rows of `batch` in `ok`."""
        idx = np.flatnonzero(ok)
        if len(idx) == 0:
            return []
        order, groups = self._table.group(batch.sym[idx])
        rows = idx[order]  # batch rows by (ticker, arrival)
        t = batch.t[rows]
        keep = self._validator.accept_groups(groups, t, batch.p[rows])
        if not keep.all():
            rows, t, groups = rows[keep], t[keep], groups.take(keep)
            if len(rows) == 0:
                return []
        events: list[Event] = []
        for session, part in self._by_session(t):
            self._met(session)
            self._enter_shard_session(session)
            if part is None:
                events.extend(self._session_trades(session, batch, rows, groups, feed))
            else:
                events.extend(self._session_trades(session, batch, rows[part],
                                                   groups.take(part), feed))
        self._watermark = max(self._watermark, int(t.max()))
        return events

    def _by_session(
        self, t: I64
    ) -> Iterator[tuple[SessionInfo, npt.NDArray[np.bool_] | None]]:
        """The sessions of the rows at times `t`, oldest first, each with its rows (None: all)."""
        sessions, ends = self._sessions_covering(t)
        if len(sessions) == 1:
            yield sessions[0], None
            return
        which = np.searchsorted(ends, t, side="right")
        for k, session in enumerate(sessions):
            yield session, which == k

    def _sessions_covering(self, times: I64) -> tuple[list[SessionInfo], I64]:
        """The sessions that contain `times` (only those), with their end times."""
        lo, hi = int(times.min()), int(times.max())
        first = self._clock.session_at(lo)
        if hi < first.end_ms:  # the usual case: one session
            return [first], np.array([first.end_ms], dtype=np.int64)
        ts = np.unique(times)
        sessions: list[SessionInfo] = []
        i = 0
        while i < len(ts):
            info = self._clock.session_at(int(ts[i]))
            sessions.append(info)
            i = int(np.searchsorted(ts, info.end_ms, side="left"))
        # searchsorted(ends, t, "right") finds t's session even across gaps without data.
        return sessions, np.array([s.end_ms for s in sessions], dtype=np.int64)

    def _enter_shard_session(self, session: SessionInfo) -> None:
        if session.start_ms > self._shard_session:
            if self._shard_session:
                self._analytics.reset_session()
            self._shard_session = session.start_ms

    def _session_trades(
        self, session: SessionInfo, batch: TradeBatch, rows: Rows, groups: Groups, feed: bool
    ) -> list[Event]:
        """HighLow, bars and analytics on one session's rows (`groups`: by ticker)."""
        self._ensure()
        current = self._ticker_session[groups.ids]
        stale = current > session.start_ms  # a late row of a ticker's finished session
        if stale.any():
            self._rejected["stale_session"] += int(groups.lengths[stale].sum())
            live = ~stale[groups.row_seg]
            rows, groups = rows[live], groups.take(live)
            if len(rows) == 0:
                return []
        self._ticker_session[groups.ids] = session.start_ms
        t, p, s = batch.t[rows], batch.p[rows], batch.s[rows]
        flags = effective_flags_array(batch.flags[rows], session.session in EXTENDED)
        events = self._highlow.process_groups(session, groups, t, p, s, flags)
        if feed:
            self._feed_last(groups, t, p, s, flags)
        return events

    def _feed_last(self, groups: Groups, t: I64, p: F64, s: F64, flags: U8) -> None:
        """Trades that may set the last price feed the bars and the analytics."""
        last = (flags & FLAG_LAST) != 0
        if not last.all():
            groups, t, p, s, flags = groups.take(last), t[last], p[last], s[last], flags[last]
        if len(t) == 0:
            return
        size = s if (flags & FLAG_VOLUME).all() else np.where(flags & FLAG_VOLUME, s, 0.0)
        # The rows passed the validator: bars and analytics take its verdict as it is.
        self._bars.add_groups(groups, t, p, size, checked=True)
        names = self._table.names
        tickers = [names[i] for i in groups.ids.tolist()]
        self._analytics.on_trade_segments(tickers, groups.lengths, t, p, size, checked=True)

    def _ensure(self) -> None:
        self._ticker_session = grow(self._ticker_session, len(self._table), NEVER)

    # -- bars ----------------------------------------------------------------------------

    def process_bars(self, batch: BarBatch) -> list[Event]:
        """Detect on a batch of aggregate bars (see the module docstring for HighLow)."""
        self._call_sessions = []
        if len(batch) == 0:
            return []
        ok = self._validator.accept_bars(batch)
        if not ok.any():
            return []
        bars = batch if ok.all() else batch.take(ok)
        trades = bars_as_trades(bars)
        events = self._detect(trades, np.ones(len(trades), dtype=bool), feed=False)
        feed = _bars_of(bars)
        pressure: list[tuple[str, I64, F64, F64]] = []
        for ticker, rows in group_rows(bars.sym):
            self._bars.add_bars(ticker, [feed[i] for i in rows.tolist()])
            # One trade per bar (its close, volume) for the pressure gauge.
            pressure.append((ticker, bars.end[rows] - 1, bars.c[rows], bars.v[rows]))
        self._analytics.on_trade_groups(pressure, checked=True)
        self._watermark = max(self._watermark, int(bars.end.max()))
        events.extend(self._run_bars(self._drain()))
        return self._finish(events)

    def _drain(self) -> list[Bar]:
        return self._bars.drain(self._watermark, ordered=self._bar_detectors_on())

    def _bar_detectors_on(self) -> bool:
        """Whether anything consumes the bars (else they need not be handed out in order)."""
        return self._surge is not None or self._trend is not None

    def _run_bars(self, bars: list[Bar]) -> list[Event]:
        """Surge and Trend on closed bars (in event-time order)."""
        events: list[Event] = []
        detectors = [d for d in (self._surge, self._trend) if d is not None]
        if not detectors:
            return events
        session: SessionInfo | None = None
        for bar in bars:
            if session is None or not session.holds(bar.start):
                session = self._met(self._clock.session_at(bar.start))  # time-ordered: rarely
            if self._bar_session.get(bar.ticker) != session.start_ms:
                self._reset_bar_detectors(bar.ticker)
                self._bar_session[bar.ticker] = session.start_ms
            # 0 when HighLow has no base in this session yet: the detectors then report no %.
            base = self._highlow.base(bar.ticker, session.start_ms) or 0.0
            for detector in detectors:
                event = detector.on_bar(bar, session, base)
                if event is not None:
                    events.append(event)
        return events

    def _reset_bar_detectors(self, ticker: str) -> None:
        for detector in (self._surge, self._trend):
            if detector is not None:
                detector.reset_ticker(ticker)

    # -- end of data, outputs, state -----------------------------------------------------

    def flush(self) -> list[Event]:
        """Close every pending bar (end of a stream) and return the events that follow."""
        self._call_sessions = []
        return self._finish(self._run_bars(self._bars.drain_all(self._bar_detectors_on())))

    def _finish(self, events: list[Event]) -> list[Event]:
        if events:
            self._analytics.on_events(events, self._call_sessions)
        events.sort(key=event_order)
        return events

    def set_official_open(self, ticker: str, price: float, time_ms: int) -> None:
        """Use the feed's official open as the ticker's REGULAR base."""
        self._highlow.set_official_open(ticker, price, time_ms)

    def take_analytics(self) -> dict[str, Any]:
        """The analytics delta since the last call (empty when there is nothing new)."""
        delta = self._analytics.take_delta()
        return delta if delta.get("windows") or delta.get("counts") else {}

    def rejected(self) -> dict[str, int]:
        """Rows rejected so far, by reason (cumulative)."""
        total = Counter(self._validator.rejected)
        total.update(self._rejected)
        total.update(self._bars.rejected)
        total.update(self._analytics.rejected)
        return dict(total)

    def ticker_state(self, ticker: str) -> dict[str, Any]:
        """Session high/low/base, counts and last price of one ticker (empty if unseen)."""
        state = self._highlow.state(ticker)
        last = self._validator.last_price(ticker)
        if not state and last is None:
            return {}
        return {"ticker": ticker, **state, "last_price": last}

    def _ticker_sessions(self) -> dict[str, int]:
        names = self._table.names
        seen = np.flatnonzero(self._ticker_session != NEVER).tolist()
        return {names[i]: int(self._ticker_session[i]) for i in seen}

    def snapshot(self) -> bytes:
        """All state as msgpack (restore with `DetectorEngine.restore`)."""
        data = {
            "version": SNAPSHOT_VERSION,
            "shard": self.shard,
            "watermark": self._watermark,
            "last_seq": self.last_seq,
            "rejected": dict(self._rejected),
            "ticker_session": self._ticker_sessions(),
            "bar_session": self._bar_session,
            "shard_session": self._shard_session,
            "validator": self._validator.snapshot(),
            "highlow": self._highlow.snapshot(),
            "bars": self._bars.snapshot(),
            "surge": None if self._surge is None else self._surge.snapshot(),
            "trend": None if self._trend is None else self._trend.snapshot(),
            "analytics": self._analytics.snapshot(),
        }
        return msgpack.packb(data, use_bin_type=True)  # type: ignore[no-any-return]

    @classmethod
    def restore(cls, config: DetectionConfig | None, shard: int, blob: bytes) -> DetectorEngine:
        """An engine in the state a `snapshot()` captured."""
        data = msgpack.unpackb(blob, raw=False, strict_map_key=False)
        if data.get("version") != SNAPSHOT_VERSION:
            raise ValueError(f"unsupported engine snapshot version {data.get('version')!r}")
        engine = cls(config, shard)
        engine._watermark = int(data["watermark"])
        engine._rejected = Counter({str(k): int(v) for k, v in data["rejected"].items()})
        for ticker, start in data["ticker_session"].items():
            i = engine._table.add(str(ticker))
            engine._ensure()
            engine._ticker_session[i] = int(start)
        engine._bar_session = {str(k): int(v) for k, v in data["bar_session"].items()}
        engine._shard_session = int(data["shard_session"])
        engine._validator.restore(data["validator"])
        engine._highlow.restore(data["highlow"])
        engine._bars.restore(data["bars"])
        engine._analytics.restore(data["analytics"])
        for name in ("surge", "trend"):  # may have been disabled when the snapshot was taken
            part = getattr(engine, f"_{name}")
            if part is not None and data.get(name) is not None:
                part.restore(data[name])
        return engine


def bars_as_trades(bars: BarBatch) -> TradeBatch:
    """Four trades per bar: open, nearer extreme, farther extreme, close (module docstring)."""
    n = len(bars)
    d = np.maximum(bars.end - bars.start, 4)
    high_first = np.abs(bars.h - bars.o) <= np.abs(bars.o - bars.l)
    first = np.where(high_first, bars.h, bars.l)
    second = np.where(high_first, bars.l, bars.h)
    t = np.stack([bars.start, bars.start + d // 3, bars.start + 2 * d // 3, bars.end - 1], axis=1)
    p = np.stack([bars.o, first, second, bars.c], axis=1)
    seq = np.repeat(bars.seq, 4)
    return TradeBatch(
        sym=np.repeat(bars.sym, 4), t=t.reshape(-1), p=p.reshape(-1), s=np.repeat(bars.v, 4),
        flags=np.full(4 * n, FLAGS_REGULAR, np.uint8), seq=seq,
    )


def _bars_of(batch: BarBatch) -> list[Bar]:
    cols = zip(
        batch.sym.tolist(), batch.start.tolist(), batch.end.tolist(), batch.o.tolist(),
        batch.h.tolist(), batch.l.tolist(), batch.c.tolist(), batch.v.tolist(),
        batch.vw.tolist(), strict=True,
    )
    return [
        Bar(sym, start, end, o, h, lo, c, v, vw if vw > 0 else c, 0)
        for sym, start, end, o, h, lo, c, v, vw in cols
    ]


def _build_detectors(
    config: DetectionConfig, table: TickerTable, calendar: SessionClock
) -> tuple[SecondBarBuilder, SurgeDetector | None, TrendDetector | None, ShardAnalytics]:
    """The bar builder, Surge, Trend (None where disabled) and the shard analytics."""
    surge = SurgeDetector(config.surge) if config.enable_surge else None
    trend = TrendDetector(config.trend) if config.enable_trend else None
    return (SecondBarBuilder(config.bars, table), surge, trend,
            ShardAnalytics(config.analytics, calendar))
