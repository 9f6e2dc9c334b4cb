"""Equivalence tests are pure like unit tests: no Ray, no servers (docs/style.md §11)."""

from __future__ import annotations

from tests.unit.conftest import _disallow_ray_init  # noqa: F401 - an autouse fixture
