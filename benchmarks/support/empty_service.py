"""The baseline for serving benchmarks: an empty endpoint with the recommender's service configuration
(same workers, traffic settings and middleware), so the difference is the work, not the framework."""

from __future__ import annotations

import os

import bentoml

from atelier.serving import contract
from atelier.serving.runtime import BearerAuth, JsonOnly


@bentoml.service(name="atelier-empty", workers=int(os.environ.get("ATELIER_WORKERS", "2")), traffic={"timeout": 10})
class Empty:
    @bentoml.api(route="/recommend")
    async def recommend(self, client_id: str = "", k: int = 10) -> dict:
        return {}


# the recommender's stack as the benchmark serves it (`--insecure-local`: no tokens, loopback only)
Empty.add_asgi_middleware(contract.ErrorShape, routes=("/recommend",), document_fn=dict, readiness_fn=lambda: {"status": "ready", "online_store": "ok"})
Empty.add_asgi_middleware(JsonOnly)
Empty.add_asgi_middleware(BearerAuth, tokens={}, local_only=True)
