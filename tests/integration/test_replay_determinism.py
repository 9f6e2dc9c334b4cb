"""Determinism end to end: the same recorded slice through Ray at speed 0 and speed 50 gives
the same event ids (and the same ids as the engine run directly, with any batch split)."""

from __future__ import annotations

import gzip
import time
from pathlib import Path

import pytest
import ray

from actors.detection.engine import DetectorEngine
from actors.sources.readers import read_file
from cluster.graph import build_graph, shutdown_graph, start_ingest
from config.settings import load_settings
from schemas.batches import TradeBatch

pytestmark = pytest.mark.slow

SOURCE = "lobster_2012-06-21/AAPL_2012-06-21_34200000_57600000_message_1.csv.gz"
SLICE_END_S = 34_200 + 8 * 60  # the first 8 minutes of the regular session


RAY_NAMESPACE = "test-determinism"


@pytest.fixture(scope="module")
def slice_file(real_data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real LOBSTER message file cut to its first minutes (same name pattern, same rows)."""
    out = tmp_path_factory.mktemp("slice") / "AAPL_2012-06-21_34200000_34680000_message_1.csv"
    with gzip.open(real_data_dir / SOURCE, "rt") as src, out.open("w") as dst:
        for line in src:
            if float(line.split(",", 1)[0]) >= SLICE_END_S:
                break
            dst.write(line)
    return out


def replay_ids(path: Path, speed: float, namespace: str, tmp: Path) -> list[str]:
    settings = load_settings(env={}, overrides={
        "ingest": {"source": "replay", "replay_files": [str(path)], "speed": speed},
        "shards": {"count": 2},
        "storage": {"enabled": False},
        "cluster": {"namespace": namespace},
    })
    graph = build_graph(settings, start_gateway=False)
    ids: list[str] = []
    try:
        start_ingest(graph)
        deadline = time.monotonic() + 240
        done = False
        while time.monotonic() < deadline:
            got = ray.get(graph.queue.collect.remote(10_000, 0.2))
            ids.extend(e.id for e in got.events)
            if done and not got.events:
                break
            done = done or ray.get(graph.ingest.wait_done.remote(0))
        assert done, "replay did not finish"
    finally:
        shutdown_graph(graph)
    return ids


def test_speed_zero_and_fifty_give_the_same_event_ids(
    ray_local: None, slice_file: Path, tmp_path: Path
) -> None:
    engine = DetectorEngine()
    expected: list[str] = []
    for batch in read_file(slice_file, chunk_rows=997):
        assert isinstance(batch, TradeBatch)
        expected.extend(e.id for e in engine.process_trades(batch))
    expected.extend(e.id for e in engine.flush())
    assert len(expected) > 10

    fast = replay_ids(slice_file, 0, "det-fast", tmp_path)
    paced = replay_ids(slice_file, 50, "det-paced", tmp_path)
    assert len(fast) == len(set(fast))
    assert sorted(fast) == sorted(paced) == sorted(expected)
    kinds = {i.split(":")[1] for i in expected}
    assert {"high", "low"} <= kinds
