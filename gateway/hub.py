"""The Socket.IO side of the gateway: connections, the emission loop, the heartbeat.

Contract (DESIGN §6): namespace `/`, path `/socket.io`; `stock_data` per user every emission
interval when non-empty; `status_update` every heartbeat; `session_reset` on a session change.
A connection is attached to its user's stream only after it received what it missed (resume
by `last_seq`, or a session snapshot), under the same lock that emission cycles take, so a
client never sees a gap, a duplicate or a payload out of order.

Error policy: the loops catch, log, count and continue (a dead queue actor must not kill the
gateway); `CancelledError` propagates; bad client input is counted and ignored.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

import socketio

from config.settings import GatewayConfig
from gateway.auth import Authenticator, token_from_headers
from gateway.deps import GatewayDeps
from gateway.emitter import Delivery, Emitter, SessionReset
from gateway.wire import MsgspecJson
from schemas.api import UserView

log = logging.getLogger(__name__)

NAMESPACE = "/"
SOCKETIO_PATH = "socket.io"
_CONNECT_WAIT_STEPS = 200  # loop turns to wait for python-socketio to finish a handshake


def user_room(user_id: str) -> str:
    """The Socket.IO room of all connections of one user."""
    return f"user:{user_id}"


@dataclass(slots=True)
class _Conn:
    user_id: str
    last_seq: int | None
    joined: bool = False


def parse_last_seq(auth: Any) -> tuple[int | None, bool]:
    """`auth["last_seq"]` as a non-negative int (or None), and whether it was malformed."""
    if not isinstance(auth, dict) or auth.get("last_seq") is None:
        return None, False
    value = auth["last_seq"]
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return None, True
    return value, False


class Hub:
    """Owns the Socket.IO server, the emitter and the two background loops."""

    def __init__(
        self,
        config: GatewayConfig,
        deps: GatewayDeps,
        auth: Authenticator,
        metrics: Counter[str],
        *,
        seq_base: int | None = None,
    ) -> None:
        self._cfg = config
        self._deps = deps
        self._auth = auth
        self.metrics = metrics
        # Seqs start above wall-clock ms, so a gateway restart never reissues an old seq.
        base = int(time.time() * 1000) if seq_base is None else seq_base
        self.emitter = Emitter(config, seq_base=base)
        self.sio = socketio.AsyncServer(
            async_mode="aiohttp", json=MsgspecJson, logger=False, engineio_logger=False
        )
        self._conns: dict[str, _Conn] = {}
        self._lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[None]] = set()
        self.last_cycle_wall = 0.0
        self.last_status: dict[str, Any] = {}
        self.sio.on("connect", self._on_connect)
        self.sio.on("disconnect", self._on_disconnect)

    @property
    def connected(self) -> int:
        """Open Socket.IO connections (attached or still catching up)."""
        return len(self._conns)

    # -- connections --------------------------------------------------------------------------

    async def _on_connect(self, sid: str, environ: dict[str, Any], auth: Any = None) -> None:
        token = auth.get("token") if isinstance(auth, dict) else None
        if not isinstance(token, str):
            token = token_from_headers(environ)
        try:
            principal = await self._auth.resolve(token)
        except asyncio.CancelledError:
            raise
        except Exception:  # the account store is down: refuse rather than serve anonymously
            log.warning("token check failed; refusing the connection", exc_info=True)
            self.metrics["auth_errors"] += 1
            principal = None
        if principal is None:
            self.metrics["connections_refused"] += 1
            raise socketio.exceptions.ConnectionRefusedError("authentication required")
        last_seq, malformed = parse_last_seq(auth)
        if malformed:
            self.metrics["rejected_last_seq"] += 1
        self._conns[sid] = _Conn(principal.user_id, last_seq)
        self.metrics["connections"] += 1
        self._spawn(self._join(sid))

    async def _on_disconnect(self, sid: str, reason: Any = None) -> None:
        conn = self._conns.pop(sid, None)
        if conn is not None and conn.joined:
            self.emitter.detach(conn.user_id)

    async def _join(self, sid: str) -> None:
        """Send a new connection what it missed, then attach it to live payloads."""
        for _ in range(_CONNECT_WAIT_STEPS):  # the CONNECT ack is sent after our handler returns
            if self.sio.manager.is_connected(sid, NAMESPACE) or sid not in self._conns:
                break
            await asyncio.sleep(0.005)
        conn = self._conns.get(sid)
        if conn is None:
            return
        view = await self._fetch_view(conn.user_id)
        async with self._lock:
            if sid not in self._conns:
                return
            self.emitter.attach(conn.user_id, view)
            conn.joined = True
            missed = self.emitter.catch_up(conn.user_id, conn.last_seq)
            for payload in missed:
                await self.sio.emit("stock_data", payload, to=sid)
            self._count(len(missed), missed.events)
            await self.sio.enter_room(sid, user_room(conn.user_id))

    async def _fetch_view(self, user_id: str) -> UserView | None:
        try:
            return await self._deps.user_view(user_id)
        except asyncio.CancelledError:
            raise
        except Exception:
            self.metrics["view_errors"] += 1
            log.warning("user_view(%s) failed; showing all tickers", user_id, exc_info=True)
            return None

    def apply_view(self, view: UserView) -> None:
        """Use a user's changed selection or filters from the next cycle on."""
        self.emitter.set_view(view.user_id, view)

    # -- loops --------------------------------------------------------------------------------

    async def emission_loop(self) -> None:
        """Pull events every emission interval and deliver them."""
        loop = asyncio.get_running_loop()
        interval = self._cfg.emission_interval_s
        while True:
            started = loop.time()
            await self.cycle()
            await asyncio.sleep(max(0.0, interval - (loop.time() - started)))

    async def cycle(self) -> None:
        """One emission cycle: collect, advance the emitter, emit."""
        try:
            collected = await self._deps.collect(
                self._cfg.collect_max_events, self._cfg.emission_interval_s
            )
        except asyncio.CancelledError:
            raise
        except Exception:
            self.metrics["collect_errors"] += 1
            log.warning("collect failed", exc_info=True)
            return
        async with self._lock:
            for step in self.emitter.advance(collected):
                if isinstance(step, SessionReset):
                    self.metrics["session_resets"] += 1
                    await self.sio.emit("session_reset", step.to_dict())
                else:
                    await self._deliver(step)
        self.metrics["cycles"] += 1
        self.last_cycle_wall = time.time()

    async def _deliver(self, step: Delivery) -> None:
        if type(self.sio.manager) is socketio.AsyncManager:
            await self._send_direct(step)
        else:  # a message-queue manager must see every emit (other gateways' clients)
            await asyncio.gather(
                *(
                    self.sio.emit("stock_data", payload, room=user_room(user_id))
                    for user_id, payload in step.payloads.items()
                )
            )
        self._count(len(step.payloads), step.events)

    async def _send_direct(self, step: Delivery) -> None:
        """Encode each user's packet once and queue it on each of their connections.

        What `sio.emit(..., room=...)` does, minus a task and a wait per recipient: with
        1,000 users that bookkeeping cost several times the payloads themselves.
        """
        manager = self.sio.manager
        for user_id, payload in step.payloads.items():
            packet = self.sio.packet_class(
                socketio.packet.EVENT, namespace=NAMESPACE, data=["stock_data", payload]
            )
            encoded = packet.encode()
            parts = encoded if isinstance(encoded, list) else [encoded]
            for _sid, eio_sid in manager.get_participants(NAMESPACE, user_room(user_id)):
                for part in parts:
                    await self.sio.eio.send(eio_sid, part)

    def _count(self, payloads: int, events: int) -> None:
        self.metrics["emitted"] += payloads
        self.metrics["emitted_events"] += events

    async def heartbeat_loop(self) -> None:
        """Broadcast `status_update` every heartbeat interval."""
        while True:
            await self.heartbeat()
            await asyncio.sleep(self._cfg.heartbeat_interval_s)

    async def heartbeat(self) -> None:
        """Send one `status_update` to every connection."""
        try:
            system = await asyncio.wait_for(
                self._deps.system_status(), self._cfg.heartbeat_interval_s
            )
        except asyncio.CancelledError:
            raise
        except Exception:
            self.metrics["status_errors"] += 1
            system = {"feed": "unknown", "error": "system status unavailable"}
        self.last_status = system
        await self.sio.emit("status_update", self.status_message(system))
        self.metrics["status_updates"] += 1

    def status_message(self, system: dict[str, Any]) -> dict[str, Any]:
        """The `status_update` payload."""
        return {
            "session": self.emitter.session,
            "session_date": self.emitter.session_date,
            "feed": system.get("feed", "unknown"),
            "lag_ms": system.get("lag_ms"),
            "ticks_per_s": system.get("ticks_per_s"),
            "events_per_s": system.get("events_per_s"),
            "watermark": self.emitter.watermark,
            "server_time": int(time.time() * 1000),
            "connected": self.connected,
            "system": system,
        }

    # -- lifecycle ----------------------------------------------------------------------------

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        """Cancel join tasks and disconnect every client."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for sid in list(self._conns):
            await self.sio.disconnect(sid)

    def stats(self) -> dict[str, Any]:
        """Plain-data gateway state (metrics, emitter, connections)."""
        return {
            "connected": self.connected,
            "last_cycle_age_s": time.time() - self.last_cycle_wall
            if self.last_cycle_wall
            else None,
            "dropped": self.emitter.dropped,
            "emitter": self.emitter.stats(),
            "counters": dict(self.metrics),
        }
