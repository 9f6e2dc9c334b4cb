"""Sale conditions -> eligibility flags (docs/trade-conditions.md §2-5)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from actors.market.conditions import (
    algoseek_flags,
    algoseek_to_polygon,
    effective_flags,
    flags_for,
    polygon_condition_flags,
)
from schemas.batches import FLAG_FORM_T, FLAG_HIGH_LOW, FLAG_LAST, FLAG_VOLUME, FLAGS_REGULAR

HL, LAST, VOL = FLAG_HIGH_LOW, FLAG_LAST, FLAG_VOLUME


@pytest.mark.parametrize(
    ("ids", "expected"),
    [
        ([], HL | LAST | VOL),  # a regular trade has no condition
        ([14, 41], HL | LAST | VOL),  # ISO, trade-through exempt
        ([37, 14], VOL),  # odd-lot ISO
        ([10, 41], HL | VOL),  # derivatively priced: blocks last
        ([15], 0),  # official close re-report
        ([16], 0),  # official open re-report
        ([38], HL | LAST),  # corrected consolidated close: no volume
        ([0], HL | LAST | VOL),  # legacy "regular sale" id is neutral
        ([60], HL | LAST | VOL),  # SSR indicator: neutral
        ([13], VOL),  # extended hours sold out of sequence: volume only, always
    ],
)
def test_flags_are_the_and_of_every_condition(ids: list[int], expected: int) -> None:
    assert flags_for(ids) == expected


def test_unknown_ids_fail_closed_and_are_reported() -> None:
    unknown: list[int] = []
    assert flags_for([14, 999], unknown) == VOL
    assert unknown == [999]


@pytest.mark.parametrize(
    ("ids", "regular", "extended"),
    [
        ([12], VOL, HL | LAST | VOL),  # Form T: counts only inside PRE/AFTER
        ([12, 60], VOL, HL | LAST | VOL),  # with a neutral indicator
        ([12, 37], VOL, VOL),  # pre-market odd lot stays volume-only
        ([12, 10], VOL, HL | VOL),  # ANDed with the other ids
        ([13], VOL, VOL),
        ([14], HL | LAST | VOL, HL | LAST | VOL),
    ],
)
def test_form_t_resolves_by_session(ids: list[int], regular: int, extended: int) -> None:
    flags = flags_for(ids)
    assert effective_flags(flags, extended_session=False) == regular
    assert effective_flags(flags, extended_session=True) == extended
    assert bool(flags & FLAG_FORM_T) is (12 in ids)


def test_table_covers_the_polygon_trade_conditions() -> None:
    table = polygon_condition_flags()
    assert len(table) == 56
    assert table[37] == VOL
    assert table[12] == VOL
    assert table[41] == FLAGS_REGULAR


@pytest.mark.parametrize(
    ("hex_flags", "ids", "regular", "extended"),
    [
        ("1", (), HL | LAST | VOL, HL | LAST | VOL),  # regular
        ("20000020", (14, 41), HL | LAST | VOL, HL | LAST | VOL),  # ISO + 611 exempt
        ("2000", (12,), VOL, HL | LAST | VOL),  # Form T
        ("80000000", (37,), VOL, VOL),  # odd lot
        ("00004800", None, HL | VOL, HL | VOL),  # sold + out of sequence = Z (32)
        ("00006000", (13,), VOL, VOL),  # extended hours + out of sequence = U (13)
        ("40000000", (-1,), VOL, VOL),  # undocumented bit: unknown, fails closed
    ],
)
def test_algoseek_bits(
    hex_flags: str, ids: tuple[int, ...] | None, regular: int, extended: int
) -> None:
    if ids is not None:
        assert algoseek_to_polygon(hex_flags) == ids
    flags = algoseek_flags(hex_flags)
    assert effective_flags(flags, extended_session=False) == regular
    assert effective_flags(flags, extended_session=True) == extended


def test_algoseek_sample_shares(real_data_dir: Path) -> None:
    """docs/trade-conditions.md §5: nearly every regular-session print may move high/low;
    extended ones only once Form T is relaxed for the session."""
    path = real_data_dir / "algoseek_lean/tick/ibm/20131010_ibm_Trade_Tick.csv.gz"
    df = pd.read_csv(path, header=None, names=["t", "p", "s", "x", "c", "susp"],
                     dtype={"c": str})
    flags = np.array([algoseek_flags(c.lower()) for c in df["c"]])
    regular = ((df["t"] >= 34_200_000) & (df["t"] < 57_600_000)).to_numpy()

    def share(mask: np.ndarray, extended: bool) -> float:
        eff = np.array([effective_flags(int(f), extended) for f in flags[mask]])
        return float(((eff & HL) > 0).mean())

    assert share(regular, extended=False) > 0.99
    assert share(~regular, extended=False) < 0.05
    # After hours many IBM prints are prior-reference-price or FINRA reports: volume only.
    assert share(~regular, extended=True) > 0.7
