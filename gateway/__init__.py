"""The gateway: aiohttp app with the Socket.IO server, REST API, auth and the dashboard.

`create_app(config, deps)` builds it (`gateway.app`); `GatewayActor` (`gateway.actor`) serves
it inside an async Ray actor; `InMemoryDeps` (`gateway.deps`) stands in for the system.
Imports are lazy, so the pure parts (`gateway.emitter`, `gateway.auth`) load without aiohttp.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "create_app": "gateway.app",
    "GatewayActor": "gateway.actor",
    "GatewayDeps": "gateway.deps",
    "InMemoryDeps": "gateway.deps",
    "InMemoryUserStore": "gateway.deps",
    "UserStore": "gateway.deps",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'gateway' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
