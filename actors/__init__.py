"""The actors of TickStock, one package per role (the README's code map names each).

In every package, `actor.py` is the Ray shell and the modules beside it are pure (no `ray`);
`actors/handles.py` is the only module here that calls Ray. A handle turns Ray's failures into
the errors below, so the pure modules that use handles react to a dead or restarting actor
without importing `ray`, and their unit tests raise the same errors from hand-written fakes.
"""

from __future__ import annotations


class ActorUnavailable(RuntimeError):
    """The actor behind a handle died, is restarting, or cannot be reached."""


class ShardUnavailable(ActorUnavailable):
    """A detector shard is gone (the ingest waits for its restart and re-sends)."""


class QueueUnavailable(ActorUnavailable):
    """The priority queue is gone."""


class UniverseUnavailable(ActorUnavailable):
    """The universe coordinator is gone (callers keep the last subscription set)."""


class PersistenceUnavailable(ActorUnavailable):
    """The persistence actor is gone (rows to write are counted as not forwarded)."""


class IngestUnavailable(ActorUnavailable):
    """The ingest actor is gone."""
