"""Exponential backoff with jitter for database retries (pure; the randomness is injectable)."""

from __future__ import annotations

import random


class Backoff:
    """Exponential backoff with jitter: initial, 2x, 4x ... up to `maximum` seconds."""

    def __init__(self, initial: float, maximum: float, rng: random.Random | None = None) -> None:
        self._initial = initial
        self._max = maximum
        self._rng = rng or random.Random()
        self._attempt = 0

    def next_delay(self) -> float:
        """The wait before the next attempt (grows until `reset`)."""
        base = min(self._max, self._initial * 2 ** min(self._attempt, 30))
        self._attempt += 1
        return float(base * self._rng.uniform(0.5, 1.0))

    def reset(self) -> None:
        """Start again from `initial` (after a success)."""
        self._attempt = 0


