"""`PolygonRest`: the start-up REST calls over the official `RESTClient` (docs/polygon.md §3).

The client's connect/read timeouts are never applied in 1.16.3 (a server that never
answers blocks forever), so the pool's timeout is set by hand. The client is synchronous:
calls run in threads (`asyncio.to_thread`) with bounded concurrency. Errors are counted by
reason and reported without the API key; `previous_close` never raises for one bad ticker.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from polygon import RESTClient
from polygon.exceptions import AuthError, BadResponse
from urllib3.exceptions import HTTPError

from config.settings import PolygonConfig

log = logging.getLogger("tickstock.polygon.rest")

T = TypeVar("T")
DEFAULT_CONCURRENCY = 8


class PolygonRestError(RuntimeError):
    """A REST call failed; the message never contains the API key."""


class PolygonRest:
    """Previous closes, market status and holidays from Polygon's REST API (or the stub)."""

    def __init__(
        self, cfg: PolygonConfig, *, concurrency: int = DEFAULT_CONCURRENCY, retries: int = 3
    ) -> None:
        self._key = cfg.api_key
        self._client = RESTClient(
            api_key=cfg.api_key, base=cfg.rest_base.rstrip("/"),
            connect_timeout=cfg.rest_timeout_s, read_timeout=cfg.rest_timeout_s,
            retries=retries,
        )
        # The 1.16.3 client builds urllib3.Timeout but never passes it: apply it to the pool.
        self._client.client.connection_pool_kw["timeout"] = self._client.timeout
        self._limit = asyncio.Semaphore(concurrency)
        self.errors: Counter[str] = Counter()
        self.calls = 0

    async def previous_close(self, tickers: Iterable[str]) -> dict[str, float]:
        """Previous session's close per ticker; failures are counted and left out."""
        async def one(ticker: str) -> tuple[str, float | None]:
            try:
                aggs = await self._call(self._client.get_previous_close_agg, ticker)
            except PolygonRestError:
                return ticker, None
            rows = aggs if isinstance(aggs, list) else [aggs]
            closes = [r.close for r in rows if getattr(r, "close", None)]
            if not closes:
                self.errors["no_data"] += 1
                return ticker, None
            return ticker, float(closes[-1])

        results = await asyncio.gather(*(one(t) for t in dict.fromkeys(tickers)))
        return {t: c for t, c in results if c is not None}

    async def market_status(self) -> dict[str, Any]:
        """`/v1/marketstatus/now` as Polygon's JSON (market, serverTime, exchanges, ...)."""
        resp = await self._call(self._client.get_market_status, raw=True)
        data = self._json(resp)
        if not isinstance(data, dict):
            self.errors["bad_body"] += 1
            raise PolygonRestError("market status: unexpected response body")
        return data

    async def market_holidays(self) -> list[dict[str, Any]]:
        """`/v1/marketstatus/upcoming`: one entry per exchange and day."""
        resp = await self._call(self._client.get_market_holidays, raw=True)
        data = self._json(resp)
        if not isinstance(data, list):
            self.errors["bad_body"] += 1
            raise PolygonRestError("market holidays: unexpected response body")
        return [d for d in data if isinstance(d, dict)]

    def stats(self) -> dict[str, Any]:
        """Calls made and errors by reason."""
        return {"calls": self.calls, "errors": dict(self.errors)}

    def close(self) -> None:
        """Release the connection pool."""
        self._client.client.clear()

    # -- internals ----------------------------------------------------------------------------

    async def _call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        async with self._limit:
            self.calls += 1
            try:
                return await asyncio.to_thread(fn, *args, **kwargs)
            except BadResponse as e:
                self.errors["bad_response"] += 1
                raise self._error(fn, f"bad response: {str(e)[:300]}") from None
            except AuthError as e:
                self.errors["auth"] += 1
                raise self._error(fn, f"auth error: {e}") from None
            except (HTTPError, OSError, TimeoutError) as e:
                self.errors["network"] += 1
                raise self._error(fn, f"{type(e).__name__}: {str(e)[:300]}") from None

    def _error(self, fn: Callable[..., Any], text: str) -> PolygonRestError:
        name = getattr(fn, "__name__", "call")
        message = f"polygon REST {name}: {text}"
        if self._key:
            message = message.replace(self._key, "***")
        log.warning("%s", message)
        return PolygonRestError(message)

    def _json(self, resp: Any) -> Any:
        try:
            return json.loads(resp.data.decode("utf-8"))
        except (ValueError, AttributeError, UnicodeDecodeError):
            self.errors["bad_body"] += 1
            raise PolygonRestError("polygon REST: response is not JSON") from None
