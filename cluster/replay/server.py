"""`tickstock replay-server`: a local server speaking Polygon's stocks WebSocket protocol.

It replays recorded data (docs/polygon.md §2, §7) to the unmodified polygon client:

- WebSocket at `ws://HOST:PORT/stocks`: the `connected` frame at once, `auth` expected within
  `auth_timeout_s` (else `auth_timeout` and close 1008), exactly one auth reply frame, one
  `success` frame per subscribed topic (comma lists, spaces, `T.*`), then data frames
  (JSON arrays under 1 MiB) holding only subscribed channels and symbols.
- One broadcast clock, as on the real feed: data is paced by event time `t` divided by
  `speed` from the first event on (0 = as fast as the slowest live client reads, with
  backpressure). A connected client that falls behind gets more events per frame; one that
  drops misses what is sent meanwhile, counted per key as `trades_missed`
  ("sent while disconnected").
- One live connection per API key: a second one is acked, then refused with
  `max_connections` and close 1008.
- Scripted faults (`Fault`, or `--fault kind:key=value,...` on the command line) to test
  clients against drops, refusals, stalls, slow-consumer kicks and malformed frames.
- A REST stub (aiohttp, on `rest_port`, by default the WebSocket port + 1):
  `/v2/aggs/ticker/{T}/prev`, `/v1/marketstatus/now`, `/v1/marketstatus/upcoming` in
  Polygon's JSON shapes, with `Authorization: Bearer KEY` or `?apiKey=KEY`; 401 without a
  key, 403 `NOT_AUTHORIZED` with a wrong one.

API keys are never logged or put in stats: accounts are labelled `key1`, `key2`, ...
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from collections import Counter, deque
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import msgspec
from aiohttp import web
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from actors.market.sessions import ET, local_date
from cluster.replay.faults import (
    AUTH_FAILED_MSG,
    AUTH_FAULTS,
    MALFORMED,
    MAX_CONNECTIONS_MSG,
    SLOW_CONSUMER_MSG,
    TERMINAL_FAULTS,
    Fault,
    parse_fault,
    status_frame,
)
from cluster.replay.rest import rest_app
from cluster.replay.tape import EventTape, FrameTape, Tape, Tick, open_tape
from config.constants import DEFAULT_REPLAY_PORT
from schemas.polygon import action_decoder

__all__ = ["Fault", "ReplayServer", "parse_fault"]

log = logging.getLogger("tickstock.replay_server")
# websockets logs frames at DEBUG, client auth frames (API keys) included: not for us.
wire_log = logging.getLogger("tickstock.replay_server.wire")
wire_log.setLevel(logging.INFO)

WS_PATH = "/stocks"
CHANNELS = frozenset({"T", "A", "AM", "Q", "LULD", "NOI", "FMV"})
CONNECTED = b'[{"ev":"status","status":"connected","message":"Connected Successfully"}]'
AUTH_SUCCESS = b'[{"ev":"status","status":"auth_success","message":"authenticated"}]'
MAX_FRAME_BYTES = 900_000  # under the client's 1 MiB default max_size
MERGE_MAX_EVENTS = 5_000  # events packed into one frame for a client that lags
SETTLE_TIMEOUT_S = 2.0


# -- subscriptions and accounts -------------------------------------------------------------


@dataclass
class Subscription:
    """Topics of one connection: wildcard channels plus symbols per channel."""

    wild: set[str] = field(default_factory=set)
    syms: dict[str, set[str]] = field(default_factory=dict)

    def add(self, chan: str, sym: str) -> None:
        if sym == "*":
            self.wild.add(chan)
        else:
            self.syms.setdefault(chan, set()).add(sym)

    def remove(self, chan: str, sym: str) -> None:
        if sym == "*":
            self.wild.discard(chan)
        else:
            self.syms.get(chan, set()).discard(sym)

    def topics(self) -> set[str]:
        """The subscription as Polygon topic strings."""
        out = {f"{c}.*" for c in self.wild}
        out.update(f"{c}.{s}" for c, syms in self.syms.items() for s in syms)
        return out

    def copy(self) -> Subscription:
        return Subscription(set(self.wild), {c: set(s) for c, s in self.syms.items()})

    def select(self, tick: Tick) -> tuple[list[bytes], int, bool]:
        """The subscribed events of a tick, their trade count, and whether all were kept."""
        wild = self.wild
        chans = tick.chans
        if wild and all(c in wild for c in chans):
            return tick.parts, chans.count("T"), True
        parts: list[bytes] = []
        trades = 0
        syms = self.syms
        for chan, sym, part in zip(chans, tick.syms, tick.parts, strict=True):
            if chan in wild or sym in syms.get(chan, ()):
                parts.append(part)
                trades += chan == "T"
        return parts, trades, len(parts) == len(chans)


@dataclass(eq=False)
class Conn:
    """One client connection."""

    id: int
    ws: ServerConnection
    key: str = ""
    sub: Subscription = field(default_factory=Subscription)
    fault: Fault | None = None
    pending: deque[tuple[bytes | None, list[bytes], int]] = field(default_factory=deque)
    wakeup: asyncio.Event = field(default_factory=asyncio.Event)
    drained: asyncio.Event = field(default_factory=asyncio.Event)
    writer: asyncio.Task[None] | None = None
    closing: bool = False
    stalled_until: float = 0.0
    frames_sent: int = 0
    events_sent: int = 0
    trades_sent: int = 0
    close_reason: str = ""


@dataclass
class Account:
    """Per API key: the last known subscription and what the feed did for it."""

    label: str
    subs: Subscription = field(default_factory=Subscription)
    live: Conn | None = None
    subscribed: bool = False
    trades_emitted: int = 0
    trades_sent: int = 0
    trades_missed: int = 0
    connections: int = 0
    refusals: list[float] = field(default_factory=list)  # loop time of max_connections kicks


@dataclass
class ConnectionRecord:
    """One connection attempt, for tests and stats (no key: the account label)."""

    at: float  # event loop time
    account: str
    outcome: str = "open"


# -- the server -----------------------------------------------------------------------------


class ReplayServer:
    """Polygon stocks WebSocket (+ REST stub) replaying recorded files; usable in-process."""

    def __init__(
        self,
        files: Sequence[str | Path],
        host: str = "127.0.0.1",
        port: int = DEFAULT_REPLAY_PORT,
        speed: float = 1.0,
        loop: bool = False,
        faults: Sequence[Fault] = (),
        *,
        rest_port: int | None = None,
        keys: Collection[str] | None = None,
        auth_timeout_s: float = 5.0,
        max_trades: int | None = None,
        tick_ms: float = 10.0,
        events_per_frame: int = 100,
        queue_frames: int = 2_000,
        start_at: str | None = None,
        tape: Tape | None = None,
    ) -> None:
        if speed < 0:
            raise ValueError("speed must be >= 0")
        self.tape = tape if tape is not None else open_tape(files, max_trades=max_trades)
        self.host = host
        self._port = port
        self._rest_port = port + 1 if rest_port is None and port else rest_port or 0
        self.speed = speed
        self.loop = loop
        self.keys = None if keys is None else frozenset(keys)
        self.auth_timeout_s = auth_timeout_s
        self.tick_ms = tick_ms
        self.events_per_frame = events_per_frame
        self.queue_frames = queue_frames if speed > 0 else 8
        self.start_ms = self._start_ms(start_at)
        self.faults: deque[Fault] = deque(faults)
        self.fired: list[str] = []
        self.accounts: dict[str, Account] = {}
        self.connections: list[ConnectionRecord] = []
        self.counts: Counter[str] = Counter()
        self.finished = asyncio.Event()
        self.clock_ms = self.tape.first_t  # the replay's event clock
        self._subscribed = asyncio.Event()
        self._reader = asyncio.Event()  # speed 0: some live client wants data
        self._conns: set[Conn] = set()
        self._next_id = 0
        self._ws: Server | None = None
        self._rest: web.AppRunner | None = None
        self._task: asyncio.Task[None] | None = None
        self._frames = 0
        self._events = 0
        self._max_events = 0

    # -- lifecycle --------------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The WebSocket port (the real one once started with port 0)."""
        return self._port

    @property
    def rest_port(self) -> int:
        """The REST port (the real one once started)."""
        return self._rest_port

    @property
    def feed(self) -> str:
        """`host:port` for `PolygonConfig.feed`."""
        return f"{self.host}:{self._port}"

    @property
    def rest_base(self) -> str:
        """The REST base URL for `PolygonConfig.rest_base`."""
        return f"http://{self.host}:{self._rest_port}"

    async def start(self) -> None:
        """Listen on the WebSocket and REST ports and start the broadcast clock."""
        self._ws = await serve(
            self._handle, self.host, self._port, process_request=self._route,
            max_size=2**20, server_header="tickstock-replay", logger=wire_log,
            compression=None,  # no permessage-deflate: cheaper at both ends, real backpressure
            close_timeout=1.0,
        )
        self._port = self._ws.sockets[0].getsockname()[1]
        runner = web.AppRunner(rest_app(self), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self._rest_port)
        await site.start()
        self._rest = runner
        self._rest_port = runner.addresses[0][1]
        self._task = asyncio.create_task(self._broadcast(), name="replay-broadcast")
        log.info("replay server on ws://%s/stocks (REST %s), speed %s", self.feed,
                 self.rest_base, self.speed)

    async def stop(self) -> None:
        """Close every connection (1001 going away) and stop listening."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for conn in list(self._conns):
            conn.closing = True
            with contextlib.suppress(Exception):
                await conn.ws.close(1001, "server shutting down")
        if self._ws is not None:
            self._ws.close()
            await self._ws.wait_closed()
        if self._rest is not None:
            await self._rest.cleanup()

    async def __aenter__(self) -> ReplayServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def add_fault(self, fault: Fault) -> None:
        """Append a fault to the script; arm it on the live connection if it has none."""
        self.faults.append(fault)
        if fault.kind in AUTH_FAULTS:
            return
        for conn in self._conns:
            if conn.fault is None and not conn.closing and conn.key and len(self.faults) == 1:
                conn.fault = self.faults.pop()
                conn.wakeup.set()
                return

    # -- views for tests and ops ------------------------------------------------------------

    def account(self, key: str) -> Account:
        """The account of an API key (created on first use)."""
        acct = self.accounts.get(key)
        if acct is None:
            acct = self.accounts[key] = Account(f"key{len(self.accounts) + 1}")
        return acct

    def subscriptions(self, key: str | None = None) -> set[str]:
        """The server-side subscription of a key (the only key when None)."""
        if key is None:
            if not self.accounts:
                return set()
            key = next(iter(self.accounts))
        acct = self.accounts.get(key)
        if acct is None:
            return set()
        return (acct.live.sub if acct.live is not None else acct.subs).topics()

    def live_connections(self) -> int:
        """Connections that passed auth and are not closing."""
        return sum(1 for c in self._conns if c.key and not c.closing)

    def stats(self) -> dict[str, Any]:
        """Counters (plain data, no keys)."""
        accounts = {
            a.label: {
                "subscriptions": len((a.live.sub if a.live else a.subs).topics()),
                "connected": a.live is not None,
                "connections": a.connections,
                "trades_emitted": a.trades_emitted,
                "trades_sent": a.trades_sent,
                "trades_missed": a.trades_missed,
                "max_connections_refusals": len(a.refusals),
            }
            for a in self.accounts.values()
        }
        return {
            "clock_ms": self.clock_ms,
            "finished": self.finished.is_set(),
            "connections": len(self.connections),
            "live": self.live_connections(),
            "frames": self._frames,
            "events": self._events,
            "events_per_frame": {
                "mean": self._events / self._frames if self._frames else 0.0,
                "max": self._max_events,
            },
            "trades_sent": sum(a.trades_sent for a in self.accounts.values()),
            "trades_missed": sum(a.trades_missed for a in self.accounts.values()),
            "accounts": accounts,
            "per_connection": [
                {"id": c.id, "account": self.account(c.key).label, "trades_sent": c.trades_sent,
                 "frames_sent": c.frames_sent, "events_sent": c.events_sent}
                for c in sorted(self._conns, key=lambda c: c.id) if c.key
            ],
            "faults_fired": list(self.fired),
            "counts": dict(self.counts),
        }

    # -- connection handling ----------------------------------------------------------------

    def _route(self, connection: ServerConnection, request: Request) -> Response | None:
        if request.path.split("?", 1)[0].rstrip("/") != WS_PATH:
            self.counts["bad_path"] += 1
            return Response(404, "Not Found", Headers({"Content-Type": "text/plain"}),
                            b"only /stocks is served here\n")
        return None

    async def _handle(self, ws: ServerConnection) -> None:
        self._next_id += 1
        conn = Conn(self._next_id, ws)
        self._conns.add(conn)
        record = ConnectionRecord(asyncio.get_running_loop().time(), "")
        self.connections.append(record)
        try:
            await ws.send(CONNECTED, text=True)
            key = await self._authenticate(conn, record)
            if key is not None:
                await self._serve(conn, key, record)
        except ConnectionClosed:
            pass
        finally:
            self._release(conn)

    async def _authenticate(self, conn: Conn, record: ConnectionRecord) -> str | None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.auth_timeout_s
        while True:
            try:
                msg = await asyncio.wait_for(conn.ws.recv(), max(0.0, deadline - loop.time()))
            except TimeoutError:
                record.outcome = "auth_timeout"
                await conn.ws.send(
                    status_frame("auth_timeout", "No authentication request received."))
                await conn.ws.close(1008, "auth timeout")
                return None
            try:
                action = action_decoder.decode(msg)
            except msgspec.DecodeError:
                self.counts["bad_action"] += 1
                await conn.ws.send(status_frame("error", "invalid action"))
                continue
            if action.action == "auth":
                return await self._check_auth(conn, record, action.params)
            await conn.ws.send(status_frame("error", "not authorized"))

    async def _check_auth(self, conn: Conn, record: ConnectionRecord, key: str) -> str | None:
        acct = self.account(key)
        record.account = acct.label
        acct.connections += 1
        head = self.faults[0] if self.faults else None
        if head is not None and head.kind == "drop_auth":
            self._fire(self.faults.popleft())
            record.outcome = "dropped_in_auth"
            conn.closing = True
            conn.ws.transport.abort()
            return None
        if head is not None and head.kind == "auth_failed":
            self.faults.popleft()
            if head.times > 1:
                self.faults.appendleft(replace(head, times=head.times - 1))
            self._fire(head)
            await self._fail_auth(conn, record)
            return None
        if not key or (self.keys is not None and key not in self.keys):
            await self._fail_auth(conn, record)
            return None
        await conn.ws.send(AUTH_SUCCESS, text=True)
        record.outcome = "authenticated"
        return key

    async def _fail_auth(self, conn: Conn, record: ConnectionRecord) -> None:
        record.outcome = "auth_failed"
        await conn.ws.send(status_frame("auth_failed", AUTH_FAILED_MSG))
        await conn.ws.close(1008, "authentication failed")

    async def _serve(self, conn: Conn, key: str, record: ConnectionRecord) -> None:
        acct = self.account(key)
        conn.key = key
        if acct.live is not None and not acct.live.closing:
            await self._refuse(conn, acct, record)
            return
        acct.live = conn
        conn.fault = self._next_fault()
        async for message in conn.ws:
            await self._on_action(conn, acct, message)

    def _next_fault(self) -> Fault | None:
        """The head of the script if it applies to an authenticated connection."""
        if self.faults and self.faults[0].kind not in AUTH_FAULTS:
            return self.faults.popleft()
        return None

    async def _refuse(self, conn: Conn, acct: Account, record: ConnectionRecord) -> None:
        """A second connection for a key: ack its subscribe, then refuse it (as Polygon does)."""
        with contextlib.suppress(TimeoutError):
            message = await asyncio.wait_for(conn.ws.recv(), 1.0)
            await self._ack(conn, message, Subscription())
        record.outcome = "max_connections"
        await self._kick_max_connections(conn, acct)

    async def _kick_max_connections(self, conn: Conn, acct: Account) -> None:
        conn.closing = True
        self._update_reader()
        acct.refusals.append(asyncio.get_running_loop().time())
        await conn.ws.send(status_frame("max_connections", MAX_CONNECTIONS_MSG))
        await conn.ws.close(1008, "max connections")

    async def _ack(self, conn: Conn, message: str | bytes, sub: Subscription) -> bool:
        try:
            action = action_decoder.decode(message)
        except msgspec.DecodeError:
            self.counts["bad_action"] += 1
            await conn.ws.send(status_frame("error", "invalid action"))
            return False
        if action.action not in ("subscribe", "unsubscribe"):
            await conn.ws.send(status_frame("error", f"unknown action {action.action[:32]!r}"))
            return False
        adding = action.action == "subscribe"
        for topic in filter(None, (t.strip() for t in action.params.split(","))):
            chan, dot, sym = topic.partition(".")
            if not dot or chan not in CHANNELS or not sym:
                await conn.ws.send(status_frame("error", f"invalid subscription: {topic[:64]}"))
                continue
            if adding:
                sub.add(chan, sym)
                await conn.ws.send(status_frame("success", f"subscribed to: {topic}"))
            else:
                sub.remove(chan, sym)
                await conn.ws.send(status_frame("success", f"unsubscribed to: {topic}"))
        return True

    async def _on_action(self, conn: Conn, acct: Account, message: str | bytes) -> None:
        fault = conn.fault
        if fault is not None and fault.kind == "no_acks":
            self._fire(fault)
            conn.fault = replace(fault, times=fault.times - 1) if fault.times > 1 else (
                self._next_fault())
            self.counts["ignored_actions"] += 1
            return
        if not await self._ack(conn, message, conn.sub):
            return
        acct.subs = conn.sub.copy()
        acct.subscribed = True
        self._subscribed.set()
        self._update_reader()
        if conn.writer is None:
            conn.writer = asyncio.create_task(self._write(conn, acct), name=f"replay-w{conn.id}")
        if conn.fault is not None and conn.fault.kind == "max_connections":
            self._fire(conn.fault)
            conn.fault = None
            await self._kick_max_connections(conn, acct)

    def _release(self, conn: Conn) -> None:
        conn.closing = True
        self._conns.discard(conn)
        acct = self.accounts.get(conn.key) if conn.key else None
        if acct is not None:
            self._miss_pending(conn, acct)
            if acct.live is conn:
                acct.live = None
                acct.subs = conn.sub.copy()
        conn.pending.clear()
        conn.drained.set()
        conn.wakeup.set()
        if conn.writer is not None:
            conn.writer.cancel()
        if conn.fault is not None:  # never fired on this connection: keep it for the next
            self.faults.appendleft(conn.fault)
            conn.fault = None
        self._update_reader()

    @staticmethod
    def _miss_pending(conn: Conn, acct: Account) -> None:
        """What was queued for `conn` and will never be sent: missed by its account."""
        for _, _, trades in conn.pending:
            acct.trades_missed += trades
        conn.pending.clear()

    def _update_reader(self) -> None:
        """Speed 0 replays only while some client is there to read."""
        if self.live_connections():
            self._reader.set()
        else:
            self._reader.clear()

    # -- writing ----------------------------------------------------------------------------

    async def _write(self, conn: Conn, acct: Account) -> None:
        try:
            while not conn.closing:
                fault = conn.fault
                if (fault is not None and fault.kind != "no_acks"
                        and conn.frames_sent >= fault.after_frames):
                    conn.fault = None
                    self._fire(fault)
                    await self._apply(conn, acct, fault)
                    if fault.kind not in TERMINAL_FAULTS:
                        conn.fault = self._next_fault()
                    continue
                if not conn.pending:
                    conn.wakeup.clear()
                    await conn.wakeup.wait()
                    continue
                # A client that lags a paced replay gets more events per frame, as on the
                # real feed; at speed 0 the backlog is the normal state: frames stay ticks.
                await self._send_pending(conn, acct, MERGE_MAX_EVENTS if self.speed > 0 else 0)
        except ConnectionClosed:
            pass

    async def _send_pending(self, conn: Conn, acct: Account, max_events: int) -> None:
        raw, parts, trades = conn.pending.popleft()
        if raw is None:
            parts = list(parts)
            size = sum(map(len, parts))
            while conn.pending and conn.pending[0][0] is None and len(parts) < max_events:
                _, more, n = conn.pending[0]
                extra = sum(map(len, more)) + len(more)
                if size + extra > MAX_FRAME_BYTES:
                    break
                conn.pending.popleft()
                parts.extend(more)
                trades += n
                size += extra
            raw = b"[" + b",".join(parts) + b"]"
        if len(conn.pending) < self.queue_frames:
            conn.drained.set()
        if asyncio.get_running_loop().time() < conn.stalled_until:
            acct.trades_missed += trades
            return
        try:
            await conn.ws.send(raw, text=True)
        except (ConnectionClosed, asyncio.CancelledError):
            acct.trades_missed += trades  # taken from the queue, the connection gone: missed
            raise
        conn.frames_sent += 1
        conn.events_sent += len(parts)
        conn.trades_sent += trades
        acct.trades_sent += trades
        self._frames += 1
        self._events += len(parts)
        self._max_events = max(self._max_events, len(parts))

    async def _apply(self, conn: Conn, acct: Account, fault: Fault) -> None:
        kind = fault.kind
        if kind == "drop":
            await self._drop(conn, acct, fault.code)
        elif kind == "stall":
            conn.stalled_until = asyncio.get_running_loop().time() + fault.seconds
        elif kind == "malformed":
            await conn.ws.send(MALFORMED[fault.what], text=True)
        elif kind == "slow_consumer":
            await self._slow_consumer(conn, acct, fault)
        elif kind == "max_connections":
            await self._kick_max_connections(conn, acct)

    async def _drop(self, conn: Conn, acct: Account, code: int) -> None:
        """Stop sending, let the client read what it was sent, then close or reset."""
        conn.closing = True
        self._update_reader()
        self._miss_pending(conn, acct)
        conn.drained.set()
        conn.close_reason = f"fault {code}"
        await self._settle(conn)
        if code == 1006:
            conn.ws.transport.abort()
        else:
            await conn.ws.close(code, "replay fault")

    async def _settle(self, conn: Conn) -> None:
        """Wait for a pong: the client has then read every frame sent before it."""
        with contextlib.suppress(TimeoutError, ConnectionClosed):
            pong = await conn.ws.ping()
            await asyncio.wait_for(pong, SETTLE_TIMEOUT_S)

    async def _slow_consumer(self, conn: Conn, acct: Account, fault: Fault) -> None:
        loop = asyncio.get_running_loop()
        for _ in range(fault.frames):
            deadline = loop.time() + 2.0
            while len(conn.pending) < fault.factor and loop.time() < deadline:
                conn.wakeup.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(conn.wakeup.wait(), deadline - loop.time())
            if conn.pending:
                await self._send_pending(conn, acct, MERGE_MAX_EVENTS)
        conn.closing = True
        await conn.ws.send(status_frame("slow_consumer", SLOW_CONSUMER_MSG))
        await self._drop(conn, acct, 1008)

    def _fire(self, fault: Fault) -> None:
        self.fired.append(fault.kind)
        log.info("replay fault fired: %s", fault)

    # -- the broadcast clock ----------------------------------------------------------------

    async def _broadcast(self) -> None:
        await self._subscribed.wait()
        loop = asyncio.get_running_loop()
        group_ms = int(self.tick_ms * self.speed) if self.speed > 0 else 0
        while True:
            origin_wall = loop.time()
            origin_t: int | None = None
            for tick in self._ticks(group_ms):
                if origin_t is None:
                    origin_t = tick.t
                if self.speed > 0:
                    delay = origin_wall + (tick.t - origin_t) / 1000 / self.speed - loop.time()
                    await asyncio.sleep(max(0.0, delay))
                else:
                    await self._reader.wait()
                self.clock_ms = tick.t
                await self._dispatch(tick)
            if not self.loop:
                break
            self.counts["loops"] += 1
        self.finished.set()
        log.info("replay finished: %s", {k: v for k, v in self.stats().items()
                                         if k in ("frames", "events", "trades_sent")})

    def _ticks(self, group_ms: int) -> Iterator[Tick]:
        # Only the recorded-data tapes can start late; other tapes (bench/loadgen.py) can't.
        if self.start_ms and isinstance(self.tape, EventTape | FrameTape):
            return self.tape.ticks(group_ms, self.events_per_frame, start_ms=self.start_ms)
        return self.tape.ticks(group_ms, self.events_per_frame)

    async def _dispatch(self, tick: Tick) -> None:
        for acct in list(self.accounts.values()):
            if not acct.subscribed:
                continue
            conn = acct.live
            if conn is not None and conn.writer is None:
                # A reconnect between its auth and its subscribe: the key misses this tick,
                # counted under the account's last subscription.
                conn = None
            sub = conn.sub if conn is not None else acct.subs
            if tick.parts:
                parts, trades, whole = sub.select(tick)
                if not parts:
                    continue
            else:  # an unparseable recorded frame: as-is to every subscriber
                parts, trades, whole = [], 0, True
            acct.trades_emitted += trades
            if conn is None or conn.closing:
                acct.trades_missed += trades
                continue
            raw = tick.verbatim if whole and tick.verbatim is not None else None
            await self._enqueue(conn, acct, (raw, parts, trades))

    async def _enqueue(
        self, conn: Conn, acct: Account, item: tuple[bytes | None, list[bytes], int]
    ) -> None:
        if self.speed == 0:
            while len(conn.pending) >= self.queue_frames and not conn.closing:
                conn.drained.clear()
                await conn.drained.wait()
            if conn.closing:
                acct.trades_missed += item[2]
                return
        elif len(conn.pending) >= self.queue_frames:
            acct.trades_missed += item[2]
            self.counts["slow_consumer_kicks"] += 1
            conn.closing = True
            asyncio.create_task(self._kick_slow(conn, acct))  # noqa: RUF006 - ends with the conn
            return
        conn.pending.append(item)
        conn.wakeup.set()

    async def _kick_slow(self, conn: Conn, acct: Account) -> None:
        with contextlib.suppress(ConnectionClosed):
            await conn.ws.send(status_frame("slow_consumer", SLOW_CONSUMER_MSG))
            await self._drop(conn, acct, 1008)

    # -- helpers ----------------------------------------------------------------------------

    def first_prices(self) -> dict[str, float]:
        """First price per symbol on the tape (the REST stub's previous close)."""
        return self.tape.first_prices()

    def first_t(self) -> int:
        """Event time of the tape's first event."""
        return self.tape.first_t

    def _start_ms(self, start_at: str | None) -> int:
        if not start_at or not self.tape.first_t:
            return 0
        day = local_date(self.tape.first_t)
        hh, mm = (int(x) for x in start_at.split(":")[:2])
        return int(dt.datetime.combine(day, dt.time(hh, mm), tzinfo=ET).timestamp() * 1000)

# -- command line ---------------------------------------------------------------------------
