"""Integration fixtures shared by the modules that run the actor graph on a real local Ray."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import ray


@pytest.fixture(scope="module")
def ray_local(request: pytest.FixtureRequest) -> Iterator[None]:
    """One local Ray per module, in the module's `RAY_NAMESPACE` (its actors' namespace too),
    with `RAY_OBJECT_STORE_MB` of object store (default 200)."""
    module = request.module
    ray.init(address="local", num_cpus=2, include_dashboard=False,
             namespace=module.RAY_NAMESPACE,
             object_store_memory=getattr(module, "RAY_OBJECT_STORE_MB", 200) * 2**20,
             log_to_driver=False)
    yield
    ray.shutdown()
