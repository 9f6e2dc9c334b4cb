"""`tickstock bench memory`: RSS of the actors per tracked ticker, at 1k, 5k and 10k tickers.

The actor graph is built as `tickstock up` builds it (`build_graph`: ingest, shards, queue,
universe, gateway; storage off), on local Ray. Baseline: the summed RSS of every actor process
once the graph is up and one warm-up ticker has gone through it (the empty system). Then the
same shards are fed, through the ingest's own batching and routing (`IngestEngine`, driven from
this process), derived trades (bench/loadgen.py) of 1k, then 5k, then 10k tickers, each step
spanning 11 minutes of event time (longer than every detector window: per-ticker state is at
its steady size) with 200 trades per ticker on average (Pareto activity). After each step, and
once the gateway has pulled everything, the actors' RSS is read from /proc.

The ingest actor itself stays idle (it would hold the same batches in its retention window,
which is bounded by `ingest.retain_rows_per_shard` and trimmed at every shard checkpoint:
memory per row, not per ticker).

Contract fields: `items_per_s` is the feeding rate through the shards (trades/s) and
`ceiling_per_s` the same batches through one `DetectorEngine` on one core, no Ray (same run);
`rss_mb` is the RSS above the empty system at the largest step.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from pathlib import Path
from typing import Any

import ray

from actors.detection.engine import DetectorEngine
from actors.handles import ShardHandle
from actors.ingest.engine import IngestEngine
from bench.loadgen import DEFAULT_START_MS, SyntheticMarket, load_real_trades, trade_files
from bench.report import emit, real_data_dir, result
from bench.timing import interleaved_best, option
from cluster.graph import Graph, build_graph, init_ray, shutdown_graph
from config.settings import Settings, load_settings
from schemas.batches import TradeBatch

STEP_SPAN_S = 660.0  # event time per step: past the 600 s trend window
TRADES_PER_TICKER = 200
BATCH_ROWS = 8_192
SETTLE_S = 2.0  # for the gateway to pull what the shards emitted
CEILING_ROWS = 100_000


def step_sizes(largest: int) -> list[int]:
    """1k, 5k, 10k by default; for another largest N: N/10, N/2, N."""
    if largest == 10_000:
        return [1_000, 5_000, 10_000]
    return sorted({max(1, largest // 10), max(1, largest // 2), largest})


def memory_settings(shards: int) -> Settings:
    """The default system (storage off), with a `TICKSTOCK_CONFIG` file if one is named."""
    return load_settings(env={}, file=os.environ.get("TICKSTOCK_CONFIG") or None, overrides={
        "shards": {"count": shards},
        "storage": {"enabled": False},
        "gateway": {"host": "127.0.0.1", "port": 0},
        "cluster": {"num_cpus": os.cpu_count() or 2, "object_store_mb": 256},
    })


def rss_of(pid: int) -> float:
    """Resident set size of a process in MB (Linux /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def actor_pids(graph: Graph) -> dict[str, int]:
    """The process id of every actor of the graph, by role."""
    names = ["ingest", *(f"shard{i}" for i in range(len(graph.shards))), "queue", "universe"]
    actors = [graph.ingest, *graph.shards, graph.queue, graph.universe]
    if graph.gateway is not None:
        names.append("gateway")
        actors.append(graph.gateway)
    pids = ray.get([a.__ray_call__.remote(lambda self: os.getpid()) for a in actors])
    return dict(zip(names, (int(p) for p in pids), strict=True))


def rss_by_actor(pids: dict[str, int]) -> dict[str, float]:
    return {name: round(rss_of(pid), 1) for name, pid in pids.items()}


async def feed(engine: IngestEngine, batches: list[TradeBatch]) -> float:
    """Push batches through the ingest engine to the shards; seconds until all are acked."""
    started = time.perf_counter()
    for batch in batches:
        await engine.accept(batch)
        await engine.flush_due()
    await engine.flush_due(force=True)
    await engine.drain()
    return time.perf_counter() - started


def step_batches(real: Any, tickers: int, start_ms: int, seed: int) -> list[TradeBatch]:
    """Derived trades of `tickers` tickers over `STEP_SPAN_S` of event time from `start_ms`."""
    total = tickers * TRADES_PER_TICKER
    market = SyntheticMarket(real, tickers, total / STEP_SPAN_S, start_ms=start_ms, seed=seed)
    return [market.trade_batch(market.chunk(min(BATCH_ROWS, total - done)))
            for done in range(0, total, BATCH_ROWS)]


def engine_ceiling(batches: list[TradeBatch]) -> float:
    """Trades/s of one `DetectorEngine` (one core, no Ray) over the first `CEILING_ROWS`."""
    head: list[TradeBatch] = []
    for batch in batches:
        if sum(len(b) for b in head) >= CEILING_ROWS:
            break
        head.append(batch)
    rows = sum(len(b) for b in head)

    def run() -> None:
        engine = DetectorEngine()
        for batch in head:
            engine.process_trades(batch)

    return rows / interleaved_best({"engine": run}, 1)["engine"]


def bench_memory(largest: int, shards: int, files: list[Path]) -> dict[str, Any]:
    """Run the benchmark; print the table and the JSON line; return the result."""
    real = load_real_trades(files)
    settings = memory_settings(shards)
    init_ray(settings)
    graph = build_graph(settings)
    try:
        steps, empty, fed_s, fed_rows, last = asyncio.run(_measure(graph, settings, real, largest))
    finally:
        shutdown_graph(graph)
        ray.shutdown()
    ceiling = engine_ceiling(last)
    return _report(steps, empty, fed_rows / fed_s if fed_s else 0.0, ceiling, shards)


async def _measure(
    graph: Graph, settings: Settings, real: Any, largest: int
) -> tuple[list[tuple[int, dict[str, float]]], dict[str, float], float, int, list[TradeBatch]]:
    pids = actor_pids(graph)
    engine = IngestEngine(settings, [ShardHandle(i, a) for i, a in enumerate(graph.shards)])
    start = DEFAULT_START_MS - 3_600_000  # an hour before: every step stays in the session
    await feed(engine, step_batches(real, 1, start - 60_000, seed=1))  # warm-up ticker
    await asyncio.sleep(SETTLE_S)
    empty = rss_by_actor(pids)
    steps = []
    fed_s, fed_rows, batches = 0.0, 0, []
    for n, tickers in enumerate(step_sizes(largest)):
        batches = step_batches(real, tickers, start + int(n * (STEP_SPAN_S + 1) * 1000), n + 2)
        fed_s += await feed(engine, batches)
        fed_rows += sum(len(b) for b in batches)
        await asyncio.sleep(SETTLE_S)
        steps.append((tickers, rss_by_actor(pids)))
    return steps, empty, fed_s, fed_rows, batches


def _report(
    steps: list[tuple[int, dict[str, float]]], empty: dict[str, float], rate: float,
    ceiling: float, shards: int,
) -> dict[str, Any]:
    base = sum(empty.values())
    rows: list[tuple[str, Any]] = [("actors: empty system RSS (MB)", base)]
    per_step: list[dict[str, Any]] = []
    for tickers, rss in steps:
        above = sum(rss.values()) - base
        per_step.append({"tickers": tickers, "rss_mb": round(above, 1),
                         "kb_per_ticker": round(above * 1024 / tickers, 1),
                         "by_actor_mb": {k: round(v - empty[k], 1) for k, v in rss.items()}})
        rows.append((f"{tickers:,} tickers: RSS above empty (MB) / KB per ticker",
                     f"{above:,.1f} / {above * 1024 / tickers:,.1f}"))
    largest = per_step[-1]
    rows += [
        (f"by actor at {largest['tickers']:,} tickers (MB above empty)",
         ", ".join(f"{k} {v:+.0f}" for k, v in largest["by_actor_mb"].items())),
        ("feeding rate through the shards (trades/s)", rate),
        ("ceiling: one DetectorEngine, no Ray (trades/s)", ceiling),
    ]
    outcome = result(
        "memory", rate, ceiling, rss_mb=largest["rss_mb"], tickers=largest["tickers"],
        kb_per_ticker=largest["kb_per_ticker"], rss_empty_mb=round(base, 1), shards=shards,
        trades_per_ticker=TRADES_PER_TICKER, steps=per_step,
    )
    emit(rows, outcome, "memory: actor RSS per tracked ticker")
    return outcome


def run(args: argparse.Namespace) -> dict[str, Any]:
    """`tickstock bench memory [--tickers N] [--shards N]`: steps N/10, N/2, N (1k/5k/10k)."""
    files = [Path(f) for f in getattr(args, "file", [])] or trade_files(real_data_dir())
    return bench_memory(int(option(args, "tickers", 10_000)), int(args.shards), files)
