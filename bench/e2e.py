"""`tickstock bench e2e`: replay server -> polygon client -> ingest -> shards -> queue -> gateway
-> Socket.IO clients, all real, on local Ray.

Load (derived, bench/loadgen.py): recorded trades re-labelled over `--tickers` synthetic
tickers, served by `ReplayServer` in its own process (bench/feedserver.py). The system runs
as `tickstock up --source polygon` does (`build_graph`), subscribed to every synthetic
ticker; `--clients` Socket.IO clients connect before the feed starts.

- `--rate R > 0`: the tape's event time advances at R trades/s and the server paces it at
  speed 1 (the broadcast clock), for `--duration` s;
- `--rate 0`: as fast as the pipeline takes it (speed 0, with backpressure), for
  `--duration` s of wall time.

Measured: sustained trades/s (rows the ingest accepted, after a warm-up), tick-to-client
latency of high/low events (client receive time minus the time the frame holding the
triggering trade was due on the replay clock; speed 0: when the server handed it to the
connection), events detected by the shards vs delivered to each client (lost = the
difference), and what the feed missed or the queue dropped.

Ceilings, same run: `FrameDecoder` on one core over frames of the same market (the ingest
ceiling: the e2e ratio is e2e / decode), and a pass-through (replay server -> polygon feed ->
decoder in one process, no Ray, nothing behind it).
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import numpy as np
import ray
import socketio

from actors.polygon.decode import FrameDecoder
from actors.polygon.feed import PolygonFeed
from bench.feedserver import FeedProcess, FeedResult, FeedSpec
from bench.loadgen import SyntheticMarket, load_real_trades, trade_files
from bench.report import emit, real_data_dir, result, rss_mb
from bench.timing import interleaved_best, percentiles_ms
from cluster.graph import Graph, build_graph, init_ray, shutdown_graph
from config.settings import PolygonConfig, Settings, load_settings

NOMINAL_RATE = 200_000.0  # event-time trades/s of the tape at --rate 0
MAX_TAPE_RATE = 300_000.0  # --rate 0: the tape holds duration x this many trades
EVENTS_PER_FRAME = 100  # the replay server's default
WARMUP_S = 5.0  # excluded from rates and latencies (first batches); a quarter of short runs
START_GRACE_S = 60.0  # for the feed to connect and subscribe
DRAIN_TIMEOUT_S = 90.0
PASSTHROUGH_S = 5.0
IDLE_END_S = 2.0  # no frame for this long: the tape has ended
API_KEY = "bench-key"
SLOTS = (("highs",), ("lows",), ("surging", "up"), ("surging", "down"), ("trending", "up"),
         ("trending", "down"))


# -- clients ---------------------------------------------------------------------------------


@dataclass
class Receiver:
    """One Socket.IO client: event ids seen; client 0 also keeps high/low receive times."""

    keep_times: bool
    sio: socketio.AsyncClient = field(default_factory=lambda: socketio.AsyncClient(
        reconnection=False))
    ids: set[str] = field(default_factory=set)
    times: list[tuple[float, int]] = field(default_factory=list)  # (recv wall, event time)
    payloads: int = 0

    async def connect(self, url: str) -> None:
        self.sio.on("stock_data", self._on_data)
        await self.sio.connect(url, transports=["websocket"], wait_timeout=30)

    def _on_data(self, payload: dict[str, Any]) -> None:
        now = time.time()
        self.payloads += 1
        for path in SLOTS:
            events = payload[path[0]] if len(path) == 1 else payload[path[0]][path[1]]
            for event in events:
                self.ids.add(event["id"])
                if self.keep_times and len(path) == 1:
                    self.times.append((now, event["time"]))

    async def close(self) -> None:
        await self.sio.disconnect()


# -- ceilings --------------------------------------------------------------------------------


def decode_ceiling(files: list[Path], tickers: int, rows: int = 100_000) -> float:
    """Trades/s of `FrameDecoder` on one core over frames of the benchmark market."""
    market = SyntheticMarket(load_real_trades(files, 20_000), tickers, NOMINAL_RATE)
    frames = market.frames(market.chunk(rows), EVENTS_PER_FRAME)

    def decode_all() -> None:
        decoder = FrameDecoder()
        for frame in frames:
            decoder.decode(frame, 0)

    return rows / interleaved_best({"decode": decode_all}, 3)["decode"]


async def _passthrough(feed: str, rest_base: str, symbols: list[str], seconds: float) -> float:
    cfg = PolygonConfig(api_key=API_KEY, feed=feed, secure=False, rest_base=rest_base,
                        channels=("T",))
    client = PolygonFeed(cfg)
    client.set_subscriptions(symbols, ("T",))
    decoder = FrameDecoder()
    trades, first, last = 0, 0.0, 0.0
    await client.start()
    frames = aiter(client.frames())
    while not first or last - first < seconds:
        wait = START_GRACE_S if not first else IDLE_END_S
        try:
            recv_ms, frame = await asyncio.wait_for(anext(frames), wait)
        except (TimeoutError, StopAsyncIteration):
            break  # the tape ran out first: the rate over what arrived
        batch = decoder.decode(frame, recv_ms).trades
        if batch is not None:
            last = time.perf_counter()
            first = first or last
            trades += len(batch)
    return trades / (last - first) if last > first else 0.0


def _passthrough_main(conn: Connection, feed: str, rest: str, symbols: list[str],
                      seconds: float) -> None:
    """Process entry: measure, report, then wait to be killed with the feed client open.

    (`PolygonFeed.stop()` can wait forever on an idle connection: the polygon client's
    `wait_for(recv, 1)` loop swallows the cancel, and `asyncio.run` would wait for it too.)
    """
    async def measure_and_report() -> None:
        conn.send(await _passthrough(feed, rest, symbols, seconds))
        await asyncio.Event().wait()

    asyncio.run(measure_and_report())


def passthrough_rate(files: list[Path], tickers: int, seconds: float) -> float:
    """Trades/s the replay server + polygon client + decoder carry with nothing behind them."""
    spec = FeedSpec(tuple(map(str, files)), tickers, NOMINAL_RATE, 0.0,
                    int(seconds * MAX_TAPE_RATE * 3), seconds * 3, max_rows_per_file=50_000)
    feed = FeedProcess(spec)
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=_passthrough_main, daemon=True, name="bench-passthrough",
                       args=(child, feed.feed, feed.rest_base, feed.symbols, seconds))
    try:
        proc.start()
        if not parent.poll(START_GRACE_S + seconds + 30):
            return 0.0
        return float(parent.recv())
    finally:
        proc.kill()
        proc.join(5)
        feed.kill()


# -- the run ---------------------------------------------------------------------------------


@dataclass
class Sample:
    wall: float
    rows_in: int
    sent: int


@dataclass
class Run:
    samples: list[Sample]
    receivers: list[Receiver]
    shard_rows: int
    shard_events: int
    ingest: dict[str, Any]
    queue: dict[str, Any]
    gateway: dict[str, Any]
    feed_stats: dict[str, Any]
    drained: bool


def e2e_settings(feed: FeedProcess, shards: int) -> Settings:
    """`tickstock up --source polygon` against the benchmark feed, storage off.

    Defaults otherwise, except what a TOML file named by `TICKSTOCK_CONFIG` sets (to try
    other batching or emission settings); environment variables are ignored.
    """
    return load_settings(env={}, file=os.environ.get("TICKSTOCK_CONFIG") or None, overrides={
        "ingest": {"source": "polygon"},
        "polygon": {"api_key": API_KEY, "feed": feed.feed, "secure": False,
                    "rest_base": feed.rest_base, "channels": ["T"]},
        "universe": {"extra_tickers": feed.symbols},
        "shards": {"count": shards},
        "storage": {"enabled": False},
        "gateway": {"host": "127.0.0.1", "port": 0},
        "cluster": {"num_cpus": os.cpu_count() or 2, "object_store_mb": 256},
    })


async def drive(graph: Graph, feed: FeedProcess, clients: int, duration: float) -> Run:
    """Connect the clients, start the ingest, sample until the feed ends, then drain."""
    receivers = [Receiver(keep_times=i == 0) for i in range(clients)]
    await asyncio.gather(*(r.connect(graph.url) for r in receivers))
    await graph.ingest.start.remote()
    samples: list[Sample] = []
    deadline = time.time() + duration + START_GRACE_S
    stats = await asyncio.to_thread(feed.stats)
    while not stats["finished"] and time.time() < deadline:
        await asyncio.sleep(1.0)
        ingest = await graph.ingest.stats.remote()
        stats = await asyncio.to_thread(feed.stats)
        samples.append(Sample(time.time(), int(ingest["rows_in"]), int(stats["trades_sent"])))
    drained = await _drain(graph, receivers, int(stats["trades_sent"]))
    rows, events = await _shard_totals(graph)
    run = Run(samples, receivers, rows, events, await graph.ingest.stats.remote(),
              await graph.queue.stats.remote(), await graph.gateway.stats.remote(),
              await asyncio.to_thread(feed.stats), drained)
    await asyncio.gather(*(r.close() for r in receivers), return_exceptions=True)
    return run


async def _shard_totals(graph: Graph) -> tuple[int, int]:
    """Rows processed and events emitted by all shards (their own counters)."""
    stats = await asyncio.gather(*(shard.stats.remote() for shard in graph.shards))
    return sum(int(s["rows"]) for s in stats), sum(int(s["events"]) for s in stats)


async def _drain(graph: Graph, receivers: list[Receiver], sent: int) -> bool:
    """Wait until every sent trade is processed and every event reached every client."""
    deadline = time.time() + DRAIN_TIMEOUT_S
    last, still = -1, 0
    while time.time() < deadline:
        await asyncio.sleep(0.5)
        rows, events = await _shard_totals(graph)
        queue = await graph.queue.stats.remote()
        delivered = min(len(r.ids) for r in receivers)
        idle = rows >= sent and queue["depth"] == 0
        if idle and delivered >= events:
            return True
        still = still + 1 if idle and delivered == last else 0
        last = delivered
        if still >= 6:  # 3 s without progress: whatever is missing is lost
            return True
    return False


# -- results ---------------------------------------------------------------------------------


def warmup_s(duration: float) -> float:
    """The start of a run left out of rates and latencies."""
    return min(WARMUP_S, duration / 4)


def sustained_rate(samples: list[Sample], warmup: float) -> tuple[float, float]:
    """Rows/s the ingest accepted between warm-up end and the feed's end; and that span (s)."""
    started = next((s.wall for s in samples if s.rows_in > 0), None)
    if started is None or len(samples) < 2:
        return 0.0, 0.0
    window = [s for s in samples if s.wall >= started + warmup] or samples[-2:]
    if len(window) < 2:
        window = samples[-2:]
    span = window[-1].wall - window[0].wall
    return (window[-1].rows_in - window[0].rows_in) / span if span > 0 else 0.0, span


def latencies(
    times: list[tuple[float, int]], final: FeedResult, speed: float, warmup: float
) -> np.ndarray[Any, Any]:
    """Client receive time minus the replay-clock time of each high/low event's frame (s)."""
    n = min(len(final.sent_t), len(final.sent_wall)) if speed <= 0 else len(final.sent_t)
    if not times or not n:
        return np.zeros(0)
    sent_t = np.asarray(final.sent_t[:n], dtype=np.int64)
    if speed > 0:
        due = final.first_wall + (sent_t - sent_t[0]) / 1000.0 / speed
    else:
        due = np.asarray(final.sent_wall[:n], dtype=np.float64)
    recv = np.array([r for r, _ in times])
    frame = np.minimum(np.searchsorted(sent_t, [t for _, t in times], side="left"), n - 1)
    sent = due[frame]
    keep = sent >= final.first_wall + warmup
    out: np.ndarray[Any, Any] = (recv - sent)[keep]
    return out


def bench_e2e(
    files: list[Path], tickers: int, duration: float, rate: float, shards: int, clients: int,
    passthrough: bool = True,
) -> dict[str, Any]:
    """Run the benchmark; print the table and the JSON line; return the result."""
    ceiling = decode_ceiling(files, tickers)
    through = passthrough_rate(files, tickers, min(PASSTHROUGH_S, duration / 2)) if (
        passthrough) else 0.0
    speed = 1.0 if rate > 0 else 0.0
    total = int((rate if rate > 0 else MAX_TAPE_RATE) * duration)
    spec = FeedSpec(tuple(map(str, files)), tickers, rate or NOMINAL_RATE, speed, total,
                    None if rate > 0 else duration)
    feed = FeedProcess(spec)
    try:
        settings = e2e_settings(feed, shards)
        init_ray(settings)
        graph = build_graph(settings)
        try:
            run = asyncio.run(drive(graph, feed, clients, duration))
        finally:
            shutdown_graph(graph)
            ray.shutdown()
        final = feed.stop()
    finally:
        feed.kill()
    return _report(run, final, ceiling, through, tickers, duration, rate, shards, clients)


def _report(
    run: Run, final: FeedResult, ceiling: float, through: float, tickers: int, duration: float,
    rate: float, shards: int, clients: int,
) -> dict[str, Any]:
    warmup = warmup_s(duration)
    sustained, span = sustained_rate(run.samples, warmup)
    lat = percentiles_ms(latencies(run.receivers[0].times, final, 1.0 if rate > 0 else 0.0,
                                   warmup))
    detected = run.shard_events
    delivered = [len(r.ids) for r in run.receivers]
    lost = max(0, detected - min(delivered)) if delivered else detected
    outcome = result(
        "e2e", sustained, ceiling, **lat, lost=lost, clients=clients, tickers=tickers,
        shards=shards, offered_per_s=rate or "max", duration_s=duration,
        measured_span_s=round(span, 1), trades=run.shard_rows,
        feed_trades_sent=int(final.stats["trades_sent"]),
        feed_trades_missed=int(final.stats["trades_missed"]),
        events_detected=detected, events_delivered=min(delivered) if delivered else 0,
        highlow_latency_samples=len(run.receivers[0].times),
        queue_dropped=run.queue.get("dropped", {}), ingest_rejected=run.ingest["rejected"],
        avg_batch_rows=run.ingest.get("avg_batch_rows"), drained=run.drained,
        passthrough_per_s=round(through, 1), rss_mb=round(rss_mb(), 1),
    )
    table = [
        ("tickers (derived) / shards / clients", f"{tickers:,} / {shards} / {clients}"),
        ("offered", f"{rate:,.0f} trades/s paced" if rate > 0 else "max (speed 0)"),
        ("trades detected on / sent by feed", f"{outcome['trades']:,} / "
                                              f"{outcome['feed_trades_sent']:,}"),
        ("sustained trades/s (after warm-up)", sustained),
        ("ceiling: FrameDecoder one core (trades/s)", ceiling),
        ("pass-through feed -> decoder (trades/s)", through),
        ("ratio e2e / decode ceiling", outcome["ratio"]),
        ("high/low latency p50 / p99 / max (ms)", f"{lat['p50_ms']:,.1f} / {lat['p99_ms']:,.1f}"
                                                  f" / {lat['max_ms']:,.1f}"),
        ("events detected / delivered (min client)", f"{detected:,} / "
                                                     f"{outcome['events_delivered']:,}"),
        ("events lost", lost),
        ("feed trades missed", outcome["feed_trades_missed"]),
        ("queue dropped", str(outcome["queue_dropped"] or "none")),
        ("avg rows per shard batch", outcome["avg_batch_rows"]),
    ]
    emit(table, outcome, "e2e: feed -> ingest -> shards -> queue -> gateway -> clients")
    return outcome


def run(args: argparse.Namespace) -> dict[str, Any]:
    """`tickstock bench e2e [--tickers N] [--duration S] [--rate R] [--shards N] [--clients M]`."""
    files = [Path(f) for f in getattr(args, "file", [])] or trade_files(real_data_dir())
    return bench_e2e(
        files, int(args.tickers), float(args.duration), float(args.rate), int(args.shards),
        int(args.clients),
    )
