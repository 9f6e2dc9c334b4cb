"""The skeleton shared by the detectors over per-second bars (Surge, Trend).

A bar detector looks up each bar's market period (event time) in a table of per-period
params, keeps one state per ticker that starts afresh in every market session, counts the
bars its gates stop by reason, counts its events up and down with a reversal label when the
direction turns, and snapshots to plain data. What it measures, and the per-ticker fields
beyond the direction counts, are its own: it subclasses `TickerState` and `BarDetector` and
provides `_new_state`, `_dump_state` and `_load_state`, and builds its events with `_event`.

`on_bar` runs for every bar of every ticker, so the skeleton adds no call to it: the ticker
lookup `_state` is a single call, and `on_bar` looks the bar's period up inline, as
`self._periods[market_period(bar.start, session, self._opening_ms, self._closing_ms)]`
(`period_params` is the same lookup as a method, for everything else).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import KW_ONLY, dataclass
from typing import Any, Generic, Protocol, TypeVar

from actors.detection.bars import Bar
from actors.market.periods import MarketPeriod, market_period
from actors.market.sessions import SessionInfo
from schemas.events import Direction, Event, EventKind

P = TypeVar("P")  # a detector's params of one market period (SurgePeriod, TrendPeriod)
P_co = TypeVar("P_co", covariant=True)  # the same, as a config provides it


class PeriodConfig(Protocol[P_co]):
    """A detector config with params for every market period and the OPENING/CLOSING spans."""

    @property
    def opening(self) -> P_co: ...
    @property
    def midday(self) -> P_co: ...
    @property
    def closing(self) -> P_co: ...
    @property
    def afterhours(self) -> P_co: ...
    @property
    def premarket(self) -> P_co: ...
    @property
    def closed(self) -> P_co: ...
    @property
    def opening_s(self) -> int: ...  # OPENING = the first s of the regular session
    @property
    def closing_s(self) -> int: ...  # CLOSING = the last s of the regular session


def period_table(config: PeriodConfig[P]) -> dict[MarketPeriod, P]:
    """Map every market period to its params in `config`."""
    return {
        MarketPeriod.OPENING: config.opening,
        MarketPeriod.MIDDAY: config.midday,
        MarketPeriod.CLOSING: config.closing,
        MarketPeriod.AFTERHOURS: config.afterhours,
        MarketPeriod.PREMARKET: config.premarket,
        MarketPeriod.CLOSED: config.closed,
    }


@dataclass(slots=True)
class TickerState:
    """What every bar detector remembers of one ticker in one session: its events' directions.

    A detector's state subclasses this with its own fields, which come after `session_start`
    in the constructor; the direction fields are keyword-only so they can keep their defaults.
    """

    session_start: int  # the market session this state belongs to (SessionInfo.start_ms)
    _: KW_ONLY
    count_up: int = 0
    count_down: int = 0
    last_direction: str | None = None  # of the last event: "up" or "down"

    @property
    def count(self) -> int:
        """The events so far, up and down."""
        return self.count_up + self.count_down

    def count_event(self, direction: str) -> str | None:
        """Count an event going `direction` ("up"/"down"); return its reversal label, if any.

        The label, "<last>-now-<direction>", marks the first event after a change of direction.
        """
        if direction == Direction.UP.value:
            self.count_up += 1
        else:
            self.count_down += 1
        last = self.last_direction
        self.last_direction = direction
        if last is not None and last != direction:
            return f"{last}-now-{direction}"
        return None


S = TypeVar("S", bound=TickerState)


class BarDetector(ABC, Generic[P, S]):
    """The period table, per-session ticker states, suppression counts and snapshots.

    `P` is the detector's per-period params type, `S` its per-ticker state type.
    """

    def __init__(self, config: PeriodConfig[P]) -> None:
        self.suppressed: dict[str, int] = {}  # gate or reason -> bars it stopped
        self._states: dict[str, S] = {}
        self._periods = period_table(config)
        # In ms once, not per bar: the config is frozen and every bar needs its period.
        self._opening_ms = config.opening_s * 1000
        self._closing_ms = config.closing_s * 1000

    def period_params(self, bar: Bar, session: SessionInfo) -> tuple[MarketPeriod, P]:
        """The market period `bar` starts in (within `session`) and its params."""
        period = market_period(bar.start, session, self._opening_ms, self._closing_ms)
        return period, self._periods[period]

    def reset_ticker(self, ticker: str) -> None:
        """Forget everything about `ticker` (its market session changed)."""
        self._states.pop(ticker, None)

    def _state(self, bar: Bar, session: SessionInfo) -> S:
        """The state of `bar`'s ticker in `session`: a fresh one if the ticker is new to it."""
        state = self._states.get(bar.ticker)
        if state is None or state.session_start != session.start_ms:
            state = self._states[bar.ticker] = self._new_state(bar, session)
        return state

    def _suppress(self, reason: str) -> None:
        self.suppressed[reason] = self.suppressed.get(reason, 0) + 1

    @staticmethod
    def _event(
        kind: EventKind, state: S, bar: Bar, session: SessionInfo, base_price: float,
        direction: str, **fields: Any,
    ) -> Event:
        """Count an event of `bar` going `direction`, and build it: the fields every bar
        detector fills alike (id, counts, reversal, % from the session base), plus `fields`."""
        reversal = state.count_event(direction)
        count = state.count
        return Event(
            id=f"{bar.ticker}:{kind.value}:{bar.end}:{count}",
            ticker=bar.ticker,
            kind=kind.value,
            direction=direction,
            price=bar.c,
            time=bar.end,
            session=session.session.value,
            count=count,
            count_up=state.count_up,
            count_down=state.count_down,
            pct_change=(bar.c - base_price) / base_price * 100.0 if base_price > 0 else 0.0,
            volume=bar.v,
            reversal=reversal,
            **fields,
        )

    # -- state ---------------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """Plain data (msgpack/JSON-able) from which `restore` rebuilds the detector."""
        return {
            "suppressed": dict(self.suppressed),
            "tickers": {ticker: self._dump_state(s) for ticker, s in self._states.items()},
        }

    def restore(self, data: dict[str, Any]) -> None:
        """Replace the detector's state with a `snapshot`."""
        self.suppressed = {str(k): int(v) for k, v in data.get("suppressed", {}).items()}
        self._states = {}
        for ticker, s in data["tickers"].items():
            self._states[str(ticker)] = self._load_state(s)

    @abstractmethod
    def _new_state(self, bar: Bar, session: SessionInfo) -> S:
        """A fresh state for `bar`'s ticker, `bar` being its first in `session`."""

    @abstractmethod
    def _dump_state(self, state: S) -> dict[str, Any]:
        """`state` as plain data (one ticker of `snapshot`)."""

    @abstractmethod
    def _load_state(self, data: dict[str, Any]) -> S:
        """The state `_dump_state` made `data` from."""
