"""Start-up calendar cross-check of the polygon source (pure part)."""

from __future__ import annotations

from actors.sources.polygon import calendar_mismatches


def test_calendar_mismatches_against_the_shipped_calendar() -> None:
    holidays = [
        {"exchange": "NYSE", "date": "2026-11-26", "status": "closed", "name": "Thanksgiving"},
        {"exchange": "NYSE", "date": "2026-11-27", "status": "early-close"},
        {"exchange": "NASDAQ", "date": "2026-11-30", "status": "closed"},  # other exchange
        {"exchange": "NYSE", "date": "2026-12-01", "status": "closed"},  # we say: open
        {"exchange": "NYSE", "date": "not a date", "status": "closed"},
    ]
    assert calendar_mismatches(holidays) == ["2026-12-01"]
