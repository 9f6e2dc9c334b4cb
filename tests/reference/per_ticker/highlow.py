"""Frozen copy (before the issue-6 many-ticker work) of actors/highlow.py.

Session high/low detection (DESIGN §5; docs/behaviour.md §1, with its listed bugs fixed).

Per ticker and market session, on trades whose effective flags include FLAG_HIGH_LOW:

- the first eligible trade of a session sets base = high = low = its price and fires nothing
  (an official open, when the feed gives one, replaces the base in REGULAR);
- every later trade moves high/low whenever it strictly exceeds them, cooldown or not;
- a trade that set a new extreme fires `high`/`low` when |p − base| / base × 100 reaches the
  minimum % of its price tier and at least `cooldown_ms` of event time have passed since the
  ticker's previous high/low event (one cooldown for both kinds).

Also per session: counts (reset at every session change), reversal patterns (an opposite
event within `reversal_window_s` is a V-top (high→low) or V-bottom (low→high), "rapid" under
`rapid_reversal_s`; W-bottom (low, high, low) / M-top (high, low, high) when the last three
events alternate and the latest is a reversal), significance 0-100 =
min(|pct|·10, 50) + min(rel_volume·25, 50), rel_volume = size / mean of the last
`volume_history` volume-eligible trade sizes (current included) once there are
`min_volume_history`, and the session VWAP of volume-eligible trades.

`HighLowDetector` finds candidate rows with numpy (running max/min, vectorised tier gate) and
loops in Python only over the few candidates for the cooldown; `HighLowReference` is the plain
per-trade statement of the same rules, used by the property tests to check the fast path.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from actors.market.sessions import SessionClock, SessionInfo
from config.detection import HighLowConfig
from schemas.batches import F64, FLAG_HIGH_LOW, FLAG_VOLUME, I64, U8
from schemas.events import Direction, Event, EventKind, MarketSession

NEVER = -(2**62)


class TickerHighLow:
    """One ticker's high/low state for the current session."""

    __slots__ = (
        "base", "high", "history", "last_event_t", "low", "n_high", "n_low", "pv",
        "session", "session_start", "sizes", "started", "vol",
    )

    def __init__(self, session_start: int, session: str) -> None:
        self.session_start = session_start
        self.session = session
        self.started = False
        self.base = self.high = self.low = 0.0
        self.last_event_t = NEVER
        self.n_high = self.n_low = 0
        self.history: list[tuple[bool, int]] = []  # (is_high, time) of recent events
        self.sizes: list[float] = []  # recent volume-eligible sizes
        self.pv = 0.0  # Σ price × size of volume-eligible trades (session VWAP)
        self.vol = 0.0

    def to_list(self) -> list[Any]:
        return [
            self.session_start, self.session, self.started, self.base, self.high, self.low,
            self.last_event_t, self.n_high, self.n_low, [list(h) for h in self.history],
            self.sizes, self.pv, self.vol,
        ]

    @classmethod
    def from_list(cls, data: list[Any]) -> TickerHighLow:
        st = cls(int(data[0]), str(data[1]))
        st.started = bool(data[2])
        st.base, st.high, st.low = float(data[3]), float(data[4]), float(data[5])
        st.last_event_t, st.n_high, st.n_low = int(data[6]), int(data[7]), int(data[8])
        st.history = [(bool(k), int(t)) for k, t in data[9]]
        st.sizes = [float(x) for x in data[10]]
        st.pv, st.vol = float(data[11]), float(data[12])
        return st


class _HighLowBase:
    """State, official opens, snapshots and event building shared by both implementations."""

    def __init__(self, config: HighLowConfig | None = None) -> None:
        self.config = config or HighLowConfig()
        self._tickers: dict[str, TickerHighLow] = {}
        self._opens: dict[str, tuple[int, float]] = {}  # ticker -> (REGULAR start, price)
        # ticker -> (session start, base) of its previous session: bars of a session are judged
        # after the trades that follow them, so their base must outlive the session change.
        self._previous: dict[str, tuple[int, float]] = {}
        self._clock = SessionClock()
        tiers = self.config.tiers
        self._tier_below = np.array([tier.below for tier in tiers], dtype=np.float64)
        self._tier_pct = np.array([tier.min_pct for tier in tiers] + [0.0], dtype=np.float64)
        self._cooldown = self.config.cooldown_ms
        self._reversal_ms = int(self.config.reversal_window_s * 1000)
        self._rapid_ms = int(self.config.rapid_reversal_s * 1000)

    # -- state -------------------------------------------------------------------------

    def _state(self, ticker: str, session: SessionInfo) -> TickerHighLow:
        """The ticker's state for `session`; a different session starts from scratch."""
        st = self._tickers.get(ticker)
        if st is None or st.session_start != session.start_ms:
            if st is not None and st.started:
                self._previous[ticker] = (st.session_start, st.base)
            st = self._tickers[ticker] = TickerHighLow(session.start_ms, session.session.value)
        return st

    def _seed(self, ticker: str, st: TickerHighLow, price: float) -> None:
        st.started = True
        st.base = st.high = st.low = price
        opened = self._opens.get(ticker)
        if opened is not None and opened[0] == st.session_start:
            st.base = opened[1]

    def set_official_open(self, ticker: str, price: float, time_ms: int) -> None:
        """Use the feed's official open as the REGULAR session's base (ignored elsewhere)."""
        session = self._clock.session_at(time_ms)
        if session.session is not MarketSession.REGULAR or not price > 0:
            return
        self._opens[ticker] = (session.start_ms, float(price))
        st = self._tickers.get(ticker)
        if st is not None and st.started and st.session_start == session.start_ms:
            st.base = float(price)

    def reset_ticker(self, ticker: str) -> None:
        """Forget a ticker (its next trade starts a fresh session state)."""
        self._tickers.pop(ticker, None)
        self._previous.pop(ticker, None)

    def base(self, ticker: str, session_start: int | None = None) -> float | None:
        """The ticker's base in its current session, or in the session `session_start`."""
        st = self._tickers.get(ticker)
        if st is not None and st.started and session_start in (None, st.session_start):
            return st.base
        previous = self._previous.get(ticker)
        if previous is not None and previous[0] == session_start:
            return previous[1]
        return None

    def state(self, ticker: str) -> dict[str, Any]:
        """The ticker's session high/low/base and counts (empty if never seen)."""
        st = self._tickers.get(ticker)
        if st is None:
            return {}
        return {
            "session": st.session, "session_start": st.session_start, "started": st.started,
            "base": st.base if st.started else None,
            "high": st.high if st.started else None, "low": st.low if st.started else None,
            "count": st.n_high + st.n_low, "count_up": st.n_high, "count_down": st.n_low,
            "last_event_t": st.last_event_t if st.last_event_t != NEVER else None,
            "vwap": st.pv / st.vol if st.vol > 0 else None,
        }

    def tickers(self) -> list[str]:
        """Tickers with state."""
        return list(self._tickers)

    def snapshot(self) -> dict[str, Any]:
        """Plain-data state (msgpack-able)."""
        return {
            "tickers": {k: v.to_list() for k, v in self._tickers.items()},
            "opens": {k: list(v) for k, v in self._opens.items()},
            "previous": {k: list(v) for k, v in self._previous.items()},
        }

    def restore(self, data: dict[str, Any]) -> None:
        """Load a `snapshot()`."""
        self._tickers = {str(k): TickerHighLow.from_list(v) for k, v in data["tickers"].items()}
        self._opens = {str(k): (int(v[0]), float(v[1])) for k, v in data["opens"].items()}
        self._previous = {
            str(k): (int(v[0]), float(v[1])) for k, v in data.get("previous", {}).items()
        }

    # -- rules -------------------------------------------------------------------------

    def min_pct(self, price: float) -> float:
        """The minimum % move from the base for a trade at `price` (its tier's)."""
        return float(self._tier_pct[int(np.searchsorted(self._tier_below, price, side="right"))])

    def _fire(
        self, ticker: str, st: TickerHighLow, is_high: bool, t: int, price: float, size: float,
        window: list[float],
    ) -> Event:
        """Count an event and build it (`window`: recent volume-eligible sizes)."""
        if is_high:
            st.n_high += 1
            kind, n = EventKind.HIGH, st.n_high
        else:
            st.n_low += 1
            kind, n = EventKind.LOW, st.n_low
        reversal, rapid, pattern = self._reversal(st.history, is_high, t)
        st.history.append((is_high, t))
        if len(st.history) > self.config.history:
            del st.history[0]
        st.last_event_t = t
        pct = (price - st.base) / st.base * 100.0
        rel = None
        if len(window) >= self.config.min_volume_history:
            mean = sum(window) / len(window)
            rel = size / mean if mean > 0 else None
        significance = min(abs(pct) * 10.0, 50.0) + (min(rel * 25.0, 50.0) if rel else 0.0)
        return Event(
            id=f"{ticker}:{kind.value}:{t}:{n}", ticker=ticker, kind=kind.value,
            direction=(Direction.UP if is_high else Direction.DOWN).value, price=price, time=t,
            session=st.session, count=st.n_high + st.n_low, count_up=st.n_high,
            count_down=st.n_low, pct_change=round(pct, 4),
            vwap=round(st.pv / st.vol, 4) if st.vol > 0 else None, volume=size,
            rel_volume=round(rel, 3) if rel is not None else None,
            label=f"{'HIGH' if is_high else 'LOW'} #{n}", significance=round(significance, 2),
            reversal=reversal, rapid=rapid, pattern=pattern,
            session_high=st.high, session_low=st.low,
        )

    def _reversal(
        self, history: list[tuple[bool, int]], is_high: bool, t: int
    ) -> tuple[str | None, bool | None, str | None]:
        if not history:
            return None, None, None
        prev_high, prev_t = history[-1]
        if prev_high == is_high or t - prev_t > self._reversal_ms:
            return None, None, None
        reversal = "V-bottom" if is_high else "V-top"
        pattern = None
        if len(history) >= 2 and history[-2][0] == is_high:
            pattern = "M-top" if is_high else "W-bottom"
        return reversal, t - prev_t < self._rapid_ms, pattern


class HighLowDetector(_HighLowBase):
    """The fast path: numpy over a ticker's segment, Python only over candidate rows."""

    def process(
        self, ticker: str, session: SessionInfo, t: I64, p: F64, s: F64, flags: U8
    ) -> list[Event]:
        """Events of one ticker's trades, all inside `session`, in arrival order.

        `flags` are the effective flags (Form T already resolved for the session).
        """
        if len(t) == 0:
            return []
        st = self._state(ticker, session)
        vol_rows = np.flatnonzero(flags & FLAG_VOLUME)
        pv = self._running_pv(st, p, s, vol_rows)
        rows = np.flatnonzero(flags & FLAG_HIGH_LOW)
        events: list[Event] = []
        if len(rows) and not st.started:
            self._seed(ticker, st, float(p[rows[0]]))
            rows = rows[1:]
        if len(rows):
            events = self._scan(ticker, st, t, p, s, rows, vol_rows, pv)
        self._absorb_volume(st, s, vol_rows, pv)
        return events

    @staticmethod
    def _running_pv(st: TickerHighLow, p: F64, s: F64, vol_rows: I64) -> tuple[F64, F64]:
        # accumulate is strictly sequential, so the sums equal the per-trade reference's.
        pv = np.empty(len(vol_rows) + 1)
        pv[0] = st.pv
        pv[1:] = p[vol_rows] * s[vol_rows]
        v = np.empty(len(vol_rows) + 1)
        v[0] = st.vol
        v[1:] = s[vol_rows]
        return np.add.accumulate(pv), np.add.accumulate(v)

    def _absorb_volume(
        self, st: TickerHighLow, s: F64, vol_rows: I64, pv: tuple[F64, F64]
    ) -> None:
        keep = self.config.volume_history
        if len(vol_rows):
            st.sizes = (st.sizes + s[vol_rows[-keep:]].tolist())[-keep:]
        st.pv, st.vol = float(pv[0][-1]), float(pv[1][-1])

    def _scan(
        self, ticker: str, st: TickerHighLow, t: I64, p: F64, s: F64, rows: I64,
        vol_rows: I64, pv: tuple[F64, F64],
    ) -> list[Event]:
        x = p[rows]
        prev_max = np.empty(len(x))
        prev_max[0] = st.high
        np.maximum(np.maximum.accumulate(x)[:-1], st.high, out=prev_max[1:])
        prev_min = np.empty(len(x))
        prev_min[0] = st.low
        np.minimum(np.minimum.accumulate(x)[:-1], st.low, out=prev_min[1:])
        new_high = x > prev_max
        candidates = np.flatnonzero(new_high | (x < prev_min))
        events: list[Event] = []
        if len(candidates):
            xc = x[candidates]
            need = self._tier_pct[np.searchsorted(self._tier_below, xc, side="right")]
            passed = candidates[np.abs(xc - st.base) / st.base * 100.0 >= need]
            events = self._cooldown_loop(ticker, st, t, p, s, rows, passed, new_high,
                                         prev_max, prev_min, vol_rows, pv)
        st.high = max(st.high, float(x.max()))
        st.low = min(st.low, float(x.min()))
        return events

    def _cooldown_loop(
        self, ticker: str, st: TickerHighLow, t: I64, p: F64, s: F64, rows: I64, passed: I64,
        new_high: Any, prev_max: F64, prev_min: F64, vol_rows: I64, pv: tuple[F64, F64],
    ) -> list[Event]:
        events: list[Event] = []
        times = t[rows[passed]].tolist()
        for j, ti in zip(passed.tolist(), times, strict=True):
            if ti - st.last_event_t < self._cooldown:
                continue
            row = int(rows[j])
            price = float(p[row])
            is_high = bool(new_high[j])
            st.high = price if is_high else float(prev_max[j])
            st.low = float(prev_min[j]) if is_high else price
            k = int(np.searchsorted(vol_rows, row, side="right"))  # volume rows up to here
            st.pv, st.vol = float(pv[0][k]), float(pv[1][k])
            window = self._window(st.sizes, s, vol_rows, k)
            events.append(self._fire(ticker, st, is_high, ti, price, float(s[row]), window))
        return events

    def _window(self, sizes: list[float], s: F64, vol_rows: I64, k: int) -> list[float]:
        keep = self.config.volume_history
        recent: list[float] = s[vol_rows[max(0, k - keep) : k]].tolist()
        return recent if len(recent) >= keep else (sizes + recent)[-keep:]


class HighLowReference(_HighLowBase):
    """The rules stated per trade, for tests: slow, obviously correct, same API."""

    def process(
        self, ticker: str, session: SessionInfo, t: I64, p: F64, s: F64, flags: U8
    ) -> list[Event]:
        """Events of one ticker's trades, all inside `session`, in arrival order."""
        if len(t) == 0:
            return []
        st = self._state(ticker, session)
        events: list[Event] = []
        keep = self.config.volume_history
        rows = zip(t.tolist(), p.tolist(), s.tolist(), flags.tolist(), strict=True)
        for ti, pi, si, fi in rows:
            if fi & FLAG_VOLUME:
                st.sizes = [*st.sizes, si][-keep:]
                st.pv += pi * si
                st.vol += si
            if not fi & FLAG_HIGH_LOW:
                continue
            if not st.started:
                self._seed(ticker, st, pi)
                continue
            is_high, is_low = pi > st.high, pi < st.low
            if is_high:
                st.high = pi
            elif is_low:
                st.low = pi
            else:
                continue
            if abs(pi - st.base) / st.base * 100.0 < self.min_pct(pi):
                continue
            if ti - st.last_event_t < self._cooldown:
                continue
            events.append(self._fire(ticker, st, is_high, ti, pi, si, list(st.sizes)))
        return events
