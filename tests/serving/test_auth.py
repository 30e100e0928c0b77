"""Secure by default: no API tokens, no service; a local one answers this machine only."""

import asyncio
import json

import pytest
from pydantic import SecretStr

from atelier.errors import AtelierError
from atelier.serving.runtime import BearerAuth
from atelier.settings import Settings


def test_a_service_without_tokens_is_refused_unless_local(tmp_path):
    with pytest.raises(AtelierError, match="no API tokens") as e:
        Settings(home=tmp_path).service_tokens()
    assert "--insecure-local" in e.value.render()
    assert Settings(home=tmp_path, insecure_local=True).service_tokens() == {}
    assert Settings(home=tmp_path, api_tokens={"app": SecretStr("s3cret")}).service_tokens() == {"app": "s3cret"}


def _call(middleware, client: str, path: str = "/recommend", headers=()):
    """One request through the middleware; the status and body it sent (None: it let it through)."""
    sent = []

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "path": path, "method": "POST", "client": (client, 50000), "headers": list(headers)}
    asyncio.run(middleware(scope, None, send))
    status = sent[0]["status"] if sent else None
    body = json.loads(sent[1]["body"]) if sent else None
    return status, body


def test_a_local_service_answers_loopback_callers_only():
    local = BearerAuth(app=None, tokens={}, local_only=True)

    async def app(scope, receive, send):
        local.reached = True

    local.app = app
    for client in ("127.0.0.1", "::1"):
        local.reached = False
        _call(local, client)
        assert local.reached, client
    local.reached = False
    status, body = _call(local, "10.1.2.3")
    assert not local.reached and status == 403 and body["code"] == "local_only"
    status, _ = _call(local, "10.1.2.3", path="/readyz")  # health stays open
    assert status is None


def test_tokens_are_checked_for_every_caller_even_on_the_loopback():
    auth = BearerAuth(app=None, tokens={"app": "s3cret"}, local_only=True)
    hits = []

    async def app(scope, receive, send):
        hits.append(scope["path"])

    auth.app = app
    status, body = _call(auth, "127.0.0.1")
    assert status == 401 and body == {"error": "missing or invalid bearer token", "code": "unauthorized"} and hits == []
    _call(auth, "127.0.0.1", headers=[(b"authorization", b"Bearer s3cret")])
    assert hits == ["/recommend"]
