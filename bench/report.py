"""Benchmark results: a readable table, then one JSON object as the last line (DESIGN §10)."""

from __future__ import annotations

import json
import os
import platform
import resource
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table


def real_data_dir() -> Path:
    """Recorded market data: TICKSTOCK_REAL_DATA, else ../shared/data/real of the repo."""
    env = os.environ.get("TICKSTOCK_REAL_DATA")
    if env:
        return Path(env)
    return (Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "real").resolve()


def machine() -> str:
    return f"{platform.machine()} {os.cpu_count()} cores, Python {platform.python_version()}"


def rss_mb() -> float:
    """Peak RSS of this process in MB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def result(bench: str, items_per_s: float, ceiling_per_s: float, **extra: Any) -> dict[str, Any]:
    """The contract object: bench, items_per_s, ceiling_per_s, ratio, plus extras."""
    return {
        "bench": bench,
        "items_per_s": round(items_per_s, 1),
        "ceiling_per_s": round(ceiling_per_s, 1),
        "ratio": round(items_per_s / ceiling_per_s, 4) if ceiling_per_s else 0.0,
        **extra,
    }


def emit(rows: list[tuple[str, Any]], outcome: dict[str, Any], title: str) -> None:
    """Print the table of `rows`, then `outcome` as the last line (one JSON object)."""
    console = Console(stderr=False)
    table = Table(title=f"{title}  ({machine()})")
    table.add_column("measure")
    table.add_column("value", justify="right")
    for name, value in rows:
        table.add_row(name, f"{value:,.1f}" if isinstance(value, float) else str(value))
    console.print(table)
    print(json.dumps(outcome), flush=True)
