"""The replay server's REST stub: Polygon's start-up endpoints as JSON (docs/polygon.md §3).

- `GET /v2/aggs/ticker/{T}/prev`: the previous close. Recordings hold one day, so the
  "previous close" is the ticker's first price on the tape (documented stand-in).
- `GET /v1/marketstatus/now`: the market state at the replay's event clock.
- `GET /v1/marketstatus/upcoming`: NYSE/NASDAQ closures and early closes after the replay
  date, from the shipped calendar.

Auth as on Polygon: `Authorization: Bearer KEY` or `?apiKey=KEY`; 401 without a key, 403
`NOT_AUTHORIZED` with one that is not accepted.
"""

from __future__ import annotations

import csv
import datetime as dt
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import Protocol

from aiohttp import web

from actors.market.sessions import ET, SessionClock, local_date
from schemas.events import MarketSession

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ReplayView(Protocol):
    """What the REST stub reads from the replay server."""

    keys: frozenset[str] | None
    clock_ms: int
    counts: Counter[str]

    def first_prices(self) -> dict[str, float]: ...

    def first_t(self) -> int: ...


def rest_app(view: ReplayView) -> web.Application:
    """The aiohttp application of the stub."""

    @web.middleware
    async def auth(request: web.Request, handler: Handler) -> web.StreamResponse:
        view.counts["rest_requests"] += 1
        header = request.headers.get("Authorization", "")
        key = header[7:].strip() if header.startswith("Bearer ") else request.query.get(
            "apiKey", "")
        rid = uuid.uuid4().hex
        if not key:
            return web.json_response(
                {"status": "ERROR", "request_id": rid, "error": "API Key was not provided"},
                status=401)
        if view.keys is not None and key not in view.keys:
            return web.json_response(
                {"status": "NOT_AUTHORIZED", "request_id": rid,
                 "message": "You are not entitled to this data. Please upgrade your plan."},
                status=403)
        return await handler(request)

    async def prev_close(request: web.Request) -> web.Response:
        ticker = request.match_info["ticker"].upper()
        return web.json_response(previous_close(ticker, view.first_prices().get(ticker),
                                                view.first_t()))

    async def status_now(request: web.Request) -> web.Response:
        return web.json_response(market_status(view.clock_ms))

    async def upcoming(request: web.Request) -> web.Response:
        return web.json_response(upcoming_holidays(local_date(view.clock_ms)))

    app = web.Application(middlewares=[auth])
    app.router.add_get("/v2/aggs/ticker/{ticker}/prev", prev_close)
    app.router.add_get("/v1/marketstatus/now", status_now)
    app.router.add_get("/v1/marketstatus/upcoming", upcoming)
    return app


def previous_close(ticker: str, price: float | None, first_t: int) -> dict[str, object]:
    """The `/prev` body: one result at 16:00 ET the day before the tape, or none."""
    results = []
    if price is not None and first_t:
        day = local_date(first_t) - dt.timedelta(days=1)
        at = int(dt.datetime.combine(day, dt.time(16), tzinfo=ET).timestamp() * 1000)
        results.append({"T": ticker, "v": 0, "vw": price, "o": price, "c": price,
                        "h": price, "l": price, "t": at, "n": 0})
    return {
        "ticker": ticker, "queryCount": len(results), "resultsCount": len(results),
        "adjusted": True, "results": results, "status": "OK",
        "request_id": uuid.uuid4().hex, "count": len(results),
    }


def market_status(now_ms: int) -> dict[str, object]:
    """The `/v1/marketstatus/now` body at event time `now_ms`."""
    session = SessionClock().session_at(now_ms).session
    market = {MarketSession.REGULAR: "open", MarketSession.PRE: "extended-hours",
              MarketSession.AFTER: "extended-hours"}.get(session, "closed")
    server_time = dt.datetime.fromtimestamp(now_ms / 1000, tz=ET).isoformat(timespec="seconds")
    return {
        "market": market, "earlyHours": session == MarketSession.PRE,
        "afterHours": session == MarketSession.AFTER, "serverTime": server_time,
        "exchanges": {"nasdaq": market, "nyse": market, "otc": market},
        "currencies": {"fx": "open", "crypto": "open"},
    }


def upcoming_holidays(after: dt.date, limit: int = 10) -> list[dict[str, str]]:
    """Polygon's /v1/marketstatus/upcoming entries after `after`, from the NYSE calendar."""
    text = resources.files("config").joinpath(
        "data/nyse_closures_early_closes_2000_2030.csv").read_text()
    rows = [r for r in csv.DictReader(text.splitlines())
            if dt.date.fromisoformat(r["date"]) > after and r["status"] != "late_open"]
    out: list[dict[str, str]] = []
    for row in rows[:limit]:
        for exchange in ("NYSE", "NASDAQ"):
            entry = {"date": row["date"], "exchange": exchange, "name": row["name"],
                     "status": "closed" if row["status"] == "closed" else "early-close"}
            if row["status"] == "early_close":
                day = dt.date.fromisoformat(row["date"])
                for name, hhmm in (("open", row["open_et"]), ("close", row["close_et"])):
                    hh, mm = (int(x) for x in hhmm.split(":"))
                    at = dt.datetime.combine(day, dt.time(hh, mm), tzinfo=ET)
                    entry[name] = at.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")
            out.append(entry)
    return out
