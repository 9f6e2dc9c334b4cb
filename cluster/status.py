"""The live status line of `tickstock up`: ticks/s, events/s, queue depth, clients, batches."""

from __future__ import annotations

import time
from typing import Any

import ray
from rich.console import Console
from rich.live import Live
from rich.table import Table


class StatusLine:
    """Polls the actors' `stats()` once per refresh and renders one compact table."""

    def __init__(self, graph: Any, enabled: bool = True) -> None:
        self._graph = graph
        self._enabled = enabled
        self._live: Live | None = None
        self._last_events = 0
        self._last_time = time.monotonic()
        if enabled:
            self._live = Live(console=Console(), auto_refresh=False, transient=False)
            self._live.start()

    def gather(self) -> dict[str, Any]:
        g = self._graph
        refs = {"ingest": g.ingest.stats.remote(), "queue": g.queue.stats.remote()}
        if g.gateway is not None:
            refs["gateway"] = g.gateway.stats.remote()
        out: dict[str, Any] = {}
        for name, ref in refs.items():
            try:
                out[name] = ray.get(ref, timeout=2)
            except Exception as e:  # a restarting actor: show it, keep going
                out[name] = {"error": type(e).__name__}
        return out

    def refresh(self) -> bool:
        """Render once; return True when a finite source is done."""
        stats = self.gather()
        ingest, queue, gw = stats["ingest"], stats["queue"], stats.get("gateway", {})
        now = time.monotonic()
        events = int(ingest.get("events", 0))
        ev_rate = (events - self._last_events) / max(now - self._last_time, 1e-3)
        self._last_events, self._last_time = events, now
        if self._live is not None:
            table = Table.grid(padding=(0, 2))
            table.add_row(
                f"[bold]{ingest.get('state', '?')}[/]",
                f"ticks/s {ingest.get('ticks_per_s', 0):,.0f}",
                f"events/s {ev_rate:,.1f}",
                f"queue {queue.get('depth', '?')}",
                f"clients {gw.get('connected', gw.get('clients', '?'))}",
                f"batch rows {ingest.get('avg_batch_rows', 0)}",
                f"rows {ingest.get('rows_in', 0):,}",
                f"rejected {sum(ingest.get('rejected', {}).values()):,}",
            )
            self._live.update(table, refresh=True)
        return ingest.get("state") in ("done", "error")

    def close(self) -> None:
        if self._live is not None:
            self._live.stop()
