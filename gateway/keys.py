"""Typed keys of the aiohttp application state and of per-request values."""

from __future__ import annotations

from collections import Counter

from aiohttp import web

from config.settings import GatewayConfig
from gateway.auth import Authenticator, Principal
from gateway.deps import GatewayDeps
from gateway.hub import Hub

CONFIG = web.AppKey("config", GatewayConfig)
DEPS = web.AppKey("deps", GatewayDeps)
AUTH = web.AppKey("auth", Authenticator)
HUB = web.AppKey("hub", Hub)
METRICS = web.AppKey("metrics", Counter[str])

PRINCIPAL = web.RequestKey("principal", Principal)  # the authenticated caller

__all__ = ["AUTH", "CONFIG", "DEPS", "HUB", "METRICS", "PRINCIPAL", "Principal"]
