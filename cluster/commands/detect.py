"""`tickstock detect FILE... [--out PATH.csv|.parquet|.jsonl]`: the detectors, offline, no Ray."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TextIO

from actors.detection.offline import DetectStats, detect, write_events
from config.detection import DetectionConfig


def print_summary(stats: DetectStats, stream: TextIO | None = None) -> None:
    """A short human summary of a run (to stdout by default)."""
    stream = stream if stream is not None else sys.stdout
    kinds = ", ".join(f"{k} {v:,}" for k, v in sorted(stats.events.items())) or "none"
    rejected = ", ".join(f"{k} {v:,}" for k, v in sorted(stats.rejected.items())) or "none"
    print(f"files     {stats.files}", file=stream)
    print(f"rows      {stats.rows:,} ({stats.trades:,} trades, {stats.bars:,} bars)", file=stream)
    print(f"events    {sum(stats.events.values()):,}: {kinds}", file=stream)
    print(f"rejected  {rejected}", file=stream)
    print(f"speed     {stats.rows_per_s:,.0f} rows/s ({stats.seconds:.2f} s)", file=stream)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tickstock detect", description="Run the detectors over recorded files, offline."
    )
    parser.add_argument("files", nargs="+", type=Path, help="recorded data files")
    parser.add_argument("--out", type=Path, help="write events to PATH.csv|.parquet|.jsonl")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--no-surge", action="store_true", help="disable the Surge detector")
    parser.add_argument("--no-trend", action="store_true", help="disable the Trend detector")
    return parser


def detect_main(argv: list[str] | None = None) -> int:
    """`tickstock detect FILE... [--out PATH] [--no-progress]`; returns the exit code."""
    args = _parser().parse_args(argv)
    if args.out is not None and args.out.suffix.lower() not in (".csv", ".parquet", ".jsonl"):
        print(f"error: --out must end in .csv, .parquet or .jsonl: {args.out}", file=sys.stderr)
        return 2
    missing = [str(f) for f in args.files if not f.is_file()]
    if missing:
        print(f"error: no such file: {', '.join(missing)}", file=sys.stderr)
        return 2
    config = DetectionConfig(enable_surge=not args.no_surge, enable_trend=not args.no_trend)
    stats = DetectStats()
    try:
        frame = detect(args.files, config, progress=not args.no_progress, stats=stats)
    except ValueError as exc:  # unknown format, unreadable content
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.out is not None:
        write_events(frame, args.out)
        print(f"wrote {len(frame):,} events to {args.out}")
    print_summary(stats)
    return 0
