"""Names, namespace, ports and env var names: the fixed identifiers of a deployment."""

from __future__ import annotations

from typing import Final

NAMESPACE: Final = "tickstock"

# Named actors (all in NAMESPACE): a notebook uses ray.get_actor(name, namespace=NAMESPACE).
INGEST_ACTOR: Final = "ingest"
SHARD_ACTOR_PREFIX: Final = "detector-shard-"
PRIORITY_QUEUE_ACTOR: Final = "priority-queue"
UNIVERSE_ACTOR: Final = "universe-coordinator"
GATEWAY_ACTOR: Final = "gateway"
PERSISTENCE_ACTOR: Final = "persistence"

# Outside Ray's worker range 10002-19999 and its 6379/8265/8080/10001.
DEFAULT_GATEWAY_PORT: Final = 8088
DEFAULT_REPLAY_PORT: Final = 8765
POLYGON_REALTIME_FEED: Final = "socket.polygon.io"
POLYGON_REST_BASE: Final = "https://api.polygon.io"

# Environment variables (DESIGN §9, contract).
ENV_POLYGON_API_KEY: Final = "POLYGON_API_KEY"
ENV_USE_REAL_DATA: Final = "USE_REAL_DATA"
ENV_DATABASE_URL: Final = "DATABASE_URL"
ENV_REDIS_URL: Final = "REDIS_URL"
ENV_POLYGON_FEED: Final = "POLYGON_FEED"
ENV_POLYGON_SECURE: Final = "POLYGON_SECURE"
ENV_POLYGON_REST_BASE: Final = "POLYGON_REST_BASE"
ENV_TICKSTOCK_ENV: Final = "TICKSTOCK_ENV"
ENV_RAY_ADDRESS: Final = "RAY_ADDRESS"
ENV_DATA_DIR: Final = "TICKSTOCK_DATA_DIR"
ENV_REAL_DATA_DIR: Final = "TICKSTOCK_REAL_DATA"

# Index ETFs that jump the queue in the first 30 minutes of the regular session.
INDEX_ETFS: Final = frozenset({"SPY", "QQQ", "IWM", "DIA"})
