"""Scripted faults of the replay server and the status frames they send (docs/polygon.md §2, §7)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgspec

AUTH_FAILED_MSG = "authentication failed"
MAX_CONNECTIONS_MSG = (
    "Maximum number of websocket connections exceeded. You have reached the connection "
    "limit for your account."
)
SLOW_CONSUMER_MSG = "Your connection has been closed because you are a slow consumer."
MALFORMED: dict[str, bytes] = {
    "bad_json": b'[{"ev":"T","sym":"AAPL","p":',
    "not_array": b'{"ev":"T","sym":"AAPL","p":1.0,"s":1,"t":1}',
    "unknown_ev": b'[{"ev":"ZZ","sym":"AAPL","p":1.0}]',
    "missing_fields": b'[{"ev":"T","sym":"AAPL"}]',
    "wrong_types": b'[{"ev":"T","sym":"AAPL","p":"1.0","s":1,"t":"soon"}]',
    "status_no_message": b'[{"ev":"status","status":"info"}]',
}
FAULT_KINDS = frozenset(
    {"drop", "auth_failed", "drop_auth", "max_connections", "stall", "slow_consumer",
     "malformed", "no_acks"}
)
TERMINAL_FAULTS = frozenset({"drop", "max_connections", "slow_consumer"})
AUTH_FAULTS = frozenset({"auth_failed", "drop_auth"})


def status_frame(status: str, message: str | None) -> bytes:
    """One status event as a frame (`message` omitted when None)."""
    body: dict[str, str] = {"ev": "status", "status": status}
    if message is not None:
        body["message"] = message
    return msgspec.json.encode([body])


@dataclass(frozen=True)
class Fault:
    """One scripted misbehaviour, applied to the next connection it fits.

    kinds:
    - `drop`: after `after_frames` data frames, close with `code` (1006 = TCP reset without a
      close frame; 1000/1001/1011 = a close frame with that code);
    - `auth_failed`: answer the next `times` auths with `auth_failed`;
    - `drop_auth`: reset the next connection on its auth message, before any reply;
    - `max_connections`: after the subscribe acks, send `max_connections` and close 1008;
    - `stall`: after `after_frames`, send nothing for `seconds` (data meanwhile is missed);
    - `slow_consumer`: pack `factor` ticks per frame for `frames` frames, then send
      `slow_consumer` and close 1008;
    - `malformed`: after `after_frames`, send one bad frame (`what`: a key of `MALFORMED`);
    - `no_acks`: ignore the next `times` subscribe messages (no ack, not applied), as if lost.

    Faults that leave the connection open (stall, malformed, no_acks) hand over to the next
    scripted fault on the same connection; `after_frames` counts from the connection start.
    """

    kind: str
    after_frames: int = 0
    code: int = 1006
    seconds: float = 1.0
    what: str = "bad_json"
    times: int = 1
    factor: int = 10
    frames: int = 3

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault {self.kind!r}: one of {sorted(FAULT_KINDS)}")
        if self.kind == "malformed" and self.what not in MALFORMED:
            raise ValueError(f"unknown malformed frame {self.what!r}: one of {sorted(MALFORMED)}")


def parse_fault(spec: str) -> Fault:
    """`kind[:key=value,...]`, e.g. `drop:after=50,code=1006` or `stall:after=5,seconds=3`."""
    kind, _, rest = spec.partition(":")
    names = {"after": "after_frames", "after_frames": "after_frames", "code": "code",
             "seconds": "seconds", "what": "what", "times": "times", "factor": "factor",
             "frames": "frames"}
    kwargs: dict[str, Any] = {}
    for item in filter(None, (p.strip() for p in rest.split(","))):
        key, sep, value = item.partition("=")
        if not sep or key not in names:
            raise ValueError(f"bad fault option {item!r} in {spec!r}")
        name = names[key]
        kwargs[name] = value if name == "what" else float(value) if name == "seconds" else int(
            value)
    return Fault(kind.strip(), **kwargs)
