"""Frozen copies of the detectors before the issue-6 speed work: the equivalence reference.

`tests/unit/test_trend_equivalence.py` and `tests/integration/test_engine_equivalence.py` run
these and the current modules side by side and require the same events. Do not edit them to
follow later behaviour changes: a deliberate change updates the equivalence tests instead.
"""
