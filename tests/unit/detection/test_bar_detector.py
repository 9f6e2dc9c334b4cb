"""The bar-detector skeleton: period table, per-session ticker states, counts, snapshots."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Any

import msgpack
import pytest

from actors.detection.bar_detector import BarDetector, TickerState, period_table
from actors.detection.bars import Bar
from actors.detection.surge import SurgeDetector
from actors.detection.trend import TrendDetector
from actors.market.periods import MarketPeriod, market_period
from actors.market.sessions import ET, SessionClock, SessionInfo
from config.detection import SurgeConfig, SurgePeriod, TrendConfig

CLOCK = SessionClock()
DAY = dt.date(2013, 10, 8)  # a Tuesday, regular hours
SATURDAY = dt.date(2013, 10, 12)


def at(h: int, m: int, s: int = 0, day: dt.date = DAY) -> int:
    return int(dt.datetime.combine(day, dt.time(h, m, s), tzinfo=ET).timestamp() * 1000)


def mkbar(end: int, c: float = 100.0, v: float = 1_000.0, ticker: str = "X") -> Bar:
    return Bar(ticker, end - 1_000, end, c, c, c, c, v, c, 1)


def session(bar: Bar) -> SessionInfo:
    return CLOCK.session_at(bar.start)


@dataclass(slots=True)
class _Seen(TickerState):
    bars: int = 0  # bars of the ticker this session


class _Tally(BarDetector[SurgePeriod, _Seen]):
    """The smallest bar detector: it counts each ticker's bars and turns on every price move."""

    def __init__(self, config: SurgeConfig | None = None) -> None:
        super().__init__(config or SurgeConfig())
        self._last: dict[str, float] = {}

    def on_bar(self, bar: Bar) -> str | None:
        """Count `bar`; return the reversal label when its close moved (None when it did not)."""
        if bar.v <= 0:
            self._suppress("no_volume")
            return None
        state = self._state(bar, session(bar))
        state.bars += 1
        last = self._last.get(bar.ticker, bar.c)
        self._last[bar.ticker] = bar.c
        if bar.c == last:
            self._suppress("flat")
            return None
        return state.count_event("up" if bar.c > last else "down")

    def _new_state(self, bar: Bar, session: SessionInfo) -> _Seen:
        return _Seen(session.start_ms)

    def _dump_state(self, state: _Seen) -> dict[str, Any]:
        return {
            "session_start": state.session_start,
            "bars": state.bars,
            "count_up": state.count_up,
            "count_down": state.count_down,
            "last_direction": state.last_direction,
        }

    def _load_state(self, data: dict[str, Any]) -> _Seen:
        return _Seen(
            int(data["session_start"]),
            bars=int(data["bars"]),
            count_up=int(data["count_up"]),
            count_down=int(data["count_down"]),
            last_direction=data["last_direction"],
        )


def through_msgpack(data: dict[str, Any]) -> dict[str, Any]:
    """`data` as a checkpoint stores and reloads it."""
    blob = msgpack.packb(data, use_bin_type=True)
    return msgpack.unpackb(blob, raw=False, strict_map_key=False)


# -- the period table ----------------------------------------------------------------------------


@pytest.mark.parametrize("config", [SurgeConfig(), TrendConfig()], ids=["surge", "trend"])
def test_the_period_table_holds_every_market_period_from_the_config(
    config: SurgeConfig | TrendConfig,
) -> None:
    table = period_table(config)
    assert set(table) == set(MarketPeriod)
    for period, params in table.items():
        assert params is getattr(config, period.value.lower())


@pytest.mark.parametrize(("end", "period"), [
    (at(7, 0), MarketPeriod.PREMARKET),
    (at(9, 31), MarketPeriod.OPENING),
    (at(11, 0), MarketPeriod.MIDDAY),
    (at(15, 45), MarketPeriod.CLOSING),
    (at(17, 0), MarketPeriod.AFTERHOURS),
    (at(11, 0, day=SATURDAY), MarketPeriod.CLOSED),
])
def test_a_bar_gets_the_period_it_starts_in_and_its_params(end: int, period: MarketPeriod) -> None:
    config = SurgeConfig()
    bar = mkbar(end)
    found, params = _Tally(config).period_params(bar, session(bar))
    assert found is period
    assert params is getattr(config, period.value.lower())


def test_the_opening_and_closing_spans_come_from_the_config() -> None:
    short = _Tally(SurgeConfig(opening_s=60, closing_s=600))
    default = _Tally()
    for end, was, now in [
        (at(9, 33), MarketPeriod.OPENING, MarketPeriod.MIDDAY),
        (at(15, 45), MarketPeriod.CLOSING, MarketPeriod.MIDDAY),
    ]:
        bar = mkbar(end)
        assert default.period_params(bar, session(bar))[0] is was
        assert short.period_params(bar, session(bar))[0] is now
        assert now is market_period(bar.start, session(bar), 60_000, 600_000)


# -- per-ticker states -----------------------------------------------------------------------------


def test_a_ticker_keeps_its_state_through_a_session_and_starts_afresh_in_the_next() -> None:
    det = _Tally()
    for end in (at(9, 40), at(9, 41), at(9, 42)):
        det.on_bar(mkbar(end))
    det.on_bar(mkbar(at(9, 42), ticker="Y"))
    assert det._states["X"].bars == 3
    assert det._states["Y"].bars == 1
    det.on_bar(mkbar(at(16, 5)))  # AFTER: another session
    fresh = det._states["X"]
    assert (fresh.bars, fresh.session_start) == (1, session(mkbar(at(16, 5))).start_ms)
    assert det._states["Y"].bars == 1  # only the ticker whose session changed starts afresh


def test_reset_ticker_forgets_only_that_ticker() -> None:
    det = _Tally()
    det.on_bar(mkbar(at(9, 40)))
    det.on_bar(mkbar(at(9, 40), ticker="Y"))
    det.reset_ticker("X")
    det.reset_ticker("never-seen")
    assert set(det._states) == {"Y"}
    det.on_bar(mkbar(at(9, 41)))
    assert det._states["X"].bars == 1


def test_suppressed_counts_the_bars_each_reason_stopped() -> None:
    det = _Tally()
    det.on_bar(mkbar(at(9, 40)))  # first close: flat
    det.on_bar(mkbar(at(9, 41), v=0.0))
    det.on_bar(mkbar(at(9, 42), v=0.0))
    det.on_bar(mkbar(at(9, 43)))
    assert det.suppressed == {"flat": 2, "no_volume": 2}


# -- directions ------------------------------------------------------------------------------------


def test_count_event_counts_each_direction_and_labels_each_turn() -> None:
    state = TickerState(0)
    labels = [state.count_event(d) for d in ("up", "up", "down", "down", "up", "down")]
    assert labels == [None, None, "up-now-down", None, "down-now-up", "up-now-down"]
    assert (state.count_up, state.count_down, state.count) == (3, 3, 6)
    assert state.last_direction == "down"


def test_the_first_event_after_a_restored_direction_may_turn() -> None:
    state = TickerState(0, count_up=4, last_direction="up")
    assert state.count_event("down") == "up-now-down"
    assert (state.count_up, state.count_down, state.count) == (4, 1, 5)


def test_a_detector_state_puts_its_own_fields_before_the_direction_counts() -> None:
    seen = _Seen(7, 3, count_down=2)
    assert (seen.session_start, seen.bars, seen.count_up, seen.count_down) == (7, 3, 0, 2)
    with pytest.raises(TypeError):
        _Seen(7, 3, 1)  # the direction fields are keyword-only


# -- snapshots -------------------------------------------------------------------------------------


def _tallied() -> _Tally:
    det = _Tally()
    for i, c in enumerate([100.0, 101.0, 100.5, 100.5, 102.0]):
        det.on_bar(mkbar(at(9, 40, i), c))
        det.on_bar(mkbar(at(9, 40, i), 200.0 - c, ticker="Y"))
    det.on_bar(mkbar(at(9, 41), v=0.0))
    return det


def test_a_snapshot_is_the_suppressed_counts_and_each_tickers_state() -> None:
    det = _tallied()
    snap = det.snapshot()
    assert snap == {
        "suppressed": {"flat": 4, "no_volume": 1},
        "tickers": {
            ticker: {"session_start": session(mkbar(at(9, 40))).start_ms, "bars": 5,
                     "count_up": up, "count_down": down, "last_direction": last}
            for ticker, up, down, last in (("X", 2, 1, "up"), ("Y", 1, 2, "down"))
        },
    }
    snap["suppressed"]["flat"] = 0  # a copy: the detector keeps counting on its own
    assert det.suppressed["flat"] == 4


def test_a_snapshot_restores_through_msgpack_and_json_and_the_detector_continues() -> None:
    det = _tallied()
    for load in (through_msgpack, lambda d: json.loads(json.dumps(d))):
        again = _Tally()
        again.on_bar(mkbar(at(9, 30), ticker="Z"))  # replaced by the restore
        again.restore(load(det.snapshot()))
        assert again.snapshot() == det.snapshot()
        assert set(again._states) == {"X", "Y"}
        again._last = dict(det._last)
        assert again.on_bar(mkbar(at(9, 42), 99.0)) == "up-now-down"
        assert again._states["X"].count == 4


def test_restore_takes_ticker_keys_as_strings_and_an_old_snapshot_without_counts() -> None:
    snap = _tallied().snapshot()
    snap["tickers"] = {7: snap["tickers"]["X"]}
    del snap["suppressed"]
    det = _Tally()
    det.restore(through_msgpack(snap))
    assert set(det._states) == {"7"}
    assert det.suppressed == {}


@pytest.mark.parametrize("make", [
    lambda: SurgeDetector(SurgeConfig()), lambda: TrendDetector(TrendConfig()),
], ids=["surge", "trend"])
def test_surge_and_trend_snapshots_round_trip_through_msgpack(make: Any) -> None:
    det = make()
    bars = [mkbar(at(11, 0) + i * 1_000, 100.0 + 0.01 * i, 1_000.0 + i) for i in range(120)]
    bars += [mkbar(at(11, 0), 0.0, 0.0, ticker="BAD")]  # no price: both count it suppressed
    for b in bars:
        det.on_bar(b, session(b), 100.0)
    snap = det.snapshot()
    assert set(snap) == {"suppressed", "tickers"}
    assert snap["suppressed"]
    again = make()
    again.restore(through_msgpack(snap))
    assert again.snapshot() == snap
    assert isinstance(det, BarDetector)
    assert det._periods == period_table(det.config)
