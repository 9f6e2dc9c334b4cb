"""The gateway actor: serves `create_app` on the actor's own event loop (docs/ray.md §1).

A plain class with async methods only (a sync method would block the loop that serves every
browser); `cluster/graph.py` applies `ray.remote(num_cpus=0, max_restarts=-1)` to its Ray side
(`GatewayRayActor`, which builds the `RayDeps` over handles) with max_task_retries=0 (emits are
not idempotent). The server starts in `__init__` (which runs on the actor's loop), so a
restarted actor serves again without a further call; `ready()` surfaces bind errors. The
aiohttp app is imported when the server starts, so importing this class costs little.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import msgspec

from config.settings import Settings

if TYPE_CHECKING:
    from aiohttp import web

    from gateway.deps import GatewayDeps

log = logging.getLogger(__name__)

DepsFactory = Callable[[], "GatewayDeps | Awaitable[GatewayDeps]"]
SHUTDOWN_TIMEOUT_S = 5.0


class GatewayActor:
    """Run the gateway's aiohttp server inside an async Ray actor."""

    def __init__(
        self,
        settings: Settings | dict[str, Any],
        *,
        deps: GatewayDeps | None = None,
        deps_factory: DepsFactory | None = None,
        static_dir: str | None = None,
    ) -> None:
        """Start serving, given either `deps` or `deps_factory` (called on this loop)."""
        self._settings = (
            settings if isinstance(settings, Settings) else msgspec.convert(settings, Settings)
        )
        if (deps is None) == (deps_factory is None):
            raise ValueError("pass exactly one of: deps, deps_factory")
        self._static_dir = static_dir
        self._runner: web.AppRunner | None = None
        self._app: web.Application | None = None
        self._started = asyncio.get_running_loop().create_task(self._serve(deps, deps_factory))

    async def _serve(
        self, deps: GatewayDeps | None, factory: DepsFactory | None
    ) -> tuple[str, int]:
        if deps is None:
            assert factory is not None
            made = factory()
            deps = await made if inspect.isawaitable(made) else made
        from aiohttp import web

        from gateway.app import create_app

        cfg = self._settings.gateway
        self._app = create_app(cfg, deps, static_dir=self._static_dir)
        self._runner = web.AppRunner(
            self._app, handle_signals=False, access_log=None, shutdown_timeout=SHUTDOWN_TIMEOUT_S
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, cfg.host, cfg.port)
        await site.start()
        port = _bound_port(self._runner, cfg.port)
        host = cfg.host
        if host in ("", "0.0.0.0", "::"):
            import ray  # only here: the class itself stays importable without Ray

            host = ray.util.get_node_ip_address()  # type: ignore[no-untyped-call]
        log.info("gateway serving on http://%s:%d", host, port)
        return host, port

    async def ready(self) -> tuple[str, int]:
        """Wait until the server listens; return the (host, port) browsers should use."""
        return await asyncio.shield(self._started)

    async def stats(self) -> dict[str, Any]:
        """Gateway metrics and emission state (plain data, for the CLI and notebooks)."""
        from gateway.keys import HUB

        await self.ready()
        assert self._app is not None
        return self._app[HUB].stats()

    async def ping(self) -> str:
        """Liveness probe for the supervisor."""
        return "ok"

    async def stop(self) -> None:
        """Stop serving: disconnect clients, stop the loops, close the listener."""
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()


def _bound_port(runner: web.AppRunner, configured: int) -> int:
    """The port actually bound (differs from the configured one when that is 0)."""
    for address in runner.addresses:
        if isinstance(address, tuple) and len(address) >= 2:
            return int(address[1])
    return configured


