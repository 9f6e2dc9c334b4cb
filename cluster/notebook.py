"""Attach to a running TickStock from a notebook: live state and history as DataFrames.

    >>> from cluster.notebook import attach
    >>> ts = attach()                      # ray.init(address="auto", namespace="tickstock")
    >>> ts.status()                        # ingest, queue and shard stats
    >>> ts.ticker_state("AAPL")            # session high/low/base/counts from its shard
    >>> ts.session_counts()                # per-ticker counts of the current session (DataFrame)
    >>> ts.history(ticker="AAPL", kind="high")   # stored event history (DataFrame)

Offline, without Ray: `actors.detection.offline.detect(paths)` runs the same detectors over
recorded days.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import ray

from actors.ingest.routing import shard_of
from config import constants as C
from schemas.api import EventQuery


class TickStockClient:
    """Read-only views over the named actors of a running system."""

    def __init__(self, namespace: str = C.NAMESPACE) -> None:
        self._ns = namespace

    def _actor(self, name: str) -> Any:
        return ray.get_actor(name, namespace=self._ns)

    def shards(self) -> list[Any]:
        names = sorted(
            a["name"] for a in ray.util.list_named_actors(all_namespaces=True)
            if a["namespace"] == self._ns and a["name"].startswith(C.SHARD_ACTOR_PREFIX)
        )
        return [self._actor(n) for n in names]

    def status(self) -> dict[str, Any]:
        return {
            "ingest": ray.get(self._actor(C.INGEST_ACTOR).stats.remote()),
            "queue": ray.get(self._actor(C.PRIORITY_QUEUE_ACTOR).stats.remote()),
            "shards": ray.get([s.stats.remote() for s in self.shards()]),
        }

    def ticker_state(self, ticker: str) -> dict[str, Any]:
        shards = self.shards()
        shard = shards[shard_of(ticker, len(shards))]
        return dict(ray.get(shard.ticker_state.remote(ticker)))

    def session_counts(self) -> pd.DataFrame:
        counts = ray.get(self._actor(C.PRIORITY_QUEUE_ACTOR).session_counts.remote())
        return pd.DataFrame.from_dict(counts, orient="index").rename_axis("ticker")

    def history(self, **filters: Any) -> pd.DataFrame:
        """Stored events; `filters` are the fields of `schemas.api.EventQuery`."""
        query = EventQuery(**filters)
        rows = ray.get(self._actor(C.PERSISTENCE_ACTOR).query_events.remote(query))
        return pd.DataFrame(rows)


def attach(address: str = "auto", namespace: str = C.NAMESPACE) -> TickStockClient:
    """Connect to the running cluster (once) and return a client."""
    if not ray.is_initialized():
        ray.init(address=address, namespace=namespace, log_to_driver=False)
    return TickStockClient(namespace)
