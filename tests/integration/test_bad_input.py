"""Bad input through the running system: rows skipped and counted by reason, system unharmed.

A real LOBSTER slice with malformed rows and bad prices injected, plus an Alpha Vantage file
with an unknown symbol, replayed through Ray at speed 0: every bad row is counted by its
reason, the good rows still produce the same events as the clean slice, and the actors keep
answering afterwards.
"""

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
NAME = "AAPL_2012-06-21_34200000_34500000_message_1.csv"
BAD_LOBSTER_ROWS = [
    "34260.000000001,4,1,100,0,1",  # price 0
    "34260.000000002,4,1,100,-5853300,1",  # negative price
    "34260.000000003,4,1,100,nan,1",  # NaN price
    "34260.000000004,4,1,100",  # too few fields
    "not,a,number,at,all,x",  # not numbers
    "34260.000000005,4,1,100,5853300,1,extra,fields",  # too many fields
]
ALPHAVANTAGE = """date,time_et,symbol,open,high,low,close,volume
2012-06-21,09:31,ZZZQX,10,10,10,10,100
2012-06-21,09:31,MSFT,30.1,30.2,30.0,30.1,5000
2012-06-21,09:32,MSFT,30.1,-30.2,30.0,30.1,5000
"""


RAY_NAMESPACE = "test-bad-input"


def write_slice(real_data_dir: Path, out: Path, bad: list[str]) -> None:
    """The first 5 minutes of a real day; `bad` rows go in at 09:31."""
    with gzip.open(real_data_dir / SOURCE, "rt") as src, out.open("w") as dst:
        injected = False
        for line in src:
            t = float(line.split(",", 1)[0])
            if t >= 34_500:
                break
            if not injected and t >= 34_260:
                dst.write("\n".join(bad) + "\n")
                injected = True
            dst.write(line)


def collect_ids(graph: object, seconds: float = 3.0) -> list[str]:
    ids: list[str] = []
    idle = time.monotonic()
    while time.monotonic() - idle < seconds:
        got = ray.get(graph.queue.collect.remote(10_000, 0.2))  # type: ignore[attr-defined]
        if got.events:
            idle = time.monotonic()
            ids.extend(e.id for e in got.events)
    return ids


def test_bad_rows_are_counted_and_the_system_keeps_running(
    ray_local: None, real_data_dir: Path, tmp_path: Path
) -> None:
    clean_dir, bad_dir = tmp_path / "clean", tmp_path / "bad"
    clean_dir.mkdir()
    bad_dir.mkdir()
    write_slice(real_data_dir, clean_dir / NAME, [])
    write_slice(real_data_dir, bad_dir / NAME, BAD_LOBSTER_ROWS)
    av = bad_dir / "2012-06-21.csv"
    av.write_text(ALPHAVANTAGE)

    engine = DetectorEngine()
    expected = [e.id for b in read_file(clean_dir / NAME) if isinstance(b, TradeBatch)
                for e in engine.process_trades(b)] + [e.id for e in engine.flush()]
    assert expected

    settings = load_settings(env={}, overrides={
        "ingest": {"source": "replay", "replay_files": [str(bad_dir / NAME), str(av)],
                   "speed": 0},
        "storage": {"enabled": False},
        "cluster": {"namespace": RAY_NAMESPACE},
    })
    graph = build_graph(settings, start_gateway=False)
    try:
        start_ingest(graph)
        assert ray.get(graph.ingest.wait_done.remote(120))
        ids = collect_ids(graph)
        stats = ray.get(graph.ingest.stats.remote())
        assert ray.get(graph.queue.ping.remote()) == "ok"  # still serving
        assert all(ray.get([s.ping.remote() for s in graph.shards]))
    finally:
        shutdown_graph(graph)

    assert stats["state"] == "done"
    read = stats["source_stats"]["read_rejected"]
    assert read == {"bad_price": 4, "malformed_row": 3}  # 3 LOBSTER + 1 Alpha Vantage prices
    assert stats["rejected"] == {"unknown_symbol": 1}
    aapl = sorted(i for i in ids if i.startswith("AAPL:"))
    assert aapl == sorted(expected)
