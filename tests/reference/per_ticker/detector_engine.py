"""Frozen copy (before the issue-6 many-ticker work) of actors/detector_engine.py.

The per-shard detection engine: validation, sessions, HighLow, bars, Surge, Trend, analytics.

Pure (no Ray, no wall clock). For every trade batch:

1. validate (`actors/validation.py`; rejected rows counted by reason);
2. split the rows by market session (event time) and, inside each session, group them by
   ticker (stable, so each ticker keeps its arrival order; tickers in sorted order);
3. per ticker: HighLow on the effective flags (Form T resolved for the session), then the
   trades that may set the last price (`FLAG_LAST`, with their size when `FLAG_VOLUME`) go to
   the per-second bar builder and the analytics;
4. bars that the engine watermark (max event time seen) has closed go to Surge and Trend.

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
from actors.detection.surge import SurgeDetector
from actors.detection.trend import TrendDetector
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
from tests.reference.per_ticker.bars import Bar, SecondBarBuilder
from tests.reference.per_ticker.highlow import HighLowDetector
from tests.reference.per_ticker.validation import Validator

SNAPSHOT_VERSION = 1
EXTENDED = frozenset({MarketSession.PRE, MarketSession.AFTER})
Rows = npt.NDArray[np.int64]
TradeGroup = tuple[str, I64, F64, F64]  # one ticker's trades: t, p, s


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
        self._clock = SessionClock()
        self._validator = Validator(self.config.validation)
        self._highlow = HighLowDetector(self.config.highlow)
        self._bars, self._surge, self._trend, self._analytics = _build_detectors(self.config)
        # A batch spanning more time than the bar builder holds is processed in slices, with
        # bars drained after each, so no bar is dropped for want of a drain.
        self._slice_ms = max(self.config.bars.max_pending_bars * 1000 // 2, 1000)
        self._watermark = 0
        self._rejected: Counter[str] = Counter()
        self._ticker_session: dict[str, int] = {}  # ticker -> start of its trade session
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
    def highlow(self) -> HighLowDetector:
        """The HighLow detector (read-only use: state inspection)."""
        return self._highlow

    # -- trades --------------------------------------------------------------------------

    def process_trades(self, batch: TradeBatch) -> list[Event]:
        """Detect on one batch of trades; return its events in deterministic order."""
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
        groups = self._validate_tickers(batch, ok)
        if not groups:
            return []
        events: list[Event] = []
        for session, session_groups in self._by_session(batch, groups):
            self._enter_shard_session(session)
            pressure: list[TradeGroup] = []  # the session's analytics input, in one call
            for ticker, rows in session_groups:
                events.extend(self._ticker_trades(ticker, session, batch, rows, feed, pressure))
            self._analytics.on_trade_groups(pressure)
        self._watermark = max(self._watermark, max(int(batch.t[r].max()) for _, r in groups))
        return events

    def _validate_tickers(self, batch: TradeBatch, ok: npt.NDArray[np.bool_]) -> list[
        tuple[str, Rows]
    ]:
        idx = np.flatnonzero(ok)
        out = []
        for ticker, local in group_rows(batch.sym[idx]):
            rows = idx[local]
            keep = self._validator.accept_ticker(ticker, batch.t[rows], batch.p[rows])
            rows = rows if keep.all() else rows[keep]
            if len(rows):
                out.append((ticker, rows))
        return out

    def _by_session(
        self, batch: TradeBatch, groups: list[tuple[str, Rows]]
    ) -> Iterator[tuple[SessionInfo, list[tuple[str, Rows]]]]:
        """Split ticker groups by session, oldest session first."""
        times = np.concatenate([batch.t[r] for _, r in groups])
        sessions, ends = self._sessions_covering(times)
        if len(sessions) == 1:
            yield sessions[0], groups
            return
        split: list[list[tuple[str, Rows]]] = [[] for _ in sessions]
        for ticker, rows in groups:
            which = np.searchsorted(ends, batch.t[rows], side="right")
            for k in np.unique(which).tolist():
                split[k].append((ticker, rows[which == k]))
        yield from zip(sessions, split, strict=True)

    def _sessions_covering(self, times: I64) -> tuple[list[SessionInfo], I64]:
        """The sessions that contain `times` (only those), with their end times."""
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

    def _ticker_trades(
        self,
        ticker: str,
        session: SessionInfo,
        batch: TradeBatch,
        rows: Rows,
        feed: bool,
        pressure: list[TradeGroup],
    ) -> list[Event]:
        current = self._ticker_session.get(ticker)
        if current is not None and session.start_ms < current:
            self._rejected["stale_session"] += len(rows)  # late row of a finished session
            return []
        self._ticker_session[ticker] = session.start_ms
        t, p, s = batch.t[rows], batch.p[rows], batch.s[rows]
        flags = effective_flags_array(batch.flags[rows], session.session in EXTENDED)
        events = self._highlow.process(ticker, session, t, p, s, flags)
        if feed:
            self._feed_last(ticker, t, p, s, flags, pressure)
        return events

    def _feed_last(
        self, ticker: str, t: I64, p: F64, s: F64, flags: U8, pressure: list[TradeGroup]
    ) -> None:
        """Trades that may set the last price feed the bars and (via `pressure`) analytics."""
        last = (flags & FLAG_LAST) != 0
        if not last.all():
            t, p, s, flags = t[last], p[last], s[last], flags[last]
        if len(t) == 0:
            return
        size = s if (flags & FLAG_VOLUME).all() else np.where(flags & FLAG_VOLUME, s, 0.0)
        self._bars.add_trades(ticker, t, p, size)
        pressure.append((ticker, t, p, size))

    # -- bars ----------------------------------------------------------------------------

    def process_bars(self, batch: BarBatch) -> list[Event]:
        """Detect on a batch of aggregate bars (see the module docstring for HighLow)."""
        if len(batch) == 0:
            return []
        ok = self._validator.accept_bars(batch)
        if not ok.any():
            return []
        bars = batch if ok.all() else batch.take(ok)
        trades = bars_as_trades(bars)
        events = self._detect(trades, np.ones(len(trades), dtype=bool), feed=False)
        feed = _bars_of(bars)
        pressure: list[TradeGroup] = []
        for ticker, rows in group_rows(bars.sym):
            self._bars.add_bars(ticker, [feed[i] for i in rows.tolist()])
            # One trade per bar (its close, volume) for the pressure gauge.
            pressure.append((ticker, bars.end[rows] - 1, bars.c[rows], bars.v[rows]))
        self._analytics.on_trade_groups(pressure)
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
            if session is None or not session.start_ms <= bar.start < session.end_ms:
                session = self._clock.session_at(bar.start)  # bars are time-ordered: rarely
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
        return self._finish(self._run_bars(self._bars.drain_all(self._bar_detectors_on())))

    def _finish(self, events: list[Event]) -> list[Event]:
        if events:
            self._analytics.on_events(events)
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

    def snapshot(self) -> bytes:
        """All state as msgpack (restore with `DetectorEngine.restore`)."""
        data = {
            "version": SNAPSHOT_VERSION,
            "shard": self.shard,
            "watermark": self._watermark,
            "last_seq": self.last_seq,
            "rejected": dict(self._rejected),
            "ticker_session": self._ticker_session,
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
        engine._ticker_session = {str(k): int(v) for k, v in data["ticker_session"].items()}
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
    config: DetectionConfig,
) -> tuple[SecondBarBuilder, SurgeDetector | None, TrendDetector | None, ShardAnalytics]:
    """The bar builder, Surge, Trend (None where disabled) and the shard analytics."""
    surge = SurgeDetector(config.surge) if config.enable_surge else None
    trend = TrendDetector(config.trend) if config.enable_trend else None
    return SecondBarBuilder(config.bars), surge, trend, ShardAnalytics(config.analytics)
