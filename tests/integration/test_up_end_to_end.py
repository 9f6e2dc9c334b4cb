"""`tickstock up` end to end: the real CLI, real Ray, real Socket.IO clients.

- The default command (synthetic source) delivers `stock_data` with events within 15 s.
- A speed-0 replay of the LOBSTER AAPL day delivers every high/low event that the HighLow
  engine finds when run directly over the same file: same ids, prices and order per ticker.
- Ctrl-C (SIGINT) stops everything cleanly: exit code 0, no leftover processes.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import socketio

from actors.detection.engine import DetectorEngine
from actors.sources.readers import read_file
from config.detection import DetectionConfig
from schemas.batches import TradeBatch
from tests.conftest import eventually, wait_for

pytestmark = pytest.mark.slow

LOBSTER_AAPL = "lobster_2012-06-21/AAPL_2012-06-21_34200000_57600000_message_1.csv.gz"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Up:
    """`tickstock up ...` in a subprocess, with its output captured to a file."""

    def __init__(self, args: list[str], tmp: Path) -> None:
        self.port = free_port()
        self.log = tmp / "up.log"
        env = {**os.environ, "TICKSTOCK_DATA_DIR": str(tmp), "RAY_AUTH_MODE": "disabled",
               "PYTHONUNBUFFERED": "1"}
        env.pop("RAY_ADDRESS", None)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "cluster.cli", "up", "--port", str(self.port), "--no-status",
             *args],
            stdout=self.log.open("w"), stderr=subprocess.STDOUT, env=env,
            start_new_session=True,
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    async def wait_up(self, timeout: float = 90.0) -> None:
        def ready() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"tickstock up exited early:\n{self.output()}")
            return "TickStock is up" in self.output()

        await eventually(ready, timeout=timeout, interval=0.2)

    def stop(self, timeout: float = 60.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                return self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                raise
        return int(self.proc.returncode)


class Collector:
    """A Socket.IO client that keeps every `stock_data` payload."""

    def __init__(self) -> None:
        self.sio = socketio.AsyncClient(reconnection=False)
        self.payloads: list[dict[str, Any]] = []
        self.statuses: list[dict[str, Any]] = []
        self.sio.on("stock_data", self.payloads.append)
        self.sio.on("status_update", self.statuses.append)

    async def connect(self, url: str) -> None:
        await self.sio.connect(url, transports=["websocket"], wait_timeout=10)

    def events(self, *lists: str) -> list[dict[str, Any]]:
        out = []
        for payload in self.payloads:
            for name in lists:
                out.extend(payload.get(name, []))
        return out


def direct_highlow_events(path: Path) -> list[Any]:
    engine = DetectorEngine(DetectionConfig(), 0)
    events = []
    for batch in read_file(path):
        assert isinstance(batch, TradeBatch)
        events.extend(engine.process_trades(batch))
    events.extend(engine.flush())
    return [e for e in events if e.kind in ("high", "low")]


def session_processes(sid: int) -> list[str]:
    """Processes still in the session `tickstock up` led (Ray's raylet, GCS, workers...)."""
    out = subprocess.run(["ps", "-eo", "sid=,pid=,args="], capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if line.split(None, 1)[0] == str(sid)]


async def test_default_up_delivers_events_within_15_s(tmp_path: Path) -> None:
    up = Up(["--rate", "3000"], tmp_path)
    try:
        await up.wait_up()
        client = Collector()
        await client.connect(up.url)
        started = time.monotonic()
        await eventually(lambda: client.events("highs", "lows"), timeout=15)
        assert time.monotonic() - started <= 15
        payload = client.payloads[0]
        assert {"seq", "session", "highs", "lows", "surging", "trending"} <= payload.keys()
        await eventually(lambda: client.statuses, timeout=10)
        async with aiohttp.ClientSession() as http, http.get(f"{up.url}/metrics") as resp:
            assert resp.status == 200
            metrics = await resp.text()
        assert "tickstock_feed_up 1" in metrics
        assert "tickstock_clients_connected 1" in metrics
        await client.sio.disconnect()
    finally:
        code = up.stop()
    assert code == 0, up.output()
    assert "Stopped." in up.output()
    # Ctrl-C leaves nothing behind: every process of the run's session is gone.
    wait_for(lambda: not session_processes(up.proc.pid), timeout=30, interval=0.5)


async def test_replay_delivers_every_highlow_event_the_engine_finds(
    tmp_path: Path, real_data_dir: Path
) -> None:
    path = real_data_dir / LOBSTER_AAPL
    expected = await asyncio.to_thread(direct_highlow_events, path)
    assert len(expected) > 20  # a real day has plenty of new session extremes
    up = Up(["--source", "replay", "--replay", str(path), "--speed", "0", "--shards", "2"],
            tmp_path)
    try:
        await up.wait_up()
        client = Collector()
        await client.connect(up.url)
        await eventually(lambda: len(client.events("highs", "lows")) >= len(expected),
                         timeout=120)
        await asyncio.sleep(1.0)  # anything extra (a duplicate) would arrive within a cycle
        await client.sio.disconnect()
    finally:
        code = up.stop()
    assert code == 0, up.output()
    got = client.events("highs", "lows")
    assert len({e["id"] for e in got}) == len(got), "duplicate events delivered"

    # Same ids and prices, in the engine's order, per ticker and per list.
    for name, kind in (("highs", "high"), ("lows", "low")):
        want: dict[str, list[tuple[str, float]]] = defaultdict(list)
        for e in expected:
            if e.kind == kind:
                want[e.ticker].append((e.id, e.price))
        have: dict[str, list[tuple[str, float]]] = defaultdict(list)
        for e in client.events(name):
            have[e["ticker"]].append((e["id"], e["price"]))
        assert have == want, f"{name} differ"
