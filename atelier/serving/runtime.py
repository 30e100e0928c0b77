"""The regional service's runtime pieces: request schemas, bearer-token auth, start-up.

Kept out of atelier/bentos/service.py so the service file stays a thin, readable class and so these can
be tested without a server.
"""

from __future__ import annotations

import hmac
import json
import logging
from pathlib import Path
from typing import Annotated, ClassVar

from _bentoml_sdk.io_models import IODescriptor
from feast.permissions.user import User
from pydantic import BaseModel, ConfigDict, Field, model_validator

from atelier.context import RegionContext
from atelier.errors import AtelierError
from atelier.events import fresh
from atelier.events.batch import MAX_BATCH, Count, Event
from atelier.features.definitions import SERVING
from atelier.features.online import OnlineFeatures
from atelier.models.recommend.baselines import FALLBACK_POPULARITY
from atelier.models.recommend.export import LoadedModel
from atelier.models.recommend.ranking import POPULARITY
from atelier.serving.planning import Planner
from atelier.regions import get_region
from atelier.serving.recommender import PURCHASED, Recommender
from atelier.settings import Settings

log = logging.getLogger(__name__)
OPEN_PATHS = ("/livez", "/readyz", "/healthz", "/metrics", "/docs.json", "/docs", "/", "/schema.json")




class RecommendRequest(IODescriptor):
    """POST /recommend. Unknown fields are refused, so a typo never passes silently; types are
    strict (`"10"` is no integer, `0` no boolean), as the OpenAPI document says."""

    model_config = ConfigDict(extra="forbid", strict=True)
    client_id: str = Field(..., min_length=1, max_length=128, description="The client's id, as the client systems write it. A client this region does not hold (new, or of another region) gets the most popular products, flagged `fallback`: the region's, or those of `country` when it is given.")
    k: Count = Field(10, ge=1, le=100, description="How many products to return.")
    maison: str | None = Field(None, description="Only this maison's products.")
    country: str | None = Field(None, min_length=2, max_length=2, description="The country the client shops in (ISO code): only products sold there. A client this region does not hold gets that country's recent best-sellers (blended with the region's where it bought little lately).")
    exclude_purchased: bool = Field(True, description="Leave out what the client already bought.")


class SimilarRequest(IODescriptor):
    """POST /similar: the products closest to one product, by the two-tower's product vectors."""

    model_config = ConfigDict(extra="forbid", strict=True)
    product_id: str = Field(..., min_length=1, max_length=64)
    k: Count = Field(10, ge=1, le=100, description="How many products to return.")


class Item(BaseModel):
    product_id: str
    maison: str
    category: str
    score: float


class RecommendResponse(BaseModel):
    client_id: str
    region: str
    model: str
    items: list[Item]
    fallback: bool = Field(description="True when these are the region's most popular products (unknown client, or store unreachable).")


class SimilarResponse(BaseModel):
    product_id: str
    region: str
    model: str
    items: list[Item]


def _absent_not_null(schema: dict) -> None:
    schema.pop("default", None)  # absent means "not given"; null is refused (the schema allows no null)


def _one_of(*groups: tuple[str, ...]) -> dict:
    """JSON Schema: exactly one field of each group is present."""
    return {"allOf": [{"oneOf": [{"required": [name]} for name in group]} for group in groups]}


class _ExactlyOne(IODescriptor):
    """Requests whose fields come in groups of which exactly one is given (and none is null)."""

    GROUPS: ClassVar[tuple[tuple[str, ...], ...]] = ()

    @model_validator(mode="before")
    @classmethod
    def _groups(cls, data):
        if isinstance(data, dict):
            for name in [n for group in cls.GROUPS for n in group]:
                if name in data and data[name] is None:
                    raise ValueError(f"{name} may not be null: leave it out instead")
            for group in cls.GROUPS:
                given = [n for n in group if n in data]
                if len(given) != 1:
                    raise ValueError(f"give exactly one of {' or '.join(group)}" + (f" (got {', '.join(given)})" if given else ""))
        return data


ProductId = Annotated[str, Field(min_length=1, max_length=64)]


class ForecastRequest(_ExactlyOne):
    """POST /forecast: weekly units ahead (P10, P50, P90) for some products at one country or one store.

    Give `product_ids` or `maison` (all of the maison's products the location sells), and
    `country` or `store_id`."""

    GROUPS: ClassVar = (("product_ids", "maison"), ("country", "store_id"))
    model_config = ConfigDict(extra="forbid", strict=True, json_schema_extra=_one_of(("product_ids", "maison"), ("country", "store_id")))
    product_ids: list[ProductId] = Field(None, min_length=1, max_length=100, json_schema_extra=_absent_not_null, description="1 to 100 product ids.")
    maison: str = Field(None, json_schema_extra=_absent_not_null, description="Every product of this maison that the location sells.")
    country: str = Field(None, min_length=2, max_length=2, json_schema_extra=_absent_not_null, description="A country of this region (ISO code).")
    store_id: str = Field(None, min_length=1, max_length=64, json_schema_extra=_absent_not_null, description="A store of this region.")
    horizon_weeks: Count = Field(12, ge=1, le=12, description="Weeks ahead, from the first week after the last complete week of data.")


class AssortmentRequest(_ExactlyOne):
    """POST /assortment: the catalog ranked for one country or one store, with the client segments it serves."""

    GROUPS: ClassVar = (("country", "store_id"),)
    model_config = ConfigDict(extra="forbid", strict=True, json_schema_extra=_one_of(("country", "store_id")))
    country: str = Field(None, min_length=2, max_length=2, json_schema_extra=_absent_not_null, description="A country of this region (ISO code).")
    store_id: str = Field(None, min_length=1, max_length=64, json_schema_extra=_absent_not_null, description="A store of this region.")
    n: Count = Field(100, ge=1, le=500, description="How many products.")
    maison: str | None = Field(None, description="Only this maison's products.")


class Week(BaseModel):
    week_start: str = Field(description="Monday of the week (ISO date).")
    p10: float
    p50: float
    p90: float


class ProductForecast(BaseModel):
    product_id: str
    country: str | None = None
    store_id: str | None = None
    active: bool = Field(description="False when the location sold the product in none of the last 52 weeks and the catalog launches it "
                                     "in none of the weeks ahead: its weeks are zero. A product launching inside the horizon is forecast "
                                     "from its attributes, from its launch week on (zero before).")
    weeks: list[Week]


class ForecastResponse(BaseModel):
    region: str
    model: str
    forecasts: list[ProductForecast]


class AssortmentItem(BaseModel):
    product_id: str
    maison: str
    category: str
    expected_units: float = Field(description="Expected units over the forecast's weeks ahead: a weighted mean of the forecast's mean, the location's "
                                  "own recent sales, what similar locations sell per unit of size and the region's mix (weights chosen on a "
                                  "validation period; a small location leans more on the others).")
    expected_revenue: float
    new_here: bool = Field(description="Not sold here yet: proposed from what similar locations and the region sell.")
    segments: list[int] = Field(description="The client segments that buy it most (ids of `segments`).")


class Segment(BaseModel):
    id: int
    name: str
    share: float = Field(description="Share of the location's clients in this segment.")
    top_features: list[str] = Field(description="What sets the segment apart from the region's average.")


class AssortmentResponse(BaseModel):
    region: str
    model: str
    items: list[AssortmentItem]
    segments: list[Segment]


class EventsRequest(IODescriptor):
    """POST /events: 1 to 1,000 client events, written to the region's online store (fresh
    features, read by /recommend at once) and appended to its offline journal (the next batch
    features and training read them). Event ids make a resent batch harmless."""

    model_config = ConfigDict(extra="forbid", strict=True)
    events: list[Event] = Field(..., min_length=1, max_length=MAX_BATCH, description="The events, in any order.")


class EventsResponse(BaseModel):
    region: str
    accepted: int = Field(description="Events stored now, online and offline.")
    duplicates: int = Field(description="Events whose id was stored already (a resent batch): counted once, not stored again.")


class JsonOnly:
    """ASGI middleware: the API routes read JSON only; any other body type is a 415 with a JSON reason.

    Without it a `multipart/form-data` request with no boundary reached the framework's form
    parser and came back as a 500: a client's mistake must never look like the server's.
    """

    def __init__(self, app, routes: tuple[str, ...] = ("/recommend", "/similar", "/forecast", "/assortment", "/events")):
        self.app, self.routes = app, routes

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope["path"] in self.routes and scope.get("method") == "POST":
            ctype = dict(scope.get("headers") or []).get(b"content-type", b"application/json")
            if ctype.split(b";")[0].strip().lower() != b"application/json":
                return await _error(send, 415, "unsupported_media_type", f"the body must be JSON (content-type application/json), not {ctype.decode(errors='replace')!r}")
        return await self.app(scope, receive, send)


LOOPBACK = ("127.0.0.1", "::1")


class BearerAuth:
    """ASGI middleware: a token per calling app (Settings.service_tokens); 401 without a valid one.

    Health, metrics and the OpenAPI page stay open. A service started without tokens is a local
    one (`--insecure-local`, refused otherwise, see `Settings.service_tokens`): it answers callers
    on the loopback only, whatever address it was bound to, and any other caller gets a 403.
    """

    def __init__(self, app, tokens: dict[str, str], local_only: bool = False):
        self.app = app
        self.tokens = {name: token.encode() for name, token in tokens.items()}
        self.local_only = local_only and not self.tokens

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS:
            return await self.app(scope, receive, send)
        if self.local_only:
            if (scope.get("client") or ("",))[0] in LOOPBACK:
                return await self.app(scope, receive, send)
            return await _error(send, 403, "local_only", "this service runs without API tokens (--insecure-local) and answers this machine only")
        header = dict(scope.get("headers") or []).get(b"authorization", b"")
        scheme, _, token = header.partition(b" ")
        if scheme.lower() == b"bearer" and any(hmac.compare_digest(token, t) for t in self.tokens.values()):
            return await self.app(scope, receive, send)
        await _error(send, 401, "unauthorized", "missing or invalid bearer token", [(b"www-authenticate", b'Bearer realm="atelier"')])


class ClientErrorsQuiet(logging.Filter):
    """BentoML logs every request it answers with an error as "Exception on <route>", with the
    traceback, at ERROR, a client's malformed body (answered 400) as much as a real fault. In the
    server's log a client's mistake then reads like a server fault, and hides the real ones. This
    filter turns those of a client error (the 4xx BentoML answers) into one INFO line without the
    traceback; server faults keep theirs. Installed on BentoML's HTTP logger by `quiet_client_errors`."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if error is None or not str(record.msg).startswith("Exception on") or not _client_error(error):
            return True
        status = getattr(getattr(error, "error_code", None), "value", 400)
        text = str(error).splitlines()[0][:300] if str(error) else ""
        # the client's text goes in as an argument: a "%" in it must not be read as a format
        record.msg = "client error on %s [%s], answered %s: %s: %s"
        record.args = (*(record.args or ()), status, type(error).__name__, text)
        record.levelno, record.levelname = logging.INFO, "INFO"
        record.exc_info = record.exc_text = None
        return True


def _client_error(error: BaseException) -> bool:
    from bentoml.exceptions import BentoMLException
    from pydantic import ValidationError

    if isinstance(error, ValidationError):
        return True
    return isinstance(error, BentoMLException) and int(getattr(error.error_code, "value", 500)) < 500


def quiet_client_errors() -> None:
    logging.getLogger("bentoml._internal.server.http_app").addFilter(ClientErrorsQuiet())


async def _error(send, status: int, code: str, message: str, headers: list | None = None) -> None:
    """Send an error in the service's one error shape (`ErrorBody`)."""
    body = json.dumps({"error": message, "code": code}).encode()
    # with its length: without it the answer went chunked, and a client that reads a fixed-length
    # error (or a proxy that buffers one) waited for the end of the stream
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *(headers or [])]})
    await send({"type": "http.response.body", "body": body})


def limit_threads(threads: int) -> None:
    """One worker process per core: each uses `threads` threads for TensorFlow and FAISS, so the
    workers do not fight over cores (thread pools sized to the machine, times the workers, would)."""
    import faiss
    import tensorflow as tf

    faiss.omp_set_num_threads(threads)
    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    except RuntimeError:  # TensorFlow already started: keep its pools
        log.warning("TensorFlow threads already configured; not limited to %d", threads)


def online_features(store, refs: list[str], user: User) -> OnlineFeatures:
    """The model's features, with the real-time view's events and the batch row's time, so the
    events received since the batch features reach the answer (atelier.events.fresh.overlay).
    A registry applied before the real-time view existed serves the batch features alone."""
    try:
        store.get_feature_view(fresh.VIEW)
    except Exception:
        log.warning("no %s view in region %s's registry: answers use the batch features only (run `atelier features apply`)", fresh.VIEW, store.project)
        return OnlineFeatures(store, refs, user=user)
    return OnlineFeatures(store, refs + fresh.REFS, user=user, timestamps=("client_activity",))


def serving_context(settings: Settings, region: str) -> RegionContext:
    """The region as a service acts in it: its store read and written as the serving role."""
    return RegionContext.of(settings, region, User(f"recommender-{get_region(region).code}", [SERVING]))


def start(ctx: RegionContext, model_path: Path, tag: str, threads: int | None = 1) -> Recommender:
    """Load the model and connect to the region's store with the exact feature list it was trained on."""
    if threads:
        limit_threads(threads)
    model = LoadedModel.load(model_path)
    region = ctx.region
    if model.region != region:
        raise AtelierError(f"model {tag} was trained for region {model.region!r}, not {region!r}", fix="serve each region with its own model")
    user = ctx.user or User(f"recommender-{region}", [SERVING])
    store = ctx.store
    features = online_features(store, model.feature_refs + [PURCHASED], user)
    names = sorted({*(name for name, _ in FALLBACK_POPULARITY), *POPULARITY})
    popularity = OnlineFeatures(store, [f"product_popularity:{n}" for n in names], user=user)
    log.info("region %s: model %s on %s; %d features from %s", region, tag, model.device, len(model.feature_refs), type(store._get_provider().online_store).__name__)
    return Recommender(model, features, popularity, tag=tag)


def start_planner(region: str, recommender_path: Path, forecast_model=None, assortment_model=None) -> Planner:
    """Forecast and assortment answers from their exported models (either may be absent)."""
    import pandas as pd

    products = pd.read_parquet(recommender_path / "products.parquet", columns=["product_id", "maison", "category"])
    forecast_path = Path(forecast_model.path) if forecast_model is not None else None
    stores = pd.DataFrame({"store_id": pd.Series(dtype=str), "country": pd.Series(dtype=str)})
    if forecast_path is not None and (forecast_path / "stores.parquet").exists():
        stores = pd.read_parquet(forecast_path / "stores.parquet")
    for model in (forecast_model, assortment_model):
        if model is not None:
            described = json.loads((Path(model.path) / "model.json").read_text())
            if described.get("region") != region:
                raise AtelierError(f"model {model.tag} was trained for region {described.get('region')!r}, not {region!r}", fix="serve each region with its own models")
    return Planner(region, products, stores, forecast_path, Path(assortment_model.path) if assortment_model is not None else None,
                   forecast_tag=str(forecast_model.tag) if forecast_model is not None else None,
                   assortment_tag=str(assortment_model.tag) if assortment_model is not None else None)
