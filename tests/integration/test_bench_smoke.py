"""`tickstock bench`: each benchmark runs end to end at a tiny size and keeps its JSON contract.

No timing is asserted (performance is what the benchmarks report, not what tests judge): each
run must exit 0, print a table, end with one JSON object carrying the contract keys of DESIGN
§10, and report values that make sense (positive rates, the ratio they imply, nothing lost
where nothing may be lost, the sizes that were asked for).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
AMZN = "lobster_2012-06-21/AMZN_2012-06-21_34200000_57600000_message_1.csv.gz"
IBM = "algoseek_lean/tick/ibm/20131010_ibm_Trade_Tick.csv.gz"
CONTRACT = ("bench", "items_per_s", "ceiling_per_s", "ratio")


def bench(name: str, *args: str, timeout: float = 240.0) -> tuple[dict[str, Any], str]:
    """Run `tickstock bench NAME ARGS` in a subprocess; return its last-line JSON and stdout."""
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "PYTHONUNBUFFERED": "1"}
    env.pop("RAY_ADDRESS", None)
    env.pop("TICKSTOCK_CONFIG", None)
    done = subprocess.run(
        [sys.executable, "-m", "cluster.cli", "bench", name, *args], cwd=REPO, env=env,
        capture_output=True, text=True, timeout=timeout, check=False,
    )
    assert done.returncode == 0, f"exit {done.returncode}\n{done.stdout[-3000:]}\n" \
                                 f"{done.stderr[-3000:]}"
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    outcome = json.loads(lines[-1])
    return outcome, done.stdout


def check_contract(outcome: dict[str, Any], name: str, *extra: str) -> None:
    for key in (*CONTRACT, *extra):
        assert key in outcome, f"{key!r} missing from {outcome}"
    assert outcome["bench"] == name
    assert outcome["items_per_s"] > 0
    assert outcome["ceiling_per_s"] > 0
    assert outcome["ratio"] == pytest.approx(
        outcome["items_per_s"] / outcome["ceiling_per_s"], rel=1e-3, abs=1e-4)


def test_decode(real_data_dir: Path) -> None:
    outcome, out = bench("decode", "--rows", "5000", "--file", str(real_data_dir / AMZN))
    check_contract(outcome, "decode")
    assert outcome["trades"] == 5000
    assert outcome["frames"] == 50
    assert "FrameDecoder" in out  # the readable table came first


def test_detect(real_data_dir: Path) -> None:
    outcome, _ = bench("detect", "--file", str(real_data_dir / AMZN), "--tickers", "40",
                       "--rows", "8192")
    check_contract(outcome, "detect", "highlow_per_s", "trend_per_s", "mixed_all_per_s")
    assert outcome["files"] == 1
    assert outcome["trades"] == 11_419  # every AMZN execution of the day
    assert outcome["mixed_tickers"] == 40
    assert outcome["mixed_trades"] == 8192
    assert outcome["events"] > 0
    assert outcome["highlow_per_s"] > outcome["items_per_s"]  # one part costs less than all


def test_e2e(real_data_dir: Path) -> None:
    outcome, _ = bench(
        "e2e", "--file", str(real_data_dir / AMZN), "--file", str(real_data_dir / IBM),
        "--tickers", "50", "--duration", "4", "--clients", "2", timeout=400,
    )
    check_contract(outcome, "e2e", "p50_ms", "p99_ms", "lost", "clients", "tickers")
    assert outcome["clients"] == 2
    assert outcome["tickers"] == 50
    assert outcome["lost"] == 0
    assert outcome["feed_trades_missed"] == 0
    assert outcome["trades"] == outcome["feed_trades_sent"] > 0  # every trade was processed
    assert outcome["events_delivered"] >= outcome["events_detected"] > 0
    assert 0 < outcome["p50_ms"] <= outcome["p99_ms"] <= outcome["max_ms"]


def test_fanout() -> None:
    outcome, _ = bench("fanout", "--clients", "20", "--duration", "3", "--tickers", "200",
                       "--rate", "200")
    check_contract(outcome, "fanout", "p50_ms", "p99_ms", "clients", "tickers")
    assert outcome["clients"] == 20
    assert outcome["missed_payloads"] == 0
    assert outcome["cycles"] > 0
    assert outcome["bytes_per_payload"] > 0
    assert 0 < outcome["p50_ms"] <= outcome["p99_ms"]


def test_memory(real_data_dir: Path) -> None:
    outcome, _ = bench("memory", "--tickers", "100", "--file", str(real_data_dir / AMZN),
                       timeout=400)
    check_contract(outcome, "memory", "rss_mb", "tickers")
    assert outcome["tickers"] == 100
    assert [s["tickers"] for s in outcome["steps"]] == [10, 50, 100]
    assert outcome["rss_empty_mb"] > 0
