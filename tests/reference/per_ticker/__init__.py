"""The per-ticker engine before the many-ticker (grouped) rework of issue 6: a frozen reference.

`tests/unit/test_many_tickers.py` and `tests/integration/test_many_ticker_equivalence.py` run
it and the current engine side by side and require identical events, ticker states, rejects
and analytics deltas. Surge, Trend and the analytics are the current modules (not copied):
the rework does not touch them, so the comparison isolates it.
"""
