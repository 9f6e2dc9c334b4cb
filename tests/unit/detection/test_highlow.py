"""HighLow: the DESIGN §5 rules, and the fast path against the per-trade reference."""

from __future__ import annotations

import datetime as dt
import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actors.detection.highlow import HighLowDetector, HighLowReference
from actors.market.sessions import ET, SessionClock, SessionInfo
from config.detection import HighLowConfig
from schemas.batches import FLAG_HIGH_LOW, FLAG_LAST, FLAG_VOLUME, FLAGS_REGULAR
from schemas.events import Event

CLOCK = SessionClock()
OPEN = int(dt.datetime(2013, 10, 8, 9, 30, tzinfo=ET).timestamp() * 1000)
REGULAR = CLOCK.session_at(OPEN + 60_000)
PRE = CLOCK.session_at(OPEN - 3_600_000)
NEXT_DAY = CLOCK.session_at(OPEN + 86_400_000 + 60_000)
VOLUME_ONLY = FLAG_VOLUME


def run(
    det: HighLowDetector | HighLowReference, rows: list[tuple[int, float]],
    session: SessionInfo = REGULAR, sizes: list[float] | None = None,
    flags: list[int] | None = None, ticker: str = "SPY",
) -> list[Event]:
    """Feed (ms after `session` start, price) rows as one segment."""
    n = len(rows)
    t = np.array([session.start_ms + dt_ms for dt_ms, _ in rows], dtype=np.int64)
    p = np.array([price for _, price in rows], dtype=np.float64)
    s = np.array(sizes if sizes is not None else [100.0] * n, dtype=np.float64)
    f = np.array(flags if flags is not None else [FLAGS_REGULAR] * n, dtype=np.uint8)
    return det.process(ticker, session, t, p, s, f)


@pytest.fixture(params=[HighLowDetector, HighLowReference], ids=["fast", "reference"])
def det(request: pytest.FixtureRequest) -> HighLowDetector | HighLowReference:
    return request.param()  # type: ignore[no-any-return]


# -- the rules ---------------------------------------------------------------------------


def test_first_eligible_trade_sets_base_and_fires_nothing(det: HighLowDetector) -> None:
    assert run(det, [(0, 50.0)]) == []
    state = det.state("SPY")
    assert (state["base"], state["high"], state["low"]) == (50.0, 50.0, 50.0)


def test_ineligible_trades_never_move_the_extremes(det: HighLowDetector) -> None:
    events = run(
        det, [(0, 200.0), (5_000, 260.0), (10_000, 150.0)],
        flags=[FLAGS_REGULAR, VOLUME_ONLY, FLAG_LAST | FLAG_VOLUME],
    )
    assert events == []
    assert (det.state("SPY")["high"], det.state("SPY")["low"]) == (200.0, 200.0)


def test_first_eligible_trade_seeds_even_after_ineligible_ones(det: HighLowDetector) -> None:
    run(det, [(0, 90.0), (10, 100.0)], flags=[VOLUME_ONLY, FLAGS_REGULAR])
    assert det.state("SPY")["base"] == 100.0


@pytest.mark.parametrize(
    ("price", "min_pct"),
    [(0.5, 0.2), (0.99, 0.2), (1.0, 0.15), (4.99, 0.15), (5.0, 0.1), (24.99, 0.1),
     (25.0, 0.08), (99.99, 0.08), (100.0, 0.05), (5_000.0, 0.05)],
)
def test_tier_of_the_trade_price(price: float, min_pct: float) -> None:
    assert HighLowDetector().min_pct(price) == min_pct


@pytest.mark.parametrize(
    ("base", "move", "fires"),
    [
        (200.0, 0.125, True),  # 0.0625 % >= 0.05 %
        (200.0, 0.0625, False),  # 0.03125 % < 0.05 %
        (20.0, 0.03125, True),  # 0.156 % >= 0.1 %
        (20.0, 0.015625, False),  # 0.078 % < 0.1 %
        (0.5, 0.0009765625, False),  # 0.195 % < 0.2 %
        (0.5, 0.001953125, True),  # 0.39 % >= 0.2 %
    ],
)
def test_gate_is_the_percent_move_from_the_base(
    det: HighLowDetector, base: float, move: float, fires: bool
) -> None:
    events = run(det, [(0, base), (2_000, base + move)])
    assert bool(events) is fires
    assert det.state("SPY")["high"] == base + move  # the extreme moves either way


def test_no_dollar_gate_small_moves_on_cheap_stock_fire(det: HighLowDetector) -> None:
    # 1 cent on a $2 stock: 0.5 % >= 0.15 %, though the original's $ gate would have said no.
    assert [e.kind for e in run(det, [(0, 2.0), (2_000, 1.99)])] == ["low"]


def test_extremes_move_during_cooldown_and_only_strict_records_fire(det: HighLowDetector) -> None:
    events = run(det, [
        (0, 100.0),
        (100, 100.2),  # fires
        (500, 100.5),  # new high inside the cooldown: moves the high, no event
        (1_200, 100.4),  # past the cooldown but not a new high
        (1_300, 100.5),  # equal to the high: not strictly above
        (1_400, 100.6),  # fires
    ])
    assert [(e.price, e.time - REGULAR.start_ms) for e in events] == [(100.2, 100), (100.6, 1_400)]
    assert events[1].session_high == 100.6
    assert det.state("SPY")["high"] == 100.6


def test_one_cooldown_covers_both_kinds(det: HighLowDetector) -> None:
    events = run(det, [(0, 100.0), (1_000, 101.0), (1_500, 98.0), (1_999, 97.0), (2_000, 96.0)])
    assert [(e.kind, e.time - REGULAR.start_ms) for e in events] == [
        ("high", 1_000), ("low", 2_000)
    ]
    assert events[1].session_low == 96.0
    assert events[1].session_high == 101.0


def test_event_fields(det: HighLowDetector) -> None:
    events = run(det, [(0, 100.0), (1_000, 101.0), (3_000, 102.0), (5_000, 99.0)])
    first, second, low = events
    assert first.id == f"SPY:high:{REGULAR.start_ms + 1_000}:1"
    assert (first.kind, first.direction, first.label) == ("high", "up", "HIGH #1")
    assert (second.label, second.count, second.count_up, second.count_down) == ("HIGH #2", 2, 2, 0)
    assert (low.kind, low.direction, low.label) == ("low", "down", "LOW #1")
    assert (low.count, low.count_up, low.count_down) == (3, 2, 1)
    assert low.id == f"SPY:low:{REGULAR.start_ms + 5_000}:1"
    assert first.pct_change == pytest.approx(1.0)
    assert low.pct_change == pytest.approx(-1.0)
    assert first.session == "REGULAR"
    assert first.vwap == pytest.approx(100.5)
    assert (low.session_high, low.session_low) == (102.0, 99.0)


def test_counts_reset_at_a_session_change(det: HighLowDetector) -> None:
    run(det, [(0, 100.0), (1_000, 101.0), (3_000, 102.0)])
    events = run(det, [(0, 50.0), (1_000, 51.0)], session=NEXT_DAY)
    assert [(e.label, e.count, e.count_up) for e in events] == [("HIGH #1", 1, 1)]
    assert events[0].pct_change == pytest.approx(2.0)  # from the new session's base
    assert det.state("SPY")["session_start"] == NEXT_DAY.start_ms


def test_previous_session_base_stays_available(det: HighLowDetector) -> None:
    run(det, [(0, 100.0)])
    run(det, [(0, 50.0)], session=NEXT_DAY)
    assert det.base("SPY", REGULAR.start_ms) == 100.0  # for bars judged after the change
    assert det.base("SPY", NEXT_DAY.start_ms) == det.base("SPY") == 50.0
    assert det.base("SPY", PRE.start_ms) is None


def test_reversal_patterns(det: HighLowDetector) -> None:
    rows = [
        (0, 100.0),
        (1_000, 101.0),  # high
        (30_000, 98.0),  # low 29 s later: V-top, rapid
        (200_000, 102.0),  # high 170 s later: V-bottom, not rapid, last three alternate: M-top
        (600_000, 97.0),  # low 400 s later: no reversal
    ]
    events = run(det, rows)
    got = [(e.kind, e.reversal, e.rapid, e.pattern) for e in events]
    assert got == [
        ("high", None, None, None),
        ("low", "V-top", True, None),
        ("high", "V-bottom", False, "M-top"),
        ("low", None, None, None),
    ]


def test_w_bottom(det: HighLowDetector) -> None:
    events = run(det, [(0, 100.0), (1_000, 99.0), (10_000, 101.0), (20_000, 98.0)])
    assert [e.pattern for e in events] == [None, None, "W-bottom"]
    assert [e.reversal for e in events] == [None, "V-bottom", "V-top"]


def test_significance_and_relative_volume(det: HighLowDetector) -> None:
    # Five equal sizes, then a trade four times their size.
    rows = [(i * 10, 100.0) for i in range(5)] + [(2_000, 100.5), (4_000, 110.0)]
    sizes = [100.0] * 5 + [500.0, 100.0]
    first, second = run(det, rows, sizes=sizes)
    assert first.rel_volume == pytest.approx(500 / (1000 / 6), abs=1e-3)
    assert first.significance == pytest.approx(min(0.5 * 10, 50) + 50)  # rel vol 3 -> capped
    assert second.significance == pytest.approx(50 + min(second.rel_volume * 25, 50), abs=0.01)
    big = run(HighLowDetector(), rows, sizes=[1.0] * 5 + [1.0, 1_000.0])
    assert big[-1].significance == 100.0  # the scale reaches 100 (the original capped at 50)


def test_no_relative_volume_before_enough_sizes(det: HighLowDetector) -> None:
    events = run(det, [(0, 100.0), (2_000, 101.0)])
    assert events[0].rel_volume is None
    assert events[0].significance == pytest.approx(10.0)  # min(1 % x 10, 50) + 0


def test_official_open_replaces_the_regular_base(det: HighLowDetector) -> None:
    det.set_official_open("SPY", 99.0, REGULAR.start_ms)
    events = run(det, [(0, 100.0), (2_000, 100.5)])
    assert det.state("SPY")["base"] == 99.0
    assert events[0].pct_change == pytest.approx((100.5 - 99) / 99 * 100, abs=1e-4)


def test_official_open_arriving_mid_session_replaces_the_base(det: HighLowDetector) -> None:
    run(det, [(0, 100.0)])
    det.set_official_open("SPY", 98.0, REGULAR.start_ms + 10)
    assert det.state("SPY")["base"] == 98.0


def test_official_open_ignored_outside_regular(det: HighLowDetector) -> None:
    det.set_official_open("SPY", 90.0, PRE.start_ms + 10)
    run(det, [(0, 100.0)], session=PRE)
    assert det.state("SPY")["base"] == 100.0


def test_snapshot_restore_continues_identically() -> None:
    rows = [(i * 700, 100 + 3 * np.sin(i / 7) + i * 0.01) for i in range(300)]
    whole = run(HighLowDetector(), rows)
    first = HighLowDetector()
    head = run(first, rows[:150])
    second = HighLowDetector()
    second.restore(first.snapshot())
    assert head + run(second, rows[150:]) == whole
    assert len(whole) > 5


def test_tickers_are_independent() -> None:
    det = HighLowDetector()
    run(det, [(0, 100.0), (2_000, 101.0)], ticker="AAA")
    events = run(det, [(0, 10.0), (2_000, 10.5)], ticker="BBB")
    assert [e.label for e in events] == ["HIGH #1"]
    assert det.state("AAA")["count"] == 1
    assert det.state("BBB")["count"] == 1


def test_custom_tiers_and_cooldown() -> None:
    cfg = HighLowConfig(cooldown_ms=0, tiers=())
    events = run(HighLowDetector(cfg), [(0, 100.0), (1, 100.001), (2, 100.002)])
    assert len(events) == 2  # no tier -> 0 %, no cooldown


# -- fast path == per-trade reference, for any batch split ----------------------------------

FLAG_CHOICES = [FLAGS_REGULAR, FLAGS_REGULAR, FLAGS_REGULAR, VOLUME_ONLY, FLAG_HIGH_LOW,
                FLAG_HIGH_LOW | FLAG_VOLUME, 0]


@st.composite
def trade_streams(draw: st.DrawFn) -> tuple[list[tuple[int, float, float, int]], list[int]]:
    n = draw(st.integers(1, 250))
    steps = draw(st.lists(st.integers(0, 1_500), min_size=n, max_size=n))
    moves = draw(st.lists(st.integers(-40, 40), min_size=n, max_size=n))
    sizes = draw(st.lists(st.sampled_from([1.0, 50.0, 100.0, 300.0, 5_000.0]), min_size=n,
                          max_size=n))
    flags = draw(st.lists(st.sampled_from(FLAG_CHOICES), min_size=n, max_size=n))
    start = draw(st.sampled_from([0.5, 3.0, 20.0, 80.0, 400.0]))
    t, price, rows = 0, start, []
    for step, move, size, flag in zip(steps, moves, sizes, flags, strict=True):
        t += step
        price = max(0.01, round(price * (1 + move / 4_000), 4))
        rows.append((t, price, size, flag))
    cuts = sorted(draw(st.lists(st.integers(0, n), max_size=6)))
    return rows, cuts


def _feed(det: HighLowDetector | HighLowReference, rows: list[tuple[int, float, float, int]],
          cuts: list[int]) -> list[Event]:
    out: list[Event] = []
    bounds = [0, *cuts, len(rows)]
    for a, b in itertools.pairwise(bounds):
        part = rows[a:b]
        if not part:
            continue
        t = np.array([REGULAR.start_ms + r[0] for r in part], dtype=np.int64)
        p = np.array([r[1] for r in part])
        s = np.array([r[2] for r in part])
        f = np.array([r[3] for r in part], dtype=np.uint8)
        out.extend(det.process("X", REGULAR, t, p, s, f))
    return out


@settings(max_examples=200, deadline=None)
@given(trade_streams())
def test_fast_path_equals_reference_for_any_split(
    stream: tuple[list[tuple[int, float, float, int]], list[int]],
) -> None:
    rows, cuts = stream
    expected = _feed(HighLowReference(), rows, [])
    assert _feed(HighLowDetector(), rows, cuts) == expected
    assert _feed(HighLowReference(), rows, cuts) == expected


@settings(max_examples=150, deadline=None)
@given(trade_streams())
def test_invariants(stream: tuple[list[tuple[int, float, float, int]], list[int]]) -> None:
    rows, cuts = stream
    det = HighLowDetector()
    events = _feed(det, rows, cuts)
    eligible = [r for r in rows if r[3] & FLAG_HIGH_LOW]
    base = eligible[0][1] if eligible else None
    for prev, ev in itertools.pairwise(events):
        assert ev.time - prev.time >= 1_000  # one cooldown for both kinds
        assert ev.count == prev.count + 1  # counts grow by one per event
    highs = [e.price for e in events if e.kind == "high"]
    lows = [e.price for e in events if e.kind == "low"]
    assert highs == sorted(set(highs))
    assert lows == sorted(set(lows), reverse=True)
    running, hi, lo = set(), -np.inf, np.inf  # (time, price, high, low) after each eligible row
    for t, price, _, _ in eligible:
        hi, lo = max(hi, price), min(lo, price)
        running.add((REGULAR.start_ms + t, price, hi, lo))
    for ev in events:  # no event without its gate, and always a true record
        assert base is not None
        assert abs(ev.price - base) / base * 100 >= det.min_pct(ev.price)
        assert (ev.time, ev.price, ev.session_high, ev.session_low) in running
    if eligible:
        state = det.state("X")
        assert state["high"] == max(r[1] for r in eligible)
        assert state["low"] == min(r[1] for r in eligible)
        assert state["count"] == len(events)
