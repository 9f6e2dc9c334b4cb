"""Validation: every stated rule drops the row and counts it under its reason."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actors.detection.validation import Validator
from config.detection import ValidationConfig
from schemas.batches import BarBatch, TradeBatch

T0 = 1_381_239_000_000  # 2013-10-08 09:30 ET


def trades(rows: list[tuple[str, int, float, float]], seq: list[int] | None = None) -> TradeBatch:
    return TradeBatch.from_columns(
        [r[0] for r in rows], [T0 + r[1] for r in rows], [r[2] for r in rows],
        [r[3] for r in rows], seq=seq,
    )


def accepted(v: Validator, batch: TradeBatch) -> list[tuple[str, int, float, float]]:
    out = v.validate(batch)
    return [(sym, t - T0, p, s) for sym, t, p, s, _, _ in out.rows()]


def test_bad_prices_and_sizes_are_counted_by_reason() -> None:
    v = Validator()
    rows = [
        ("A", 0, 10.0, 100.0),
        ("A", 1, 0.0, 100.0), ("A", 2, -1.0, 100.0), ("A", 3, float("nan"), 100.0),
        ("A", 4, float("inf"), 100.0),
        ("A", 5, 10.0, 0.0), ("A", 6, 10.0, -5.0),
        ("A", 7, 10.0, float("nan")),
        ("", 8, 10.0, 100.0),
        ("A", 9, 10.01, 50.0),
    ]
    assert accepted(v, trades(rows)) == [("A", 0, 10.0, 100.0), ("A", 9, 10.01, 50.0)]
    assert v.rejected == {"bad_price": 4, "zero_size": 1, "bad_size": 2, "bad_ticker": 1}


def test_a_judged_batch_is_not_checked_again() -> None:
    v = Validator()
    rows = [("A", 0, 10.0, 100.0), ("A", 1, 10.1, 0.0), ("A", 2, 10.2, 100.0)]
    batch = trades(rows)
    judged = TradeBatch(batch.sym, batch.t, batch.p, batch.s, batch.flags, batch.seq,
                        np.array([True, True, False]))
    # The verdict is trusted: the zero size passes (the ingest judged it valid), the row the
    # verdict refused is dropped, and neither is counted here (the ingest counted its rows).
    assert v.accept_rows(judged).tolist() == [True, True, False]
    assert v.rejected == {}


def test_out_of_order_per_ticker() -> None:
    v = Validator()
    rows = [("A", 100, 10.0, 1.0), ("B", 50, 20.0, 1.0), ("A", 99, 10.0, 1.0),
            ("A", 100, 10.0, 1.0), ("B", 40, 20.0, 1.0), ("A", 101, 10.0, 1.0)]
    assert accepted(v, trades(rows)) == [
        ("A", 100, 10.0, 1.0), ("B", 50, 20.0, 1.0), ("A", 100, 10.0, 1.0), ("A", 101, 10.0, 1.0)
    ]
    assert v.rejected == {"out_of_order": 2}
    # The ticker's latest time carries over to the next batch.
    assert accepted(v, trades([("A", 100, 10.0, 1.0)], seq=[10])) == []
    assert v.rejected["out_of_order"] == 3


def test_out_of_order_tolerance() -> None:
    v = Validator(ValidationConfig(out_of_order_tolerance_ms=5))
    rows = [("A", 100, 10.0, 1.0), ("A", 96, 10.0, 1.0), ("A", 94, 10.0, 1.0),
            ("A", 97, 10.0, 1.0)]
    assert [r[1] for r in accepted(v, trades(rows))] == [100, 96, 97]
    assert v.rejected == {"out_of_order": 1}


def test_replayed_seq_is_a_duplicate() -> None:
    v = Validator()
    first = trades([("A", 0, 10.0, 1.0), ("A", 1, 10.0, 1.0)], seq=[0, 1])
    assert len(v.validate(first)) == 2
    # A restart re-sends rows 1..3: only 2 and 3 are new.
    again = trades([("A", 1, 10.0, 1.0), ("A", 2, 10.0, 1.0), ("A", 3, 10.0, 1.0)], seq=[1, 2, 3])
    assert [r[1] for r in accepted(v, again)] == [2, 3]
    assert v.rejected == {"duplicate": 1}
    assert v.last_seq == 3


def test_identical_trades_with_distinct_seq_are_kept() -> None:
    v = Validator()
    batch = trades([("A", 0, 10.0, 100.0)] * 3, seq=[5, 6, 7])
    assert len(v.validate(batch)) == 3  # one order filling three resting orders


def test_repeated_seq_inside_a_batch_is_a_duplicate() -> None:
    v = Validator()
    batch = trades([("A", 0, 10.0, 1.0), ("A", 1, 10.0, 1.0), ("A", 2, 10.0, 1.0)], seq=[4, 4, 3])
    assert len(v.validate(batch)) == 1
    assert v.rejected == {"duplicate": 2}


def test_duplicates_are_checked_before_other_rules() -> None:
    v = Validator()
    v.validate(trades([("A", 0, 10.0, 1.0)], seq=[9]))
    v.validate(trades([("A", 1, -1.0, 1.0)], seq=[9]))
    assert v.rejected == {"duplicate": 1}


def test_absurd_jump_is_dropped_and_does_not_become_the_reference() -> None:
    v = Validator(ValidationConfig(max_jump_pct=50, jump_window_ms=60_000))
    rows = [("A", 0, 10.0, 1.0), ("A", 1, 100.0, 1.0), ("A", 2, 10.1, 1.0), ("A", 3, 4.0, 1.0),
            ("A", 4, 14.9, 1.0)]
    assert [r[2] for r in accepted(v, trades(rows))] == [10.0, 10.1, 14.9]
    assert v.rejected == {"price_jump": 2}
    assert v.last_price("A") == 14.9


def test_a_rejected_jump_does_not_advance_the_ticker_time() -> None:
    v = Validator()
    rows = [("A", 0, 10.0, 1.0), ("A", 50_000, 100.0, 1.0), ("A", 100, 10.1, 1.0)]
    assert [r[1] for r in accepted(v, trades(rows))] == [0, 100]
    assert v.rejected == {"price_jump": 1}


def test_jump_rule_only_applies_within_the_window() -> None:
    v = Validator(ValidationConfig(max_jump_pct=50, jump_window_ms=1_000))
    rows = [("A", 0, 10.0, 1.0), ("A", 500, 30.0, 1.0), ("A", 2_000, 30.0, 1.0),
            ("A", 2_100, 31.0, 1.0)]
    assert [r[2] for r in accepted(v, trades(rows))] == [10.0, 30.0, 31.0]
    assert v.rejected == {"price_jump": 1}


def test_jump_reference_carries_across_batches() -> None:
    v = Validator()
    v.validate(trades([("A", 0, 10.0, 1.0)], seq=[0]))
    assert accepted(v, trades([("A", 10, 25.0, 1.0), ("A", 20, 10.5, 1.0)], seq=[1, 2])) == [
        ("A", 20, 10.5, 1.0)
    ]


def test_snapshot_restore() -> None:
    v = Validator()
    v.validate(trades([("A", 100, 10.0, 1.0), ("B", 5, 1.0, 0.0)], seq=[0, 1]))
    w = Validator()
    w.restore(v.snapshot())
    assert w.rejected == v.rejected
    assert w.last_seq == 1
    assert accepted(w, trades([("A", 99, 10.0, 1.0), ("A", 101, 30.0, 1.0)], seq=[2, 3])) == []
    assert w.rejected == {"zero_size": 1, "out_of_order": 1, "price_jump": 1}


def test_bars() -> None:
    v = Validator()
    batch = BarBatch.from_columns(
        sym=["A", "A", "A", "A", "A", ""],
        start=[0, 60_000, 120_000, 180_000, 240_000, 0],
        end=[60_000, 120_000, 180_000, 180_000, 300_000, 60_000],
        o=[10.0, 10.0, 10.0, 10.0, 10.0, 10.0], h=[11.0, 9.0, 11.0, 11.0, 11.0, 11.0],
        l=[9.0, 8.0, 9.0, 9.0, 0.0, 9.0], c=[10.5, 8.5, 10.0, 10.0, 10.0, 10.0],
        v=[100.0, 100.0, -1.0, 100.0, 100.0, 100.0],
    )
    assert v.accept_bars(batch).tolist() == [True, False, False, False, False, False]
    assert v.rejected == {"bad_bar": 2, "bad_size": 1, "bad_price": 1, "bad_ticker": 1}


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3), st.integers(-50, 200),
                          st.sampled_from([1.0, 1.2, 3.0, 0.4, -1.0])), max_size=80),
       st.lists(st.integers(0, 80), max_size=4))
def test_validation_is_independent_of_batch_split(
    raw: list[tuple[int, int, float]], cuts: list[int]
) -> None:
    rows = [(f"T{k}", i * 10 + dt, 10.0 * m, 1.0) for i, (k, dt, m) in enumerate(raw)]
    whole = Validator()
    expected = accepted(whole, trades(rows)) if rows else []
    split = Validator()
    got: list[tuple[str, int, float, float]] = []
    bounds = [0, *sorted(c for c in cuts if c <= len(rows)), len(rows)]
    for a, b in itertools.pairwise(bounds):
        if b > a:
            got += accepted(split, trades(rows[a:b], seq=list(range(a, b))))
    assert got == expected
    assert split.rejected == whole.rejected
    total = sum(whole.rejected.values())
    assert total + len(expected) == len(rows)


@pytest.mark.parametrize("n", [0, 1])
def test_small_batches(n: int) -> None:
    v = Validator()
    assert len(v.validate(trades([("A", 0, 1.0, 1.0)] * n))) == n
