"""The regional service: one bento per region, all from this file.

    POST /recommend   {client_id, k, maison?, country?, exclude_purchased?}
    POST /similar     {product_id, k}
    POST /forecast    {product_ids | maison, country | store_id, horizon_weeks}
    POST /assortment  {country | store_id, n, maison?}
    POST /events      {events: [{event_id, client_id, product_id, event_type, event_timestamp, ...}]}
    GET  /livez /readyz /metrics, and the OpenAPI page at /

The region and the models come from the environment (baked into the bento by `atelier build`):
the recommender always, the forecast and the assortment when the region has trained them (the
routes answer 404 `no_model`, saying how to train one, otherwise).
Concurrent requests are batched (atelier.serving.batching: those that arrive while a batch runs
form the next) before the stages (feature read, query tower, retrieval, ranking, filters), which
live in atelier.serving and are tested without HTTP; /metrics shows the time of each.
Events go into both sides of the region's feature store before they are acknowledged
(atelier.events.ingest), and /recommend reads them at once.
"""

from __future__ import annotations

import gc
import logging
import os
from pathlib import Path

import anyio
import anyio.to_thread
import bentoml
from starlette.responses import JSONResponse

import atelier  # noqa: F401  (TensorFlow's Keras switch, before TensorFlow loads)
from atelier.errors import AtelierError
from atelier.events.batch import Event, ForeignClients, Problems
from atelier.events.ingest import Ingestor, StoreUnavailable
from atelier.regions import country_to_region
from atelier.serving import contract
from atelier.serving.batching import Batcher
from atelier.serving.image import bento_image, resources, service_envs
from atelier.serving.planning import Planner
from atelier.serving.recommender import Query, RequestError
from atelier.serving.runtime import (
    AssortmentRequest,
    AssortmentResponse,
    BearerAuth,
    EventsRequest,
    EventsResponse,
    ForecastRequest,
    ForecastResponse,
    JsonOnly,
    RecommendRequest,
    RecommendResponse,
    SimilarRequest,
    SimilarResponse,
    quiet_client_errors,
    serving_context,
    start,
    start_planner,
)
from atelier.settings import get_settings

BATCH_SIZE = bentoml.metrics.Histogram(
    name="atelier_recommend_batch_size",
    documentation="Requests answered together by the adaptive dispatcher.",
    buckets=(1, 2, 4, 8, 16, 32, 64),
)
STAGE_SECONDS = bentoml.metrics.Histogram(
    name="atelier_recommend_stage_seconds",
    documentation="Time per batch in each stage: online features, query tower, retrieval (candidates), ranking, filters; topk is retrieval to answer.",
    labelnames=["stage"],
    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.5),
)

EVENTS = bentoml.metrics.Counter(
    name="atelier_events",
    documentation="Client events received by POST /events: stored (accepted) or already stored (duplicate).",
    labelnames=["outcome"],
)

REGION = os.environ.get("ATELIER_REGION", "eu")
MODEL_TAG = os.environ.get("ATELIER_MODEL_TAG", f"atelier-retrieval-{REGION}:latest")
GPU = os.environ.get("ATELIER_BENTO_GPU") == "1"
INTAKE_THREADS = 32  # POST /events batches taken at once by a worker (they queue for one writer)
FORECAST_TAG = os.environ.get("ATELIER_FORECAST_TAG") or None
ASSORTMENT_TAG = os.environ.get("ATELIER_ASSORTMENT_TAG") or None


@bentoml.service(
    name=f"atelier-recommender-{REGION}" + ("-gpu" if GPU else ""),
    image=bento_image(GPU),
    resources=resources(GPU),
    workers=int(os.environ.get("ATELIER_WORKERS", "2")),
    traffic={"timeout": 10},
    envs=service_envs(REGION, MODEL_TAG, GPU, forecast_tag=FORECAST_TAG, assortment_tag=ASSORTMENT_TAG),
    labels={"region": REGION, "accelerator": "gpu" if GPU else "cpu"},
)
class Recommender:
    model = bentoml.models.BentoModel(MODEL_TAG)
    if FORECAST_TAG:
        forecast_model = bentoml.models.BentoModel(FORECAST_TAG)
    if ASSORTMENT_TAG:
        assortment_model = bentoml.models.BentoModel(ASSORTMENT_TAG)

    @bentoml.on_deployment
    def refuse_to_start_open() -> None:
        """Before any worker starts: no API tokens, no service (unless it is a local one)."""
        get_settings().service_tokens()

    def __init__(self) -> None:
        threads = int(os.environ.get("ATELIER_SERVING_THREADS", "1"))  # per worker; workers fill the cores
        ctx = serving_context(get_settings(), REGION)  # one region, one store, for the model and the event intake
        self.engine = start(ctx, Path(self.model.path), str(self.model.tag), threads=threads)
        ENGINE.append(self.engine)
        self.batched = Batcher(self._answer_batch, max_batch=64, observe=BATCH_SIZE.observe)
        self.planner: Planner = start_planner(REGION, Path(self.model.path),
                                              getattr(self, "forecast_model", None), getattr(self, "assortment_model", None))
        ENGINE_PLANNER.append(self.planner)
        self.ingestor: Ingestor | None = None
        self.intake_threads: anyio.CapacityLimiter | None = None  # made on the event loop, at the first batch
        self.no_events = "the event intake did not start; the service's log says why"
        try:
            self.ingestor = Ingestor(ctx)
            self.ingestor.recover()  # a batch journaled but not applied online when the last process died
        except StoreUnavailable as e:
            logging.getLogger(__name__).warning("journaled events wait for the online store: %s", e.what)
        except AtelierError as e:  # a registry applied before the real-time view existed: /events says so
            self.no_events = e.render()
            logging.getLogger(__name__).warning("POST /events is off: %s", self.no_events)
        # Everything loaded so far (TensorFlow, Feast, the model, the catalog) lives as long as the
        # worker: out of the collector's sight, a request's garbage is collected without walking
        # it again (an event batch went from 115 to 75 ms).
        gc.freeze()

    def _answer_batch(self, queries: list[Query]):
        answers = self.engine.recommend(queries)
        timings = answers[0].timings if answers else {}
        for stage in ("features", "tower", "retrieval", "ranking", "filters", "topk"):
            STAGE_SECONDS.labels(stage=stage).observe(timings.get(f"{stage}_ms", 0.0) / 1e3)
        return answers

    @bentoml.api(input_spec=RecommendRequest, route="/recommend")
    async def recommend(self, client_id: str, k: int = 10, maison: str | None = None, country: str | None = None, exclude_purchased: bool = True) -> RecommendResponse:
        answer = await self.batched(Query(client_id, k, maison, country, exclude_purchased))
        if answer.error:
            return JSONResponse(answer.error.body(), status_code=answer.error.status)
        return RecommendResponse(client_id=client_id, region=REGION, model=self.engine.tag, items=answer.items, fallback=answer.fallback)

    @bentoml.api(input_spec=SimilarRequest, route="/similar")
    def similar(self, product_id: str, k: int = 10) -> SimilarResponse:
        try:
            items = self.engine.similar(product_id, k)
        except RequestError as e:
            return JSONResponse(e.body(), status_code=e.status)
        return SimilarResponse(product_id=product_id, region=REGION, model=self.engine.tag, items=items)


    @bentoml.api(input_spec=ForecastRequest, route="/forecast")
    def forecast(self, product_ids: list[str] | None = None, maison: str | None = None, country: str | None = None,
                 store_id: str | None = None, horizon_weeks: int = 12) -> ForecastResponse:
        try:
            where, rows = self.planner.forecast(product_ids=product_ids, maison=maison, country=country, store_id=store_id, horizon=horizon_weeks)
        except RequestError as e:
            return JSONResponse(e.body(), status_code=e.status)
        place = {"country": where.id} if where.level == "country" else {"store_id": where.id}
        return ForecastResponse(region=REGION, model=self.planner.forecast_tag or "", forecasts=[{**r, **place} for r in rows])

    @bentoml.api(input_spec=AssortmentRequest, route="/assortment")
    def assortment(self, country: str | None = None, store_id: str | None = None, n: int = 100, maison: str | None = None) -> AssortmentResponse:
        try:
            _, items, segments = self.planner.assortment(country=country, store_id=store_id, n=n, maison=maison)
        except RequestError as e:
            return JSONResponse(e.body(), status_code=e.status)
        return AssortmentResponse(region=REGION, model=self.planner.assortment_tag or "", items=items, segments=segments)


    @bentoml.api(input_spec=EventsRequest, route="/events")
    async def events(self, events: list[Event]) -> EventsResponse:
        if self.ingestor is None:
            return JSONResponse({"error": self.no_events, "code": "store_unavailable"}, status_code=503, headers={"Retry-After": "60"})
        # On threads of its own, not the one BentoML gives the synchronous routes: batches that
        # arrive together wait for the writer together, and are written as one (group commit).
        if self.intake_threads is None:
            self.intake_threads = anyio.CapacityLimiter(INTAKE_THREADS)
        try:
            receipt = await anyio.to_thread.run_sync(self.ingestor.ingest, events, limiter=self.intake_threads)
        except Problems as e:
            return JSONResponse({"error": e.what, "code": "invalid_request", "detail": e.problems}, status_code=400)
        except ForeignClients as e:
            return JSONResponse({"error": e.what, "code": "other_region"}, status_code=403)
        except StoreUnavailable as e:
            return JSONResponse({"error": e.render(), "code": "store_unavailable"}, status_code=503, headers={"Retry-After": str(e.retry_after)})
        EVENTS.labels(outcome="accepted").inc(receipt.accepted)
        EVENTS.labels(outcome="duplicate").inc(receipt.duplicates)
        return JSONResponse(EventsResponse(region=REGION, accepted=receipt.accepted, duplicates=receipt.duplicates).model_dump(), status_code=202)


_settings = get_settings()
ENGINE: list = []  # the worker's engine, once started (for the document and /readyz)
ENGINE_PLANNER: list = []  # the worker's planner, once started (for the document's examples)
DOCUMENT: list = []
ROUTES = {"/recommend": (RecommendRequest, RecommendResponse), "/similar": (SimilarRequest, SimilarResponse),
          "/forecast": (ForecastRequest, ForecastResponse), "/assortment": (AssortmentRequest, AssortmentResponse),
          "/events": (EventsRequest, EventsResponse)}


def _document() -> dict:
    """The OpenAPI document, built once the worker's engine (its catalog's maisons) is up."""
    if not DOCUMENT and ENGINE:
        DOCUMENT.append(_build_document())
    return DOCUMENT[0] if DOCUMENT else _build_document()


def _build_document() -> dict:
    undocumented = {api.route for api in Recommender.apis.values()} - set(ROUTES)
    if undocumented:  # every route is in the contract, or the service does not describe itself
        raise RuntimeError(f"routes without a contract: {sorted(undocumented)} (add them to ROUTES and contract.ROUTE_ERRORS)")
    engine = ENGINE[0] if ENGINE else None
    maisons = engine.catalog.maisons if engine else []
    first = str(engine.catalog.ids[0]) if engine and len(engine.catalog.ids) else "P0001"
    return contract.document(
        Recommender.openapi_spec.asdict(), {r: m[0] for r, m in ROUTES.items()}, {r: m[1] for r, m in ROUTES.items()},
        maisons=maisons, countries=sorted(country_to_region()), secured=bool(_settings.api_tokens),
        examples={"/recommend": {"client_id": "C-10042", "k": 10}, "/similar": {"product_id": first, "k": 10},
                  "/forecast": {"product_ids": [first], "country": _home_country(), "horizon_weeks": 4},
                  "/assortment": {"country": _home_country(), "n": 20},
                  "/events": {"events": [{"event_id": "pos-0001-17", "client_id": "C-10042", "product_id": first, "event_type": "view",
                                          "event_timestamp": "2026-12-03T14:30:00Z", "channel": "web"}]}},
        description=f"Recommendations for the clients of region {REGION}, answered in the region. " + (__doc__ or "").split("\n\n", 1)[-1],
    )


def _home_country() -> str:
    """A country the examples can name: the one the forecast sells most in, else the region's first."""
    from atelier.regions import get_region

    busiest = ENGINE_PLANNER[0].busiest_country() if ENGINE_PLANNER else None
    return busiest or get_region(REGION).countries[0]


def _readiness() -> dict:
    return ENGINE[0].readiness() if ENGINE else {"status": "ready", "online_store": "ok"}


quiet_client_errors()  # a client's malformed body is one INFO line in the server's log, not a traceback
Recommender.add_asgi_middleware(contract.ErrorShape, routes=tuple(ROUTES), document_fn=_document, readiness_fn=_readiness)
Recommender.add_asgi_middleware(JsonOnly, routes=tuple(ROUTES))
# the refusal of an open service is the on_deployment hook's: this file is also imported by `bentoml build`
Recommender.add_asgi_middleware(BearerAuth, tokens=_settings.tokens(), local_only=_settings.insecure_local)
