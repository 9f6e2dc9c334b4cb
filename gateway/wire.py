"""The JSON codec python-socketio uses for packets: msgspec for encoding, so events encoded once
as `msgspec.Raw` are spliced into every payload without re-serialisation."""

from __future__ import annotations

from typing import Any

import msgspec
from engineio import json as engineio_json

_encoder = msgspec.json.Encoder()


class MsgspecJson:
    """A `json`-module look-alike (`dumps`/`loads`) for `socketio.AsyncServer(json=...)`."""

    @staticmethod
    def dumps(obj: Any, **_: Any) -> str:
        """Encode compactly; `msgspec.Raw` values are inserted verbatim."""
        return _encoder.encode(obj).decode()

    @staticmethod
    def loads(text: str | bytes, **kwargs: Any) -> Any:
        """Decode incoming packets with engine.io's guarded decoder (caps integer length)."""
        return engineio_json.loads(text, **kwargs)
