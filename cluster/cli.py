"""`tickstock` — the one console script (DESIGN §7, contract).

    tickstock up [--source synthetic|polygon|replay] [--replay FILE...] [--speed X] ...
    tickstock replay-server FILE... [--port 8765] [--speed X] [--loop]
    tickstock detect FILE... [--out PATH.csv|.parquet|.jsonl]
    tickstock record --out FILE.jsonl.gz
    tickstock bench decode|detect|e2e|fanout|memory|storage|all
    tickstock db upgrade|downgrade REV|current

Each command lives in its own module (`cluster/commands/`, `bench/cli.py`) and is imported
only when it runs, so `tickstock detect` never pays for Ray and `tickstock up` never for pandas.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from config.logging import setup_logging

# command -> (module, entry point taking argv and returning the exit code, help)
COMMANDS = {
    "up": ("cluster.commands.up", "up_main", "start (or attach to) Ray, build the graph, serve"),
    "replay-server": ("cluster.commands.replay_server", "replay_server_main",
                      "a local server speaking Polygon's stocks WebSocket protocol"),
    "detect": ("cluster.commands.detect", "detect_main", "run the detectors over recorded files"),
    "record": ("cluster.commands.record", "record_main", "capture raw Polygon frames"),
    "bench": ("bench.cli", "bench_main", "the benchmark suite"),
    "db": ("cluster.commands.db", "db_main", "database migrations"),
}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `tickstock` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    setup_logging()
    if argv and argv[0] in COMMANDS:
        module, entry, _ = COMMANDS[argv[0]]
        return int(getattr(importlib.import_module(module), entry)(argv[1:]))
    parser = argparse.ArgumentParser(prog="tickstock", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (_, _, text) in COMMANDS.items():
        sub.add_parser(name, help=f"{text} (see `tickstock {name} --help`)")
    parser.parse_args(argv)
    return 2  # unreachable: a known command was dispatched above, argparse exits otherwise


if __name__ == "__main__":
    logging.captureWarnings(True)
    sys.exit(main())
