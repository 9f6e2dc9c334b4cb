"""`tickstock bench decode|detect|e2e|fanout|memory|storage|all [options]`."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable
from typing import Any

BENCHES: dict[str, str] = {
    "decode": "bench.decode:run",
    "detect": "bench.detect:run",
    "e2e": "bench.e2e:run",
    "fanout": "bench.fanout:run",
    "memory": "bench.memory:run",
    "storage": "bench.storage:run",
}
ALL = ("decode", "detect", "e2e", "fanout", "memory")


def _load(name: str) -> Callable[[argparse.Namespace], dict[str, Any]]:
    module, func = BENCHES[name].split(":")
    return getattr(importlib.import_module(module), func)  # type: ignore[no-any-return]


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tickstock bench", description=__doc__)
    p.add_argument("name", choices=[*BENCHES, "all"])
    p.add_argument("--tickers", type=int, default=3000, help="tickers (e2e, fanout, memory)")
    p.add_argument("--duration", type=float, default=60.0, help="seconds of sustained load (e2e)")
    p.add_argument("--rate", type=float, default=0.0, help="offered trades/s (e2e; 0 = max)")
    p.add_argument("--shards", type=int, default=2)
    p.add_argument("--clients", type=int, default=10, help="Socket.IO clients (e2e, fanout)")
    p.add_argument("--file", action="append", default=[], help="recorded file(s) (detect)")
    p.add_argument("--rows", type=int, default=200_000, help="rows (decode, storage)")
    p.add_argument("--database-url", default="", help="storage bench target (PostgreSQL)")
    return p


def bench_main(argv: list[str]) -> int:
    """Run one benchmark (or all); each prints its table and a last-line JSON object."""
    args = parser().parse_args(argv)
    names = ALL if args.name == "all" else (args.name,)
    for name in names:
        _load(name)(args)
    return 0


if __name__ == "__main__":
    sys.exit(bench_main(sys.argv[1:]))
