"""`tickstock db upgrade [REV] | downgrade REV | current`: database migrations."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence

from config.base import redact_url
from config.settings import load_settings
from storage.database import (
    current,
    describe_error,
    downgrade,
    head_revision,
    normalize_url,
    upgrade,
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tickstock db", description="Database migrations.")
    parser.add_argument("--database-url", default=None, help="default: DATABASE_URL or SQLite")
    sub = parser.add_subparsers(dest="action", required=True)
    up = sub.add_parser("upgrade", help="migrate up (default: to the newest revision)")
    up.add_argument("revision", nargs="?", default="head")
    down = sub.add_parser("downgrade", help="migrate down to REV ('base' drops everything)")
    down.add_argument("revision")
    sub.add_parser("current", help="print the database's revision")
    return parser


def _default_url() -> str:
    return load_settings().database_url()


async def _db_action(args: argparse.Namespace, url: str) -> str:
    if args.action == "upgrade":
        await upgrade(url, args.revision)
    elif args.action == "downgrade":
        await downgrade(url, args.revision)
    revision = await current(url)
    return f"{redact_url(url)}: at revision {revision or 'base'} (head {head_revision()})"


def db_main(argv: Sequence[str] | None = None) -> int:
    """Run `tickstock db upgrade [REV] | downgrade REV | current [--database-url URL]`."""
    args = _parser().parse_args(argv)
    url = normalize_url(args.database_url or _default_url())
    try:
        print(asyncio.run(_db_action(args, url)))
    except Exception as exc:  # report without a traceback full of DSNs
        print(f"tickstock db {args.action} failed: {describe_error(exc, url)}", file=sys.stderr)
        return 1
    return 0

