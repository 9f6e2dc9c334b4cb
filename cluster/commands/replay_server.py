"""`tickstock replay-server FILE... [--port 8765] [--speed X] [--loop]`: a local Polygon server."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
from collections.abc import Sequence

from actors.market.sessions import local_date
from cluster.replay.faults import parse_fault
from cluster.replay.server import ReplayServer
from cluster.replay.tape import open_tape
from config.constants import DEFAULT_REPLAY_PORT


def build_parser() -> argparse.ArgumentParser:
    """Arguments of `tickstock replay-server`."""
    p = argparse.ArgumentParser(
        prog="tickstock replay-server",
        description="Serve recorded data over Polygon's stocks WebSocket protocol.",
    )
    p.add_argument("files", nargs="+", help="recorded files (CSV formats or *.jsonl[.gz])")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=DEFAULT_REPLAY_PORT)
    p.add_argument("--rest-port", type=int, default=None, help="default: --port + 1")
    p.add_argument("--speed", type=float, default=1.0, help="0 = as fast as the client reads")
    p.add_argument("--loop", action="store_true", help="start over at the end")
    p.add_argument("--fault", action="append", default=[], metavar="SPEC",
                   help="e.g. drop:after=50,code=1006 (repeatable, applied in order)")
    p.add_argument("--key", action="append", default=None,
                   help="accepted API key (repeatable; default: any non-empty key)")
    p.add_argument("--max-trades", type=int, default=None, help="replay only the first N trades")
    p.add_argument("--start-at", default=None, metavar="HH:MM",
                   help="skip data before this New York time of the first day")
    p.add_argument("--auth-timeout", type=float, default=5.0)
    return p


async def _serve_forever(server: ReplayServer) -> None:
    await server.start()
    print(f"replay server: ws://{server.feed}/stocks  REST {server.rest_base}  "
          f"({server.tape.first_t and local_date(server.tape.first_t)}, "
          f"{len(server.tape.symbols())} symbols)", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await server.stop()


def replay_server_main(argv: Sequence[str] | None = None) -> int:
    """Run `tickstock replay-server` until interrupted; returns the exit code."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        faults = [parse_fault(spec) for spec in args.fault]
        tape = open_tape(args.files, max_trades=args.max_trades)
    except (ValueError, OSError) as e:
        print(f"replay-server: {e}")
        return 2
    server = ReplayServer(
        args.files, host=args.host, port=args.port, speed=args.speed, loop=args.loop,
        faults=faults, rest_port=args.rest_port, keys=args.key,
        auth_timeout_s=args.auth_timeout, start_at=args.start_at, tape=tape,
    )
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve_forever(server))
    return 0
