"""Universes: the core universe, selectable named universes and per-user selections.

Pure core (`UniverseRegistry`) + a thin async actor (`UniverseCoordinatorActor`) that persists
selections and filters through a store when one is attached. The subscription set the ingest
needs is the core universe plus any extra tickers plus every ticker users selected.

Fixes of the original: selecting a `market` universe never mutates shared state; `highlow`
selections work; an empty selection means "no filter", stated explicitly (`tickers=None`).
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable, Mapping
from functools import cache
from importlib import resources
from typing import Any

from config.settings import UniverseConfig
from schemas.api import UserView

TRACKERS = ("market", "highlow")
DEFAULT_SELECTION = ("DEFAULT_UNIVERSE",)
SYMBOL_RE = re.compile(r"^[A-Z][A-Z0-9]{0,6}([.\-][A-Z0-9]{1,3})?$")


class UniverseError(ValueError):
    """A bad selection request (unknown universe or tracker)."""


@cache
def _read_csv(name: str) -> tuple[dict[str, str], ...]:
    text = resources.files("config").joinpath(f"data/{name}").read_text()
    return tuple(csv.DictReader(text.splitlines()))


def _column(row: Mapping[str, str], *names: str) -> str:
    for n in names:
        if n in row:
            return row[n].strip().upper()
    raise KeyError(names)


def load_named_universes(config: UniverseConfig) -> dict[str, frozenset[str]]:
    """Named universes from the shipped index lists (openly licensed)."""
    member = _read_csv("us_core_universe_membership.csv")
    sp500 = frozenset(r["symbol"] for r in member if r["in_sp500"] == "1")
    ndx = frozenset(r["symbol"] for r in member if r["in_nasdaq100"] == "1")
    dow = frozenset(r["symbol"] for r in member if r["in_dow30"] == "1")
    sp500_2018 = frozenset(
        _column(r, "Symbol") for r in _read_csv("sp500_constituents_2018-04-02.csv")
    )
    core: set[str] = set(config.extra_tickers)
    for name in config.core_files:
        for row in _read_csv(name):
            core.add(_column(row, "symbol", "Symbol", "Ticker"))
    universes = {
        "CORE": frozenset(core),
        "DEFAULT_UNIVERSE": sp500 | ndx,
        "SP500": sp500,
        "NASDAQ100": ndx,
        "DOW30": dow,
        "SP500_2018": sp500_2018,
        "INDEX_ETFS": frozenset({"SPY", "QQQ", "IWM", "DIA"}),
    }
    by_sector: dict[str, set[str]] = {}
    for row in member:
        if row["gics_sector"]:
            key = "SECTOR_" + re.sub(r"[^A-Z]+", "_", row["gics_sector"].upper()).strip("_")
            by_sector.setdefault(key, set()).add(row["symbol"])
    universes.update({k: frozenset(v) for k, v in by_sector.items()})
    universes["CORE"] = universes["CORE"] | universes["INDEX_ETFS"]
    return universes


class UniverseRegistry:
    """Universe membership and user selections; no I/O."""

    def __init__(self, config: UniverseConfig) -> None:
        self._universes = load_named_universes(config)
        self._selections: dict[str, dict[str, tuple[str, ...]]] = {}
        self._filters: dict[str, dict[str, Any]] = {}
        self._extra: set[str] = set()

    @property
    def core(self) -> frozenset[str]:
        return self._universes["CORE"]

    def names(self) -> dict[str, int]:
        return {name: len(members) for name, members in sorted(self._universes.items())}

    def tickers_of(self, name: str) -> frozenset[str]:
        try:
            return self._universes[name]
        except KeyError:
            raise UniverseError(f"unknown universe {name!r}") from None

    def is_member(self, ticker: str) -> bool:
        return ticker in self.core or ticker in self._extra

    def add_tickers(self, tickers: Iterable[str]) -> int:
        """Track extra tickers (e.g. symbols of a replayed file); return how many were new."""
        before = len(self._extra)
        self._extra.update(t for t in tickers if SYMBOL_RE.match(t))
        return len(self._extra) - before

    def select(self, user_id: str, tracker: str, names: Iterable[str]) -> None:
        if tracker not in TRACKERS:
            raise UniverseError(f"unknown tracker {tracker!r}, expected one of {TRACKERS}")
        chosen = tuple(dict.fromkeys(names))
        for name in chosen:
            self.tickers_of(name)
        self._selections.setdefault(user_id, {})[tracker] = chosen

    def set_filters(self, user_id: str, filters: Mapping[str, Any]) -> None:
        if not isinstance(filters, Mapping):
            raise UniverseError("filters must be an object")
        self._filters[user_id] = dict(filters)

    def load_user(
        self, user_id: str, selections: Mapping[str, list[str]], filters: Mapping[str, Any]
    ) -> None:
        """Restore a user's stored state (unknown universe names are skipped)."""
        for tracker, names in selections.items():
            if tracker in TRACKERS:
                known = [n for n in names if n in self._universes]
                self._selections.setdefault(user_id, {})[tracker] = tuple(known)
        if filters:
            self._filters[user_id] = dict(filters)

    def view(self, user_id: str) -> UserView:
        """A user's selections, filters and the union of selected tickers (None = all)."""
        selections = self._selections.get(user_id, {})
        tickers: set[str] = set()
        for names in selections.values():
            for name in names:
                tickers |= self._universes.get(name, frozenset())
        return UserView(
            user_id=user_id,
            tickers=sorted(tickers) if tickers else None,
            selections={k: list(v) for k, v in selections.items()},
            filters=self._filters.get(user_id, {}),
        )

    def subscription_set(self) -> frozenset[str]:
        """Every ticker the ingest must receive."""
        tickers = set(self.core) | self._extra
        for selections in self._selections.values():
            for names in selections.values():
                for name in names:
                    tickers |= self._universes.get(name, frozenset())
        return frozenset(tickers)
