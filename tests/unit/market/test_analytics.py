"""Market analytics: deltas merged in any order, the gauge, activity, sessions."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest

from actors.detection.analytics import ShardAnalytics
from actors.market.analytics import MarketAnalytics
from config.detection import AnalyticsConfig
from tests.unit.detection.test_analytics import CLOCK, T, at, event, trade


def window(start: int, buy: float, sell: float, ticks: int = 1) -> list[float]:
    return [start, buy, sell, ticks, 0, 0]


def market(*deltas: dict[str, Any], config: AnalyticsConfig | None = None) -> MarketAnalytics:
    m = MarketAnalytics(config or AnalyticsConfig())
    for d in deltas:
        m.merge(d)
    return m


def test_deltas_merge_in_any_order() -> None:
    a = {"windows": [window(T, 100, 50, 3), window(T + 10_000, 10, 0)],
         "counts": [[CLOCK.session_at(T).start_ms, "X", 1, 0, 0, 0]]}
    start = CLOCK.session_at(T).start_ms
    b = {"windows": [window(T, 5, 500, 2)], "counts": [[start, "Y", 0, 2, 1, 0]]}
    one, two = market(a, b), market(b, a)
    assert one.snapshot(T + 30_000) == two.snapshot(T + 30_000)
    snap = one.snapshot(T + 30_000)
    assert json.loads(json.dumps(snap)) == snap
    assert one.per_ticker_counts() == {
        "X": {"highs": 1, "lows": 0, "surges": 0, "trends": 0},
        "Y": {"highs": 0, "lows": 2, "surges": 1, "trends": 0},
    }
    act = snap["activity"]
    assert (act["total_highs"], act["total_lows"], act["total_surges"], act["total_trends"]) == (
        1, 2, 1, 0)
    assert (act["total_events"], act["active_tickers"], act["session"]) == (4, 2, "REGULAR")


@pytest.mark.parametrize(
    ("buy", "sell", "net"),
    [(1_000, 0, 10.0), (0, 1_000, -10.0), (495, 505, -1.0), (510, 490, 2.0), (0, 0, 0.0)],
)
def test_net_score_is_clamped(buy: float, sell: float, net: float) -> None:
    m = market({"windows": [window(T, buy, sell)]})
    gauge = m.snapshot(T + 10_000)["gauge"]
    assert gauge["net_score"] == pytest.approx(net)
    assert (gauge["buy_volume"], gauge["sell_volume"]) == (buy, sell)


def test_only_completed_windows_are_calculated_once() -> None:
    m = market({"windows": [window(T, 100, 0)]})
    assert m.snapshot(T + 9_999)["gauge"]["calculations"] == 0
    assert m.snapshot(T + 10_000)["gauge"]["calculations"] == 1
    assert m.snapshot(T + 10_000)["gauge"]["calculations"] == 1
    m.merge({"windows": [window(T, 0, 5_000, ticks=4)]})  # late for its window
    snap = m.snapshot(T + 20_000)
    assert m.rejected == {"late_window": 1}
    assert (snap["gauge"]["calculations"], snap["gauge"]["net_score"]) == (1, 10.0)
    assert snap["activity"]["ticks_10sec"] == 0
    assert snap["activity"]["ticks_30sec"] == 5  # the ticks still count


def test_gauge_level_floors_and_recent_mean() -> None:
    levels = []
    for activity in (4e6, 6e6, 15e6, 25e6):
        m = market({"windows": [window(T, activity, 0)]})
        levels.append(m.snapshot(T + 10_000)["gauge"]["activity_level"])
    assert levels == ["Low", "Moderate", "High", "Very High"]
    busy = [window(T + i * 10_000, 40e6, 0) for i in range(4)] + [window(T + 40_000, 30e6, 0)]
    m = market({"windows": busy})
    # thresholds max(0.5/1/2 x mean 40 M, floors) = 20 M / 40 M / 80 M
    assert m.snapshot(T + 50_000)["gauge"]["activity_level"] == "Moderate"


def test_rolling_averages_session_average_and_emas() -> None:
    m = market({"windows": [window(T, 1_000, 0), window(T + 10_000, 0, 2_000),
                            window(T + 20_000, 1_050, 950)]})
    g = m.snapshot(T + 30_000)["gauge"]
    assert [g["net_score"], g["calculations"]] == [5.0, 3]
    assert g["rolling_avg_short"] == pytest.approx(5 / 3)
    assert g["rolling_avg_long"] == pytest.approx(5 / 3)
    assert g["session_avg"] == pytest.approx(5 / 3)
    assert g["ema"] == pytest.approx(0.3 * 5 + 0.7 * (0.3 * -10 + 0.7 * 10))
    # vertical alpha = 0.2 x (1 + volume / session max volume), capped at 0.8
    assert g["vertical_ema"] == pytest.approx(0.4 * 5 + 0.6 * (0.4 * -10 + 0.6 * 10))
    assert g["buy_share_ema"] == pytest.approx(0.3 * 0.525 + 0.7 * (0.3 * 0.0 + 0.7 * 1.0))


def test_rolling_windows_cover_the_last_10_and_30_calculations() -> None:
    nets = [10.0] * 25 + [-10.0] * 10
    windows = [window(T + i * 10_000, 100 if n > 0 else 0, 0 if n > 0 else 100)
               for i, n in enumerate(nets)]
    g = market({"windows": windows}).snapshot(T + len(nets) * 10_000)["gauge"]
    assert g["rolling_avg_short"] == pytest.approx(-10.0)
    assert g["rolling_avg_long"] == pytest.approx((20 * 10 - 10 * 10) / 30)
    assert g["session_avg"] == pytest.approx((25 * 10 - 10 * 10) / 35)


def test_tick_windows_and_activity_levels() -> None:
    windows = [window(T + i * 10_000, 1, 1, ticks=10 * (i + 1)) for i in range(30)]
    act = market({"windows": windows}).snapshot(T + 300_000 + 5_000)["activity"]
    assert act["ticks_10sec"] == 300
    assert act["ticks_30sec"] == 300 + 290 + 280
    assert act["ticks_60sec"] == act["ticks_per_minute"] == sum(range(250, 301, 10))
    assert act["ticks_300sec"] == sum(range(10, 301, 10))
    assert act["activity_level"] == "Extreme"


@pytest.mark.parametrize(
    ("per_minute", "level"),
    [(480, "Extreme"), (479, "Very High"), (240, "Very High"), (120, "High"), (60, "Medium"),
     (59, "Low"), (30, "Low"), (29, "Very Low"), (0, "Very Low")],
)
def test_activity_level_thresholds(per_minute: int, level: str) -> None:
    m = market({"windows": [window(T, 1, 1, ticks=per_minute)]} if per_minute else {})
    assert m.snapshot(T + 10_000)["activity"]["activity_level"] == level


@pytest.mark.parametrize(
    ("when", "phase"),
    [(at(7, 0), "Pre-Market"), (at(9, 30), "Opening Bell"), (at(9, 44, 59), "Opening Bell"),
     (at(9, 45), "Market Open"), (at(15, 44, 59), "Market Open"), (at(15, 45), "Closing Bell"),
     (at(12, 45, day=dt.date(2013, 11, 29)), "Closing Bell"), (at(17, 0), "After Hours"),
     (at(21, 0), "Market Closed"), (at(11, 0, day=dt.date(2013, 10, 12)), "Market Closed")],
)
def test_market_phase_from_event_time(when: int, phase: str) -> None:
    assert market().snapshot(when)["activity"]["market_phase"] == phase


def test_a_new_session_starts_afresh_and_old_data_is_stale() -> None:
    regular = CLOCK.session_at(at(15, 0)).start_ms
    m = market({"windows": [window(at(15, 0), 100, 0)], "counts": [[regular, "X", 3, 0, 0, 0]]})
    assert m.snapshot(at(15, 1))["activity"]["total_highs"] == 3
    after = at(16, 5)
    m.merge({"windows": [window(after, 0, 100)]})
    snap = m.snapshot(after + 10_000)
    assert (snap["activity"]["session"], snap["activity"]["total_highs"]) == ("AFTER", 0)
    assert (snap["gauge"]["calculations"], snap["gauge"]["net_score"]) == (1, -10.0)
    m.merge({"windows": [window(at(15, 1), 5, 0)], "counts": [[regular, "X", 1, 0, 0, 0]]})
    assert m.rejected == {"stale_window": 1, "stale_counts": 1}
    assert m.per_ticker_counts() == {}


def test_the_watermark_alone_moves_the_session() -> None:
    m = market({"windows": [window(at(15, 0), 100, 0)]})
    m.on_events([event("low", "X", at(15, 0))])
    snap = m.snapshot(at(16, 0, 1))
    assert snap["activity"]["session"] == "AFTER"
    assert (snap["activity"]["total_lows"], snap["gauge"]["calculations"]) == (0, 0)


def test_reset_session_is_a_no_op_for_the_current_session_and_clears_otherwise() -> None:
    m = market({"windows": [window(T, 100, 0)]})
    m.on_events([event("high", "X", T), event("trend", "X", T)])
    current = m.session
    assert current is not None
    m.reset_session(current.key)
    assert m.snapshot(T + 10_000)["activity"]["total_events"] == 2
    m.reset_session(("2013-10-08", "AFTER"))
    assert m.per_ticker_counts() == {}
    m.on_events([event("high", "X", T + 20_000)])  # the reset session's data is now stale
    assert m.rejected == {"stale_event": 1}


def test_market_on_events_counts_directly() -> None:
    m = market()
    m.on_events([event("high", "X", T), event("high", "X", T + 1), event("surge", "Y", T),
                 event("nope", "Y", T)])
    assert m.per_ticker_counts()["X"] == {"highs": 2, "lows": 0, "surges": 0, "trends": 0}
    assert m.snapshot(T + 1)["activity"]["total_surges"] == 1
    assert m.rejected == {"unknown_kind": 1}


def test_windows_kept_are_bounded() -> None:
    m = market({"windows": [window(T + i * 10_000, 1, 1) for i in range(500)]})
    m.snapshot(T + 5_000_000)
    assert len(m._windows) <= AnalyticsConfig().max_windows


def test_shards_to_market_end_to_end() -> None:
    shards = [ShardAnalytics(AnalyticsConfig()) for _ in range(2)]
    trade(shards[0], "X", [(T + 100, 10.0, 100), (T + 200, 10.1, 300)])
    trade(shards[1], "Y", [(T + 150, 20.0, 100), (T + 250, 19.9, 500), (T + 10_500, 19.8, 50)])
    shards[1].on_events([event("low", "Y", T + 250)])
    m = market(*(s.take_delta() for s in reversed(shards)))
    snap = m.snapshot(T + 10_000)
    assert snap["gauge"]["buy_volume"] == 300.0
    assert snap["gauge"]["sell_volume"] == 500.0
    assert snap["gauge"]["net_score"] == pytest.approx(-10.0)  # -25 clamped
    assert snap["activity"]["ticks_10sec"] == 4
    assert snap["activity"]["total_lows"] == 1
