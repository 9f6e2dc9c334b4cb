"""The pure emission state: seq, resume window, late join, filters, session reset, fan-out."""

from __future__ import annotations

from typing import Any

import pytest

from config.settings import GatewayConfig
from gateway.emitter import Delivery, Emitter, SessionReset, decode_payload, price_band
from schemas.api import Collected, UserView
from schemas.events import Event

DATE = "2024-01-02"


def ev(
    ticker: str, kind: str = "high", direction: str = "up", time: int = 1, **extra: Any
) -> Event:
    n = extra.pop("n", time)
    return Event(
        id=f"{ticker}:{kind}:{time}:{n}",
        ticker=ticker,
        kind=kind,
        direction=direction,
        price=extra.pop("price", 10.0),
        time=time,
        session=extra.pop("session", "REGULAR"),
        **extra,
    )


def pull(events: list[Event], session: str = "REGULAR", date: str = DATE, **kw: Any) -> Collected:
    wm = max((e.time for e in events), default=1)
    return Collected(events=events, watermark=wm, session=session, session_date=date, **kw)


def deliveries(steps: list[Any]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for step in steps:
        if isinstance(step, Delivery):
            out.update({u: decode_payload(p) for u, p in step.payloads.items()})
    return out


def ids(payload: dict[str, Any]) -> list[str]:
    lists = [
        payload["highs"],
        payload["lows"],
        *payload["surging"].values(),
        *payload["trending"].values(),
    ]
    return [e["id"] for lst in lists for e in lst]


def make(**cfg: Any) -> Emitter:
    return Emitter(GatewayConfig(**cfg), seq_base=100)


def view(user: str, tickers: list[str] | None = None, **filters: Any) -> UserView:
    return UserView(user_id=user, tickers=tickers, filters=filters)


def test_payload_shape_and_lists() -> None:
    em = make()
    em.attach("u")
    events = [
        ev("AAA", "high", time=1),
        ev("AAA", "low", "down", time=2),
        ev("BBB", "surge", "up", time=3),
        ev("BBB", "surge", "down", time=4),
        ev("CCC", "trend", "up", time=5),
        ev("CCC", "trend", "down", time=6),
    ]
    p = deliveries(em.advance(pull(events, analytics={"activity": {"a": 1}, "gauge": {"g": 2}})))[
        "u"
    ]
    assert set(p) == {"seq", "session", "highs", "lows", "surging", "trending", "activity", "gauge"}
    assert p["session"] == "REGULAR"
    assert [e["id"] for e in p["highs"]] == [events[0].id]
    assert [e["id"] for e in p["lows"]] == [events[1].id]
    assert [e["id"] for e in p["surging"]["up"]] == [events[2].id]
    assert [e["id"] for e in p["surging"]["down"]] == [events[3].id]
    assert [e["id"] for e in p["trending"]["up"]] == [events[4].id]
    assert [e["id"] for e in p["trending"]["down"]] == [events[5].id]
    assert p["activity"] == {"a": 1}
    assert p["gauge"] == {"g": 2}
    assert p["highs"][0]["price"] == 10.0
    assert p["highs"][0]["ticker"] == "AAA"


def test_unknown_kind_is_counted_not_sent() -> None:
    em = make()
    em.attach("u")
    steps = em.advance(pull([ev("AAA", "weird", time=1), ev("AAA", "surge", "sideways", time=2)]))
    assert steps == []
    assert em.counters["rejected_unknown_kind"] == 2


def test_seq_increases_only_for_non_empty_payloads() -> None:
    em = make()
    em.attach("u", view("u", ["AAA"]))
    seqs = []
    for t, ticker in enumerate(["AAA", "BBB", "AAA", "AAA"], start=1):
        got = deliveries(em.advance(pull([ev(ticker, time=t)])))
        if "u" in got:
            seqs.append(got["u"]["seq"])
    assert len(seqs) == 3
    assert seqs == sorted(seqs)
    assert len(set(seqs)) == 3
    assert seqs[1] == seqs[0] + 1
    assert seqs[2] == seqs[1] + 1
    assert em.advance(pull([])) == []


def test_universe_filter_per_user_preserves_arrival_order() -> None:
    em = make()
    em.attach("a", view("a", ["AAA", "CCC"]))
    em.attach("b", view("b", ["BBB"]))
    em.attach("all")
    events = [ev("CCC", time=1), ev("BBB", time=2), ev("AAA", time=3), ev("CCC", time=4)]
    got = deliveries(em.advance(pull(events)))
    assert ids(got["a"]) == [events[0].id, events[2].id, events[3].id]
    assert ids(got["b"]) == [events[1].id]
    assert ids(got["all"]) == [e.id for e in events]


def test_users_with_same_view_share_selection_but_not_seq() -> None:
    em = make()
    em.attach("x", view("x", ["AAA"]))
    em.advance(pull([ev("AAA", time=1)]))  # x is one payload ahead
    em.attach("y", view("y", ["AAA"]))
    got = deliveries(em.advance(pull([ev("AAA", time=2)])))
    assert ids(got["x"]) == ids(got["y"])
    assert got["x"]["seq"] != got["y"]["seq"]


def test_highlow_filters() -> None:
    em = make()
    em.attach("u", view("u", highlow={"min_count": 3, "min_volume": 500}))
    keep = ev("AAA", time=1, count=3, volume=600)
    few = ev("AAA", time=2, count=2, volume=600)
    thin = ev("AAA", "low", "down", time=3, count=5, volume=100)
    got = deliveries(em.advance(pull([keep, few, thin])))
    assert ids(got["u"]) == [keep.id]


def test_surge_filters_magnitude_trigger_and_price_range() -> None:
    em = make()
    em.attach(
        "u",
        view(
            "u",
            surge={
                "magnitude": 2.0,
                "trigger_type": ["price_and_volume"],
                "price_range": ["low", "mid"],
            },
        ),
    )
    ok = ev("A", "surge", "down", time=1, magnitude=-2.5, trigger="price_and_volume", price=30.0)
    small = ev("B", "surge", "up", time=2, magnitude=1.0, trigger="price_and_volume", price=30.0)
    wrong_trigger = ev("C", "surge", "up", time=3, magnitude=3.0, trigger="volume", price=30.0)
    penny = ev("D", "surge", "up", time=4, magnitude=3.0, trigger="price_and_volume", price=0.5)
    got = deliveries(em.advance(pull([ok, small, wrong_trigger, penny])))
    assert ids(got["u"]) == [ok.id]
    assert [price_band(p) for p in (0.5, 1.0, 24.99, 25.0, 99.0, 100.0)] == [
        "penny",
        "low",
        "low",
        "mid",
        "mid",
        "high",
    ]


def test_trend_filters_strength_and_vwap_position() -> None:
    em = make()
    em.attach("u", view("u", trends={"strength": "moderate", "vwap_position": "above"}))
    strong = ev("A", "trend", "up", time=1, strength="strong", vwap_position="above")
    weak = ev("B", "trend", "up", time=2, strength="weak", vwap_position="above")
    below = ev("C", "trend", "down", time=3, strength="moderate", vwap_position="below")
    got = deliveries(em.advance(pull([strong, weak, below, ev("D", time=4)])))
    assert ids(got["u"]) == [ev("D", time=4).id, strong.id]  # highs list first, then trends


def test_invalid_filters_keep_everything_and_are_counted() -> None:
    em = make()
    em.attach("u", view("u", highlow={"min_count": "lots"}))
    got = deliveries(em.advance(pull([ev("AAA", time=1)])))
    assert len(ids(got["u"])) == 1
    assert em.counters["invalid_filters"] == 1


def test_set_view_applies_from_next_cycle() -> None:
    em = make()
    em.attach("u")
    em.set_view("u", view("u", ["BBB"]))
    got = deliveries(em.advance(pull([ev("AAA", time=1), ev("BBB", time=2)])))
    assert ids(got["u"]) == [ev("BBB", time=2).id]


def test_resume_returns_exactly_the_missed_payloads_in_order() -> None:
    em = make()
    em.attach("u")
    first = deliveries(em.advance(pull([ev("AAA", time=1)])))["u"]
    em.detach("u")
    missed = []
    for t in range(2, 5):
        steps = em.advance(pull([ev("AAA", time=t)]))
        assert deliveries(steps) == {}  # nobody connected: recorded, not delivered
        missed.append(ev("AAA", time=t).id)
    em.attach("u")
    caught = [decode_payload(p) for p in em.catch_up("u", first["seq"])]
    assert [ids(p)[0] for p in caught] == missed
    assert [p["seq"] for p in caught] == [first["seq"] + 1, first["seq"] + 2, first["seq"] + 3]
    assert em.catch_up("u", caught[-1]["seq"]) == []  # up to date: nothing, not a snapshot
    live = deliveries(em.advance(pull([ev("AAA", time=9)])))["u"]
    assert live["seq"] == caught[-1]["seq"] + 1


def test_resume_outside_window_falls_back_to_snapshot() -> None:
    em = make(resume_payloads=2, late_join_per_list=10)
    em.attach("u")
    first = deliveries(em.advance(pull([ev("AAA", time=1)])))["u"]
    for t in range(2, 6):
        em.advance(pull([ev("AAA", time=t)]))
    out = [decode_payload(p) for p in em.catch_up("u", first["seq"])]
    assert len(out) == 1
    assert ids(out[0]) == [ev("AAA", time=t).id for t in range(1, 6)]  # the whole session
    assert em.counters["resume_misses"] == 1
    # a seq from the future (another gateway, a restart) is not resumable either
    assert len(em.catch_up("u", 10**15)) == 1


def test_late_joiner_gets_latest_session_events_per_list_then_only_new() -> None:
    em = make(late_join_per_list=3)
    em.attach("early")
    highs = [ev("AAA", time=t) for t in range(1, 6)]
    lows = [ev("BBB", "low", "down", time=t) for t in range(10, 12)]
    em.advance(pull(highs + lows))
    em.attach("late", view("late", ["AAA", "BBB"]))
    snap = [decode_payload(p) for p in em.catch_up("late", None)]
    assert len(snap) == 1
    assert [e["id"] for e in snap[0]["highs"]] == [e.id for e in highs[-3:]]
    assert [e["id"] for e in snap[0]["lows"]] == [e.id for e in lows]
    new = ev("AAA", time=20)
    got = deliveries(em.advance(pull([new])))
    assert ids(got["late"]) == [new.id]
    assert got["late"]["seq"] > snap[0]["seq"]


def test_late_join_snapshot_is_filtered_by_the_users_view() -> None:
    em = make()
    em.advance(pull([ev("AAA", time=1), ev("BBB", time=2)]))
    em.attach("u", view("u", ["BBB"]))
    (snap,) = [decode_payload(p) for p in em.catch_up("u", None)]
    assert ids(snap) == [ev("BBB", time=2).id]
    em.attach("v", view("v", ["ZZZ"]))
    assert em.catch_up("v", None) == []  # nothing for them: no empty payload


def test_session_lists_are_bounded_and_evictions_counted() -> None:
    em = make(session_events_max=3)
    em.advance(pull([ev("AAA", time=t) for t in range(1, 6)]))
    assert em.stats()["session_events"]["highs"] == 3
    assert em.counters["session_list_evicted"] == 2


def test_session_reset_clears_lists_and_resume_history() -> None:
    em = make()
    em.attach("u")
    p1 = deliveries(em.advance(pull([ev("AAA", time=1)])))["u"]
    steps = em.advance(pull([ev("AAA", time=2, session="AFTER")], session="AFTER"))
    resets = [s for s in steps if isinstance(s, SessionReset)]
    assert [r.to_dict() for r in resets] == [
        {"session": "AFTER", "session_date": DATE, "previous": "REGULAR"}
    ]
    after = deliveries(steps)["u"]
    assert after["session"] == "AFTER"
    assert after["seq"] == p1["seq"] + 1
    assert em.stats()["session_events"]["highs"] == 1  # only the new session's event
    # a last_seq from before the reset is not resumable: the client gets the new session
    (snap,) = [decode_payload(p) for p in em.catch_up("u", p1["seq"])]
    assert ids(snap) == [ev("AAA", time=2, session="AFTER").id]


def test_events_of_the_ending_session_go_out_before_the_reset() -> None:
    em = make()
    em.attach("u")
    em.advance(pull([ev("AAA", time=1)]))
    old, new = ev("OLD", time=2, session="REGULAR"), ev("NEW", time=3, session="AFTER")
    steps = em.advance(pull([old, new], session="AFTER"))
    kinds = [type(s).__name__ for s in steps]
    assert kinds == ["Delivery", "SessionReset", "Delivery"]
    first, _, last = steps
    assert isinstance(first, Delivery)
    assert isinstance(last, Delivery)
    p_old, p_new = decode_payload(first.payloads["u"]), decode_payload(last.payloads["u"])
    assert (ids(p_old), p_old["session"]) == ([old.id], "REGULAR")
    assert (ids(p_new), p_new["session"]) == ([new.id], "AFTER")


def test_date_change_alone_is_a_reset() -> None:
    em = make()
    em.advance(pull([ev("AAA", time=1)]))
    steps = em.advance(pull([], date="2024-01-03"))
    assert [type(s) for s in steps] == [SessionReset]
    assert em.session_date == "2024-01-03"


def test_no_reset_before_the_first_session_is_known() -> None:
    em = make()
    assert em.advance(Collected(session="CLOSED", session_date="")) == []
    assert em.advance(pull([])) == []
    assert em.session == "REGULAR"


def test_idle_streams_expire_after_the_resume_window_and_seqs_never_alias() -> None:
    em = make(resume_payloads=3)
    em.attach("u")
    p = deliveries(em.advance(pull([ev("AAA", time=1)])))["u"]
    em.detach("u")
    for t in range(2, 7):
        em.advance(pull([ev("AAA", time=t)]))
    assert em.stats()["streams"] == 0
    em.attach("u")
    head = em.head("u")
    assert head is not None
    assert head > p["seq"] + 5 - 1
    out = [decode_payload(x) for x in em.catch_up("u", p["seq"])]
    assert len(out) == 1
    assert len(ids(out[0])) == 6


def test_two_connections_of_one_user_share_the_stream() -> None:
    em = make()
    em.attach("u")
    em.attach("u")
    em.detach("u")
    assert em.is_connected("u")
    got = deliveries(em.advance(pull([ev("AAA", time=1)])))
    assert list(got) == ["u"]


@pytest.mark.parametrize("n_users", [200])
def test_fanout_to_many_distinct_universes(n_users: int) -> None:
    em = make()
    tickers = [f"T{i:04d}" for i in range(n_users)]
    for i in range(n_users):
        em.attach(f"user{i}", view(f"user{i}", tickers[i : i + 3]))
    events = [ev(t, time=k + 1) for k, t in enumerate(tickers)]
    got = deliveries(em.advance(pull(events)))
    assert len(got) == n_users
    for i in range(n_users):
        assert ids(got[f"user{i}"]) == [e.id for e in events[i : i + 3]]
