"""Market-session changes on event time reach Socket.IO clients as `session_reset`.

A real AlgoSeek day with extended hours (PRE → REGULAR → AFTER) replayed through the whole
actor graph, with a real Socket.IO client connected before the replay starts.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
import socketio

from cluster.graph import build_graph, shutdown_graph, start_ingest
from config.settings import load_settings
from tests.conftest import eventually

pytestmark = pytest.mark.slow

IBM = "algoseek_lean/tick/ibm/20131007_ibm_Trade_Tick.csv.gz"


RAY_NAMESPACE = "test-sessions"


async def test_session_changes_are_announced(
    ray_local: None, real_data_dir: Path, tmp_path: Path
) -> None:
    settings = load_settings(env={}, overrides={
        "ingest": {"source": "replay", "replay_files": [str(real_data_dir / IBM)],
                   "speed": 0, "batch_max_rows": 2048, "max_inflight_per_shard": 1},
        "gateway": {"port": 0},
        "storage": {"enabled": False},
        "cluster": {"namespace": RAY_NAMESPACE},
    })
    graph = await asyncio.to_thread(build_graph, settings)
    resets: list[dict[str, Any]] = []
    payloads: list[dict[str, Any]] = []
    client = socketio.AsyncClient(reconnection=False)
    client.on("session_reset", resets.append)
    client.on("stock_data", payloads.append)
    try:
        await client.connect(graph.url, transports=["websocket"], wait_timeout=10)
        await asyncio.to_thread(start_ingest, graph)
        await eventually(lambda: any(r.get("session") == "AFTER" for r in resets), timeout=120)
        await client.disconnect()
    finally:
        await asyncio.to_thread(shutdown_graph, graph)
    sessions = [r["session"] for r in resets]
    assert "REGULAR" in sessions
    assert sessions.index("REGULAR") < sessions.index("AFTER")
    assert all(r.get("session_date") == "2013-10-07" for r in resets)
    # Events of each payload belong to the session the payload names.
    for p in payloads:
        for e in p["highs"] + p["lows"]:
            assert e["session"] == p["session"], (e["id"], p["session"])
