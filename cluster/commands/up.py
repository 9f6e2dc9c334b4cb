"""`tickstock up`: start (or attach to) Ray, build the actor graph, serve, show live status.

Stops cleanly on Ctrl-C (or at the end of a replay with `--exit-when-done`): the ingest first,
then the gateway, then every actor, so no process of the run is left behind.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

from config import constants as C
from config.settings import Settings, load_settings


def build_parser() -> argparse.ArgumentParser:
    """The options of `tickstock up` (DESIGN §7)."""
    p = argparse.ArgumentParser(
        prog="tickstock up", description="Start (or attach to) Ray, build the actor graph, serve."
    )
    p.add_argument("--source", choices=["synthetic", "polygon", "replay"])
    p.add_argument("--replay", nargs="+", metavar="FILE", default=[], help="recorded files")
    p.add_argument("--speed", type=float, help="replay speed multiplier (0 = as fast as possible)")
    p.add_argument("--loop", action="store_true", help="restart the replay at its end")
    p.add_argument("--host", help="gateway bind address (0.0.0.0 on clusters)")
    p.add_argument("--port", type=int, help=f"gateway port (default {C.DEFAULT_GATEWAY_PORT})")
    p.add_argument("--shards", type=int, help="detector shards (default 2)")
    p.add_argument("--ray-address", help="attach to a Ray cluster (auto, host:port, ray://...)")
    p.add_argument("--database-url", help="SQLAlchemy URL (default: SQLite file in the data dir)")
    p.add_argument("--no-db", action="store_true", help="run without storage")
    p.add_argument("--polygon-feed", help="Polygon WebSocket host[:port]")
    p.add_argument("--insecure", action="store_true", help="plain ws:// to the feed")
    p.add_argument("--polygon-rest", help="Polygon REST base URL")
    p.add_argument("--rate", type=float, help="synthetic trades per second")
    p.add_argument("--tickers", type=int, help="synthetic: number of core tickers (0 = all)")
    p.add_argument("--all-symbols", action="store_true", help="track every symbol in the data")
    p.add_argument("--auth", choices=["local", "token"], help="local single-user or token auth")
    p.add_argument("--config", help="TOML settings file")
    p.add_argument("--no-status", action="store_true", help="no live status line")
    p.add_argument("--exit-when-done", action="store_true", help="stop when a replay is done")
    return p


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    ingest: dict[str, Any] = {}
    if args.replay:
        ingest["replay_files"] = list(args.replay)
        ingest.setdefault("source", "replay")
    if args.source:
        ingest["source"] = args.source
    flags = (("speed", "speed"), ("rate", "synthetic_rate"), ("tickers", "synthetic_tickers"))
    for flag, key in flags:
        if getattr(args, flag) is not None:
            ingest[key] = getattr(args, flag)
    if args.loop:
        ingest["loop"] = True
    if args.all_symbols:
        ingest["accept_unknown_symbols"] = True
    out: dict[str, Any] = {"ingest": ingest} if ingest else {}
    named = (("host", args.host), ("port", args.port), ("auth_mode", args.auth))
    gateway = {k: v for k, v in named if v}
    if gateway:
        out["gateway"] = gateway
    if args.shards:
        out["shards"] = {"count": args.shards}
    if args.ray_address:
        out["cluster"] = {"ray_address": args.ray_address}
    storage: dict[str, Any] = {}
    if args.database_url:
        storage["database_url"] = args.database_url
    if args.no_db:
        storage["enabled"] = False
    if storage:
        out["storage"] = storage
    polygon: dict[str, Any] = {}
    if args.polygon_feed:
        polygon["feed"] = args.polygon_feed
    if args.insecure:
        polygon["secure"] = False
    if args.polygon_rest:
        polygon["rest_base"] = args.polygon_rest
    if polygon:
        out["polygon"] = polygon
    return out


def up_main(argv: Sequence[str] | None = None) -> int:
    """Run the system until Ctrl-C (or the end of a replay with --exit-when-done)."""
    args = build_parser().parse_args(argv)
    import ray

    from cluster.graph import build_graph, init_ray, shutdown_graph, start_ingest
    from cluster.status import StatusLine

    try:
        settings = load_settings(file=args.config, overrides=_overrides(args))
    except (ValueError, OSError) as e:
        print(f"tickstock up: {e}", file=sys.stderr)
        return 2
    if settings.ingest.source == "polygon" and not settings.polygon.api_key:
        print("tickstock up: --source polygon needs POLYGON_API_KEY (any value for a local "
              "`tickstock replay-server`)", file=sys.stderr)
        return 2
    _prepare_storage(settings)
    print(f"Starting TickStock ({settings.ingest.source} source, {settings.shards.count} shards)…")
    init_ray(settings)
    graph = build_graph(settings)
    stop = _install_stop_handler()
    try:
        start_ingest(graph)
    except Exception as e:
        print(f"tickstock up: the source could not start: {_root_cause(e)}", file=sys.stderr)
        shutdown_graph(graph)
        ray.shutdown()
        return 1
    print(f"TickStock is up: {graph.url}  (Ctrl-C to stop)", flush=True)
    status = StatusLine(graph, enabled=not args.no_status)
    try:
        while not stop():
            done = status.refresh()
            if done and args.exit_when_done:
                break
            time.sleep(1.0)
    finally:
        status.close()
        print("Stopping…", flush=True)
        shutdown_graph(graph)
        ray.shutdown()
    print("Stopped.")
    return 0


def _prepare_storage(settings: Settings) -> None:
    """Migrate the embedded SQLite file on first start (PostgreSQL: `tickstock db upgrade`)."""
    if not settings.storage.enabled:
        return
    import asyncio

    from storage.database import ensure_database

    asyncio.run(ensure_database(settings.database_url()))


def _root_cause(e: BaseException) -> str:
    cause: BaseException = e
    while getattr(cause, "cause", None) is not None:
        cause = cause.cause  # type: ignore[attr-defined]
    return str(cause).strip().splitlines()[-1] if str(cause).strip() else type(cause).__name__


def _install_stop_handler() -> Callable[[], bool]:
    flag = {"stop": False}

    def handler(signum: int, frame: Any) -> None:
        if flag["stop"]:
            raise KeyboardInterrupt
        flag["stop"] = True

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
    return lambda: flag["stop"]

