"""UniverseRegistry: core universe, selections, subscription set."""

from __future__ import annotations

import pytest

from actors.universe.registry import UniverseError, UniverseRegistry
from config.settings import UniverseConfig


@pytest.fixture
def registry() -> UniverseRegistry:
    return UniverseRegistry(UniverseConfig())


def test_core_universe_holds_the_index_lists(registry: UniverseRegistry) -> None:
    core = registry.core
    assert {"AAPL", "MSFT", "SPY", "BRK.B", "IBM", "BAC", "AIG", "AMZN"} <= core
    assert len(core) > 500
    assert registry.names()["DOW30"] == 30


def test_selection_filters_view_and_extends_subscriptions(registry: UniverseRegistry) -> None:
    assert registry.view("u1").tickers is None  # nothing selected: no filter
    registry.select("u1", "highlow", ["DOW30"])
    view = registry.view("u1")
    assert view.tickers is not None
    assert len(view.tickers) == 30
    assert view.selections == {"highlow": ["DOW30"]}
    assert registry.view("u2").tickers is None  # another user is unaffected


def test_bad_requests_rejected(registry: UniverseRegistry) -> None:
    with pytest.raises(UniverseError, match="unknown universe"):
        registry.select("u1", "market", ["NOPE"])
    with pytest.raises(UniverseError, match="unknown tracker"):
        registry.select("u1", "bogus", ["DOW30"])


def test_extra_tickers_validated(registry: UniverseRegistry) -> None:
    assert registry.add_tickers(["JUNO", "bad symbol!", "", "CPN"]) == 2
    assert registry.is_member("JUNO")
    assert not registry.is_member("bad symbol!")
    assert "CPN" in registry.subscription_set()
