"""The baseline for serving benchmarks: an empty endpoint with the recommender's service configuration
(same workers, traffic settings and middleware), so the difference is the work, not the framework."""

from __future__ import annotations

import os

import bentoml

from atelier.serving.runtime import BearerAuth


@bentoml.service(name="atelier-empty", workers=int(os.environ.get("ATELIER_WORKERS", "2")), traffic={"timeout": 10})
class Empty:
    @bentoml.api(route="/recommend")
    async def recommend(self, client_id: str = "", k: int = 10) -> dict:
        return {}


Empty.add_asgi_middleware(BearerAuth, tokens={})
