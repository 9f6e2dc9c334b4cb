"""The gateway application: dashboard, REST API and Socket.IO on one aiohttp app.

`create_app(config, deps)` wires it; state lives under typed `web.AppKey`s (`gateway.keys`);
the emission and heartbeat loops start and stop in `cleanup_ctx`. Serve it with
`web.AppRunner` (see `gateway.actor`) or `aiohttp.test_utils.TestServer`.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

from aiohttp import web

from config.settings import GatewayConfig
from gateway import api
from gateway.auth import Authenticator
from gateway.deps import GatewayDeps
from gateway.hub import SOCKETIO_PATH, Hub
from gateway.keys import AUTH, CONFIG, DEPS, HUB, METRICS

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).resolve().parent / "static"
VENDOR_SCRIPT = "vendor/socket.io.min.js"


def create_app(
    config: GatewayConfig,
    deps: GatewayDeps,
    *,
    static_dir: str | Path | None = None,
    authenticator: Authenticator | None = None,
    seq_base: int | None = None,
) -> web.Application:
    """Build the gateway app (not started: run it with an AppRunner or a test server).

    `authenticator` and `seq_base` exist for tests (a cheap password hasher, small seqs).
    """
    app = web.Application(
        middlewares=[api.error_middleware, api.auth_middleware], client_max_size=api.MAX_BODY_BYTES
    )
    metrics: Counter[str] = Counter()
    auth = authenticator or Authenticator(config, deps.user_store)
    hub = Hub(config, deps, auth, metrics, seq_base=seq_base)
    app[CONFIG] = config
    app[DEPS] = deps
    app[AUTH] = auth
    app[HUB] = hub
    app[METRICS] = metrics
    hub.sio.attach(app, socketio_path=SOCKETIO_PATH)
    app.add_routes(api.routes)
    _add_dashboard(app, Path(static_dir) if static_dir else STATIC_DIR)
    app.on_response_prepare.append(api.security_headers)
    app.cleanup_ctx.append(_local_user_ctx)
    app.cleanup_ctx.append(_loops_ctx)
    app.on_shutdown.append(_disconnect_clients)
    return app


def _add_dashboard(app: web.Application, static_dir: Path) -> None:
    index = static_dir / "index.html"
    if not (static_dir / VENDOR_SCRIPT).is_file():
        log.warning(
            "%s missing: the dashboard cannot connect; build it with `pip install .` "
            "(runs npm ci) or `python setup.py vendor`",
            static_dir / VENDOR_SCRIPT,
        )

    async def dashboard(request: web.Request) -> web.FileResponse:
        return web.FileResponse(index, headers={"Cache-Control": "no-cache"})

    app.router.add_get("/", dashboard)
    app.router.add_static("/static/", static_dir, follow_symlinks=False)


async def _local_user_ctx(app: web.Application) -> AsyncIterator[None]:
    """In local mode, give the single user an account so settings work (if storage does)."""
    auth = app[AUTH]
    if auth.local_mode:
        try:
            await auth.ensure_local_user()
        except Exception:  # storage down or disabled: live data still works, settings don't
            log.warning("could not create the local user account", exc_info=True)
    yield


async def _loops_ctx(app: web.Application) -> AsyncIterator[None]:
    """Run the emission and heartbeat loops for the app's lifetime."""
    hub = app[HUB]
    # Modules, routes and the app live as long as the process: keep them out of every later
    # full garbage collection, which would otherwise walk them again each time (tens of ms).
    gc.freeze()
    tasks = [
        asyncio.create_task(hub.emission_loop(), name="gateway-emission"),
        asyncio.create_task(hub.heartbeat_loop(), name="gateway-heartbeat"),
    ]
    yield
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _disconnect_clients(app: web.Application) -> None:
    """Close Socket.IO connections first, so shutdown does not wait on open websockets."""
    try:
        await app[HUB].close()
    except Exception:  # a client gone mid-close must not block the shutdown
        log.warning("error while disconnecting clients", exc_info=True)
