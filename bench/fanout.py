"""`tickstock bench fanout`: M Socket.IO clients, each with its own universe and filters.

The gateway (`create_app`, token auth, `InMemoryDeps` in place of the queue and universes)
runs in its own process; M Socket.IO clients (the protocol over real WebSockets, `FanClient`)
connect from this one, each logged in as a distinct user whose universe is a random 20-400
of `--tickers` synthetic tickers and whose filters are random. Events are real detector
events (HighLow, Surge, Trend found on recorded days) re-labelled over those tickers,
pushed at `--rate` events/s (default 1,000).

Every emission cycle also carries a marker event that every universe includes, so each
client gets a payload every cycle and can tell which cycle it belongs to. Measured:

- emission-cycle time: from the moment the cycle's pull returned events to the moment the
  last client received its payload (p50/p99 over cycles, after a warm-up);
- the gateway's own work per cycle (emitter + handing payloads to Socket.IO);
- bytes per client (its `stock_data` packets as received, Socket.IO framing included).

Ceiling, same run, same payloads: encoding every payload of sampled cycles once (msgspec, as
the gateway's Socket.IO codec does), with nothing sent: payloads/s.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import msgspec
import numpy as np

from bench.loadgen import synthetic_symbols
from bench.report import emit, real_data_dir, result, rss_mb
from bench.timing import interleaved_best, option, percentiles_ms
from schemas.events import Event

MARKER = "ZZMARK"  # a ticker in every universe: its one event per cycle names the cycle
WARMUP_CYCLES = 4
CONNECT_CONCURRENCY = 50
START_TIMEOUT_S = 120.0
STOCK_DATA = '42["stock_data",'  # a Socket.IO EVENT packet (engine.io MESSAGE) of ours
CYCLE_ID = '"id":"cycle:'
TEMPLATE_FILES = (
    "lobster_2012-06-21/AAPL_2012-06-21_34200000_57600000_message_1.csv.gz",
    "algoseek_lean/tick/ibm/20131010_ibm_Trade_Tick.csv.gz",
)
_encode = msgspec.json.Encoder().encode


@dataclass(frozen=True)
class FanoutSpec:
    clients: int
    tickers: int
    events_per_s: float
    interval_s: float
    files: tuple[str, ...]
    seed: int = 11


@dataclass
class Cycle:
    """One emission cycle, as the gateway saw it."""

    index: int
    wall: float  # Unix s when its pull returned
    started: float  # perf_counter at the same moment
    events: int
    server_s: float = 0.0
    payloads: int = 0


# -- the gateway process ---------------------------------------------------------------------


def template_events(files: list[Path]) -> list[Event]:
    """Events the detectors find on recorded days (kinds and fields as in real use)."""
    from actors.detection.engine import DetectorEngine
    from actors.sources.readers import read_file
    from schemas.batches import TradeBatch

    events: list[Event] = []
    for path in files:
        engine = DetectorEngine()
        for batch in read_file(path):
            if isinstance(batch, TradeBatch):
                events.extend(engine.process_trades(batch))
        events.extend(engine.flush())
    if not events:
        raise ValueError("no detector events in the template files")
    return events


def random_filters(rng: np.random.Generator) -> dict[str, Any]:
    """A user's filters: mostly permissive, some strict, all valid `UserFilters`."""
    return {
        "highlow": {"min_count": int(rng.choice([0, 0, 1, 2, 5])),
                    "min_volume": float(rng.choice([0, 0, 100, 500]))},
        "trends": {"strength": str(rng.choice(["any", "any", "moderate", "strong"]))},
        "surge": {"magnitude": float(rng.choice([0, 0, 1, 2]))},
    }


class Feeder:
    """Pushes re-labelled template events into the deps at a steady rate."""

    def __init__(self, deps: Any, templates: list[Event], symbols: list[str], rate: float,
                 seed: int) -> None:
        self._deps = deps
        self._templates = templates
        self._symbols = symbols
        self._rate = rate
        self._rng = np.random.default_rng(seed)
        self._n = 0
        self._clock_ms = 1_710_338_400_000  # event time: a regular session

    async def run(self, step_s: float = 0.05) -> None:
        carry = 0.0
        while True:
            carry += self._rate * step_s
            count, carry = int(carry), carry - int(carry)
            if count:
                self._deps.push(self._make(count))
            await asyncio.sleep(step_s)

    def _make(self, count: int) -> list[Event]:
        picks = self._rng.integers(0, len(self._templates), count).tolist()
        tickers = self._rng.integers(0, len(self._symbols), count).tolist()
        out = []
        for pick, tk in zip(picks, tickers, strict=True):
            self._n += 1
            self._clock_ms += 1
            e = self._templates[pick]
            ticker = self._symbols[tk]
            out.append(msgspec.structs.replace(
                e, id=f"{ticker}:{e.kind}:{self._clock_ms}:{self._n}", ticker=ticker,
                time=self._clock_ms,
            ))
        return out


class Instruments:
    """Wraps the hub's pull and cycle to time each cycle and tag it with a marker event."""

    def __init__(self, hub: Any, deps: Any, sample_every: int = 5) -> None:
        self.cycles: list[Cycle] = []
        self.sampled: list[list[dict[str, Any]]] = []
        self._current: Cycle | None = None
        self._sample_every = sample_every
        collect, cycle, deliver = deps.collect, hub.cycle, hub._deliver

        async def timed_collect(max_events: int, timeout_s: float) -> Any:
            got = await collect(max_events, timeout_s)
            self._current = None
            if got.events:
                index = len(self.cycles)
                self._current = Cycle(index, time.time(), time.perf_counter(), len(got.events))
                got.events.append(_marker(index, got.watermark))
            return got

        async def timed_cycle() -> None:
            await cycle()
            if self._current is not None:
                self._current.server_s = time.perf_counter() - self._current.started
                self.cycles.append(self._current)

        async def counted_deliver(step: Any) -> None:
            if self._current is not None:
                self._current.payloads += len(step.payloads)
                if self._current.index % self._sample_every == 0:
                    self.sampled.append(list(step.payloads.values()))
            await deliver(step)

        deps.collect = timed_collect
        hub.cycle = timed_cycle
        hub._deliver = counted_deliver


def _marker(index: int, watermark: int) -> Event:
    return Event(id=f"cycle:{index}", ticker=MARKER, kind="high", direction="up", price=1.0,
                 time=watermark, count=10**6, volume=1e12, label="bench cycle marker")


def encode_ceiling(sampled: list[list[dict[str, Any]]], rounds: int = 3) -> tuple[int, float]:
    """Payloads of the sampled cycles, and seconds to encode each once (best of `rounds`)."""
    from gateway.wire import MsgspecJson

    payloads = [p for cycle in sampled for p in cycle]

    def encode_all() -> None:
        for payload in payloads:
            MsgspecJson.dumps(["stock_data", payload])

    return len(payloads), interleaved_best({"encode": encode_all}, rounds)["encode"]


def serve(conn: Connection, spec: FanoutSpec) -> None:
    """Process entry point: the gateway with M users; run until the parent says `stop`."""
    try:
        asyncio.run(_serve(conn, spec))
    except Exception as e:  # report to the parent instead of dying silently
        conn.send({"error": f"{type(e).__name__}: {e}"})


async def _make_users(spec: FanoutSpec, deps: Any, store: Any) -> list[str]:
    from gateway.auth import new_token, token_hash

    rng = np.random.default_rng(spec.seed)
    symbols = synthetic_symbols(spec.tickers)
    expires = int(time.time() * 1000) + 86_400_000
    tokens = []
    for i in range(spec.clients):
        user = await store.create_user(f"bench{i:05d}", f"bench{i}@bench.local", "!")
        token = new_token()
        await store.create_session(token_hash(token), user.id, expires, None, None)
        size = int(rng.integers(20, 401))
        picked = rng.choice(len(symbols), size=min(size, len(symbols)), replace=False)
        deps.universes[f"U{i}"] = [MARKER, *(symbols[k] for k in picked.tolist())]
        deps.selections[str(user.id)] = {"market": [f"U{i}"]}
        deps.filters[str(user.id)] = random_filters(rng)
        tokens.append(token)
    return tokens


async def _serve(conn: Connection, spec: FanoutSpec) -> None:
    from aiohttp import web

    from config.settings import GatewayConfig
    from gateway.app import create_app
    from gateway.deps import InMemoryDeps, InMemoryUserStore
    from gateway.keys import HUB

    templates = await asyncio.to_thread(template_events, [Path(f) for f in spec.files])
    store = InMemoryUserStore()
    deps = InMemoryDeps(user_store=store)
    tokens = await _make_users(spec, deps, store)
    config = GatewayConfig(host="127.0.0.1", port=0, auth_mode="token",
                           emission_interval_s=spec.interval_s)
    app = create_app(config, deps)  # type: ignore[arg-type]  # InMemoryDeps is a GatewayDeps
    hub = app[HUB]
    probes = Instruments(hub, deps)
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    port = next(a[1] for a in runner.addresses if isinstance(a, tuple))
    conn.send({"port": port, "tokens": tokens})
    feeder = Feeder(deps, templates, synthetic_symbols(spec.tickers), spec.events_per_s,
                    spec.seed)
    task: asyncio.Task[None] | None = None
    while True:
        command = await asyncio.to_thread(conn.recv)
        if command == "status":
            conn.send({"connected": hub.connected, **hub.emitter.stats()})
        elif command == "go":
            task = asyncio.create_task(feeder.run())
            conn.send("ok")
        else:
            break
    if task is not None:
        task.cancel()
    cycles = list(probes.cycles)
    sampled, encode_s = await asyncio.to_thread(encode_ceiling, probes.sampled)
    await runner.cleanup()
    conn.send({"cycles": cycles, "sampled_payloads": sampled, "encode_s": encode_s,
               "metrics": dict(hub.metrics)})


# -- the clients -----------------------------------------------------------------------------


class FanClient:
    """One user's Socket.IO client, speaking the protocol directly over a WebSocket.

    Engine.IO v4 / Socket.IO v5, as the browser client does: OPEN, CONNECT with the token in
    `auth`, answer pings, take `stock_data` events. It reads only what the benchmark needs
    (the cycle marker's id and the frame size) instead of decoding every payload, so 1,000 of
    them in one process do not become the bottleneck of what is measured: the gateway.
    """

    def __init__(self, token: str) -> None:
        self.token = token
        self.received: list[tuple[int, float]] = []  # (cycle, recv wall)
        self.nbytes = 0
        self.payloads = 0
        self._ws: Any = None
        self._task: asyncio.Task[None] | None = None

    async def connect(self, url: str) -> None:
        from websockets.asyncio.client import connect

        ws_url = url.replace("http://", "ws://") + "/socket.io/?EIO=4&transport=websocket"
        self._ws = await connect(ws_url, max_size=2**24, compression=None)
        opened = await self._ws.recv()
        if not str(opened).startswith("0"):
            raise ConnectionError(f"unexpected engine.io open: {str(opened)[:80]}")
        await self._ws.send("40" + _encode({"token": self.token}).decode())
        while True:
            reply = str(await self._ws.recv())
            if reply.startswith("40"):
                break
            if reply.startswith("44"):
                raise ConnectionError(f"refused: {reply[:120]}")
        self._task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        from websockets.exceptions import ConnectionClosed

        try:
            async for message in self._ws:
                if message == "2":
                    await self._ws.send("3")
                elif message.startswith(STOCK_DATA):
                    self._on_data(message)
        except ConnectionClosed:
            pass

    def _on_data(self, message: str) -> None:
        now = time.time()
        self.payloads += 1
        self.nbytes += len(message.encode())
        at = message.rfind(CYCLE_ID)
        if at >= 0:
            start = at + len(CYCLE_ID)
            self.received.append((int(message[start : message.index('"', start)]), now))

    async def close(self) -> None:
        if self._ws is not None:
            await self._ws.close()
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)


async def _connect_all(clients: list[FanClient], url: str) -> None:
    gate = asyncio.Semaphore(CONNECT_CONCURRENCY)

    async def one(client: FanClient) -> None:
        async with gate:
            await client.connect(url)

    await asyncio.gather(*(one(c) for c in clients))


class GatewayProcess:
    """Start, query and stop the gateway process."""

    def __init__(self, spec: FanoutSpec) -> None:
        ctx = mp.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(target=serve, args=(child, spec), name="bench-gateway",
                                 daemon=True)
        self._proc.start()
        if not self._conn.poll(START_TIMEOUT_S):
            self.kill()
            raise RuntimeError("the benchmark gateway did not start")
        ready = self._conn.recv()
        if "error" in ready:
            self.kill()
            raise RuntimeError(f"the benchmark gateway failed: {ready['error']}")
        self.url = f"http://127.0.0.1:{ready['port']}"
        self.tokens: list[str] = ready["tokens"]

    def ask(self, command: str) -> Any:
        self._conn.send(command)
        return self._conn.recv()

    def kill(self) -> None:
        if self._proc.is_alive():
            self._proc.kill()
            self._proc.join(5)


async def _drive(gateway: GatewayProcess, duration: float) -> tuple[list[FanClient], float]:
    clients = [FanClient(token) for token in gateway.tokens]
    await _connect_all(clients, gateway.url)
    deadline = time.time() + 60
    while time.time() < deadline:
        status = await asyncio.to_thread(gateway.ask, "status")
        if status["users_connected"] >= len(clients):
            break
        await asyncio.sleep(0.2)
    await asyncio.to_thread(gateway.ask, "go")
    started = time.time()
    await asyncio.sleep(duration)
    await asyncio.sleep(1.0)  # the last cycle's payloads are on their way
    await asyncio.gather(*(client.close() for client in clients))
    return clients, time.time() - started


# -- results ---------------------------------------------------------------------------------


def cycle_times(cycles: list[Cycle], clients: list[FanClient]) -> tuple[list[float], int]:
    """Per cycle (after warm-up): last client's receive time minus the cycle start; misses."""
    last: dict[int, float] = {}
    got: dict[int, int] = {}
    for client in clients:
        for index, wall in client.received:
            last[index] = max(last.get(index, 0.0), wall)
            got[index] = got.get(index, 0) + 1
    times, missed = [], 0
    for cycle in cycles[WARMUP_CYCLES:-1]:  # the last one may still have been in flight
        if cycle.index in last:
            times.append(last[cycle.index] - cycle.wall)
        missed += len(clients) - got.get(cycle.index, 0)
    return times, missed


def bench_fanout(
    clients: int, tickers: int, events_per_s: float, duration: float, interval_s: float = 0.5,
) -> dict[str, Any]:
    """Run the benchmark; print the table and the JSON line; return the result."""
    files = tuple(str(real_data_dir() / f) for f in TEMPLATE_FILES)
    gateway = GatewayProcess(FanoutSpec(clients, tickers, events_per_s, interval_s, files))
    try:
        fans, elapsed = asyncio.run(_drive(gateway, duration))
        final = gateway.ask("stop")
    finally:
        gateway.kill()
    cycles: list[Cycle] = final["cycles"]
    times, missed = cycle_times(cycles, fans)
    measured = cycles[WARMUP_CYCLES:-1]
    delivered = sum(c.payloads for c in measured)
    busy = sum(times)
    fan_rate = delivered / busy if busy else 0.0
    ceiling = final["sampled_payloads"] / final["encode_s"] if final["encode_s"] else 0.0
    lat = percentiles_ms(times)
    server = percentiles_ms([c.server_s for c in measured])
    payloads = sum(f.payloads for f in fans)
    nbytes = sum(f.nbytes for f in fans)
    outcome = result(
        "fanout", fan_rate, ceiling, **lat, clients=clients, tickers=tickers,
        cycles=len(measured), events_per_s=events_per_s, interval_s=interval_s,
        events_per_cycle=round(float(np.mean([c.events for c in measured])), 1) if measured
        else 0.0,
        server_p50_ms=server["p50_ms"], server_p99_ms=server["p99_ms"],
        missed_payloads=missed,
        bytes_per_client_per_s=round(nbytes / len(fans) / elapsed, 1),
        bytes_per_payload=round(nbytes / payloads, 1) if payloads else 0.0,
        rss_mb=round(rss_mb(), 1),
    )
    table = [
        ("clients (distinct universes and filters)", f"{clients:,}"),
        ("tickers / events per s (derived)", f"{tickers:,} / {events_per_s:,.0f}"),
        ("cycles measured (interval s)", f"{len(measured)} ({interval_s})"),
        ("cycle: pull -> last client received p50 / p99 / max (ms)",
         f"{lat['p50_ms']:,.1f} / {lat['p99_ms']:,.1f} / {lat['max_ms']:,.1f}"),
        ("gateway work per cycle p50 / p99 (ms)",
         f"{server['p50_ms']:,.1f} / {server['p99_ms']:,.1f}"),
        ("payloads delivered per s of cycle time", fan_rate),
        ("ceiling: payloads encoded once per s", ceiling),
        ("ratio", outcome["ratio"]),
        ("bytes per client per s / per payload", f"{outcome['bytes_per_client_per_s']:,.0f} / "
                                                 f"{outcome['bytes_per_payload']:,.0f}"),
        ("payloads missed", missed),
    ]
    emit(table, outcome, "fanout: one gateway, M users with their own views")
    return outcome


def run(args: argparse.Namespace) -> dict[str, Any]:
    """`tickstock bench fanout [--clients M] [--tickers N] [--rate EVENTS/S] [--duration S]`."""
    return bench_fanout(
        int(option(args, "clients", 1000)), int(option(args, "tickers", 3000)),
        float(option(args, "rate", 1000.0)), float(option(args, "duration", 20.0)),
    )
