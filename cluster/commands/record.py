"""`tickstock record --out FILE.jsonl[.gz]`: capture raw Polygon frames for later replay."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
from collections.abc import Sequence
from typing import Any

from actors.polygon.recorder import record
from config.settings import PolygonConfig, load_settings


def build_parser() -> argparse.ArgumentParser:
    """Arguments of `tickstock record`."""
    p = argparse.ArgumentParser(prog="tickstock record",
                                description="Capture raw Polygon frames for later replay.")
    p.add_argument("--out", required=True, help="output FILE.jsonl or FILE.jsonl.gz")
    p.add_argument("--feed", default=None, help="host[:port] (default: POLYGON_FEED or Polygon)")
    p.add_argument("--insecure", action="store_true", help="plain ws:// (a local server)")
    who = p.add_mutually_exclusive_group()
    who.add_argument("--tickers", nargs="+", default=None, help="symbols to record")
    who.add_argument("--all", action="store_true", help="every symbol (X.*)")
    p.add_argument("--channels", default="T", help="comma list of T,A,AM (default T)")
    p.add_argument("--duration", type=float, default=None, help="seconds (default: until Ctrl-C)")
    p.add_argument("--config", default=None, help="settings TOML file")
    return p


def record_main(argv: Sequence[str] | None = None) -> int:
    """Run `tickstock record`; returns the exit code."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    if not args.out.endswith((".jsonl", ".jsonl.gz")):
        print("record: --out must end in .jsonl or .jsonl.gz")
        return 2
    overrides: dict[str, Any] = {}
    if args.feed:
        overrides["feed"] = args.feed
    if args.insecure:
        overrides["secure"] = False
    settings = load_settings(file=args.config, overrides={"polygon": overrides})
    channels = [c.strip() for c in args.channels.split(",") if c.strip()]
    tickers = ["*"] if args.all or not args.tickers else [t.upper() for t in args.tickers]
    summary = asyncio.run(_record_until_signal(settings.polygon, args, tickers, channels))
    print(f"recorded {summary['frames']} frames ({summary['bytes']} bytes) to "
          f"{summary['out']}; reconnects {summary['reconnects']}"
          + (f"; last error: {summary['last_error']}" if summary["last_error"] else ""))
    return 0 if summary["state"] != "auth_failed" else 1


async def _record_until_signal(
    cfg: PolygonConfig, args: argparse.Namespace, tickers: list[str], channels: list[str]
) -> dict[str, Any]:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    return await record(cfg, args.out, tickers, channels, args.duration, stop)
