"""The one validity check: each rule, its reason, the order rules are counted in."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np

from actors.market.validity import check_bars, check_trades
from schemas.batches import BarBatch, TradeBatch

NAN, INF = math.nan, math.inf


def trades(rows: list[tuple[str, float, float]]) -> TradeBatch:
    sym, p, s = zip(*rows, strict=True)
    return TradeBatch.from_columns(sym, np.arange(len(rows)), p, s)


def test_every_trade_rule_counts_its_reason() -> None:
    counts: Counter[str] = Counter()
    batch = trades([
        ("A", 10.0, 100.0),
        ("", 10.0, 100.0),  # bad ticker
        ("A", 0.0, 100.0), ("A", -1.0, 100.0), ("A", NAN, 100.0), ("A", INF, 100.0),
        ("A", 2e6, 100.0),  # above max_price
        ("A", 10.0, NAN), ("A", 10.0, -5.0),  # bad sizes
        ("A", 10.0, 0.0),  # traded nothing
        ("B", 10.5, 0.5),  # an odd lot is a trade
    ])
    ok = check_trades(batch, counts, max_price=1e6)
    assert ok.tolist() == [True] + [False] * 9 + [True]
    assert counts == {"bad_ticker": 1, "bad_price": 5, "bad_size": 2, "zero_size": 1}


def test_a_row_is_counted_once_under_its_first_failing_rule() -> None:
    counts: Counter[str] = Counter()
    check_trades(trades([("", NAN, 0.0), ("A", NAN, 0.0)]), counts)
    assert counts == {"bad_ticker": 1, "bad_price": 1}


def test_no_price_limit_by_default_and_ok_limits_the_judgement() -> None:
    counts: Counter[str] = Counter()
    batch = trades([("A", 2e9, 1.0), ("A", -1.0, 1.0), ("A", -2.0, 1.0)])
    given = np.array([True, True, False])
    ok = check_trades(batch, counts, ok=given)
    assert ok.tolist() == [True, False, False]
    assert ok is given  # narrowed in place
    assert counts == {"bad_price": 1}  # the row outside `ok` is not counted


def test_bar_rules() -> None:
    counts: Counter[str] = Counter()
    bars = BarBatch.from_columns(
        sym=["A", "A", "A", "A", "", "A"],
        start=[0, 0, 0, 1_000, 0, 0], end=[1_000, 1_000, 1_000, 1_000, 1_000, 1_000],
        o=[10.0, 10.0, 10.0, 10.0, 10.0, 10.0], h=[11.0, 9.0, 11.0, 11.0, 11.0, 11.0],
        l=[9.0, 9.0, NAN, 9.0, 9.0, 9.0], c=[10.5, 10.5, 10.5, 10.5, 10.5, 10.5],
        v=[100.0, 100.0, 100.0, 100.0, 100.0, -1.0],
    )
    ok = check_bars(bars, counts)
    assert ok.tolist() == [True, False, False, False, False, False]
    assert counts == {"bad_bar": 2, "bad_price": 1, "bad_ticker": 1, "bad_size": 1}
