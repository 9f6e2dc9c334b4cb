"""Session roll-over: which market session the deployment is in, and when it changes.

The deployment's session is that of the newest watermark over all shards (a slower shard's
older session does not move it back). When it changes, the queue actor persists the session
that ended (its per-ticker counts) and starts the market analytics afresh. Pure: the session
of each watermark comes from the shard's output, where it was computed once.
"""

from __future__ import annotations

from schemas.events import SessionInfo

SessionKey = tuple[str, str]  # (ISO date, session name)


class SessionRollover:
    """Tracks the newest watermark per shard and the session it falls in."""

    def __init__(self) -> None:
        self._watermarks: dict[int, int] = {}
        self._newest = 0
        self.session: SessionInfo | None = None  # the session of the newest watermark

    @property
    def watermark(self) -> int:
        """The newest event time any shard has seen (Unix ms; 0 before any data)."""
        return self._newest

    @property
    def key(self) -> SessionKey | None:
        return None if self.session is None else self.session.key

    def observe(self, shard: int, watermark: int, session: SessionInfo | None) -> SessionKey | None:
        """Take one shard's watermark and its session; return the key of the session that
        just ended, if the deployment moved to another one."""
        self._watermarks[shard] = max(self._watermarks.get(shard, 0), watermark)
        if watermark < self._newest or session is None:
            return None
        self._newest = watermark
        ended = self.session
        self.session = session
        if ended is None or ended.key == session.key:
            return None
        return ended.key
