"""Prometheus rendering of the status the gateway has."""

from __future__ import annotations

from gateway.prometheus import render


def test_render_families_labels_and_skips_missing_values() -> None:
    text = render(
        {"feed": "connected", "lag_ms": 42, "ticks_per_s": 1500.5, "queue_depth": 3,
         "dropped": {"stale": 2, 'we"ird': 1}, "rejected": {"unknown_symbol": 7},
         "ingest": {"rows_in": 100, "events": 9, "avg_batch_rows": 812.5}},
        {"connected": 4, "emitted": 11, "rejected_requests": 0},
    )
    lines = text.splitlines()
    assert "tickstock_feed_up 1" in lines
    assert "tickstock_feed_lag_ms 42" in lines
    assert 'tickstock_dropped_total{reason="stale"} 2' in lines
    assert 'tickstock_dropped_total{reason="we\\"ird"} 1' in lines
    assert 'tickstock_rejected_total{reason="unknown_symbol"} 7' in lines
    assert "tickstock_clients_connected 4" in lines
    assert "# TYPE tickstock_rows_ingested_total counter" in lines
    assert not any(line.startswith("tickstock_queue_delivered_total") for line in lines)
    assert render({"feed": "stale"}, {}).splitlines()[-1] == "tickstock_feed_up 0"
