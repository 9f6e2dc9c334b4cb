"""The engine against its frozen reference (`tests/reference/`), on real recorded days.

`tests/reference/detector_engine.py` is the engine as it was before (numpy Trend scoring from
scratch, a Python loop per analytics window, one feed bar at a time); the current engine must
give the same events (ids, kinds, directions, prices, every field; floats within 1e-9), the
same analytics deltas and the same rejects, with every detector on, over tick days (AlgoSeek
SPY/IBM/BAC/AIG 2013-10-07..10, LOBSTER AAPL/AMZN) and bar days (Alpha Vantage, Lean minute).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from config.detection import DetectionConfig
from tests.reference.equivalence import compare_file

pytestmark = pytest.mark.slow

TICK_DAYS = [f"algoseek_lean/tick/{sym}/{day}_{sym}_Trade_Tick.csv.gz"
             for sym in ("spy", "ibm", "bac", "aig")
             for day in ("20131007", "20131008", "20131009", "20131010")]
OTHER_DAYS = [
    "lobster_2012-06-21/AAPL_2012-06-21_34200000_57600000_message_1.csv.gz",
    "lobster_2012-06-21/AMZN_2012-06-21_34200000_57600000_message_1.csv.gz",
    "alphavantage_1min_2018/2018-03-12.csv.gz",
    "algoseek_lean/minute/spy/20131007_spy_minute_trade.csv.gz",
]


@pytest.mark.parametrize("name", TICK_DAYS + OTHER_DAYS)
def test_the_engine_gives_the_reference_events(real_data_dir: Path, name: str) -> None:
    run, diffs = compare_file(real_data_dir / name)
    assert diffs == []
    if "tick" in name or "lobster" in name:
        assert any(e.kind == "trend" for e in run.events)  # the days do exercise Trend


def test_a_day_with_trend_and_surge_off_matches_too(real_data_dir: Path) -> None:
    config = DetectionConfig(enable_surge=False, enable_trend=False)
    _, diffs = compare_file(real_data_dir / "alphavantage_1min_2018/2018-03-12.csv.gz", config)
    assert diffs == []
