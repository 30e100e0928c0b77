"""`atelier features ui`: Feast's own feature browser on a region's registry, read-only.

Why read-only: Feast's UI server (feast.ui_server) also mounts the registry's REST API with its
create, edit and delete routes, and with `auth: no_auth` anyone who reaches the port could
register a view or a permission that `atelier features check` never saw, or delete one. Here
every method but GET and HEAD is answered 405 with the way features are registered instead; the
browser itself only reads. Served by uvicorn with its logs in the log file, on loopback unless
told otherwise.
"""

from __future__ import annotations

import json

from atelier.features.repo import feature_store
from atelier.settings import Settings

READ_METHODS = {"GET", "HEAD", "OPTIONS"}
HOW = "this browser is read-only: register features with `atelier features new`, `check` and `apply`"


class ReadOnly:
    """ASGI middleware: 405 with a JSON reason for anything that could write."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope["method"] not in READ_METHODS:
            body = json.dumps({"error": HOW, "code": "read_only"}).encode()
            await send({"type": "http.response.start", "status": 405,
                        "headers": [(b"content-type", b"application/json"), (b"allow", b"GET, HEAD, OPTIONS"), (b"content-length", str(len(body)).encode())]})
            await send({"type": "http.response.body", "body": body})
            return
        await self.app(scope, receive, send)


def app(settings: Settings, region: str):
    from feast.ui_server import get_app

    store = feature_store(settings, region)
    return ReadOnly(get_app(store, store.project))


def serve(settings: Settings, region: str, host: str, port: int) -> None:
    import uvicorn

    uvicorn.run(app(settings, region), host=host, port=port, log_level="warning", access_log=False)
