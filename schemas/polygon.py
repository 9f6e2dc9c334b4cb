"""Polygon.io's stocks WebSocket wire formats (docs/polygon.md §2), one module for all of them.

Three groups, each decoded or encoded with msgspec:

- what Polygon sends and we decode (`PolygonTrade` `T`, `PolygonAgg` `A`, `PolygonMinuteAgg`
  `AM`, `PolygonStatus`): only the fields the system uses are typed; extra keys are ignored,
  as Polygon adds fields;
- what a client sends (`PolygonAction`: auth, subscribe, unsubscribe), and the small heads
  read without decoding a whole message (`StatusHead` for the feed's status frames,
  `EventHead` to route a recorded event by channel and symbol);
- what the replay server sends as Polygon does (`WireTrade`, `WireAgg`, `WireMinuteAgg`): the
  key order and integer sizes of Polygon's own frames, defaults omitted;

plus one line of the project's recording format (`RecordedFrame`, `tickstock record`).
"""

from __future__ import annotations

import msgspec

# -- Polygon -> us --------------------------------------------------------------------------


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

# -- client -> server, and heads ------------------------------------------------------------


class PolygonAction(msgspec.Struct, frozen=True):
    """`{"action": "auth"|"subscribe"|"unsubscribe", "params": ...}`."""

    action: str
    params: str = ""


class StatusHead(msgspec.Struct):
    """Enough of any event to tell a status message and read it (the feed's watchdog)."""

    ev: str = ""
    status: str = ""
    message: str = ""


class EventHead(msgspec.Struct):
    """Enough of a recorded event to route it by subscription."""

    ev: str = ""
    sym: str = ""
    T: str = ""  # LULD/NOI carry the symbol in `T`


# -- us as Polygon (the replay server) ------------------------------------------------------


class WireTrade(msgspec.Struct, frozen=True, omit_defaults=True, tag_field="ev", tag="T"):
    """A `T` event as Polygon sends it (key order as on the wire)."""

    sym: str
    i: str
    x: int
    p: float
    s: int
    t: int
    q: int
    z: int
    c: tuple[int, ...] = ()
    trfi: int | None = None
    trft: int | None = None


class WireAgg(msgspec.Struct, frozen=True, omit_defaults=True, tag_field="ev", tag="A"):
    """An `A` bar as Polygon sends it."""

    sym: str
    v: int
    av: int
    vw: float
    o: float
    c: float
    h: float
    l: float  # noqa: E741 - Polygon's field name
    a: float
    z: int
    s: int
    e: int
    op: float | None = None  # official open, once known


class WireMinuteAgg(WireAgg, frozen=True, tag="AM"):
    """An `AM` bar."""


# -- the project's recordings ---------------------------------------------------------------


class RecordedFrame(msgspec.Struct, frozen=True):
    """One line of a `tickstock record` file: a raw frame and when it was received."""

    recv_ms: int
    frame: str


frame_decoder = msgspec.json.Decoder(list[PolygonMessage])
message_decoder = msgspec.json.Decoder(PolygonMessage)
action_decoder = msgspec.json.Decoder(PolygonAction)
raw_list_decoder = msgspec.json.Decoder(list[msgspec.Raw])  # a frame, one element per event
status_head_decoder = msgspec.json.Decoder(StatusHead)
event_head_decoder = msgspec.json.Decoder(EventHead)
recorded_frame_decoder = msgspec.json.Decoder(RecordedFrame)
encoder = msgspec.json.Encoder()
