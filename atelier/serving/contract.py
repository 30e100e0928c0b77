"""The regional service's contract: its OpenAPI document and its one error shape.

BentoML writes an OpenAPI document from the request and response models, but loses on the way
what the service enforces (unknown fields refused, filters that may be null, the maisons and
countries it knows), documents error bodies it never sends (`detail: string`), and leaves out
401, 403, 415 and 422. Clients generated from that document send requests the service refuses.
Here the document is built from the very pydantic models the service validates with, with every
status it answers and the body of each; `tests/serving/test_contract.py` runs schemathesis against
a live service with every check on, so a route or a status that drifts from this fails the suite.

Every error the service sends is an `ErrorBody`: what went wrong, a stable code, and for invalid
fields where and why. `ErrorShape` rewrites BentoML's own 400 and 500 bodies (an object for an
invalid field, a one-element list for a body that is not JSON) into it.
"""

from __future__ import annotations

import copy
import json
from typing import Literal

from pydantic import BaseModel, Field

ErrorCode = Literal[
    "invalid_request", "malformed_body", "unauthorized", "local_only", "unknown_product",
    "unsupported_media_type", "unknown_maison", "unknown_country", "internal",
    "unknown_store", "other_region", "no_model", "store_unavailable",
]


class ErrorBody(BaseModel):
    """Every error the service answers."""

    error: str = Field(description="What went wrong, and where.", examples=["k: Input should be less than or equal to 100"])
    code: ErrorCode = Field(description="A stable code to branch on.")
    detail: list[dict] | None = Field(None, description="For invalid fields: each problem's location (`loc`), message (`msg`) and kind (`type`).")


class Readiness(BaseModel):
    status: Literal["ready", "degraded"] = Field(description="`degraded`: the service answers, but from its fallback (the online store is unreachable or empty).")
    online_store: Literal["ok", "unreachable", "empty"]
    fix: str | None = Field(None, description="What restores it, when degraded.")


ERRORS = {  # status -> (what it means, its codes); a route may answer a status with fewer codes (ROUTE_CODES)
    400: ("The body is not valid JSON, or a field is missing, unknown or out of range.", ["invalid_request", "malformed_body"]),
    401: ("Missing or wrong bearer token.", ["unauthorized"]),
    403: ("A service started without API tokens (--insecure-local) answers this machine only; a country or a store of another region is answered by that region's service.",
          ["local_only", "other_region"]),
    404: ("No such product or store; or this region's service carries no model of that kind (`no_model`: the error says how to train one).",
          ["unknown_product", "unknown_store", "no_model"]),
    415: ("The body is not `application/json`.", ["unsupported_media_type"]),
    422: ("A filter names a maison or a country this region does not know.", ["unknown_maison", "unknown_country"]),
    503: ("The region's online store cannot be reached: nothing of the request was acknowledged. Send it again after `Retry-After` seconds.", ["store_unavailable"]),
}
ROUTE_ERRORS = {
    "/recommend": (400, 401, 403, 415, 422),
    "/similar": (400, 401, 403, 404, 415),
    "/forecast": (400, 401, 403, 404, 415, 422),
    "/assortment": (400, 401, 403, 404, 415, 422),
    "/events": (400, 401, 403, 415, 503),
}
SUCCESS = {"/events": (202, "Accepted: every event of the batch is stored, online and offline (`duplicates` were already).")}
ROUTE_CODES = {
    ("/recommend", 403): ["local_only"],
    ("/similar", 403): ["local_only"],
    ("/similar", 404): ["unknown_product"],
    ("/assortment", 404): ["unknown_store", "no_model"],
}
ROUTE_TEXT = {  # what a status means on a route, where it differs from ERRORS
    ("/events", 400): "The body is not valid JSON, or an event is invalid: a field missing, unknown or out of range, an unknown product, a time in the future, an event id twice. `detail` lists every bad row (`loc`: events, row, field); nothing of the batch was written.",
    ("/events", 403): "A service started without API tokens (--insecure-local) answers this machine only; an event of a client this region does not hold (`other_region`): nothing of the batch was written.",
}
REF = "#/components/schemas/{model}"


def _schema(model: type[BaseModel], schemas: dict) -> dict:
    """The model's JSON schema with its definitions moved into components; returns a $ref to it."""
    s = model.model_json_schema(ref_template=REF)
    for name, definition in s.pop("$defs", {}).items():
        schemas[name] = definition
    schemas[model.__name__] = s
    return {"$ref": REF.format(model=model.__name__)}


def _error_response(status: int, route: str = "") -> dict:
    text, codes = ERRORS[status]
    codes = ROUTE_CODES.get((route, status), codes)
    text = ROUTE_TEXT.get((route, status), text)
    out = {
        "description": text,
        "content": {"application/json": {"schema": {"allOf": [{"$ref": REF.format(model="ErrorBody")}, {"properties": {"code": {"enum": codes}}}]},
                                          "example": {"error": text, "code": codes[0]}}},
    }
    if status == 503:
        out["headers"] = {"Retry-After": {"description": "Seconds to wait before sending again.", "schema": {"type": "integer"}}}
    return out


def document(base: dict, requests: dict[str, type[BaseModel]], responses: dict[str, type[BaseModel]], *,
             maisons: list[str], countries: list[str], secured: bool, examples: dict[str, dict], description: str = "") -> dict:
    """The service's OpenAPI 3.1 document.

    Args:
        base: BentoML's document (its title, version and descriptions are kept).
        requests, responses: the pydantic model of each API route's body and answer.
        maisons, countries: the values the filters accept (422 for any other).
        secured: whether the routes need a bearer token (False only for a local service).
        examples: a valid request per route.
        description: what the service is, for the document's first page.
    """
    spec = copy.deepcopy(base)
    spec["openapi"] = "3.1.0"
    spec["info"] = {"title": base["info"]["title"], "version": base["info"].get("version", ""), "description": description}
    schemas: dict = {}
    _schema(ErrorBody, schemas)
    paths = {}
    for route, request in requests.items():
        body = _schema(request, schemas)
        answer = _schema(responses[route], schemas)
        operation = copy.deepcopy(base["paths"][route]["post"])
        operation["requestBody"] = {"required": True, "content": {"application/json": {"schema": body, "example": examples[route]}}}
        status, text = SUCCESS.get(route, (200, "The answer."))
        operation["responses"] = {str(status): {"description": text, "content": {"application/json": {"schema": answer}}},
                                  **{str(s): _error_response(s, route) for s in ROUTE_ERRORS[route]}}
        if not secured:
            operation["responses"].pop("401")
        operation["security"] = [{"bearer": []}] if secured else []
        paths[route] = {"post": operation}
    for model in requests.values():  # the values the filters accept, in every request that has them
        props = schemas[model.__name__]["properties"]
        for field, values in (("maison", maisons), ("country", countries)):
            if field in props:
                target = props[field]["anyOf"][0] if "anyOf" in props[field] else props[field]
                target["enum"] = sorted(values)
    _schema(Readiness, schemas)
    text = {"text/plain": {"schema": {"type": "string"}}}
    paths["/livez"] = {"get": {"tags": ["Infrastructure"], "description": "The process is alive.", "responses": {"200": {"description": "Alive.", "content": text}}}}
    paths["/healthz"] = {"get": {"tags": ["Infrastructure"], "description": "Alias of /livez.", "responses": {"200": {"description": "Alive.", "content": text}}}}
    paths["/readyz"] = {"get": {"tags": ["Infrastructure"], "description": "Ready to answer; `degraded` while the online store is unreachable or empty (answers then come from the fallback).",
                                "responses": {"200": {"description": "Ready, or degraded.", "content": {"application/json": {"schema": {"$ref": REF.format(model="Readiness")}}}},
                                              "503": {"description": "Still starting.", "content": text}}}}
    paths["/metrics"] = {"get": {"tags": ["Infrastructure"], "description": "Prometheus metrics: BentoML's, the batch sizes and the time of each stage (`atelier_recommend_stage_seconds`).",
                                 "responses": {"200": {"description": "Prometheus text format.", "content": text}}}}
    spec["paths"] = paths
    spec["components"] = {"schemas": schemas}
    if secured:
        spec["components"]["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer", "description": "One token per calling app (ATELIER_API_TOKENS)."}}
    return spec


def reshape(status: int, body: bytes) -> bytes:
    """BentoML's error body as an `ErrorBody` (the service's own errors already are one)."""
    try:
        data = json.loads(body)
    except ValueError:
        data = None
    if isinstance(data, list) and len(data) == 1 and isinstance(data[0], dict):
        data = data[0]  # BentoML sends a one-element list for a body it cannot parse
    if not isinstance(data, dict) or "error" not in data:
        data = {"error": body.decode(errors="replace")[:500] or "error"}
    if "code" in data:
        return body
    if status >= 500:
        return ErrorBody(error="an unexpected error; the service's log has the details", code="internal").model_dump_json(exclude_none=True).encode()
    detail = data.get("detail")
    if isinstance(detail, list):
        problems = [{"loc": list(d.get("loc", [])), "msg": d.get("msg", ""), "type": d.get("type", "")} for d in detail if isinstance(d, dict)]
        message = "; ".join(f"{'.'.join(map(str, p['loc'])) or 'body'}: {p['msg']}" for p in problems) or data["error"]
        return ErrorBody(error=message, code="invalid_request", detail=problems).model_dump_json(exclude_none=True).encode()
    return ErrorBody(error=str(data["error"]), code="malformed_body").model_dump_json(exclude_none=True).encode()


class ErrorShape:
    """ASGI middleware: the API routes' 400 and 5xx bodies from BentoML, rewritten as `ErrorBody`;
    GET /docs.json answered with `document_fn()`; GET /readyz with `readiness_fn()` once BentoML says ready."""

    def __init__(self, app, routes: tuple[str, ...], document_fn, readiness_fn):
        self.app, self.routes, self.document_fn, self.readiness_fn = app, routes, document_fn, readiness_fn

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path, method = scope["path"], scope.get("method")
        if path == "/docs.json" and method == "GET":
            return await _json(send, 200, self.document_fn())
        if path == "/readyz" and method == "GET":
            return await self._readyz(scope, receive, send)
        if path not in self.routes:
            return await self.app(scope, receive, send)
        start: dict = {}

        async def wrapped(message):
            if message["type"] == "http.response.start":
                if message["status"] == 400 or message["status"] >= 500:
                    start.update(message)  # hold it: the body decides the length
                    return
                return await send(message)
            if message["type"] == "http.response.body" and start:
                body = start.setdefault("_body", b"") + message.get("body", b"")
                start["_body"] = body
                if message.get("more_body"):
                    return
                status = start["status"]
                kept = [(k, v) for k, v in start.get("headers", []) if k.lower() not in (b"content-type", b"content-length")]
                return await _raw(send, status, reshape(status, body), kept)
            return await send(message)

        return await self.app(scope, receive, wrapped)

    async def _readyz(self, scope, receive, send):
        state: dict = {}

        async def capture(message):
            if message["type"] == "http.response.start":
                state["status"] = message["status"]
            if state.get("status") != 200:
                await send(message)

        await self.app(scope, receive, capture)
        if state.get("status") == 200:  # BentoML says the worker is up: say how well it can answer
            await _json(send, 200, self.readiness_fn())


async def _raw(send, status: int, body: bytes, headers: list | None = None) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *(headers or [])]})
    await send({"type": "http.response.body", "body": body})


async def _json(send, status: int, obj) -> None:
    await _raw(send, status, json.dumps(obj).encode())
