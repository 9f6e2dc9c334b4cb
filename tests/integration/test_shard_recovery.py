"""A detector shard killed mid-replay comes back from its checkpoint and loses nothing.

Real Ray, a real persistence actor on SQLite (where checkpoints live), a real day of four
tickers. The shard is killed with `ray.kill(..., no_restart=False)` while the replay runs;
afterwards the per-ticker counts and session extremes, and the set of events the queue
delivered, equal those of an uninterrupted run of the same engine over the same file.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
import ray

from actors.detection.engine import DetectorEngine
from actors.sources.readers import ReadStats
from actors.sources.replay import load_replay
from cluster.graph import Graph, build_graph, shutdown_graph, start_ingest
from config.settings import Settings, load_settings
from schemas.batches import TradeBatch
from tests.conftest import wait_for

pytestmark = pytest.mark.slow

DAY = "20131008"
TICKERS = ("spy", "bac", "ibm", "aig")


def day_files(root: Path) -> list[Path]:
    return [root / "algoseek_lean" / "tick" / t / f"{DAY}_{t}_Trade_Tick.csv.gz" for t in TICKERS]


RAY_NAMESPACE = "test-recovery"
RAY_OBJECT_STORE_MB = 300


def settings_for(files: list[Path], tmp: Path) -> Settings:
    return load_settings(env={}, overrides={
        "ingest": {"source": "replay", "replay_files": [str(f) for f in files], "speed": 0,
                   "batch_max_rows": 4096, "max_inflight_per_shard": 2},
        "shards": {"count": 2, "checkpoint_interval_s": 0.3},
        "storage": {"database_url": f"sqlite+aiosqlite:///{tmp / 'recovery.db'}"},
        "cluster": {"namespace": RAY_NAMESPACE},
    })


def uninterrupted(files: list[Path], settings: Settings) -> tuple[DetectorEngine, set[str]]:
    engine = DetectorEngine(settings.detection, 0)
    ids: set[str] = set()
    for chunk in load_replay(files, ReadStats()):
        assert isinstance(chunk, TradeBatch)
        ids.update(e.id for e in engine.process_trades(chunk))
    ids.update(e.id for e in engine.flush())
    return engine, ids


def collect_all(graph: Graph, until_idle_s: float = 3.0) -> set[str]:
    ids: set[str] = set()
    idle_since = time.monotonic()
    while time.monotonic() - idle_since < until_idle_s:
        got = ray.get(graph.queue.collect.remote(50_000, 0.2))
        if got.events:
            idle_since = time.monotonic()
            ids.update(e.id for e in got.events)
    return ids


def state_view(state: dict[str, Any]) -> dict[str, Any]:
    keys = ("session", "high", "low", "base", "counts")
    return {k: state.get(k) for k in keys if k in state}


def test_killed_shard_resumes_from_checkpoint_without_loss(
    ray_local: None, real_data_dir: Path, tmp_path: Path
) -> None:
    files = day_files(real_data_dir)
    settings = settings_for(files, tmp_path)
    asyncio.run(_migrate(settings))
    graph = build_graph(settings, start_gateway=False)
    try:
        start_ingest(graph)
        from actors.ingest.routing import shard_of

        victim_index = shard_of("SPY", 2)
        victim = graph.shards[victim_index]
        old_pid = ray.get(victim.pid.remote())
        wait_for(lambda: ray.get(victim.stats.remote())["checkpoint_seq"] > 50_000, timeout=120,
                 interval=0.02)
        assert ray.get(graph.ingest.stats.remote())["state"] == "running", "replay ended too soon"
        ray.kill(victim, no_restart=False)
        wait_for(lambda: _pid(victim) not in (None, old_pid), timeout=60, interval=0.1)
        assert ray.get(graph.ingest.wait_done.remote(300))
        delivered = collect_all(graph)
        stats = ray.get(graph.ingest.stats.remote())
        shard_stats = ray.get(victim.stats.remote())
        states = {t.upper(): ray.get(graph.shards[shard_of(t.upper(), 2)].ticker_state.remote(
            t.upper())) for t in TICKERS}
    finally:
        shutdown_graph(graph)

    assert stats["shards"][victim_index]["restarts"] >= 1
    assert shard_stats["restored_from"] > 0, "the restarted shard did not restore a checkpoint"
    assert stats["lost_on_restart"] == 0
    engine, expected_ids = uninterrupted(files, settings)
    for ticker, state in states.items():
        assert state_view(state) == state_view(engine.ticker_state(ticker)), ticker
    assert delivered == expected_ids


def _pid(actor: Any) -> int | None:
    try:
        return int(ray.get(actor.pid.remote(), timeout=2))
    except Exception:
        return None


async def _migrate(settings: Settings) -> None:
    from storage.database import ensure_database

    await ensure_database(settings.database_url())
