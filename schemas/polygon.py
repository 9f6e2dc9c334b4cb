"""Polygon.io stocks WebSocket wire formats (reference/polygon.md §2), decoded with msgspec.

Only the fields the system uses are typed; extra keys are ignored, as Polygon adds fields.
"""

from __future__ import annotations

import msgspec


class PolygonTrade(msgspec.Struct, frozen=True, tag_field="ev", tag="T"):
    """`T`: one trade."""

    sym: str
    p: float  # price, $
    s: float  # size, shares (fractional on newer feeds)
    t: int  # SIP time, Unix ms
    x: int = 0  # exchange id
    i: str = ""  # trade id
    z: int = 0  # tape
    c: list[int] = msgspec.field(default_factory=list)  # condition ids
    q: int = 0  # sequence number
    trfi: int | None = None
    trft: int | None = None


class PolygonAgg(msgspec.Struct, frozen=True, tag_field="ev", tag="A"):
    """`A`: one per-second bar."""

    sym: str
    o: float
    h: float
    l: float  # noqa: E741 - Polygon's field name
    c: float
    v: float  # bar volume
    s: int  # bar start, Unix ms
    e: int  # bar end, Unix ms
    vw: float = 0.0  # bar VWAP
    av: float = 0.0  # accumulated volume today
    op: float = 0.0  # official open
    a: float = 0.0  # today's VWAP
    z: float = 0.0  # average trade size
    otc: bool = False


class PolygonMinuteAgg(PolygonAgg, frozen=True, tag="AM"):
    """`AM`: one minute bar (re-sent when late trades change it: dedupe on (sym, s))."""


class PolygonStatus(msgspec.Struct, frozen=True, tag_field="ev", tag="status"):
    """`status`: connection, auth and subscription messages."""

    status: str
    message: str = ""


PolygonMessage = PolygonTrade | PolygonAgg | PolygonMinuteAgg | PolygonStatus

# Client -> server.


class PolygonAction(msgspec.Struct, frozen=True):
    """`{"action": "auth"|"subscribe"|"unsubscribe", "params": ...}`."""

    action: str
    params: str = ""


frame_decoder = msgspec.json.Decoder(list[PolygonMessage])
message_decoder = msgspec.json.Decoder(PolygonMessage)
action_decoder = msgspec.json.Decoder(PolygonAction)
encoder = msgspec.json.Encoder()
