"""The benchmark feed: `ReplayServer` serving a `SyntheticMarket` tape, in its own process.

The load generator gets its own interpreter (and GIL), so encoding and sending frames does not
compete with the Socket.IO clients or the measuring loop of the benchmark process. The parent
talks to it over a pipe: it receives the feed address once the server listens, can ask for
`stats`, and on `stop` gets the final stats plus the tape's frame timestamps (for latency).
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from bench.loadgen import MarketTape, SyntheticMarket, load_real_trades

START_TIMEOUT_S = 300.0  # loading the recordings and encoding every frame
TICK_MS = 10.0  # the replay server's frame grouping at speed 1 (its default)


@dataclass(frozen=True)
class FeedSpec:
    """What to serve: the market (files, tickers, event-time rate) and how to pace it."""

    files: tuple[str, ...]
    tickers: int
    rate: float  # event-time trades/s of the tape
    speed: float  # replay speed: 1 = paced by event time, 0 = as fast as the client reads
    total_trades: int  # trades on the tape (encoded before the server starts)
    max_wall_s: float | None  # stop this long after the first frame
    events_per_frame: int = 100
    max_rows_per_file: int | None = None
    seed: int = 7


@dataclass
class FeedResult:
    """The server's final view: stats, and per frame its last event time and hand-off time."""

    stats: dict[str, Any]
    sent_t: list[int]
    sent_wall: list[float]
    first_wall: float
    trades: int


class FeedProcess:
    """Start, query and stop the feed server process."""

    def __init__(self, spec: FeedSpec) -> None:
        ctx = mp.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(target=serve, args=(child, spec), name="bench-feed", daemon=True)
        self._proc.start()
        if not self._conn.poll(START_TIMEOUT_S):
            self.kill()
            raise RuntimeError("the benchmark feed did not start")
        ready = self._conn.recv()
        if "error" in ready:
            self.kill()
            raise RuntimeError(f"the benchmark feed failed: {ready['error']}")
        self.feed: str = ready["feed"]
        self.rest_base: str = ready["rest"]
        self.symbols: list[str] = ready["symbols"]

    def stats(self) -> dict[str, Any]:
        self._conn.send("stats")
        return dict(self._conn.recv())

    def stop(self) -> FeedResult:
        """Stop serving; return the final stats and frame timestamps."""
        self._conn.send("stop")
        out: FeedResult = self._conn.recv()
        self._proc.join(10)
        return out

    def kill(self) -> None:
        if self._proc.is_alive():
            self._proc.kill()
            self._proc.join(5)


def serve(conn: Connection, spec: FeedSpec) -> None:
    """Process entry point: serve until the parent says `stop`."""
    try:
        asyncio.run(_serve(conn, spec))
    except Exception as e:  # report to the parent instead of dying silently
        conn.send({"error": f"{type(e).__name__}: {e}"})


async def _serve(conn: Connection, spec: FeedSpec) -> None:
    from cluster.replay.server import ReplayServer

    real = load_real_trades([Path(f) for f in spec.files], spec.max_rows_per_file)
    market = SyntheticMarket(real, spec.tickers, spec.rate, seed=spec.seed)
    tape = MarketTape(market, spec.total_trades, group_ms=int(TICK_MS * spec.speed),
                      events_per_frame=spec.events_per_frame, max_wall_s=spec.max_wall_s)
    server = ReplayServer([], port=0, speed=spec.speed, tape=tape, keys=None, tick_ms=TICK_MS,
                          events_per_frame=spec.events_per_frame)
    await server.start()
    conn.send({"feed": server.feed, "rest": server.rest_base, "symbols": market.symbols})
    try:
        while True:
            command = await asyncio.to_thread(conn.recv)
            if command == "stats":
                conn.send(_stats(server, tape))
                continue
            break
    finally:
        await server.stop()
    conn.send(FeedResult(_stats(server, tape), tape.sent_t, tape.sent_wall, tape.first_wall,
                         tape.trades))


def _stats(server: Any, tape: MarketTape) -> dict[str, Any]:
    stats = server.stats()
    return {
        "finished": stats["finished"],
        "frames": stats["frames"],
        "events": stats["events"],
        "trades_sent": stats["trades_sent"],
        "trades_missed": stats["trades_missed"],
        "tape_trades": tape.trades,
        "live": stats["live"],
        "counts": stats["counts"],
    }
