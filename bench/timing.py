"""Timing helpers shared by the benchmarks: interleaved best-of rounds, percentiles, options.

The machines are shared and noisy, so a subject and its ceiling are timed in alternating
rounds over the same input, and each keeps its best (shortest) round: a burst of load from a
neighbour then slows both, or neither, instead of one of them.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np


def interleaved_best(runs: dict[str, Callable[[], object]], rounds: int) -> dict[str, float]:
    """Seconds of the best of `rounds` rounds of each callable, timed in alternation."""
    best = {name: float("inf") for name in runs}
    for _ in range(max(rounds, 1)):
        for name, run in runs.items():
            started = time.perf_counter()
            run()
            best[name] = min(best[name], time.perf_counter() - started)
    return best


def percentiles_ms(seconds: Sequence[float] | np.ndarray[Any, Any]) -> dict[str, float]:
    """p50, p99 and max of durations given in seconds, in ms (zeros when empty)."""
    values = np.asarray(seconds, dtype=np.float64) * 1000.0
    if not len(values):
        return {"p50_ms": 0.0, "p99_ms": 0.0, "max_ms": 0.0}
    return {
        "p50_ms": round(float(np.percentile(values, 50)), 2),
        "p99_ms": round(float(np.percentile(values, 99)), 2),
        "max_ms": round(float(values.max()), 2),
    }


def option(args: argparse.Namespace, name: str, bench_default: Any) -> Any:
    """`args.<name>`, unless the user left the shared CLI default: then this bench's default.

    `tickstock bench` shares one option set; `--clients 10` suits e2e but not fanout, and
    `--tickers 3000` suits e2e but not memory, so each bench keeps its own default.
    """
    value = getattr(args, name, None)
    if value is None:
        return bench_default
    from bench.cli import parser

    return bench_default if value == parser().get_default(name) else value
