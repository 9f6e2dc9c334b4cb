"""The composition root: the one place that applies `ray.remote` and builds the actor graph.

    source -> IngestActor -> DetectorShard[0..N-1] -> PriorityQueueActor -> GatewayActor
                  ^                                        |
           UniverseCoordinator                      PersistenceActor

Every actor is named in the `tickstock` namespace (created with `get_if_exists=True`), so a
notebook attaches with `ray.init(address="auto", namespace="tickstock")` and `ray.get_actor`.
I/O actors take no CPU; shards take `shards.num_cpus`. Shards restart without limit and
restore their checkpoint; the gateway and queue restart too.

The `<Role>RayActor` classes below are the Ray side of each role that has peers: they look
their peers up by name and wrap them in the handles of `actors/handles.py`, so the role's own
class (`actors/<role>/actor.py`, `gateway/actor.py`) never sees Ray.
"""

from __future__ import annotations

import logging
import os
import warnings
from dataclasses import dataclass, field
from typing import Any

import ray

from actors.detection.actor import DetectorShard
from actors.handles import (
    CheckpointSink,
    IngestHandle,
    PersistenceHandle,
    QueueHandle,
    QueueSink,
    ShardHandle,
    UniverseHandle,
)
from actors.ingest.actor import IngestActor
from actors.priority_queue.actor import PriorityQueueActor
from actors.universe.actor import UniverseCoordinatorActor
from config import constants as C
from config.settings import Settings
from gateway.actor import GatewayActor

log = logging.getLogger(__name__)


def _lookup(name: str | None, settings: Settings) -> Any:
    """A named actor of this deployment (None stays None).

    Restartable actors take peers by name, not by handle: Ray keeps constructor arguments
    that hold handles in the object store, and a restart fails if those are lost (#53727).
    """
    return None if name is None else ray.get_actor(name, namespace=settings.cluster.namespace)


def _was_restarted() -> bool:
    with warnings.catch_warnings():  # Ray 2.60 trips its own deprecation inside this property
        warnings.simplefilter("ignore", DeprecationWarning)
        return bool(ray.get_runtime_context().was_current_actor_reconstructed)


def shard_name(index: int) -> str:
    """The actor name of detector shard `index`."""
    return f"{C.SHARD_ACTOR_PREFIX}{index}"


class ShardRayActor(DetectorShard):
    """A detector shard on Ray: its queue and checkpoint sinks, and whether it was restarted."""

    def __init__(self, shard: int, settings: Settings, queue: str, persistence: str | None) -> None:
        checkpoints = _lookup(persistence, settings)
        super().__init__(
            shard, settings, QueueSink(_lookup(queue, settings)),
            CheckpointSink(checkpoints) if checkpoints is not None else None,
            restored=_was_restarted(),
        )


class QueueRayActor(PriorityQueueActor):
    """The priority queue on Ray, forwarding rows through the persistence handle."""

    def __init__(self, settings: Settings, persistence: str | None) -> None:
        actor = _lookup(persistence, settings)
        super().__init__(settings, PersistenceHandle(actor) if actor is not None else None)


class IngestRayActor(IngestActor):
    """The ingest on Ray: a handle per shard and one for the universe coordinator."""

    def __init__(self, settings: Settings, shards: list[str], universe: str) -> None:
        super().__init__(
            settings,
            [ShardHandle(i, _lookup(name, settings)) for i, name in enumerate(shards)],
            UniverseHandle(_lookup(universe, settings)),
        )


class GatewayRayActor(GatewayActor):
    """The gateway on Ray: queue, universe and ingest handles behind its `RayDeps`."""

    def __init__(self, settings: Settings, queue: str, universe: str, ingest: str) -> None:
        from gateway.ray_deps import RayDeps

        handles = (
            QueueHandle(_lookup(queue, settings)),
            UniverseHandle(_lookup(universe, settings)),
            IngestHandle(_lookup(ingest, settings)),
        )
        super().__init__(settings, deps_factory=lambda: RayDeps.open(settings, *handles))


@dataclass
class Graph:
    """Handles of a running actor graph."""

    settings: Settings
    universe: Any
    queue: Any
    shards: list[Any]
    ingest: Any
    persistence: Any = None
    gateway: Any = None
    url: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def all_actors(self) -> list[Any]:
        actors = [self.ingest, *self.shards, self.queue, self.universe]
        return [a for a in (*actors, self.persistence, self.gateway) if a is not None]


def init_ray(settings: Settings) -> None:
    """Start a local Ray (default) or attach to a cluster (`--ray-address`)."""
    if ray.is_initialized():
        return
    mode = "token" if settings.cluster.ray_address else "disabled"  # loopback-only local Ray
    os.environ.setdefault("RAY_AUTH_MODE", mode)
    kwargs: dict[str, Any] = {
        "namespace": settings.cluster.namespace,
        "log_to_driver": True,
        "logging_level": logging.WARNING,
    }
    if settings.cluster.ray_address:
        ray.init(address=settings.cluster.ray_address, **kwargs)
        return
    ray.init(
        address="local",
        include_dashboard=False,
        num_cpus=settings.cluster.num_cpus or None,
        object_store_memory=settings.cluster.object_store_mb * 2**20,
        **kwargs,
    )


def _remote(cls: type) -> Any:
    """`ray.remote` applied in this one place (docs/style.md §6); typed loosely for handles."""
    return ray.remote(cls)


def _opts(name: str, settings: Settings, **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "namespace": settings.cluster.namespace,
        "get_if_exists": True,
        "num_cpus": 0,
        **extra,
    }


def build_graph(settings: Settings, *, start_gateway: bool = True) -> Graph:
    """Create (or attach to) every actor of the graph and start the ingest."""
    persistence = _make_persistence(settings)
    if persistence is None:
        # No storage, no checkpoints: a restarted shard starts empty, so retaining rows to
        # re-send would only fill memory (and report every row as retention overflow).
        settings = settings.replace(ingest=settings.ingest.replace(retain_rows_per_shard=0))
    universe = _remote(UniverseCoordinatorActor).options(
        **_opts(C.UNIVERSE_ACTOR, settings, max_restarts=-1)
    ).remote(settings)
    persistence_name = C.PERSISTENCE_ACTOR if persistence is not None else None
    queue = _remote(QueueRayActor).options(
        **_opts(C.PRIORITY_QUEUE_ACTOR, settings, max_restarts=-1, max_concurrency=1000)
    ).remote(settings, persistence_name)
    shard_cls = _remote(ShardRayActor)
    names = [shard_name(i) for i in range(settings.shards.count)]
    shards = [
        shard_cls.options(**_opts(
            name, settings, max_restarts=settings.shards.max_restarts,
            num_cpus=settings.shards.num_cpus,
        )).remote(i, settings, C.PRIORITY_QUEUE_ACTOR, persistence_name)
        for i, name in enumerate(names)
    ]
    ingest = _remote(IngestRayActor).options(
        **_opts(C.INGEST_ACTOR, settings, max_restarts=0)
    ).remote(settings, names, C.UNIVERSE_ACTOR)
    graph = Graph(settings, universe, queue, shards, ingest, persistence)
    ray.get([a.ping.remote() for a in graph.all_actors()])
    if start_gateway:
        graph.gateway, graph.url = _start_gateway(settings)
    return graph


def start_ingest(graph: Graph) -> str:
    """Start the source (raises with a clear message when it cannot start)."""
    return str(ray.get(graph.ingest.start.remote()))


def _make_persistence(settings: Settings) -> Any:
    if not settings.storage.enabled:
        return None
    from actors.persistence.actor import PersistenceActor

    return _remote(PersistenceActor).options(
        **_opts(C.PERSISTENCE_ACTOR, settings, max_restarts=-1, max_concurrency=100)
    ).remote(settings.database_url(), settings.storage)


def _start_gateway(settings: Settings) -> tuple[Any, str]:
    placement: dict[str, Any] = {}
    if settings.cluster.ray_address:
        # On a cluster the gateway lives on the head, where users' port 8088 is opened.
        placement["resources"] = {"node:__internal_head__": 0.001}
    gateway = _remote(GatewayRayActor).options(
        **_opts(C.GATEWAY_ACTOR, settings, max_restarts=-1, **placement)
    ).remote(settings, C.PRIORITY_QUEUE_ACTOR, C.UNIVERSE_ACTOR, C.INGEST_ACTOR)
    host, port = ray.get(gateway.ready.remote())
    shown = "127.0.0.1" if host in ("0.0.0.0", "") else host
    return gateway, f"http://{shown}:{port}"


def shutdown_graph(graph: Graph) -> None:
    """Stop the ingest cleanly, then kill every actor of the graph."""
    try:
        ray.get(graph.ingest.stop.remote(), timeout=5)
    except Exception:  # already gone; we are tearing down anyway
        log.debug("ingest stop failed during shutdown", exc_info=True)
    if graph.gateway is not None:
        try:
            ray.get(graph.gateway.stop.remote(), timeout=5)
        except Exception:
            log.debug("gateway stop failed during shutdown", exc_info=True)
    for actor in graph.all_actors():
        ray.kill(actor, no_restart=True)
