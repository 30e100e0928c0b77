"""POST /events over real HTTP against real Redis: what a client just did reaches /recommend at once.

Runs after test_http.py (file order): the events it sends change some clients' fresh features,
which that file's comparisons of online and offline answers must not see.
"""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone

import httpx
import pytest

from atelier.context import RegionContext
from atelier.events import journal
from atelier.features import repo
from atelier.features.online import OnlineFeatures
from atelier.protect.residency import roster

pytestmark = [pytest.mark.redis, pytest.mark.slow]
TOKEN = "apac-app-secret"


def _client(servers, region, skip=0):
    """A client of the region with purchases online (so it gets personal answers)."""
    reader = OnlineFeatures(repo.feature_store(servers["settings"], region), ["client_activity:purchased_products"])
    found = [c for c in roster(servers["settings"], region).to_pylist()[:400] if (reader.get_one(c) or {}).get("purchased_products")]
    return found[skip]


def _event(client, product, kind, **extra):
    when = datetime.now(timezone.utc) - timedelta(seconds=1)
    return {"event_id": uuid.uuid4().hex, "client_id": client, "product_id": product, "event_type": kind,
            "event_timestamp": when.isoformat(), "channel": "web", **extra}


def _parts(servers, region):
    return journal.part_names(RegionContext.of(servers["settings"], region))


def test_a_purchase_leaves_the_recommendations_at_once(servers):
    server = servers["servers"]["eu"]
    client = _client(servers, "eu")
    before = server.post("/recommend", {"client_id": client, "k": 10}).json()
    assert before["fallback"] is False
    bought = before["items"][0]["product_id"]
    r = server.post("/events", {"events": [_event(client, bought, "purchase", amount=950.0)]})
    assert r.status_code == 202, r.text
    assert r.json() == {"region": "eu", "accepted": 1, "duplicates": 0}
    after = server.post("/recommend", {"client_id": client, "k": 10}).json()
    assert bought not in {i["product_id"] for i in after["items"]} and len(after["items"]) == 10
    kept = server.post("/recommend", {"client_id": client, "k": 100, "exclude_purchased": False}).json()
    assert kept["fallback"] is False


def test_views_move_the_ranking(servers):
    """The query tower and the ranking stage read the client's recent products: twenty views change them."""
    server = servers["servers"]["eu"]
    client = _client(servers, "eu", skip=1)
    before = [i["product_id"] for i in server.post("/recommend", {"client_id": client, "k": 20}).json()["items"]]
    similar = server.post("/similar", {"product_id": before[-1], "k": 20}).json()["items"]
    viewed = [i["product_id"] for i in similar if i["product_id"] not in before][:10]
    events = [_event(client, p, "view") for p in viewed * 2]
    assert server.post("/events", {"events": events}).status_code == 202
    after = [i["product_id"] for i in server.post("/recommend", {"client_id": client, "k": 20}).json()["items"]]
    assert after != before


def test_batches_sent_at_once_are_stored_once_each_with_their_own_answer(servers):
    """Batches of one event sent at once (tills, page views): a worker takes them together and its
    intake writes those that wait for the writer as one (group commit, atelier.events.group). Each
    still gets its own 202 and counts; an event sent twice at once is stored once."""
    server = servers["servers"]["eu"]
    clients = roster(servers["settings"], "eu").to_pylist()[:24]
    product = server.post("/recommend", {"client_id": clients[0], "k": 1}).json()["items"][0]["product_id"]
    batches = [{"events": [_event(c, product, "view")]} for c in clients]
    batches.append(batches[3])
    before = set(_parts(servers, "eu"))
    with ThreadPoolExecutor(len(batches)) as pool:
        answers = list(pool.map(lambda b: server.post("/events", b), batches))
    assert [a.status_code for a in answers] == [202] * len(batches), [a.text for a in answers if a.status_code != 202]
    counts = [(a.json()["accepted"], a.json()["duplicates"]) for a in answers]
    assert sorted([counts[3], counts[-1]]) == [(0, 1), (1, 0)]
    assert counts[:3] + counts[4:-1] == [(1, 0)] * (len(batches) - 2)
    ctx = RegionContext.of(servers["settings"], "eu")
    new = [n for n in _parts(servers, "eu") if n not in before]
    with journal.Journal(ctx) as written:
        stored = [e for n in new for e in written.part(n).column("event_id").to_pylist()]
    assert sorted(stored) == sorted(b["events"][0]["event_id"] for b in batches[:-1])  # every event once, in the parts written


def test_a_resent_batch_counts_nothing_twice(servers):
    server = servers["servers"]["apac"]
    client = _client(servers, "apac")
    products = [i["product_id"] for i in server.post("/recommend", {"client_id": client, "k": 3}, token=TOKEN).json()["items"]]
    batch = {"events": [_event(client, p, "wishlist") for p in products]}
    parts = len(_parts(servers, "apac"))
    first = server.post("/events", batch, token=TOKEN)
    again = server.post("/events", batch, token=TOKEN)
    assert (first.status_code, first.json()["accepted"], first.json()["duplicates"]) == (202, 3, 0)
    assert (again.status_code, again.json()["accepted"], again.json()["duplicates"]) == (202, 0, 3)
    assert len(_parts(servers, "apac")) == parts + 1
    assert server.post("/events", batch).status_code == 401  # and nothing without a token


def test_a_bad_row_rejects_its_batch_and_writes_nothing(servers):
    server = servers["servers"]["eu"]
    client = _client(servers, "eu", skip=2)
    product = server.post("/recommend", {"client_id": client, "k": 1}).json()["items"][0]["product_id"]
    good = _event(client, product, "view")
    parts = _parts(servers, "eu")
    cases = [
        ({**good, "event_id": "b1", "product_id": "NO-SUCH-PRODUCT"}, ["events", 1, "product_id"]),
        ({**good, "event_id": "b2", "event_timestamp": "2999-01-01T00:00:00Z"}, ["events", 1, "event_timestamp"]),
        ({**good, "event_id": good["event_id"]}, ["events", 1, "event_id"]),
    ]
    for bad, loc in cases:
        r = server.post("/events", {"events": [good, bad]})
        assert r.status_code == 400, r.text
        assert r.json()["code"] == "invalid_request" and [p["loc"] for p in r.json()["detail"]] == [loc]
    r = server.post("/events", {"events": [good, {**good, "event_type": "like"}]})
    assert r.status_code == 400 and r.json()["detail"][0]["loc"][:2] == ["events", 1]
    assert server.post("/events", {"events": []}).status_code == 400
    assert _parts(servers, "eu") == parts


def test_a_client_of_another_region_gets_403_and_nothing_is_written(servers):
    server = servers["servers"]["eu"]
    eu_client, us_client = _client(servers, "eu"), _client(servers, "us")
    product = server.post("/recommend", {"client_id": eu_client, "k": 1}).json()["items"][0]["product_id"]
    parts = _parts(servers, "eu")
    r = server.post("/events", {"events": [_event(eu_client, product, "view"), _event(us_client, product, "view")]})
    assert r.status_code == 403 and r.json()["code"] == "other_region" and us_client in r.json()["error"]
    assert _parts(servers, "eu") == parts


def test_an_unreachable_store_answers_503_with_retry_after_and_acknowledges_nothing(servers):
    server = servers["servers"]["us"]
    client = _client(servers, "us")
    product = server.post("/recommend", {"client_id": client, "k": 1}).json()["items"][0]["product_id"]
    batch = {"events": [_event(client, product, "view")]}
    parts = _parts(servers, "us")
    server.redis.stop()
    try:
        r = server.post("/events", batch)
        assert r.status_code == 503 and r.json()["code"] == "store_unavailable" and r.headers["retry-after"] == "5"
        assert _parts(servers, "us") == parts
    finally:
        server.redis.start()
    for _ in range(20):
        r = server.post("/events", batch)
        if r.status_code == 202:
            break
    assert r.status_code == 202 and r.json()["accepted"] == 1
    metrics = httpx.get(f"{server.url}/metrics").text
    assert 'atelier_events_total{outcome="accepted"}' in metrics


def test_a_service_killed_between_the_two_writes_acknowledges_nothing_and_a_resend_leaves_both_stores_consistent(servers):
    """A worker of the region's service killed (SIGKILL) once the batch's part is on disk and its
    rows are sent to Redis, before the ledger knows the part (crash point `events.sent`): the app
    gets no 202. Resent to the region's service, the batch is counted as stored (each event a
    duplicate), and every event is in both stores, once."""
    import os
    import signal
    import subprocess
    from pathlib import Path

    from atelier.events import fresh
    from atelier.local_redis import free_port
    from atelier.serving.bento import wait_until_ready

    us = servers["servers"]["us"]
    client = _client(servers, "us", skip=1)
    products = [i["product_id"] for i in us.post("/recommend", {"client_id": client, "k": 3}).json()["items"]]
    batch = {"events": [_event(client, p, "wishlist") for p in products]}
    ids = sorted(e["event_id"] for e in batch["events"])
    port = free_port()
    cmd, env = servers["from_source"]("us", port, ATELIER_INSECURE_LOCAL="1", ATELIER_CRASH_AT="events.sent")
    proc = subprocess.Popen(cmd, cwd=Path(__file__).resolve().parents[2], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_until_ready(f"http://127.0.0.1:{port}", proc)
        try:
            answer = httpx.post(f"http://127.0.0.1:{port}/events", json=batch, timeout=60).status_code
        except httpx.TransportError:  # the worker died with the request
            answer = None
        assert answer != 202
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(30)
    ctx = RegionContext.of(servers["settings"], "us")
    assert ids[0] in set(journal.read(ctx).column("event_id").to_pylist())  # the part was written before the kill
    again = us.post("/events", batch)
    assert (again.status_code, again.json()["accepted"], again.json()["duplicates"]) == (202, 0, 3), again.text
    reader = OnlineFeatures(repo.feature_store(servers["settings"], "us"), fresh.REFS)
    online = fresh.Log.of(reader.get_one(client) or {}).ids
    assert sorted(e for e in online if e in set(ids)) == ids
    stored = journal.read(ctx).column("event_id").to_pylist()
    assert sorted(e for e in stored if e in set(ids)) == ids
