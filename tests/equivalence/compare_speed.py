"""The grouped engine's speed against the per-ticker reference, on a shard's live batches.

A development aid for engine work (not a test, not a product benchmark: `tickstock bench
detect` is that), kept beside the equivalence tests because it runs the frozen reference.

Two streams, both in ingest-sized batches (8,192 rows) as a shard receives them:

- `walk`: synthetic random walks over `--tickers` tickers picked uniformly (about
  8,192 / tickers rows per ticker per batch), regular session, 200k trades/s of event time,
  some odd lots (volume only) and Form T prints;
- `mixed`: recorded trades re-labelled over the same number of tickers (bench/loadgen.py,
  a Pareto activity profile), as `tickstock bench detect` builds its mixed case.

Each engine (`current`: actors/detection/engine.py; `reference`: the frozen per-ticker copy in
tests/reference/per_ticker) runs the whole stream with `take_analytics` after every batch, as
the shard does; the best of `--rounds` runs is reported in trades/s.

    .venv/bin/python -m tests.equivalence.compare_speed --tickers 3000 --rows 262144
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from actors.detection.engine import DetectorEngine
from bench.loadgen import DEFAULT_START_MS, SyntheticMarket, load_real_trades, trade_files
from bench.report import real_data_dir
from config.detection import DetectionConfig
from schemas.batches import FLAG_FORM_T, FLAG_VOLUME, FLAGS_REGULAR, TradeBatch
from tests.reference.per_ticker.detector_engine import DetectorEngine as PerTickerEngine

BATCH_ROWS = 8_192  # IngestConfig.batch_max_rows; `--batch-rows` overrides


def walk_batches(
    tickers: int, rows: int, seed: int = 1, rate: float = 200_000.0, batch_rows: int = BATCH_ROWS
) -> list[TradeBatch]:
    """Random-walk trades over `tickers` uniformly chosen tickers, in 8,192-row batches."""
    rng = np.random.default_rng(seed)
    names = np.array([f"T{i:05d}" for i in range(tickers)], dtype="<U12")
    level = np.exp(rng.uniform(np.log(2.0), np.log(400.0), tickers))
    idx = rng.integers(0, tickers, rows)
    steps = rng.normal(0.0, 0.0008, rows)
    # Each ticker's cumulative walk in its own row order.
    order = np.argsort(idx, kind="stable")
    walk = np.empty(rows)
    walk[order] = steps[order]
    counts = np.bincount(idx, minlength=tickers)
    starts = np.cumsum(counts) - counts
    csum = np.cumsum(walk[order])
    csum -= np.repeat(csum[starts] - walk[order][starts], counts)
    logp = np.empty(rows)
    logp[order] = csum
    p = np.round(level[idx] * np.exp(logp), 2)
    p = np.maximum(p, 0.01)
    s = rng.integers(1, 30, rows).astype(np.float64) * 100
    flags = np.full(rows, FLAGS_REGULAR, np.uint8)
    odd = rng.random(rows) < 0.1
    flags[odd] = FLAG_VOLUME
    s[odd] = rng.integers(1, 99, int(odd.sum()))
    flags[rng.random(rows) < 0.01] = FLAG_FORM_T | FLAG_VOLUME | 3
    t = DEFAULT_START_MS + np.floor(np.arange(rows) * (1000.0 / rate)).astype(np.int64)
    seq = np.arange(rows, dtype=np.int64)
    return [
        TradeBatch(names[idx[a:b]], t[a:b], p[a:b], s[a:b], flags[a:b], seq[a:b])
        for a, b in ((a, min(a + batch_rows, rows)) for a in range(0, rows, batch_rows))
    ]


def mixed_batches(tickers: int, rows: int, batch_rows: int = BATCH_ROWS) -> list[TradeBatch]:
    """Recorded trades over `tickers` synthetic tickers (the bench's mixed case)."""
    market = SyntheticMarket(load_real_trades(trade_files(real_data_dir())), tickers, 200_000.0)
    return [
        market.trade_batch(market.chunk(min(batch_rows, rows - done)))
        for done in range(0, rows, batch_rows)
    ]


def run(make: Callable[[], Any], batches: list[TradeBatch]) -> tuple[float, int]:
    """Seconds to run the whole stream through a fresh engine; events found."""
    engine = make()
    start = time.perf_counter()
    events = 0
    for batch in batches:
        events += len(engine.process_trades(batch))
        engine.take_analytics()
    events += len(engine.flush())
    engine.take_analytics()
    return time.perf_counter() - start, events


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tickers", type=int, default=3000)
    parser.add_argument("--rows", type=int, default=262_144)
    parser.add_argument("--batch-rows", type=int, default=BATCH_ROWS)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--engines", default="current,reference")
    parser.add_argument("--streams", default="walk,mixed")
    args = parser.parse_args()
    config = DetectionConfig()
    engines = {
        "current": lambda: DetectorEngine(config),
        "reference": lambda: PerTickerEngine(config),
    }
    for stream in args.streams.split(","):
        make = walk_batches if stream == "walk" else mixed_batches
        batches = make(args.tickers, args.rows, batch_rows=args.batch_rows)
        rows = sum(len(b) for b in batches)
        for name in args.engines.split(","):
            best, events = min(run(engines[name], batches) for _ in range(args.rounds))
            print(f"{stream:6} {name:10} tickers={args.tickers} rows={rows} "
                  f"batch={args.batch_rows} events={events} trades/s={rows / best:,.0f}")


if __name__ == "__main__":
    main()
