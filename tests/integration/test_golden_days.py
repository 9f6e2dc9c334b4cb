"""Golden tests on real recorded days: the engine against pandas-derived truth.

The expected side never calls the engine: it parses the raw files with pandas, marks the prints
that may move high/low (sale conditions, Form T relaxed in PRE/AFTER), splits sessions at 04:00,
09:30, the close (16:00, 13:00 on early closes) and 20:00 America/New_York, and replays the
DESIGN §5 rules over each ticker's new-extreme rows (a short loop: base, tier gate, cooldown).
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from actors.detection.engine import DetectorEngine, event_order
from actors.detection.offline import detect, events_frame
from actors.market.conditions import algoseek_flags, effective_flags
from actors.market.sessions import ET, day_hours
from actors.sources.readers import read_file
from config.detection import DetectionConfig
from schemas.batches import FLAG_HIGH_LOW, BarBatch, TradeBatch
from schemas.events import Event

HIGHLOW_ONLY = DetectionConfig(enable_surge=False, enable_trend=False)
ALGOSEEK_DAYS = ("20131007", "20131008", "20131009", "20131010")
ALGOSEEK_TICKERS = ("spy", "ibm", "bac", "aig")
SESSION_NAMES = np.array(["CLOSED", "PRE", "REGULAR", "AFTER", "CLOSED"])


# -- the independent expectation ---------------------------------------------------------------


def midnight_ms(day: dt.date) -> int:
    return int(dt.datetime.combine(day, dt.time(0), tzinfo=ET).timestamp() * 1000)


def label_sessions(df: pd.DataFrame, day: dt.date) -> pd.DataFrame:
    """Add `session` (name) and `session_start` from the day's boundaries."""
    h = day_hours(day)
    edges = np.array([h.pre_ms, h.open_ms, h.close_ms, h.after_ms])
    k = np.searchsorted(edges, df["t"].to_numpy(), side="right")
    starts = np.array([h.start_ms, h.pre_ms, h.open_ms, h.close_ms, h.after_ms])
    return df.assign(session=SESSION_NAMES[k], session_start=starts[k])


def algoseek_truth(path: Path) -> pd.DataFrame:
    day = dt.datetime.strptime(path.name[:8], "%Y%m%d").date()
    raw = pd.read_csv(path, header=None, names=["ms", "price", "size", "x", "cond", "susp"],
                      dtype={"cond": str})
    raw = raw[raw["susp"] == 0]  # AlgoSeek's own flag: the reader drops these (counted)
    df = pd.DataFrame({
        "sym": path.name.split("_")[1].upper(),
        "t": midnight_ms(day) + raw["ms"].to_numpy(dtype=np.int64),
        "p": raw["price"].to_numpy() / 10_000,
        "flags": [algoseek_flags(c.lower()) for c in raw["cond"]],
    })
    df = label_sessions(df, day)
    extended = df["session"].isin(["PRE", "AFTER"]).to_numpy()
    eff = [effective_flags(int(f), bool(x)) for f, x in zip(df["flags"], extended, strict=True)]
    return df.assign(eligible=(np.array(eff) & FLAG_HIGH_LOW) > 0)


def lobster_truth(path: Path) -> pd.DataFrame:
    sym, day_text = path.name.split("_")[:2]
    day = dt.date.fromisoformat(day_text)
    raw = pd.read_csv(path, header=None, names=["time", "type", "id", "size", "price", "dir"])
    raw = raw[raw["type"].isin([4, 5])]  # executions of visible and hidden orders
    df = pd.DataFrame({
        "sym": sym,
        "t": midnight_ms(day) + np.floor(raw["time"].to_numpy() * 1000).astype(np.int64),
        "p": raw["price"].to_numpy() / 10_000,
    })
    return label_sessions(df, day).assign(eligible=True)


def bars_truth(bars: pd.DataFrame, day: dt.date) -> pd.DataFrame:
    """Bars as the documented four trades: open, nearer extreme, farther extreme, close."""
    high_first = (bars["h"] - bars["o"]).abs() <= (bars["o"] - bars["l"]).abs()
    first = np.where(high_first, bars["h"], bars["l"])
    second = np.where(high_first, bars["l"], bars["h"])
    start = bars["start"].to_numpy()
    legs = [(start, bars["o"]), (start + 20_000, first), (start + 40_000, second),
            (start + 59_999, bars["c"])]
    frames = [
        pd.DataFrame({"sym": bars["sym"].to_numpy(), "t": t, "p": np.asarray(p, float),
                      "bar": np.arange(len(bars)), "leg": i})
        for i, (t, p) in enumerate(legs)
    ]
    df = pd.concat(frames).sort_values(["bar", "leg"], kind="stable").reset_index(drop=True)
    return label_sessions(df, day).assign(eligible=True)


def lean_minute_truth(path: Path) -> pd.DataFrame:
    day = dt.datetime.strptime(path.name[:8], "%Y%m%d").date()
    raw = pd.read_csv(path, header=None, names=["ms", "o", "h", "l", "c", "v"])
    bars = pd.DataFrame({"sym": path.name.split("_")[1].upper(),
                         "start": midnight_ms(day) + raw["ms"].to_numpy(dtype=np.int64),
                         **{k: raw[k].to_numpy() / 10_000 for k in "ohlc"}})
    return bars_truth(bars, day)


def alphavantage_truth(path: Path) -> pd.DataFrame:
    raw = pd.read_csv(path)
    day = dt.date.fromisoformat(str(raw["date"].iloc[0]))
    local = pd.to_datetime(raw["date"] + " " + raw["time_et"]).dt.tz_localize(ET)
    bars = pd.DataFrame({"sym": raw["symbol"], "start": local.dt.as_unit("ms").astype("int64"),
                         "o": raw["open"], "h": raw["high"], "l": raw["low"], "c": raw["close"]})
    return bars_truth(bars, day)


def min_pct(price: float) -> float:
    if price < 1:
        return 0.2
    if price < 5:
        return 0.15
    if price < 25:
        return 0.1
    if price < 100:
        return 0.08
    return 0.05


def expected_events(df: pd.DataFrame) -> set[tuple[str, str, int, str, float]]:
    """(ticker, session, time, kind, price) of every event the rules call for."""
    out = set()
    for (sym, session), g in df[df["eligible"]].groupby(["sym", "session"], sort=False):
        p, t = g["p"].to_numpy(), g["t"].to_numpy()
        prev_max = np.maximum.accumulate(p)[:-1]
        prev_min = np.minimum.accumulate(p)[:-1]
        highs = np.flatnonzero(p[1:] > prev_max) + 1
        lows = np.flatnonzero(p[1:] < prev_min) + 1
        base, last = p[0], -(2**62)
        for i in sorted([*highs.tolist(), *lows.tolist()]):
            price, ti = float(p[i]), int(t[i])
            if abs(price - base) / base * 100 < min_pct(price) or ti - last < 1_000:
                continue
            last = ti
            out.add((sym, session, ti, "high" if price > prev_max[i - 1] else "low", price))
    return out


def expected_extremes(df: pd.DataFrame) -> dict[tuple[str, str], tuple[float, float]]:
    g = df[df["eligible"]].groupby(["sym", "session"])["p"]
    return {k: (hi, lo) for k, hi, lo in zip(g.max().index, g.max(), g.min(), strict=True)}


# -- running the engine ------------------------------------------------------------------------


def load(path: Path) -> TradeBatch | BarBatch:
    batches = list(read_file(path))
    if isinstance(batches[0], TradeBatch):
        return TradeBatch.concat(batches)  # type: ignore[arg-type]
    return BarBatch.concat(batches)  # type: ignore[arg-type]


def times(data: TradeBatch | BarBatch) -> np.ndarray:
    return data.t if isinstance(data, TradeBatch) else data.start


def feed(engine: DetectorEngine, data: TradeBatch | BarBatch, cuts: Iterable[int]) -> list[Event]:
    bounds = [0, *sorted(set(cuts)), len(data)]
    events: list[Event] = []
    for a, b in itertools.pairwise(bounds):
        if b > a:
            part = data.take(slice(a, b))
            got = engine.process_trades(part) if isinstance(part, TradeBatch) else (
                engine.process_bars(part))
            events.extend(got)
    return events


def run_by_session(
    path: Path, config: DetectionConfig = HIGHLOW_ONLY
) -> tuple[list[Event], dict[tuple[str, str], tuple[float, float]], DetectorEngine]:
    """Run a file, cutting batches at the session boundaries to read each session's extremes."""
    data = load(path)
    t = times(data)
    day = dt.datetime.fromtimestamp(int(t[0]) / 1000, tz=ET).date()
    h = day_hours(day)
    engine = DetectorEngine(config)
    events: list[Event] = []
    extremes: dict[tuple[str, str], tuple[float, float]] = {}
    cuts = np.searchsorted(t, [h.pre_ms, h.open_ms, h.close_ms, h.after_ms, h.end_ms])
    for a, b in zip([0, *cuts.tolist()], [*cuts.tolist(), len(data)], strict=True):
        if b <= a:
            continue
        events.extend(feed(engine, data.take(slice(a, b)), []))
        for sym in np.unique(data.sym[a:b]).tolist():
            state = engine.ticker_state(sym)
            if state.get("started"):
                extremes[(sym, state["session"])] = (state["high"], state["low"])
    return events + engine.flush(), extremes, engine


def check_day(path: Path, truth: pd.DataFrame, config: DetectionConfig = HIGHLOW_ONLY) -> None:
    events, extremes, engine = run_by_session(path, config)
    assert engine.rejected() == {}
    assert extremes == expected_extremes(truth)
    hl = [e for e in events if e.kind in ("high", "low")]
    got = {(e.ticker, e.session, e.time, e.kind, e.price) for e in hl}
    assert got == expected_events(truth)
    check_invariants(events_frame(hl))


def check_invariants(frame: pd.DataFrame) -> None:
    """Per ticker and session: strict records, cooldowns, counts, sessions by time."""
    for (_, _), g in frame.sort_values(["time", "id"]).groupby(["ticker", "session"]):
        highs = g[g["kind"] == "high"]["price"].to_numpy()
        lows = g[g["kind"] == "low"]["price"].to_numpy()
        assert (np.diff(highs) > 0).all()
        assert (np.diff(lows) < 0).all()
        assert (np.diff(g["time"].to_numpy()) >= 1_000).all()
        assert g["count"].tolist() == list(range(1, len(g) + 1))
        assert (g["label"].str.fullmatch(r"(HIGH|LOW) #\d+")).all()
    for _, e in frame.iterrows():
        day = dt.datetime.fromtimestamp(e["time"] / 1000, tz=ET).date()
        h = day_hours(day)
        k = int(np.searchsorted([h.pre_ms, h.open_ms, h.close_ms, h.after_ms], e["time"], "right"))
        assert e["session"] == SESSION_NAMES[k]


# -- the days ----------------------------------------------------------------------------------


@pytest.mark.parametrize("sym", ["AAPL", "AMZN"])
def test_lobster_2012_06_21(real_data_dir: Path, sym: str) -> None:
    path = real_data_dir / f"lobster_2012-06-21/{sym}_2012-06-21_34200000_57600000_message_1.csv.gz"
    truth = lobster_truth(path)
    check_day(path, truth)
    assert set(truth["session"]) == {"REGULAR"}


@pytest.mark.slow
@pytest.mark.parametrize("day", ALGOSEEK_DAYS)
@pytest.mark.parametrize("tk", ALGOSEEK_TICKERS)
def test_algoseek_extended_hours(real_data_dir: Path, tk: str, day: str) -> None:
    path = real_data_dir / f"algoseek_lean/tick/{tk}/{day}_{tk}_Trade_Tick.csv.gz"
    truth = algoseek_truth(path)
    check_day(path, truth)
    assert {"PRE", "REGULAR", "AFTER"} <= set(truth["session"])


def test_algoseek_form_t_prints_move_extended_extremes_only(real_data_dir: Path) -> None:
    path = real_data_dir / "algoseek_lean/tick/ibm/20131010_ibm_Trade_Tick.csv.gz"
    truth = algoseek_truth(path)
    _, extremes, _ = run_by_session(path)
    form_t = truth["flags"].to_numpy() & 8 > 0
    regular = truth[(truth["session"] == "REGULAR") & ~form_t]
    pre = truth[truth["session"] == "PRE"]
    assert extremes[("IBM", "REGULAR")] == (regular["p"].max(), regular["p"].min())
    assert extremes[("IBM", "PRE")][0] == pre[pre["eligible"]]["p"].max()
    assert pre["eligible"].mean() > 0.9  # nearly all pre-market prints carry Form T


@pytest.mark.slow
def test_alphavantage_day(real_data_dir: Path) -> None:
    path = real_data_dir / "alphavantage_1min_2018/2018-03-12.csv.gz"
    truth = alphavantage_truth(path)
    assert truth["sym"].nunique() >= 280
    check_day(path, truth)


def test_goog_2015_12_24_early_close(real_data_dir: Path) -> None:
    path = real_data_dir / "algoseek_lean/minute/goog/20151224_goog_minute_trade.csv.gz"
    truth = lean_minute_truth(path)
    check_day(path, truth)
    events, extremes, _ = run_by_session(path)
    close = day_hours(dt.date(2015, 12, 24)).close_ms
    assert close == int(dt.datetime(2015, 12, 24, 13, 0, tzinfo=ET).timestamp() * 1000)
    assert {e.session for e in events if e.time >= close} == {"AFTER"}
    assert {e.session for e in events if e.time < close} == {"REGULAR"}
    regular = truth[truth["t"] < close]
    assert extremes[("GOOG", "REGULAR")] == (regular["p"].max(), regular["p"].min())
    assert [e.label for e in events if e.session == "AFTER"][:1] in (["HIGH #1"], ["LOW #1"])


# -- determinism and bad input -----------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    ["lobster_2012-06-21/AMZN_2012-06-21_34200000_57600000_message_1.csv.gz",
     "algoseek_lean/tick/ibm/20131007_ibm_Trade_Tick.csv.gz",
     "algoseek_lean/minute/goog/20151223_goog_minute_trade.csv.gz"],
)
def test_same_file_same_events_for_random_batch_splits(real_data_dir: Path, name: str) -> None:
    data = load(real_data_dir / name)
    whole = DetectorEngine()
    expected = sorted(feed(whole, data, []) + whole.flush(), key=event_order)
    assert {e.kind for e in expected} >= {"high", "low"}
    rng = np.random.default_rng(7)
    for size in (3, 40, 400):
        engine = DetectorEngine()
        got = feed(engine, data, rng.integers(1, len(data), size=size).tolist()) + engine.flush()
        assert sorted(got, key=event_order) == expected
        assert engine.rejected() == whole.rejected()


def test_offline_detect_matches_the_engine(real_data_dir: Path, tmp_path: Path) -> None:
    path = real_data_dir / "lobster_2012-06-21/AMZN_2012-06-21_34200000_57600000_message_1.csv.gz"
    frame = detect([path], progress=False)
    engine = DetectorEngine()
    events = feed(engine, load(path), []) + engine.flush()
    assert frame["id"].tolist() == [e.id for e in events]
    assert list(frame.columns) == list(Event.__struct_fields__)
    assert frame.attrs["stats"]["rows"] == 11_419


def test_bad_input_in_a_real_day_is_dropped_and_counted(real_data_dir: Path) -> None:
    data = load(real_data_dir / "algoseek_lean/tick/ibm/20131009_ibm_Trade_Tick.csv.gz")
    assert isinstance(data, TradeBatch)
    clean = DetectorEngine(HIGHLOW_ONLY)
    expected = feed(clean, data, [5_000, 12_000]) + clean.flush()
    assert clean.rejected() == {}

    # Seq numbers: the file's up to row 11,999, then 40 bad rows, then the rest shifted by 40.
    head, rest = data.take(slice(0, 12_000)), data.take(slice(12_000, len(data)))
    rest = TradeBatch(rest.sym, rest.t, rest.p, rest.s, rest.flags, rest.seq + 40)
    mid = data.take(slice(12_000, 12_010))  # ten rows from the middle of the day
    last_t = int(data.t[11_999])
    seqs = [np.arange(12_000 + 10 * k, 12_010 + 10 * k) for k in range(4)]
    bad = TradeBatch.concat([
        TradeBatch(mid.sym, mid.t, np.zeros(10), mid.s, mid.flags, seqs[0]),
        TradeBatch(mid.sym, mid.t, mid.p, np.zeros(10), mid.flags, seqs[1]),
        TradeBatch(mid.sym, mid.t - 600_000, mid.p, mid.s, mid.flags, seqs[2]),
        TradeBatch(mid.sym, np.full(10, last_t + 30_000), mid.p * 3, mid.s, mid.flags,
                   seqs[3]),  # absurd prices stamped ahead must not stall the ticker either
    ])
    engine = DetectorEngine(HIGHLOW_ONLY)
    events = feed(engine, head, [5_000])
    events += engine.process_trades(bad)
    # A shard restart: the ingest re-sends from row 11,500 on; 500 rows were already seen.
    events += feed(engine, TradeBatch.concat([head.take(slice(11_500, None)), rest]), [])
    events += engine.flush()
    assert engine.rejected() == {
        "bad_price": 10, "zero_size": 10, "out_of_order": 10, "price_jump": 10,
        "duplicate": 500,
    }
    assert events == expected


# -- the CLI -----------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet"])
def test_detect_cli_writes_events(
    real_data_dir: Path, tmp_path: Path, suffix: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from cluster.commands.detect import detect_main

    path = real_data_dir / "algoseek_lean/minute/goog/20151224_goog_minute_trade.csv.gz"
    out = tmp_path / f"events{suffix}"
    assert detect_main([str(path), "--out", str(out), "--no-progress", "--no-trend"]) == 0
    frame = {".csv": pd.read_csv, ".parquet": pd.read_parquet}.get(
        suffix, lambda p: pd.read_json(p, lines=True)
    )(out)
    expected = detect([path], HIGHLOW_ONLY.replace(enable_surge=True), progress=False)
    assert frame["id"].tolist() == expected["id"].tolist()
    printed = capsys.readouterr().out
    assert "rows      227 (0 trades, 227 bars)" in printed
    assert f"events    {len(expected)}:" in printed


def test_detect_cli_refuses_bad_arguments(tmp_path: Path, real_data_dir: Path) -> None:
    from cluster.commands.detect import detect_main

    path = real_data_dir / "algoseek_lean/minute/goog/20151224_goog_minute_trade.csv.gz"
    assert detect_main([str(tmp_path / "missing.csv"), "--no-progress"]) == 2
    assert detect_main([str(path), "--out", str(tmp_path / "x.xlsx"), "--no-progress"]) == 2
    unknown = tmp_path / "notes.txt"
    unknown.write_text("hello\n")
    assert detect_main([str(unknown), "--no-progress"]) == 2
