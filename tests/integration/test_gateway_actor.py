"""`GatewayActor` inside a real async Ray actor: serves on its loop, reports bind errors."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest
import ray
import socketio

from gateway.actor import GatewayActor
from gateway.deps import InMemoryDeps
from schemas.events import Event
from tests.conftest import eventually

RAY_NAMESPACE = "test-gateway"
RAY_OBJECT_STORE_MB = 100


def settings(port: int = 0) -> dict[str, Any]:
    return {
        "gateway": {
            "host": "127.0.0.1",
            "port": port,
            "emission_interval_s": 0.1,
            "heartbeat_interval_s": 0.5,
        }
    }


async def test_actor_serves_dashboard_api_and_socketio(ray_local: None) -> None:
    deps = InMemoryDeps({"TECH": ["AAPL"]})
    event = Event(
        id="AAPL:high:1:1",
        ticker="AAPL",
        kind="high",
        direction="up",
        price=190.0,
        time=1_704_207_000_000,
        session="REGULAR",
    )
    deps.push([event])  # travels inside the pickled deps; collected by the actor's loop
    actor = ray.remote(num_cpus=0)(GatewayActor).remote(settings(), deps=deps)
    try:
        host, port = await actor.ready.remote()
        url = f"http://{host}:{port}"
        async with aiohttp.ClientSession() as http:
            r = await http.get(f"{url}/healthz")
            assert r.status == 200
        client = socketio.AsyncClient(reconnection=False)
        got: dict[str, list[Any]] = {"stock_data": [], "status_update": []}
        client.on("stock_data", lambda d: got["stock_data"].append(d))
        client.on("status_update", lambda d: got["status_update"].append(d))
        await client.connect(url, transports=["websocket"], wait_timeout=10)
        try:
            await eventually(lambda: got["stock_data"] and got["status_update"], timeout=20)
            assert [e["id"] for e in got["stock_data"][0]["highs"]] == [event.id]
        finally:
            await client.disconnect()
            await client.shutdown()
        stats = await actor.stats.remote()
        assert stats["counters"]["connections"] == 1
        assert stats["emitter"]["events_in"] == 1
        # a second gateway on the same port surfaces the bind error from ready()
        clash = ray.remote(num_cpus=0)(GatewayActor).remote(settings(port), deps=InMemoryDeps())
        with pytest.raises(ray.exceptions.RayTaskError, match="address already in use"):
            await clash.ready.remote()
        ray.kill(clash)
    finally:
        await actor.stop.remote()
        ray.kill(actor)
