"""The HighLow rules stated per trade (see `highlow.py` beside it), and what both paths share.

`HighLowRules` holds what the rules derive from the configuration (price tiers, cooldown,
reversal windows) and builds events; `HighLowReference` applies the rules one trade at a time
on plain per-ticker objects (`TickerHighLow`): slow, obviously correct, and the yardstick of
the property tests for the fast `HighLowDetector`. Its snapshot format is the detector's too.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from actors.market.sessions import SessionClock, SessionInfo
from config.detection import HighLowConfig
from schemas.batches import F64, FLAG_HIGH_LOW, FLAG_VOLUME, I64, U8
from schemas.events import Direction, Event, EventKind, MarketSession

NEVER = -(2**62)
Reversal = tuple[str | None, bool | None, str | None]  # reversal, rapid, pattern


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

    def state(self) -> dict[str, Any]:
        """The public view (`HighLowDetector.state`)."""
        return {
            "session": self.session, "session_start": self.session_start,
            "started": self.started, "base": self.base if self.started else None,
            "high": self.high if self.started else None,
            "low": self.low if self.started else None,
            "count": self.n_high + self.n_low, "count_up": self.n_high,
            "count_down": self.n_low,
            "last_event_t": self.last_event_t if self.last_event_t != NEVER else None,
            "vwap": self.pv / self.vol if self.vol > 0 else None,
        }


class HighLowRules:
    """Tiers, cooldown, reversals and event building: the rules both implementations share."""

    def __init__(
        self, config: HighLowConfig | None = None, calendar: SessionClock | None = None
    ) -> None:
        self.config = config or HighLowConfig()
        self._clock = calendar or SessionClock()
        tiers = self.config.tiers
        self._tier_below = np.array([tier.below for tier in tiers], dtype=np.float64)
        self._tier_pct = np.array([tier.min_pct for tier in tiers] + [0.0], dtype=np.float64)
        self._cooldown = self.config.cooldown_ms
        self._reversal_ms = int(self.config.reversal_window_s * 1000)
        self._rapid_ms = int(self.config.rapid_reversal_s * 1000)

    def min_pct(self, price: float) -> float:
        """The minimum % move from the base for a trade at `price` (its tier's)."""
        return float(self._tier_pct[int(np.searchsorted(self._tier_below, price, side="right"))])

    def _official_open(self, price: float, time_ms: int) -> int | None:
        """The REGULAR session start an official open at `time_ms` applies to, if any."""
        session = self._clock.session_at(time_ms)
        if session.session is not MarketSession.REGULAR or not price > 0:
            return None
        return session.start_ms

    def _remember(self, history: list[tuple[bool, int]], is_high: bool, t: int) -> Reversal:
        """The reversal an event makes with `history`, which then records the event."""
        reversal = self._reversal(history, is_high, t)
        history.append((is_high, t))
        if len(history) > self.config.history:
            del history[0]
        return reversal

    def _reversal(self, history: list[tuple[bool, int]], is_high: bool, t: int) -> Reversal:
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

    def _event(
        self, ticker: str, st: TickerHighLow, is_high: bool, t: int, price: float, size: float,
        window: list[float], reversal: Reversal,
    ) -> Event:
        """The event of a counted high/low (`st` as after the event; `window`: recent sizes)."""
        kind = EventKind.HIGH if is_high else EventKind.LOW
        n = st.n_high if is_high else st.n_low
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
            reversal=reversal[0], rapid=reversal[1], pattern=reversal[2],
            session_high=st.high, session_low=st.low,
        )


class HighLowReference(HighLowRules):
    """The rules stated per trade, for tests: slow, obviously correct, same API as the detector."""

    def __init__(self, config: HighLowConfig | None = None) -> None:
        super().__init__(config)
        self._tickers: dict[str, TickerHighLow] = {}
        self._opens: dict[str, tuple[int, float]] = {}  # ticker -> (REGULAR start, price)
        self._previous: dict[str, tuple[int, float]] = {}  # ticker -> previous (start, base)

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

    def _fire(
        self, ticker: str, st: TickerHighLow, is_high: bool, t: int, price: float, size: float,
        window: list[float],
    ) -> Event:
        if is_high:
            st.n_high += 1
        else:
            st.n_low += 1
        reversal = self._remember(st.history, is_high, t)
        st.last_event_t = t
        return self._event(ticker, st, is_high, t, price, size, window, reversal)

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
        start = self._official_open(price, time_ms)
        if start is None:
            return
        self._opens[ticker] = (start, float(price))
        st = self._tickers.get(ticker)
        if st is not None and st.started and st.session_start == start:
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
        return {} if st is None else st.state()

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
