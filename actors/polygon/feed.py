"""`PolygonFeed`: the official polygon `WebSocketClient`, supervised (DESIGN §4, §11).

The client (polygon-api-client 1.16.3) has known failure modes (docs/polygon.md §1, §6);
this module owns the reconnect loop and guards each:

- a fresh client per connection (`max_reconnects=0`, and websockets' own handshake retries
  disabled through `reconnect_delays`), so *every* end of `connect()` comes back here:
  a drop (1006/1011...), the silent return on close 1000/1001, an `AuthError`, a handshake
  failure. Backoff is exponential with jitter; its counter resets after `healthy_reset_s`
  of uptime;
- the subscription set lives here, not in the client: after each (re)connect the whole set
  is sent (in ≤ 1 MB messages) as soon as auth succeeds, so a double drop cannot lose it,
  and the client's wildcard prefix bug never applies. Each topic must be acked
  (`success` "subscribed to: X") within `ack_timeout_s`: missing acks are re-sent once,
  then the connection is recycled;
- `max_connections` (a status frame, or a 1008 close without another reason) cools down for
  `max_connections_cooldown_s` (+ up to 25 % jitter) before the next attempt;
- `auth_failed` sets state `auth_failed` and waits `auth_retry_s` (+ jitter) before trying
  again: a wrong key is never retried in a hot loop (set a large value to effectively stop);
- a staleness watchdog: no frame for `stale_after_s` while the market session (on wall time:
  the one wall-time decision) is PRE, REGULAR or AFTER recycles the connection;
- socket options `max_size`, `ping_interval`, `open_timeout` are passed to `connect()`.

The processor only stamps the receive time and hands the raw frame on (a callback, or a
bounded queue read through `frames()`); decoding happens elsewhere. The API key never
appears in a log line, a status, an exception text or the stats.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Generator, Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import msgspec
from polygon import WebSocketClient
from polygon.exceptions import AuthError
from websockets.exceptions import ConnectionClosed

from actors.market.sessions import SessionClock
from config.settings import PolygonConfig
from schemas.events import MarketSession
from schemas.polygon import StatusHead, encoder, raw_list_decoder, status_head_decoder

log = logging.getLogger("tickstock.polygon")
# websockets logs every frame at DEBUG, the auth frame (with the key) included: keep its
# logger for our connections at INFO whatever the root level is.
wire_log = logging.getLogger("tickstock.polygon.wire")
wire_log.setLevel(logging.INFO)

SUBSCRIBE_MAX_BYTES = 1_000_000 - 64  # one subscribe message stays under Polygon's 1 MB
WATCH_INTERVAL_S = 0.1
JITTER = 0.25
REFUSED_CODES = frozenset({1008})
MARKET_SESSIONS = frozenset({MarketSession.PRE, MarketSession.REGULAR, MarketSession.AFTER})

FrameCallback = Callable[[int, str | bytes], None]
STOP_TIMEOUT_S = 2.0  # bound on closing the socket and ending the supervisor at stop()


class FeedState(StrEnum):
    CONNECTING = "connecting"
    CONNECTED = "connected"
    AUTH_FAILED = "auth_failed"
    STALE = "stale"
    STOPPED = "stopped"


class HandshakeFailedError(ConnectionError):
    """The WebSocket handshake failed (refused, HTTP error, TLS, timeout)."""


def _no_internal_retry() -> Generator[float]:
    """`reconnect_delays` for websockets: raise instead of retrying, so we decide."""
    raise HandshakeFailedError("websocket handshake failed")
    yield 0.0  # pragma: no cover - makes this a generator

_encode = encoder.encode


def default_market_hours(wall_ms: int) -> bool:
    """True while a US market session (PRE/REGULAR/AFTER) is on, by the wall clock."""
    return SessionClock().session_at(wall_ms).session in MARKET_SESSIONS


def wall_clock_ms() -> int:
    """Unix ms now (receive stamps and the staleness watchdog only)."""
    return time.time_ns() // 1_000_000


def topic_batches(topics: Iterable[str], limit: int = SUBSCRIBE_MAX_BYTES) -> list[str]:
    """Comma-joined topic lists, each at most `limit` bytes."""
    out: list[str] = []
    current: list[str] = []
    size = 0
    for topic in sorted(topics):
        extra = len(topic.encode()) + (1 if current else 0)
        if current and size + extra > limit:
            out.append(",".join(current))
            current, size = [], 0
            extra = len(topic.encode())
        current.append(topic)
        size += extra
    if current:
        out.append(",".join(current))
    return out


@dataclass
class _Connection:
    """What the feed knows about one connection attempt."""

    started: float  # loop time
    client: WebSocketClient | None = None
    authed_at: float | None = None
    sent: set[str] = field(default_factory=set)  # topics in effect on this connection
    pending: dict[str, float] = field(default_factory=dict)  # topic -> ack deadline
    resent: bool = False
    refused: str = ""  # max_connections / auth_failed seen in a status frame
    statuses: set[str] = field(default_factory=set)
    kill_reason: str = ""
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    sync_task: asyncio.Task[None] | None = None


@dataclass
class Outcome:
    """How a connection ended."""

    reason: str  # closed / dropped / auth_failed / max_connections / handshake_failed / ...
    detail: str = ""
    uptime_s: float = 0.0


class _SupervisedClient(WebSocketClient):  # type: ignore[misc]
    """The official client; its post-auth subscribe step hands control to the feed.

    `connect()` calls `_subscribe` exactly once per connection, right after a successful auth
    (the client's `schedule_resub` starts True and we never call `subscribe()`), so it is the
    hook where the feed sends its own, complete subscription set.
    """

    def __init__(self, on_auth: Callable[[], Awaitable[None]], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._on_auth = on_auth

    async def _subscribe(self, topics: Any) -> None:
        await self._on_auth()

    async def _unsubscribe(self, topics: Any) -> None:
        return None


class PolygonFeed:
    """A supervised Polygon stocks WebSocket feed delivering raw frames with receive times."""

    def __init__(
        self,
        cfg: PolygonConfig,
        on_frame: FrameCallback | None = None,
        *,
        market_hours: Callable[[int], bool] = default_market_hours,
        wall_ms: Callable[[], int] = wall_clock_ms,
        queue_frames: int | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.cfg = cfg
        self._key = cfg.api_key
        self._on_frame = on_frame
        self._market_hours = market_hours
        self._wall_ms = wall_ms
        self._queue_limit = queue_frames or cfg.queue_max_frames
        self._queue: asyncio.Queue[tuple[int, str | bytes] | None] = asyncio.Queue()
        self._space = asyncio.Event()
        self._rng = rng or random.Random()
        self._desired: set[str] = set()
        self._conn: _Connection | None = None
        self._task: asyncio.Task[None] | None = None
        self._state = FeedState.STOPPED
        self._stopping = False
        self._wake = asyncio.Event()
        self.counts: Counter[str] = Counter()
        self.drops: Counter[str] = Counter()
        self.statuses: Counter[str] = Counter()
        self.rejected: Counter[str] = Counter()
        self._frames = 0
        self._bytes = 0
        self._last_frame_ms = 0
        self._last_frame_at = 0.0  # loop time
        self._last_error = ""
        self._next_attempt_at = 0.0
        self.attempt_times: list[float] = []  # loop time of each connection attempt

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the supervisor (returns at once; connecting happens in the background)."""
        if self._task is not None and not self._task.done():
            return
        self._stopping = False
        self._state = FeedState.CONNECTING
        self._task = asyncio.create_task(self._run(), name="polygon-feed")

    async def stop(self) -> None:
        """Close the connection and stop; `frames()` ends after the queued frames."""
        self._stopping = True
        self._wake.set()
        conn = self._conn
        if conn is not None and conn.client is not None:
            # Close the socket first: the client's recv loop swallows a bare cancel.
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.client.close(), STOP_TIMEOUT_S)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                await asyncio.wait_for(self._task, STOP_TIMEOUT_S)
            self._task = None
        self._state = FeedState.STOPPED
        self._queue.put_nowait(None)

    async def frames(self) -> AsyncIterator[tuple[int, str | bytes]]:
        """Raw frames `(recv_ms, frame)` in arrival order, until `stop()`."""
        while True:
            item = await self._queue.get()
            self._space.set()
            if item is None:
                return
            yield item

    @property
    def state(self) -> FeedState:
        """The feed's state."""
        return self._state

    # -- subscriptions ----------------------------------------------------------------------

    def set_subscriptions(
        self, tickers: Iterable[str], channels: Iterable[str] | None = None
    ) -> None:
        """Subscribe to exactly `channels` × `tickers` (`"*"` = all); applied live as a diff."""
        chans = tuple(channels) if channels is not None else self.cfg.channels
        self._desired = {f"{c}.{t.strip()}" for c in chans for t in tickers if t.strip()}
        conn = self._conn
        if conn is not None and conn.authed_at is not None:
            self._schedule_sync(conn)

    def subscriptions(self) -> set[str]:
        """The wanted topics (kept across reconnects)."""
        return set(self._desired)

    # -- stats ------------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """Counters and state (plain data; never the key)."""
        loop_now = self._loop_time()
        conn = self._conn
        uptime = 0.0
        if conn is not None and conn.authed_at is not None and self._state == FeedState.CONNECTED:
            uptime = loop_now - conn.authed_at
        return {
            "state": self._state.value,
            "attempts": self.counts["attempts"],
            "connects": self.counts["connects"],
            "reconnects": self.counts["reconnects"],
            "cooldowns": self.counts["cooldowns"],
            "resubscribes": self.counts["resubscribes"],
            "acks": self.counts["acks"],
            "acks_pending": len(conn.pending) if conn is not None else 0,
            "subscriptions": len(self._desired),
            "frames": self._frames,
            "bytes": self._bytes,
            "last_frame_ms": self._last_frame_ms,
            "queue_depth": self._queue.qsize(),
            "uptime_s": round(uptime, 3),
            "next_attempt_in_s": round(max(0.0, self._next_attempt_at - loop_now), 3),
            "drops": dict(self.drops),
            "statuses": dict(self.statuses),
            "rejected": dict(self.rejected),
            "last_error": self._last_error,
        }

    # -- the supervisor ---------------------------------------------------------------------

    async def _run(self) -> None:
        failures = 0
        while not self._stopping:
            self._state = FeedState.CONNECTING
            outcome = await self._connect_once()
            if self._stopping:
                break
            if outcome.uptime_s >= self.cfg.healthy_reset_s:
                failures = 0
            failures += 1
            self.drops[outcome.reason] += 1
            self.counts["reconnects"] += 1
            delay = self._delay(outcome, failures)
            self._last_error = self._redact(f"{outcome.reason}: {outcome.detail}".rstrip(": "))
            log.warning("polygon feed %s; next attempt in %.1f s", self._last_error, delay)
            await self._sleep(delay)

    def _delay(self, outcome: Outcome, failures: int) -> float:
        cfg = self.cfg
        if outcome.reason == "auth_failed":
            self._state = FeedState.AUTH_FAILED
            return cfg.auth_retry_s * (1 + self._rng.random() * JITTER)
        if outcome.reason == "max_connections":
            self.counts["cooldowns"] += 1
            return cfg.max_connections_cooldown_s * (1 + self._rng.random() * JITTER)
        if outcome.reason == "stale":
            self._state = FeedState.STALE
        doublings = min(failures - 1, 32)  # a day-long outage must not overflow the float
        step: float = min(cfg.reconnect_max_s, cfg.reconnect_initial_s * 2.0**doublings)
        return step * (1 - JITTER + self._rng.random() * JITTER)

    async def _sleep(self, delay: float) -> None:
        self._next_attempt_at = self._loop_time() + delay
        self._wake.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), delay)

    async def _connect_once(self) -> Outcome:
        loop = asyncio.get_running_loop()
        conn = _Connection(started=loop.time())
        self._conn = conn
        self.counts["attempts"] += 1
        self.attempt_times.append(conn.started)
        try:
            client = _SupervisedClient(
                lambda: self._after_auth(conn), api_key=self._key, feed=self.cfg.feed,
                market="stocks", raw=True, secure=self.cfg.secure, max_reconnects=0,
            )
        except Exception as e:  # a bad feed string or key type: report, back off, retry
            return Outcome("error", f"{type(e).__name__}: {e}")
        conn.client = client
        task = asyncio.create_task(client.connect(
            self._process, close_timeout=1, reconnect_delays=_no_internal_retry,
            max_size=self.cfg.max_frame_bytes, ping_interval=self.cfg.ping_interval_s,
            ping_timeout=self.cfg.ping_interval_s, open_timeout=self.cfg.open_timeout_s,
            logger=wire_log,
        ), name="polygon-connect")
        watchdog = asyncio.create_task(self._watch(conn, task), name="polygon-watchdog")
        try:
            await asyncio.wait({task})
        finally:
            watchdog.cancel()
            if not task.done():
                task.cancel()
                await asyncio.wait({task})
            if not task.cancelled():
                task.exception()  # retrieved here; classified below
            if conn.sync_task is not None:
                conn.sync_task.cancel()
        outcome = self._outcome(conn, task)
        if conn.authed_at is not None:
            outcome.uptime_s = loop.time() - conn.authed_at
        return outcome

    def _outcome(self, conn: _Connection, task: asyncio.Task[None]) -> Outcome:
        if conn.kill_reason:
            return Outcome(conn.kill_reason)
        if task.cancelled():
            return Outcome("cancelled")
        exc = task.exception()
        if exc is None:  # connect() returned: a clean close (1000/1001) or our close()
            code = getattr(conn.client.websocket if conn.client else None, "close_code", None)
            if conn.refused:
                return Outcome(conn.refused, f"status {conn.refused}, close {code}")
            return Outcome("closed", f"close code {code}")
        if isinstance(exc, AuthError):
            return Outcome("auth_failed", f"server said {str(exc)[:200]!r}")
        if isinstance(exc, HandshakeFailedError):
            cause = exc.__context__
            return Outcome("handshake_failed", f"{type(cause).__name__}: {cause}"[:300])
        if isinstance(exc, ConnectionClosed):
            code = exc.rcvd.code if exc.rcvd is not None else 1006
            if conn.refused:
                return Outcome(conn.refused, f"close {code}")
            if code in REFUSED_CODES and not conn.statuses & {"slow_consumer", "force_disconnect"}:
                return Outcome("max_connections", f"close {code} (policy violation)")
            return Outcome("dropped", f"close {code}")
        return Outcome("error", f"{type(exc).__name__}: {exc}"[:300])

    # -- per connection ---------------------------------------------------------------------

    async def _after_auth(self, conn: _Connection) -> None:
        """Right after auth: send the whole wanted set (never trust the client to keep it)."""
        conn.authed_at = self._loop_time()
        self._last_frame_at = conn.authed_at
        self.counts["connects"] += 1
        self._state = FeedState.CONNECTED
        log.info("polygon feed connected to %s (%d topics)", self.cfg.feed, len(self._desired))
        async with conn.lock:
            await self._apply_diff(conn)
        if conn.sent != self._desired:
            self._schedule_sync(conn)

    def _schedule_sync(self, conn: _Connection) -> None:
        if conn.sync_task is None or conn.sync_task.done():
            conn.sync_task = asyncio.create_task(self._sync(conn), name="polygon-subscribe")

    async def _sync(self, conn: _Connection) -> None:
        with contextlib.suppress(ConnectionClosed):
            while conn.sent != self._desired:
                async with conn.lock:
                    await self._apply_diff(conn)

    async def _apply_diff(self, conn: _Connection) -> None:
        desired = set(self._desired)
        add = desired - conn.sent
        remove = conn.sent - desired
        if add:  # expect the acks before sending: they may arrive before send() returns
            deadline = self._loop_time() + self.cfg.ack_timeout_s
            conn.pending.update(dict.fromkeys(add, deadline))
            await self._send(conn, "subscribe", add)
        if remove:
            await self._send(conn, "unsubscribe", remove)
            for topic in remove:
                conn.pending.pop(topic, None)
        conn.sent = desired

    async def _send(self, conn: _Connection, action: str, topics: Iterable[str]) -> None:
        ws = conn.client.websocket if conn.client is not None else None
        if ws is None:
            raise ConnectionError("no websocket")
        for params in topic_batches(topics):
            await ws.send(_encode({"action": action, "params": params}).decode())
            self.counts[f"{action}_messages"] += 1

    async def _watch(self, conn: _Connection, task: asyncio.Task[None]) -> None:
        """Kill a connection that never authenticates, misses acks or goes stale."""
        cfg = self.cfg
        while not task.done():
            await asyncio.sleep(WATCH_INTERVAL_S)
            now = self._loop_time()
            reason = ""
            if conn.authed_at is None:
                if now - conn.started > cfg.open_timeout_s + cfg.ack_timeout_s:
                    reason = "handshake_timeout"
            elif await self._acks_failed(conn, now):
                reason = "ack_timeout"
            elif (now - self._last_frame_at > cfg.stale_after_s
                  and self._market_hours(self._wall_ms())):
                reason = "stale"
            if reason:
                conn.kill_reason = reason
                task.cancel()
                return

    async def _acks_failed(self, conn: _Connection, now: float) -> bool:
        expired = [t for t, deadline in conn.pending.items() if deadline <= now]
        if not expired:
            return False
        if conn.resent:
            return True
        conn.resent = True
        self.counts["resubscribes"] += 1
        log.warning("polygon feed: %d subscribe acks missing; re-sending", len(expired))
        with contextlib.suppress(ConnectionClosed, ConnectionError):
            async with conn.lock:
                await self._send(conn, "subscribe", expired)
        deadline = now + self.cfg.ack_timeout_s
        for topic in expired:
            conn.pending[topic] = deadline
        return False

    # -- the processor (hot path) -----------------------------------------------------------

    async def _process(self, frame: str | bytes) -> None:
        """Stamp and hand on one raw frame; look into status frames only (rare, small)."""
        recv_ms = self._wall_ms()
        self._frames += 1
        self._bytes += len(frame)
        self._last_frame_ms = recv_ms
        self._last_frame_at = self._loop_time()
        if '"status"' in frame if isinstance(frame, str) else b'"status"' in frame:
            self._on_status_frame(frame)
        if self._on_frame is not None:
            try:
                self._on_frame(recv_ms, frame)
            except Exception:
                self.rejected["callback_error"] += 1
                log.exception("polygon feed: frame callback failed")
            return
        while self._queue.qsize() >= self._queue_limit:
            if self.cfg.overflow == "drop":
                self.rejected["queue_overflow"] += 1
                return
            self.counts["backpressure_waits"] += 1
            self._space.clear()
            await self._space.wait()  # stop reading the socket until the decoder catches up
        self._queue.put_nowait((recv_ms, frame))

    def _on_status_frame(self, frame: str | bytes) -> None:
        try:
            items = raw_list_decoder.decode(frame)
        except msgspec.DecodeError:
            return  # not ours to judge: the decoder counts malformed frames
        conn = self._conn
        for raw in items:
            try:
                head = status_head_decoder.decode(raw)
            except msgspec.DecodeError:
                continue
            if head.ev != "status":
                continue
            self.statuses[head.status] += 1
            if conn is not None:
                self._on_status(conn, head)

    def _on_status(self, conn: _Connection, head: StatusHead) -> None:
        conn.statuses.add(head.status)
        if head.status == "success":
            _, sep, topic = head.message.partition("subscribed to: ")
            if (sep and not head.message.startswith("un")
                    and conn.pending.pop(topic.strip(), None) is not None):
                self.counts["acks"] += 1
        elif head.status in ("max_connections", "auth_failed"):
            conn.refused = head.status
            log.error("polygon feed refused: %s", self._redact(head.message[:200]))
        elif head.status in ("slow_consumer", "force_disconnect", "error"):
            log.warning("polygon feed status %s: %s", head.status, self._redact(head.message[:200]))

    # -- helpers ----------------------------------------------------------------------------

    def _redact(self, text: str) -> str:
        return text.replace(self._key, "***") if self._key else text

    @staticmethod
    def _loop_time() -> float:
        try:
            return asyncio.get_running_loop().time()
        except RuntimeError:
            return time.monotonic()
