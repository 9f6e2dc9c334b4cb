"""Session high/low detection (DESIGN §5; docs/behaviour.md §1, with its listed bugs fixed).

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

`HighLowDetector` keeps every ticker's state in numpy arrays indexed by `TickerTable` id and
processes a batch's rows of all tickers at once (`process_groups`): segment-wise running
max/min find the candidate rows, a vectorised tier gate filters them, and Python loops only
over the few that pass, for the cooldown. `HighLowReference` (`highlow_rules.py`) is
the plain per-trade statement of the same rules, used by the property tests.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from actors.detection.highlow_rules import NEVER, HighLowReference, HighLowRules, TickerHighLow
from actors.detection.ticker_table import Groups, TickerTable, grow, seg_accumulate, shift_in
from actors.market.sessions import SessionClock, SessionInfo
from config.detection import HighLowConfig
from schemas.batches import F64, FLAG_HIGH_LOW, FLAG_VOLUME, I64, U8
from schemas.events import Event, MarketSession

__all__ = ["NEVER", "HighLowDetector", "HighLowReference", "TickerHighLow"]

SESSIONS = tuple(m.value for m in MarketSession)  # the session name of each code
Mask = npt.NDArray[np.bool_]


class HighLowDetector(HighLowRules):
    """The fast path: per-ticker state in arrays, numpy over all tickers' rows of a batch."""

    def __init__(
        self, config: HighLowConfig | None = None, table: TickerTable | None = None,
        calendar: SessionClock | None = None,
    ) -> None:
        super().__init__(config, calendar)
        self._table = table if table is not None else TickerTable()
        self._history: dict[int, list[tuple[bool, int]]] = {}  # ticker id -> recent events
        self._allocate(0)

    def _allocate(self, n: int) -> None:
        """Empty state for `n` tickers (grown by `_ensure`)."""
        self._session = np.full(n, NEVER, np.int64)  # start of the state's session (NEVER: none)
        self._code = np.zeros(n, np.int8)  # that session, as an index into SESSIONS
        self._started = np.zeros(n, bool)
        self._base = np.zeros(n)
        self._high = np.zeros(n)
        self._low = np.zeros(n)
        self._last_event = np.full(n, NEVER, np.int64)
        self._n_high = np.zeros(n, np.int64)
        self._n_low = np.zeros(n, np.int64)
        self._pv = np.zeros(n)  # Σ price × size of volume-eligible trades (session VWAP)
        self._vol = np.zeros(n)
        self._sizes = np.zeros((n, self.config.volume_history))  # ring of recent sizes
        self._n_sizes = np.zeros(n, np.int64)  # sizes put in the ring this session
        self._prev_session = np.full(n, NEVER, np.int64)  # the previous session's start ...
        self._prev_base = np.zeros(n)  # ... and base: bars are judged after the change
        self._open_session = np.full(n, NEVER, np.int64)  # REGULAR start of an official open
        self._open_price = np.zeros(n)

    def _ensure(self) -> None:
        n = len(self._table)
        if len(self._session) >= n:
            return
        for name, fill in (
            ("_session", NEVER), ("_code", 0), ("_started", False), ("_base", 0.0),
            ("_high", 0.0), ("_low", 0.0), ("_last_event", NEVER), ("_n_high", 0),
            ("_n_low", 0), ("_pv", 0.0), ("_vol", 0.0), ("_sizes", 0.0), ("_n_sizes", 0),
            ("_prev_session", NEVER), ("_prev_base", 0.0), ("_open_session", NEVER),
            ("_open_price", 0.0),
        ):
            setattr(self, name, grow(getattr(self, name), n, fill))

    # -- detection -----------------------------------------------------------------------

    def process(
        self, ticker: str, session: SessionInfo, t: I64, p: F64, s: F64, flags: U8
    ) -> list[Event]:
        """Events of one ticker's trades, all inside `session`, in arrival order.

        `flags` are the effective flags (Form T already resolved for the session).
        """
        if len(t) == 0:
            return []
        groups = Groups.single(self._table.add(ticker), len(t))
        return self.process_groups(session, groups, t, p, s, flags)

    def process_groups(
        self, session: SessionInfo, groups: Groups, t: I64, p: F64, s: F64, flags: U8
    ) -> list[Event]:
        """`process` for many tickers at once: `groups` segments the rows by ticker (arrival
        order inside each segment), all rows inside `session`. Events in row order."""
        if len(t) == 0:
            return []
        self._ensure()
        ids = groups.ids
        self._enter(session, ids)
        vol = (flags & FLAG_VOLUME) != 0
        pv, v = self._running_pv(groups, p, s, vol)
        scan = self._seed(groups, p, (flags & FLAG_HIGH_LOW) != 0)
        events = self._scan(groups, scan, t, p, s, vol, pv, v) if scan.any() else []
        self._absorb_sizes(groups, s, vol)
        self._pv[ids] = groups.last(pv)
        self._vol[ids] = groups.last(v)
        return events

    def _enter(self, session: SessionInfo, ids: I64) -> None:
        """Start a fresh state for the tickers whose state is of another session."""
        fresh = ids[self._session[ids] != session.start_ms]
        if len(fresh) == 0:
            return
        had = fresh[self._started[fresh]]
        self._prev_session[had] = self._session[had]
        self._prev_base[had] = self._base[had]
        self._session[fresh] = session.start_ms
        self._code[fresh] = SESSIONS.index(session.session.value)
        self._started[fresh] = False
        for column in (self._base, self._high, self._low, self._pv, self._vol):
            column[fresh] = 0.0
        for counter in (self._n_high, self._n_low, self._n_sizes):
            counter[fresh] = 0
        self._last_event[fresh] = NEVER
        if self._history:
            for i in fresh.tolist():
                self._history.pop(i, None)

    def _running_pv(self, groups: Groups, p: F64, s: F64, vol: Mask) -> tuple[F64, F64]:
        """Σ price × size and Σ size of the volume-eligible rows, running, per row.

        Sequential per ticker from its state (other rows add an exact 0.0), so the sums equal
        the per-trade reference's.
        """
        ids = groups.ids
        pv = p * s
        size = s
        if not vol.all():
            pv = np.where(vol, pv, 0.0)
            size = np.where(vol, s, 0.0)
        return (seg_accumulate(np.add, pv, groups, self._pv[ids]),
                seg_accumulate(np.add, size, groups, self._vol[ids]))

    def _seed(self, groups: Groups, p: F64, eligible: Mask) -> Mask:
        """Seed the tickers not started yet with their first eligible row; the other eligible
        rows are returned (those that may move the extremes)."""
        fresh = ~self._started[groups.ids]
        rows = np.flatnonzero(eligible)
        if not fresh.any() or len(rows) == 0:
            return eligible
        seg = groups.row_seg[rows]
        first = np.ones(len(rows), dtype=bool)
        first[1:] = seg[1:] != seg[:-1]
        chosen = fresh[seg] & first
        seeds = rows[chosen]
        ids = groups.ids[seg[chosen]]
        price = p[seeds]
        self._started[ids] = True
        self._high[ids] = price
        self._low[ids] = price
        opened = self._open_session[ids] == self._session[ids]
        self._base[ids] = np.where(opened, self._open_price[ids], price)
        scan = eligible.copy()
        scan[seeds] = False
        return scan

    def _scan(
        self, groups: Groups, scan: Mask, t: I64, p: F64, s: F64, vol: Mask, pv: F64, v: F64
    ) -> list[Event]:
        """Move the extremes over the `scan` rows; fire where a new extreme passes the gates."""
        rows = np.flatnonzero(scan)
        sub = groups if len(rows) == len(scan) else groups.take(scan)
        ids = sub.ids
        x = p[rows]
        high = seg_accumulate(np.maximum, x, sub, self._high[ids])
        low = seg_accumulate(np.minimum, x, sub, self._low[ids])
        prev_high = shift_in(high, sub, self._high[ids])
        prev_low = shift_in(low, sub, self._low[ids])
        new_high = x > prev_high
        candidates = np.flatnonzero(new_high | (x < prev_low))
        events: list[Event] = []
        if len(candidates):
            owner = ids[sub.row_seg[candidates]]
            xc = x[candidates]
            base = self._base[owner]
            need = self._tier_pct[np.searchsorted(self._tier_below, xc, side="right")]
            gate = np.abs(xc - base) / base * 100.0 >= need
            # The last event time only grows inside the batch: a candidate inside the cooldown
            # of the ticker's event before the batch stays inside it.
            gate &= self._last_event[owner] <= t[rows[candidates]] - self._cooldown
            for j in candidates[gate].tolist():
                row = int(rows[j])
                i = int(ids[sub.row_seg[j]])
                ti = int(t[row])
                if ti - int(self._last_event[i]) < self._cooldown:
                    continue
                is_high = bool(new_high[j])
                price = float(x[j])
                extremes = (price, float(prev_low[j])) if is_high else (float(prev_high[j]), price)
                window = self._window(i, groups, s, vol, row)
                events.append(self._fire(i, is_high, ti, price, float(s[row]), window, extremes,
                                         (float(pv[row]), float(v[row]))))
        self._high[ids] = sub.last(high)
        self._low[ids] = sub.last(low)
        return events

    def _fire(
        self, i: int, is_high: bool, t: int, price: float, size: float, window: list[float],
        extremes: tuple[float, float], pv: tuple[float, float],
    ) -> Event:
        """Count a high/low of ticker `i` and build its event (`extremes`: session high/low,
        `pv`: the running Σ price × size and Σ size, both as of the trade)."""
        if is_high:
            self._n_high[i] += 1
        else:
            self._n_low[i] += 1
        reversal = self._remember(self._history.setdefault(i, []), is_high, t)
        self._last_event[i] = t
        st = self._view(i)
        st.high, st.low = extremes
        st.pv, st.vol = pv
        return self._event(self._table.names[i], st, is_high, t, price, size, window, reversal)

    def _window(self, i: int, groups: Groups, s: F64, vol: Mask, row: int) -> list[float]:
        """The recent volume-eligible sizes of ticker `i` up to `row` (included)."""
        keep = self.config.volume_history
        a = int(groups.starts[groups.row_seg[row]])
        recent: list[float] = s[a : row + 1][vol[a : row + 1]][-keep:].tolist()
        return recent if len(recent) >= keep else (self._ring(i) + recent)[-keep:]

    def _ring(self, i: int) -> list[float]:
        """Ticker `i`'s recent sizes before this batch, oldest first."""
        n, keep = int(self._n_sizes[i]), self.config.volume_history
        if n <= keep:
            return self._sizes[i, :n].tolist()  # type: ignore[no-any-return]
        oldest = n % keep
        return self._sizes[i, oldest:].tolist() + self._sizes[i, :oldest].tolist()  # type: ignore[no-any-return]

    def _absorb_sizes(self, groups: Groups, s: F64, vol: Mask) -> None:
        """Put each ticker's newest volume-eligible sizes (at most a ring's worth) in its ring."""
        rows = np.flatnonzero(vol)
        if len(rows) == 0:
            return
        keep = self.config.volume_history
        if len(groups) == 1:  # one ticker (the per-ticker `process`): no grouping needed
            i, n = int(groups.ids[0]), len(rows)
            last = rows[-keep:]
            slot = (int(self._n_sizes[i]) + np.arange(n - len(last), n)) % keep
            self._sizes[i, slot] = s[last]
            self._n_sizes[i] += n
            return
        seg = groups.row_seg[rows]
        count = np.bincount(seg, minlength=len(groups))
        rank = np.arange(len(rows)) - (np.cumsum(count) - count)[seg]  # within its ticker
        newest = rank >= (count - keep)[seg]
        ids = groups.ids[seg[newest]]
        slot = (self._n_sizes[ids] + rank[newest]) % keep
        self._sizes[ids, slot] = s[rows[newest]]
        self._n_sizes[groups.ids] += count

    # -- state ---------------------------------------------------------------------------

    def _view(self, i: int) -> TickerHighLow:
        """Ticker `i`'s state as a plain object (events, `state`, snapshots)."""
        st = TickerHighLow(int(self._session[i]), SESSIONS[int(self._code[i])])
        st.started = bool(self._started[i])
        st.base, st.high, st.low = float(self._base[i]), float(self._high[i]), float(self._low[i])
        st.last_event_t = int(self._last_event[i])
        st.n_high, st.n_low = int(self._n_high[i]), int(self._n_low[i])
        st.pv, st.vol = float(self._pv[i]), float(self._vol[i])
        return st

    def _known(self, ticker: str) -> int | None:
        """The id of a ticker with state, else None."""
        i = self._table.get(ticker)
        if i is None or i >= len(self._session) or self._session[i] == NEVER:
            return None
        return i

    def set_official_open(self, ticker: str, price: float, time_ms: int) -> None:
        """Use the feed's official open as the REGULAR session's base (ignored elsewhere)."""
        start = self._official_open(price, time_ms)
        if start is None:
            return
        i = self._table.add(ticker)
        self._ensure()
        self._open_session[i], self._open_price[i] = start, float(price)
        if self._started[i] and self._session[i] == start:
            self._base[i] = float(price)

    def reset_ticker(self, ticker: str) -> None:
        """Forget a ticker (its next trade starts a fresh session state)."""
        i = self._table.get(ticker)
        if i is None or i >= len(self._session):
            return
        self._session[i] = NEVER
        self._started[i] = False
        self._prev_session[i] = NEVER
        self._history.pop(i, None)

    def base(self, ticker: str, session_start: int | None = None) -> float | None:
        """The ticker's base in its current session, or in the session `session_start`."""
        i = self._table.get(ticker)
        if i is None or i >= len(self._session):
            return None
        if self._started[i] and session_start in (None, int(self._session[i])):
            return float(self._base[i])
        if self._prev_session[i] != NEVER and self._prev_session[i] == session_start:
            return float(self._prev_base[i])
        return None

    def state(self, ticker: str) -> dict[str, Any]:
        """The ticker's session high/low/base and counts (empty if never seen)."""
        i = self._known(ticker)
        return {} if i is None else self._view(i).state()

    def tickers(self) -> list[str]:
        """Tickers with state."""
        return [self._table.names[i] for i in np.flatnonzero(self._session != NEVER).tolist()]

    def snapshot(self) -> dict[str, Any]:
        """Plain-data state (msgpack-able), in `HighLowReference`'s format."""
        names = self._table.names
        tickers = {}
        for i in np.flatnonzero(self._session != NEVER).tolist():
            st = self._view(i)
            st.history = list(self._history.get(i, []))
            st.sizes = self._ring(i)
            tickers[names[i]] = st.to_list()
        opens = np.flatnonzero(self._open_session != NEVER).tolist()
        previous = np.flatnonzero(self._prev_session != NEVER).tolist()
        return {
            "tickers": tickers,
            "opens": {names[i]: [int(self._open_session[i]), float(self._open_price[i])]
                      for i in opens},
            "previous": {names[i]: [int(self._prev_session[i]), float(self._prev_base[i])]
                         for i in previous},
        }

    def restore(self, data: dict[str, Any]) -> None:
        """Load a `snapshot()` (of this detector or of `HighLowReference`)."""
        self._allocate(0)
        self._history = {}
        for name, row in data["tickers"].items():
            self._load(self._table.add(str(name)), TickerHighLow.from_list(row))
        for name, (start, price) in data["opens"].items():
            i = self._table.add(str(name))
            self._ensure()
            self._open_session[i], self._open_price[i] = int(start), float(price)
        for name, (start, base) in data.get("previous", {}).items():
            i = self._table.add(str(name))
            self._ensure()
            self._prev_session[i], self._prev_base[i] = int(start), float(base)

    def _load(self, i: int, st: TickerHighLow) -> None:
        self._ensure()
        self._session[i], self._code[i] = st.session_start, SESSIONS.index(st.session)
        self._started[i] = st.started
        self._base[i], self._high[i], self._low[i] = st.base, st.high, st.low
        self._last_event[i] = st.last_event_t
        self._n_high[i], self._n_low[i] = st.n_high, st.n_low
        self._pv[i], self._vol[i] = st.pv, st.vol
        sizes = st.sizes[-self.config.volume_history :]
        self._sizes[i, : len(sizes)] = sizes
        self._n_sizes[i] = len(sizes)
        if st.history:
            self._history[i] = list(st.history)
