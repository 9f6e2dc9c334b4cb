"""REST API handlers and the HTTP middlewares (auth, JSON errors, security headers).

Errors are `{"error": reason}` with a 4xx code for the caller's mistakes (each counted in
`rejected_requests`), 503 when a backend call fails, 500 otherwise; no response ever carries a
secret (password hashes, token hashes, API keys, DSNs) or an internal exception text.
`/api/user*`, `/api/universes*`, `/api/events` and `/api/auth/{me,logout}` need a caller:
a `Bearer` token or the `ts_token` cookie in token mode, anyone (as "local") in local mode.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import msgspec
from aiohttp import web

from gateway.auth import TOKEN_COOKIE, AuthError, Principal, token_from_headers
from gateway.keys import AUTH, CONFIG, DEPS, HUB, METRICS, PRINCIPAL
from gateway.prometheus import render
from schemas.api import (
    Credentials,
    EventQuery,
    Registration,
    UniverseSelection,
    UserFilters,
    UserView,
)
from schemas.events import EventKind, MarketSession

log = logging.getLogger(__name__)
routes = web.RouteTableDef()

T = TypeVar("T")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

PROTECTED_PREFIXES = (
    "/api/user",
    "/api/universes",
    "/api/events",
    "/api/auth/me",
    "/api/auth/logout",
)
_SETTING_KEY = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_TICKER = re.compile(r"^[A-Z0-9.\-]{1,12}$")
MAX_SETTING_BYTES = 64 * 1024
MAX_BODY_BYTES = 256 * 1024
MAX_HISTORY_LIMIT = 10_000
STALE_CYCLES = 10  # emission cycles without progress before /api/health says degraded


class ApiError(Exception):
    """A request the API refuses: status, a reason safe to show, a bounded counter name."""

    def __init__(self, status: int, reason: str, counter: str = "bad_request") -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.counter = counter


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(
        body=msgspec.json.encode(data), status=status, content_type="application/json"
    )


def _error(request: web.Request, status: int, reason: str, counter: str) -> web.Response:
    if 400 <= status < 500:
        metrics = request.app[METRICS]
        metrics["rejected_requests"] += 1
        metrics[f"rejected:{counter}"] += 1
    return _json({"error": reason}, status)


# -- middlewares --------------------------------------------------------------------------------


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn refusals and failures into JSON errors; never leak exception text."""
    try:
        return await handler(request)
    except ApiError as e:
        return _error(request, e.status, e.reason, e.counter)
    except AuthError as e:
        return _error(request, e.status, e.reason, f"auth_{e.status}")
    except web.HTTPException as e:
        if e.status < 400 or not request.path.startswith("/api"):
            raise
        return _error(request, e.status, e.reason.lower(), f"http_{e.status}")
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("unhandled error in %s %s", request.method, request.path)
        request.app[METRICS]["internal_errors"] += 1
        return _json({"error": "internal error"}, 500)


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Resolve the caller of protected endpoints (401 without a valid session)."""
    if request.path.startswith(PROTECTED_PREFIXES):
        principal = await backend(request.app[AUTH].resolve(token_from_headers(request.headers)))
        if principal is None:
            raise ApiError(401, "authentication required", "unauthenticated")
        request[PRINCIPAL] = principal
    return await handler(request)


async def security_headers(request: web.Request, response: web.StreamResponse) -> None:
    """Add conservative headers to every response (`on_response_prepare`)."""
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "no-referrer")
    if response.content_type == "text/html":
        response.headers.setdefault(
            "Content-Security-Policy",
            "default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data:; "
            "frame-ancestors 'none'; base-uri 'none'",
        )


# -- helpers ------------------------------------------------------------------------------------


async def read_body(request: web.Request, kind: type[T]) -> T:
    """The JSON body as `kind` (415 if not JSON, 413 if too large, 400 if invalid)."""
    if request.content_type != "application/json":
        raise ApiError(415, "expected an application/json body", "not_json")
    body = await request.read()
    if len(body) > MAX_BODY_BYTES:
        raise ApiError(413, "body too large", "too_large")
    try:
        return msgspec.json.decode(body, type=kind)
    except msgspec.ValidationError as e:
        raise ApiError(400, f"invalid body: {e}", "invalid_body") from None
    except msgspec.DecodeError:
        raise ApiError(400, "malformed JSON", "malformed_json") from None


async def backend(call: Awaitable[T]) -> T:
    """Await a call into the system; a failure there is a 503, not a crash."""
    try:
        return await call
    except asyncio.CancelledError:
        raise
    except Exception:
        log.warning("backend call failed", exc_info=True)
        raise ApiError(503, "backend unavailable", "backend") from None


def principal_of(request: web.Request) -> Principal:
    """The caller resolved by `auth_middleware`."""
    return request[PRINCIPAL]


def account_id(request: web.Request) -> int:
    """The caller's account record id (settings need one)."""
    record_id = principal_of(request).record_id
    if record_id is None:
        raise ApiError(503, "user settings unavailable", "no_account")
    return record_id


def view_dict(view: UserView) -> dict[str, Any]:
    """A user view for the API (the ticker list can be long: give its size too)."""
    data: dict[str, Any] = msgspec.to_builtins(view)
    data["ticker_count"] = None if view.tickers is None else len(view.tickers)
    return data


def _query_int(
    request: web.Request, name: str, *, low: int = 0, high: int | None = None
) -> int | None:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return None
    try:
        value = int(raw)
    except ValueError:
        raise ApiError(400, f"{name} must be an integer", "bad_query") from None
    if value < low or (high is not None and value > high):
        raise ApiError(400, f"{name} out of range", "bad_query")
    return value


# -- health, status, metrics --------------------------------------------------------------------


@routes.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    """Liveness: the process serves; basic gateway state."""
    hub = request.app[HUB]
    return _json({"status": "ok", "connected": hub.connected, "session": hub.emitter.session})


@routes.get("/api/health")
async def health(request: web.Request) -> web.Response:
    """Readiness: 200 while emission cycles run, 503 when they stalled."""
    hub, cfg = request.app[HUB], request.app[CONFIG]
    stats = hub.stats()
    age = stats["last_cycle_age_s"]
    stale_after = max(5.0, STALE_CYCLES * cfg.emission_interval_s)
    ok = age is not None and age < stale_after
    body = {
        "status": "ok" if ok else "degraded",
        "last_cycle_age_s": age,
        "connected": stats["connected"],
        "feed": hub.last_status.get("feed", "unknown"),
    }
    return _json(body, 200 if ok else 503)


@routes.get("/api/status")
async def status(request: web.Request) -> web.Response:
    """The system's status (feed, lag, rates, queue) and the gateway's."""
    hub = request.app[HUB]
    system = await backend(request.app[DEPS].system_status())
    return _json({"system": system, "gateway": hub.status_message(system)})


@routes.get("/api/metrics")
async def metrics(request: web.Request) -> web.Response:
    """Counters: emitted, dropped, connected, rejected requests, and the rest."""
    hub, counters = request.app[HUB], request.app[METRICS]
    return _json(
        {
            "emitted": counters["emitted"],
            "emitted_events": counters["emitted_events"],
            "dropped": hub.emitter.dropped,
            "connected": hub.connected,
            "rejected_requests": counters["rejected_requests"],
            "counters": dict(counters),
            "emitter": hub.emitter.stats(),
        }
    )


@routes.get("/metrics")
async def prometheus_metrics(request: web.Request) -> web.Response:
    """Prometheus text format: feed, rates, queue, drops and rejects by reason, clients."""
    hub, counters = request.app[HUB], request.app[METRICS]
    system = await backend(request.app[DEPS].system_status())
    gateway = {"connected": hub.connected, **counters}
    return web.Response(text=render(system, gateway), content_type="text/plain",
                        charset="utf-8", headers={"X-Content-Type-Options": "nosniff"})


# -- auth ---------------------------------------------------------------------------------------


def _public_user(user: Any) -> dict[str, Any]:
    return {"id": user.id, "username": user.username, "email": user.email}


@routes.post("/api/auth/register")
async def register(request: web.Request) -> web.Response:
    """Create an account: {username, email, password} -> 201 {user}."""
    reg = await read_body(request, Registration)
    user = await request.app[AUTH].register(reg)
    request.app[METRICS]["registrations"] += 1
    return _json({"user": _public_user(user)}, 201)


@routes.post("/api/auth/login")
async def login(request: web.Request) -> web.Response:
    """Log in: {username, password} -> {token, expires_ms, user}; also sets the cookie."""
    creds = await read_body(request, Credentials)
    metrics = request.app[METRICS]
    try:
        token, session, user = await request.app[AUTH].login(
            creds, request.remote, request.headers.get("User-Agent", "")[:256]
        )
    except AuthError:
        metrics["logins_failed"] += 1
        raise
    metrics["logins"] += 1
    response = _json({"token": token, "expires_ms": session.expires_ms, "user": _public_user(user)})
    response.set_cookie(
        TOKEN_COOKIE,
        token,
        max_age=request.app[CONFIG].session_ttl_s,
        httponly=True,
        samesite="Lax",
        secure=request.secure,
        path="/",
    )
    return response


@routes.post("/api/auth/logout")
async def logout(request: web.Request) -> web.Response:
    """Revoke the caller's session token and clear the cookie."""
    token = token_from_headers(request.headers)
    if token is not None and not request.app[AUTH].local_mode:
        await backend(request.app[AUTH].logout(token))
    response = _json({"ok": True})
    response.del_cookie(TOKEN_COOKIE, path="/")
    return response


@routes.get("/api/auth/me")
async def me(request: web.Request) -> web.Response:
    """Who the caller is, and the server's auth mode."""
    p = principal_of(request)
    mode = request.app[CONFIG].auth_mode
    return _json({"user_id": p.user_id, "username": p.username, "auth_mode": mode})


# -- universes ----------------------------------------------------------------------------------


@routes.get("/api/universes")
async def universes(request: web.Request) -> web.Response:
    """Selectable universes and their sizes."""
    return _json({"universes": await backend(request.app[DEPS].list_universes())})


@routes.get("/api/universes/tickers")
async def universe_tickers(request: web.Request) -> web.Response:
    """The tickers of one universe (`?name=`)."""
    name = request.query.get("name", "")
    if not name:
        raise ApiError(400, "name is required", "bad_query")
    deps = request.app[DEPS]
    if name not in await backend(deps.list_universes()):
        raise ApiError(404, "unknown universe", "unknown_universe")
    return _json({"name": name, "tickers": await backend(deps.universe_tickers(name))})


@routes.get("/api/universes/current")
async def current_universes(request: web.Request) -> web.Response:
    """The caller's selections and the tickers they resolve to."""
    view = await backend(request.app[DEPS].user_view(principal_of(request).user_id))
    return _json(view_dict(view))


@routes.post("/api/universes/select")
async def select_universes(request: web.Request) -> web.Response:
    """Choose universes for a tracker: {tracker, universes} -> the new view."""
    sel = await read_body(request, UniverseSelection)
    deps = request.app[DEPS]
    if len(sel.universes) > 100:
        raise ApiError(400, "too many universes", "bad_selection")
    known = await backend(deps.list_universes())
    unknown = [n for n in sel.universes if n not in known]
    if unknown:
        raise ApiError(400, f"unknown universe: {unknown[0][:64]}", "unknown_universe")
    user_id = principal_of(request).user_id
    view = await backend(
        deps.select_universes(user_id, sel.tracker, list(dict.fromkeys(sel.universes)))
    )
    request.app[HUB].apply_view(view)
    return _json(view_dict(view))


# -- user settings and filters ------------------------------------------------------------------


def _check_key(key: str) -> str:
    if not _SETTING_KEY.match(key):
        raise ApiError(400, "invalid setting key", "bad_setting")
    return key


def _check_value(value: Any) -> Any:
    if len(msgspec.json.encode(value)) > MAX_SETTING_BYTES:
        raise ApiError(413, "setting value too large", "too_large")
    return value


@routes.get("/api/user/settings")
async def get_settings(request: web.Request) -> web.Response:
    """All of the caller's settings."""
    store = request.app[DEPS].user_store
    return _json({"settings": await backend(store.get_settings(account_id(request)))})


@routes.post("/api/user/settings")
async def set_settings(request: web.Request) -> web.Response:
    """Set several settings at once: {key: value, ...}."""
    values = await read_body(request, dict[str, Any])
    if len(values) > 50:
        raise ApiError(400, "too many settings at once", "bad_setting")
    for key, value in values.items():
        _check_value(value)
        _check_key(key)
    store, uid = request.app[DEPS].user_store, account_id(request)
    for key, value in values.items():
        await backend(store.set_setting(uid, key, value))
    return _json({"settings": await backend(store.get_settings(uid))})


@routes.get("/api/user/settings/{key}")
async def get_setting(request: web.Request) -> web.Response:
    """One setting (404 if unset)."""
    key = _check_key(request.match_info["key"])
    settings = await backend(request.app[DEPS].user_store.get_settings(account_id(request)))
    if key not in settings:
        raise ApiError(404, "setting not found", "not_found")
    return _json({"key": key, "value": settings[key]})


class _SettingBody(msgspec.Struct, forbid_unknown_fields=True):
    value: Any


@routes.post("/api/user/settings/{key}")
async def set_setting(request: web.Request) -> web.Response:
    """Set one setting: {value}."""
    key = _check_key(request.match_info["key"])
    body = await read_body(request, _SettingBody)
    value = _check_value(body.value)
    await backend(request.app[DEPS].user_store.set_setting(account_id(request), key, value))
    return _json({"key": key, "value": value})


@routes.delete("/api/user/settings/{key}")
async def delete_setting(request: web.Request) -> web.Response:
    """Remove one setting (idempotent)."""
    key = _check_key(request.match_info["key"])
    await backend(request.app[DEPS].user_store.delete_setting(account_id(request), key))
    return _json({"ok": True})


@routes.get("/api/user-filters")
async def get_filters(request: web.Request) -> web.Response:
    """The caller's event filters (defaults filled in)."""
    view = await backend(request.app[DEPS].user_view(principal_of(request).user_id))
    try:
        filters = msgspec.convert(view.filters, UserFilters)
    except msgspec.ValidationError:
        filters = UserFilters()
    return _json({"filters": filters})


@routes.post("/api/user-filters")
async def set_filters(request: web.Request) -> web.Response:
    """Replace the caller's filters: a UserFilters object (or {"filter_data": {...}})."""
    data = await read_body(request, dict[str, Any])
    if "filter_data" in data:
        data = data["filter_data"]
    try:
        filters = msgspec.convert(data, UserFilters)
    except msgspec.ValidationError as e:
        raise ApiError(400, f"invalid filters: {e}", "bad_filters") from None
    user_id = principal_of(request).user_id
    view = await backend(request.app[DEPS].set_filters(user_id, msgspec.to_builtins(filters)))
    request.app[HUB].apply_view(view)
    return _json({"filters": filters})


# -- event history ------------------------------------------------------------------------------


@routes.get("/api/events")
async def events(request: web.Request) -> web.Response:
    """Stored events: ?ticker=&kind=&start_ms=&end_ms=&session=&limit= (newest `limit`)."""
    q = request.query
    ticker = q.get("ticker") or None
    if ticker is not None and not _TICKER.match(ticker):
        raise ApiError(400, "invalid ticker", "bad_query")
    kind = q.get("kind") or None
    if kind is not None and kind not in set(EventKind):
        raise ApiError(400, "kind must be high, low, surge or trend", "bad_query")
    session = q.get("session") or None
    if session is not None and session not in set(MarketSession):
        raise ApiError(400, "invalid session", "bad_query")
    start_ms, end_ms = _query_int(request, "start_ms"), _query_int(request, "end_ms")
    if start_ms is not None and end_ms is not None and end_ms < start_ms:
        raise ApiError(400, "end_ms before start_ms", "bad_query")
    limit = _query_int(request, "limit", low=1, high=MAX_HISTORY_LIMIT) or 1000
    query = EventQuery(ticker=ticker, kind=kind, start_ms=start_ms, end_ms=end_ms,
                       session=session, limit=limit, newest_first=True)
    rows = await backend(request.app[DEPS].event_history(query))
    rows.reverse()  # the newest `limit`, in time order
    return _json({"events": rows, "count": len(rows)})
