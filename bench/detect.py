"""`tickstock bench detect`: offline detector throughput over real recorded days (trades/s).

Each recorded file runs through a fresh `DetectorEngine` (the shard's engine: validation,
sessions, HighLow, per-second bars, Surge, Trend, analytics), in `read_file` chunks, as
`tickstock detect` does (reading excluded). `all` is the engine's rate.

Per detector: one more engine run in which every public method of each part (the engine's
validator, HighLow, bar builder, Surge, Trend and analytics objects) is timed, outermost call
only; a part's rate is the trades divided by the time spent in it, so the figures follow the
engine's own call pattern whatever it is.

Ceiling, same batches, same run: a vectorised numpy pass that finds every new running high or
low per ticker in each batch (a stable sort by ticker, then one running max/min over the whole
batch with per-ticker offsets): the least work any HighLow detector does, with no per-ticker
Python at all.

`mixed` repeats `all` and its breakdown on derived data: the same recorded trades re-labelled
over `--tickers` synthetic tickers (bench/loadgen.py) in 8,192-row batches, as a shard sees
them in the live system.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from actors.detection.engine import DetectorEngine
from actors.sources.readers import read_file
from bench.loadgen import SyntheticMarket, load_real_trades, trade_files
from bench.report import emit, real_data_dir, result, rss_mb
from bench.timing import interleaved_best, option
from config.detection import DetectionConfig
from schemas.batches import TradeBatch

ROUNDS = 2
MIXED_BATCH_ROWS = 8_192  # IngestConfig.batch_max_rows
DEFAULT_FILES = (  # one day of each recorded symbol
    "algoseek_lean/tick/aig/20131010_aig_Trade_Tick.csv.gz",
    "algoseek_lean/tick/bac/20131010_bac_Trade_Tick.csv.gz",
    "algoseek_lean/tick/ibm/20131010_ibm_Trade_Tick.csv.gz",
    "algoseek_lean/tick/spy/20131010_spy_Trade_Tick.csv.gz",
    "lobster_2012-06-21/AAPL_2012-06-21_34200000_57600000_message_1.csv.gz",
    "lobster_2012-06-21/AMZN_2012-06-21_34200000_57600000_message_1.csv.gz",
)
# Each detector and the engine attribute holding it.
PARTS = {
    "validation": "_validator", "highlow": "_highlow", "bars": "_bars", "surge": "_surge",
    "trend": "_trend", "analytics": "_analytics",
}

Stream = list[TradeBatch]  # one engine's input: a file, or the mixed data


# -- the ceiling -----------------------------------------------------------------------------


def new_extremes(batch: TradeBatch) -> int:
    """New running highs and lows per ticker in one batch, fully vectorised."""
    n = len(batch)
    if n < 2:
        return 0
    _, ticker = np.unique(batch.sym, return_inverse=True)
    order = np.argsort(ticker, kind="stable")
    seg = ticker[order].astype(np.float64)
    p = batch.p[order]
    span = float(p.max() - p.min()) + 1.0
    high = np.maximum.accumulate(p + seg * span)  # each ticker's values exceed all before it
    low = np.maximum.accumulate(-p + seg * span)
    same = seg[1:] == seg[:-1]
    up = (p[1:] + seg[1:] * span > high[:-1]) & same
    down = (-p[1:] + seg[1:] * span > low[:-1]) & same
    return int(np.count_nonzero(up | down))


def run_ceiling(stream: Stream) -> int:
    return sum(new_extremes(batch) for batch in stream)


# -- the engine ------------------------------------------------------------------------------


def run_all(stream: Stream, config: DetectionConfig) -> int:
    engine = DetectorEngine(config)
    events = sum(len(engine.process_trades(batch)) for batch in stream)
    return events + len(engine.flush())


def instrument(engine: DetectorEngine) -> dict[str, float]:
    """Time every public method of each detector part of `engine` (outermost calls only)."""
    spent = dict.fromkeys(PARTS, 0.0)
    for part, attr in PARTS.items():
        target = getattr(engine, attr, None)
        if target is None:
            continue
        active = [False]
        for name in dir(type(target)):
            method = None if name.startswith("_") else getattr(target, name, None)
            if callable(method):
                try:
                    setattr(target, name, _timed(method, part, spent, active))
                except AttributeError:  # slotted or read-only: this method goes untimed
                    continue
    return spent


def _timed(
    method: Callable[..., Any], part: str, spent: dict[str, float], active: list[bool]
) -> Callable[..., Any]:
    def timed(*args: Any, **kwargs: Any) -> Any:
        if active[0]:
            return method(*args, **kwargs)
        active[0] = True
        started = time.perf_counter()
        try:
            return method(*args, **kwargs)
        finally:
            spent[part] += time.perf_counter() - started
            active[0] = False

    return timed


def breakdown(streams: list[Stream], config: DetectionConfig) -> tuple[dict[str, float], float]:
    """Seconds per part over all streams, and the instrumented run's total seconds."""
    totals = dict.fromkeys(PARTS, 0.0)
    elapsed = 0.0
    for stream in streams:
        engine = DetectorEngine(config)
        spent = instrument(engine)
        started = time.perf_counter()
        for batch in stream:
            engine.process_trades(batch)
        engine.flush()
        elapsed += time.perf_counter() - started
        for part, seconds in spent.items():
            totals[part] += seconds
    return totals, elapsed


def measure(streams: list[Stream], config: DetectionConfig, rounds: int) -> dict[str, float]:
    """Trades/s: `all`, `ceiling` (best of interleaved rounds) and each part (one run)."""
    trades = sum(len(b) for s in streams for b in s)
    best = interleaved_best({
        "ceiling": lambda: [run_ceiling(s) for s in streams] and None,
        "all": lambda: [run_all(s, config) for s in streams] and None,
    }, rounds)
    rates = {name: trades / seconds for name, seconds in best.items()}
    spent, elapsed = breakdown(streams, config)
    rates.update({part: trades / s if s > 0 else 0.0 for part, s in spent.items()})
    rates["other"] = trades / max(elapsed - sum(spent.values()), 1e-9)
    return rates


# -- inputs ----------------------------------------------------------------------------------


def real_streams(files: list[Path]) -> list[Stream]:
    """One stream per recorded file, in `read_file` chunks (as `tickstock detect` reads)."""
    out = [[b for b in read_file(path) if isinstance(b, TradeBatch)] for path in files]
    out = [s for s in out if s]
    if not out:
        raise ValueError("no trade files to run the detectors on")
    return out


def mixed_stream(files: list[Path], tickers: int, rows: int) -> Stream:
    """Recorded trades re-labelled over `tickers` tickers, in ingest-sized batches."""
    market = SyntheticMarket(load_real_trades(files), tickers, rate=200_000.0)
    return [market.trade_batch(market.chunk(min(MIXED_BATCH_ROWS, rows - done)))
            for done in range(0, rows, MIXED_BATCH_ROWS)]


def bench_detect(
    files: list[Path], tickers: int, mixed_rows: int, rounds: int = ROUNDS
) -> dict[str, Any]:
    """Run the benchmark; print the table and the JSON line; return the result."""
    config = DetectionConfig()
    streams = real_streams(files)
    rate = measure(streams, config, rounds)
    events = sum(run_all(s, config) for s in streams)
    mixed = mixed_stream(files, tickers, mixed_rows) if mixed_rows else []
    mixed_rate = measure([mixed], config, 1) if mixed else {}
    trades = sum(len(b) for s in streams for b in s)
    outcome = result(
        "detect", rate["all"], rate["ceiling"], trades=trades, files=len(streams), events=events,
        **{f"{p}_per_s": round(rate[p], 1) for p in PARTS},
        mixed_tickers=tickers if mixed else 0,
        mixed_trades=sum(len(b) for b in mixed),
        mixed_all_per_s=round(mixed_rate.get("all", 0.0), 1),
        mixed_ceiling_per_s=round(mixed_rate.get("ceiling", 0.0), 1),
        **{f"mixed_{p}_per_s": round(mixed_rate.get(p, 0.0), 1) for p in PARTS},
        rss_mb=round(rss_mb(), 1),
    )
    emit(_table(trades, len(streams), events, rate, mixed, mixed_rate, tickers, rounds), outcome,
         "detect: offline engines over recorded days")
    return outcome


def _table(
    trades: int, files: int, events: int, rate: dict[str, float], mixed: Stream,
    mixed_rate: dict[str, float], tickers: int, rounds: int,
) -> list[tuple[str, Any]]:
    rows: list[tuple[str, Any]] = [
        ("recorded files / trades / events found", f"{files} / {trades:,} / {events:,}"),
    ]
    both = bool(mixed_rate)
    for part in (*PARTS, "other", "all", "ceiling"):
        label = {"other": "engine glue (sessions, grouping)", "all": "ALL: DetectorEngine",
                 "ceiling": "ceiling: vectorised new highs/lows"}.get(part, f"{part} alone")
        value = f"{rate[part]:,.0f}"
        if both:
            value += f"  |  mixed {mixed_rate[part]:,.0f}"
        rows.append((f"{label} (trades/s)", value))
    rows.append(("ratio all / ceiling", rate["all"] / rate["ceiling"]))
    if both:
        rows.append(("mixed: derived trades over tickers, batch rows",
                     f"{sum(len(b) for b in mixed):,} over {tickers:,}, {MIXED_BATCH_ROWS:,}"))
    rows.append((f"timing: best of {rounds} interleaved rounds", "one core"))
    return rows


def run(args: argparse.Namespace) -> dict[str, Any]:
    """`tickstock bench detect [--file F ...] [--tickers N] [--rows N]` (see bench/cli.py).

    `--tickers`/`--rows` size the mixed (derived) part; `--rows 0` skips it.
    """
    data = real_data_dir()
    given = [Path(f) for f in getattr(args, "file", [])]
    files = given or [f for f in (data / f for f in DEFAULT_FILES) if f.exists()]
    files = files or trade_files(data)
    return bench_detect(files, int(option(args, "tickers", 3000)),
                        int(option(args, "rows", 262_144)))
