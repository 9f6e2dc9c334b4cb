"""`/metrics` in Prometheus' text exposition format, from the status the gateway already has."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

PREFIX = "tickstock_"
FEED_UP = frozenset({"connected", "running", "done"})


def _line(name: str, value: Any, labels: Mapping[str, str] | None = None) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    tags = ""
    if labels:
        tags = "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in sorted(labels.items())) + "}"
    return f"{PREFIX}{name}{tags} {value}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _family(name: str, kind: str, help_text: str, lines: Iterable[str | None]) -> list[str]:
    body = [line for line in lines if line is not None]
    if not body:
        return []
    return [f"# HELP {PREFIX}{name} {help_text}", f"# TYPE {PREFIX}{name} {kind}", *body]


def render(system: Mapping[str, Any], gateway: Mapping[str, Any]) -> str:
    """Render the system status (from the actors) and the gateway counters."""
    ingest = system.get("ingest") or {}
    queue = system.get("queue") or {}
    out: list[str] = []
    out += _family("feed_up", "gauge", "1 while the source delivers (feed connected/running)",
                   [_line("feed_up", int(system.get("feed") in FEED_UP))])
    out += _family("feed_lag_ms", "gauge", "receive time behind event time (live feeds)",
                   [_line("feed_lag_ms", system.get("lag_ms"))])
    out += _family("ticks_per_second", "gauge", "trades ingested per second",
                   [_line("ticks_per_second", system.get("ticks_per_s"))])
    out += _family("rows_ingested_total", "counter", "rows received from the source",
                   [_line("rows_ingested_total", ingest.get("rows_in"))])
    out += _family("batches_sent_total", "counter", "columnar batches sent to shards",
                   [_line("batches_sent_total", ingest.get("batches_sent"))])
    out += _family("batch_rows_avg", "gauge", "average rows per shard batch",
                   [_line("batch_rows_avg", ingest.get("avg_batch_rows"))])
    out += _family("events_detected_total", "counter", "events detected by the shards",
                   [_line("events_detected_total", ingest.get("events"))])
    out += _family("lost_on_restart_total", "counter", "rows a restarted shard could not get",
                   [_line("lost_on_restart_total", ingest.get("lost_on_restart"))])
    out += _family("queue_depth", "gauge", "events waiting in the priority queue",
                   [_line("queue_depth", system.get("queue_depth"))])
    out += _family("queue_delivered_total", "counter", "events handed to the gateway",
                   [_line("queue_delivered_total", queue.get("delivered"))])
    out += _family("dropped_total", "counter", "events dropped by the queue, by reason",
                   [_line("dropped_total", v, {"reason": k})
                    for k, v in (system.get("dropped") or {}).items()])
    out += _family("rejected_total", "counter", "input rows rejected by the ingest, by reason",
                   [_line("rejected_total", v, {"reason": k})
                    for k, v in (system.get("rejected") or {}).items()])
    out += _family("clients_connected", "gauge", "Socket.IO connections",
                   [_line("clients_connected", gateway.get("connected"))])
    out += _family("payloads_emitted_total", "counter", "stock_data payloads emitted",
                   [_line("payloads_emitted_total", gateway.get("emitted"))])
    out += _family("events_emitted_total", "counter", "events sent to clients",
                   [_line("events_emitted_total", gateway.get("emitted_events"))])
    out += _family("rejected_requests_total", "counter", "bad API requests",
                   [_line("rejected_requests_total", gateway.get("rejected_requests"))])
    return "\n".join(out) + "\n"
