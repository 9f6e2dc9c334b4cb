"""FrameDecoder: raw Polygon frames -> batches, with every rejected frame or event counted."""

from __future__ import annotations

import math
from collections import Counter

import msgspec
import numpy as np
import pytest

from actors.market.conditions import flags_for
from actors.market.validity import check_bars, check_trades
from actors.polygon.decode import FrameDecoder, scalar_ms, to_ms
from schemas.batches import FLAG_FORM_T, FLAGS_REGULAR
from schemas.polygon import PolygonTrade

T0 = 1_700_000_000_000  # Unix ms


def trade(sym: str = "AAPL", p: float = 100.0, s: float = 100, t: int = T0, **kw: object) -> dict:
    return {"ev": "T", "sym": sym, "x": 12, "i": "1", "z": 3, "p": p, "s": s, "t": t, "q": 1, **kw}


def agg(ev: str, sym: str, s: int, c: float = 10.0, v: float = 100, **kw: object) -> dict:
    e = s + (60_000 if ev == "AM" else 1_000)
    return {"ev": ev, "sym": sym, "o": 10.0, "h": 11.0, "l": 9.0, "c": c, "v": v, "vw": 10.1,
            "s": s, "e": e, **kw}


def frame(*events: object) -> str:
    return msgspec.json.encode(list(events)).decode()


def test_trades_become_columns_with_flags_and_running_seq():
    dec = FrameDecoder()
    out = dec.decode(frame(trade("AAPL", 101.5, 10, T0), trade("MSFT", 300, 5, T0 + 1, c=[12]),
                           trade("SPY", 400, 1, T0 + 2, c=[37])), T0 + 50)
    assert out.trades is not None
    assert out.trades.sym.tolist() == ["AAPL", "MSFT", "SPY"]
    assert out.trades.p.tolist() == [101.5, 300.0, 400.0]
    assert out.trades.flags.tolist() == [FLAGS_REGULAR, flags_for([12]), flags_for([37])]
    assert out.trades.flags[1] & FLAG_FORM_T
    assert out.trades.seq.tolist() == [0, 1, 2]
    assert out.lag_ms == 48
    again = dec.decode(frame(trade()), T0)
    assert again.trades is not None
    assert again.trades.seq.tolist() == [3]
    assert out.seconds is None
    assert out.minutes is None
    assert out.rejected == 0


def test_bytes_frames_and_status_messages():
    dec = FrameDecoder()
    out = dec.decode(b'[{"ev":"status","status":"success","message":"subscribed to: T.*"}]', T0)
    assert [(m.status, m.message) for m in out.statuses] == [("success", "subscribed to: T.*")]
    assert out.trades is None
    # A status frame without "message" (it kills the client's non-raw mode) is fine here.
    out = dec.decode('[{"ev":"status","status":"max_connections"}]', T0)
    assert out.statuses[0].status == "max_connections"
    assert out.statuses[0].message == ""
    assert dec.rejected.total() == 0


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("not json at all", "malformed_json"),
        ('[{"ev":"T","sym":"AAPL"', "malformed_json"),
        ('{"ev":"T","sym":"AAPL","p":1,"s":1,"t":1}', "not_array"),
        ('"a string"', "not_array"),
    ],
)
def test_frame_level_garbage_is_counted_not_raised(raw, reason):
    dec = FrameDecoder()
    out = dec.decode(raw, T0)
    assert out.trades is None
    assert out.rejected == 1
    assert dec.rejected == {reason: 1}


def test_bad_events_are_salvaged_around():
    dec = FrameDecoder()
    bad = [
        {"ev": "Q", "sym": "AAPL", "bp": 1.0},  # unknown ev for our union
        {"ev": "T", "sym": "AAPL", "s": 1, "t": T0},  # missing p
        {"ev": "T", "sym": "AAPL", "p": "1.0", "s": 1, "t": T0},  # wrong type
        {"sym": "AAPL", "p": 1.0, "s": 1, "t": T0},  # no ev at all
        {"ev": "XYZ"},
    ]
    out = dec.decode(frame(trade("AAPL", 1.0), *bad, trade("MSFT", 2.0)), T0)
    assert out.trades is not None
    assert out.trades.sym.tolist() == ["AAPL", "MSFT"]
    assert dec.rejected == {"unknown_ev": 2, "missing_field": 2, "wrong_type": 1}
    assert out.rejected == 5


def test_the_decoder_drops_what_its_columns_cannot_hold_and_leaves_values_to_the_check():
    dec = FrameDecoder()
    out = dec.decode(frame(
        trade(p=0.0), trade(p=-1.0), trade(p=2e6), trade(s=-5), trade(t=0),
        trade(sym=""), trade(sym="A" * 13), trade(p=10.0),
    ), T0)
    assert out.trades is not None
    assert dec.rejected == {"bad_time": 1, "bad_symbol": 1}
    assert out.trades.p.tolist() == [0.0, -1.0, 2e6, 100.0, 100.0, 10.0]
    assert out.trades.valid is None  # not judged yet: the ingest's check does that, once
    assert out.trades.seq.tolist() == list(range(6))  # seq counts decoded rows only
    counts: Counter[str] = Counter()
    ok = check_trades(out.trades, counts, max_price=1e6)
    assert out.trades.p[ok].tolist() == [10.0]
    assert counts == {"bad_price": 3, "bad_size": 1, "bad_ticker": 1}


def test_nan_and_huge_prices_never_pass():
    dec = FrameDecoder()
    out = dec.decode('[{"ev":"T","sym":"A","p":1e400,"s":1,"t":1700000000000}]', T0)
    assert out.trades is None  # a number beyond a float is not a price msgspec decodes
    assert dec.rejected == {"wrong_type": 1}
    # NaN cannot be written in JSON, but a decoded struct may still carry one.
    nan = dec._trades([msgspec.convert(trade(p=math.nan), PolygonTrade)])
    counts: Counter[str] = Counter()
    assert not check_trades(nan, counts).any()
    assert counts == {"bad_price": 1}


def test_timestamp_units_detected_by_magnitude():
    assert to_ms(np.array([T0, T0 * 1000 + 7, T0 * 1_000_000 + 7])).tolist() == [T0, T0, T0]
    assert [scalar_ms(v) for v in (T0, T0 * 1000, T0 * 1_000_000)] == [T0, T0, T0]
    dec = FrameDecoder()
    out = dec.decode(frame(trade(t=T0 * 1000 + 999), trade(t=T0 * 1_000_000 + 5)), T0)
    assert out.trades is not None
    assert out.trades.t.tolist() == [T0, T0]


def test_second_bars():
    dec = FrameDecoder()
    out = dec.decode(frame(agg("A", "AAPL", T0), agg("A", "MSFT", T0, c=0.0),
                           agg("A", "IBM", 0), agg("A", "A" * 13, T0)), T0)
    assert out.seconds is not None
    assert out.seconds.sym.tolist() == ["AAPL", "MSFT"]  # MSFT's price is the check's to judge
    assert out.seconds.end.tolist() == [T0 + 1_000, T0 + 1_000]
    assert dec.rejected == {"bad_time": 1, "bad_symbol": 1}
    counts: Counter[str] = Counter()
    assert check_bars(out.seconds, counts).tolist() == [True, False]
    assert counts == {"bad_price": 1}


def test_minute_bars_resent_keep_the_last_and_identical_resends_are_dropped():
    dec = FrameDecoder(am_hold_ms=0)
    m0, m1 = T0, T0 + 60_000
    first = dec.decode(frame(agg("AM", "AAPL", m0, c=10.0)), T0)
    assert first.minutes is None  # held until final
    resent = dec.decode(frame(agg("AM", "AAPL", m0, c=10.5)), T0)
    assert resent.minutes is None
    nxt = dec.decode(frame(agg("AM", "AAPL", m1, c=11.0)), T0)
    assert nxt.minutes is not None
    assert nxt.minutes.start.tolist() == [m0]
    assert nxt.minutes.c.tolist() == [10.5]
    dup = dec.decode(frame(agg("AM", "AAPL", m0, c=10.5)), T0)
    assert dup.minutes is None
    late = dec.decode(frame(agg("AM", "AAPL", m0, c=10.7)), T0)
    assert late.minutes is not None
    assert late.minutes.c.tolist() == [10.7]
    counts = dec.stats()["minute_bars"]
    assert counts == {"am_resent": 1, "am_duplicate": 1, "am_revised": 1}
    tail = dec.flush()
    assert tail is not None
    assert tail.start.tolist() == [m1]
    assert dec.stats()["minute_bars_held"] == 0


def test_minute_bars_released_by_the_event_clock():
    dec = FrameDecoder(am_hold_ms=2_000)
    dec.decode(frame(agg("AM", "AAPL", T0), agg("AM", "MSFT", T0)), T0)
    end = T0 + 60_000
    assert dec.decode(frame(trade(t=end + 1_999)), T0).minutes is None
    out = dec.decode(frame(trade(t=end + 2_000)), T0)
    assert out.minutes is not None
    assert sorted(out.minutes.sym.tolist()) == ["AAPL", "MSFT"]


def test_unknown_condition_fails_closed_and_is_counted():
    dec = FrameDecoder()
    out = dec.decode(frame(trade(c=[999]), trade(c=[999])), T0)
    assert out.trades is not None
    assert out.trades.flags.tolist() == [flags_for([999])] * 2
    assert dec.unknown_conditions == {999: 1}  # counted once per distinct tuple


def test_mixed_frame_splits_by_kind_in_order():
    dec = FrameDecoder()
    out = dec.decode(frame(trade("A1", t=T0), agg("A", "A1", T0), trade("A2", t=T0 + 5),
                           {"ev": "status", "status": "success", "message": "x"}), T0 + 10)
    assert out.trades is not None
    assert out.trades.seq.tolist() == [0, 1]
    assert out.seconds is not None
    assert out.seconds.seq.tolist() == [2]
    assert len(out.statuses) == 1
    assert out.lag_ms == 5
