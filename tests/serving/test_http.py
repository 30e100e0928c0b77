"""The regional services over real HTTP, backed by real Redis.

The store-outage test restarts eu's Redis, so it comes last in this file.
"""

import http.client
import json
import re
import shutil
from pathlib import Path

import httpx
import pytest

from atelier.features import repo
from atelier.features.online import OnlineFeatures
from atelier.protect.residency import roster
from atelier.regions import region_codes
from atelier.serving.bento import latest_model

pytestmark = [pytest.mark.redis, pytest.mark.slow]
TOKEN = "apac-app-secret"


def _token(region):
    return TOKEN if region == "apac" else None


def _clients_with_features(servers, region, n=5):
    store = repo.feature_store(servers["settings"], region)
    reader = OnlineFeatures(store, ["client_activity:purchased_products", "client_activity:views_90d"])
    found = []
    for cid in roster(servers["settings"], region).to_pylist():
        row = reader.get_one(cid)
        if row and row["purchased_products"]:
            found.append((cid, row))
        if len(found) >= n:
            break
    assert found, f"no client with purchases online in {region}"
    return found


@pytest.mark.parametrize("region", region_codes())
def test_happy_path_in_each_region(servers, region):
    server = servers["servers"][region]
    for cid, row in _clients_with_features(servers, region, 3):
        r = server.post("/recommend", {"client_id": cid, "k": 7}, token=_token(region))
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["client_id"] == cid and body["region"] == region and body["fallback"] is False
        assert body["model"] == latest_model(servers["settings"], region)
        items = body["items"]
        assert len(items) == 7 and len({i["product_id"] for i in items}) == 7
        assert [i["score"] for i in items] == sorted((i["score"] for i in items), reverse=True)
        assert not {i["product_id"] for i in items} & set(row["purchased_products"]), "already bought"
        again = server.post("/recommend", {"client_id": cid, "k": 7, "exclude_purchased": False}, token=_token(region))
        assert again.status_code == 200


def test_filters_return_k_items_whenever_k_exist(servers):
    server = servers["servers"]["us"]
    cid, _ = _clients_with_features(servers, "us", 1)[0]
    r = server.post("/recommend", {"client_id": cid, "k": 5, "maison": "glen-arrow"})
    assert r.status_code == 200 and len(r.json()["items"]) == 5
    assert {i["maison"] for i in r.json()["items"]} == {"glen-arrow"}
    r = server.post("/recommend", {"client_id": cid, "k": 100, "country": "JP"})
    items = r.json()["items"]
    assert len(items) == 100  # over-fetch: 100 products sold in Japan exist among 200
    r = server.post("/recommend", {"client_id": cid, "k": 100, "maison": "cognac-marceau", "country": "US"})
    ids = [i["product_id"] for i in r.json()["items"]]
    assert 0 < len(ids) < 100 and all(i["maison"] == "cognac-marceau" for i in r.json()["items"])


def test_similar_products(servers):
    server = servers["servers"]["us"]
    r = server.post("/similar", {"product_id": "P0000001", "k": 4})
    assert r.status_code == 200
    items = r.json()["items"]
    assert len(items) == 4 and "P0000001" not in {i["product_id"] for i in items}


BAD = [  # route, body, status, code, the kind of the field problem (invalid_request only)
    ("/recommend", '{"client_id": "US00000001", ', 400, "invalid_request", "json_invalid"),
    ("/recommend", {"client_id": "US00000001", "kk": 3}, 400, "invalid_request", "extra_forbidden"),
    ("/recommend", {"client_id": "US00000001", "k": 0}, 400, "invalid_request", "greater_than_equal"),
    ("/recommend", {"client_id": "US00000001", "k": 101}, 400, "invalid_request", "less_than_equal"),
    ("/recommend", {"client_id": "US00000001", "k": "3"}, 400, "invalid_request", "value_error"),
    ("/recommend", {"client_id": "US00000001", "exclude_purchased": 0}, 400, "invalid_request", "bool_type"),
    ("/recommend", {"k": 3}, 400, "invalid_request", "missing"),
    ("/recommend", {"client_id": "US00000001", "maison": "maison-inconnue"}, 422, "unknown_maison", None),
    ("/recommend", {"client_id": "US00000001", "country": "ZZ"}, 422, "unknown_country", None),
    ("/similar", {"product_id": "P9999999"}, 404, "unknown_product", None),
]


@pytest.mark.parametrize("route", ["/recommend", "/similar"])
def test_a_body_that_is_not_json_is_a_415_not_a_500(servers, route):
    """Found by a contract fuzzer: multipart/form-data without a boundary answered 500."""
    server = servers["servers"]["us"]
    for ctype in ("multipart/form-data", "application/x-www-form-urlencoded", "text/plain"):
        r = httpx.post(f"{server.url}{route}", content=b'{"client_id": "x"}', headers={"content-type": ctype}, timeout=30)
        assert r.status_code == 415, (ctype, r.status_code, r.text)
        assert r.json()["code"] == "unsupported_media_type"
        assert int(r.headers["content-length"]) == len(r.content) and "transfer-encoding" not in r.headers
    ok = httpx.post(f"{server.url}{route}", content=b'{"product_id": "x", "client_id": "x"}', headers={"content-type": "application/json; charset=utf-8"}, timeout=30)
    assert ok.status_code in (200, 400, 404), ok.text  # reaches the API (which judges the body itself)


@pytest.mark.parametrize("route,body,status,code,kind", BAD, ids=[b[4] or b[3] for b in BAD])
def test_bad_requests_get_a_4xx_in_the_documented_error_shape(servers, route, body, status, code, kind):
    r = servers["servers"]["us"].post(route, body)
    assert r.status_code == status, r.text
    data = r.json()
    assert isinstance(data, dict) and isinstance(data["error"], str) and data["error"], data
    assert data["code"] == code, data
    if kind:
        assert [d["type"] for d in data["detail"]] == [kind], data


def test_a_client_of_another_region_gets_the_cold_start_answer(servers):
    """The us service holds no eu client's data: it answers as for a client it has never seen."""
    eu_client = roster(servers["settings"], "eu").to_pylist()[0]
    r = servers["servers"]["us"].post("/recommend", {"client_id": eu_client, "k": 5})
    assert r.status_code == 200, r.text
    assert r.json()["fallback"] is True and len(r.json()["items"]) == 5


def test_cold_start_gets_the_regions_most_popular(servers):
    server = servers["servers"]["us"]
    r = server.post("/recommend", {"client_id": "US99999999", "k": 5})
    assert r.status_code == 200
    body = r.json()
    assert body["fallback"] is True and len(body["items"]) == 5
    scores = [i["score"] for i in body["items"]]
    assert scores == sorted(scores, reverse=True) and scores[0] > 0


def test_bearer_tokens(servers):
    server = servers["servers"]["apac"]
    body = {"client_id": "AP99999999", "k": 2}
    assert server.post("/recommend", body).status_code == 401
    wrong = server.post("/recommend", body, token="wrong")
    assert wrong.status_code == 401 and wrong.headers["www-authenticate"] == 'Bearer realm="atelier"'
    assert int(wrong.headers["content-length"]) == len(wrong.content) and "transfer-encoding" not in wrong.headers
    assert server.post("/similar", {"product_id": "P0000001"}).status_code == 401
    assert server.post("/recommend", body, token=TOKEN).status_code == 200
    assert httpx.get(f"{server.url}/livez").status_code == 200


def test_health_metrics_and_openapi(servers):
    server = servers["servers"]["us"]
    assert httpx.get(f"{server.url}/livez").status_code == 200
    assert httpx.get(f"{server.url}/readyz").status_code == 200
    assert httpx.get(f"{server.url}/").status_code == 200
    spec = httpx.get(f"{server.url}/docs.json").json()
    assert "/recommend" in spec["paths"] and "/similar" in spec["paths"]
    metrics = httpx.get(f"{server.url}/metrics").text
    assert "bentoml_service_request_duration_seconds" in metrics


def _batch_metrics(server):
    text = httpx.get(f"{server.url}/metrics").text
    def total(name):
        return sum(float(v) for v in re.findall(rf"{name}(?:\{{[^}}]*\}})? ([0-9.e+]+)", text))
    return total("atelier_recommend_batch_size_count"), total("atelier_recommend_batch_size_sum")


def _bursts(server, bodies, rounds):
    """Send every body at once, each on its own keep-alive connection, `rounds` times over.

    The connections are opened and used once before the metrics are read, so a burst is
    only the requests' bytes, written in one tight loop: they reach the server within a
    fraction of one request's service time whatever the load on the machine, which a pool
    of Python client threads cannot promise. Returns the answers and the batches the
    bursts were served in (requests, batches)."""
    url = httpx.URL(server.url)
    conns = [http.client.HTTPConnection(url.host, url.port, timeout=30) for _ in bodies]
    headers = {"content-type": "application/json"}

    def burst():
        for conn, body in zip(conns, bodies):
            conn.request("POST", "/recommend", json.dumps(body), headers)
        return [(r.status, json.loads(r.read())) for r in (c.getresponse() for c in conns)]

    try:
        burst()  # connect, and let the dispatcher learn its timing
        count_before, total_before = _batch_metrics(server)
        answers = [a for _ in range(rounds) for a in burst()]
        count, total = _batch_metrics(server)
        return answers, (total - total_before, count - count_before)
    finally:
        for conn in conns:
            conn.close()


def test_concurrent_requests_are_batched(servers):
    server = servers["servers"]["us"]
    clients = [c for c, _ in _clients_with_features(servers, "us", 16)]
    bodies = [{"client_id": clients[i % len(clients)], "k": 3} for i in range(32)]
    answers, (requests, batches) = _bursts(server, bodies, rounds=3)
    assert all(status == 200 and body["fallback"] is False for status, body in answers)
    assert requests == 3 * len(bodies), "each request was answered in exactly one batch"
    assert requests / batches > 2, f"{requests:.0f} requests in {batches:.0f} batches: simultaneous requests were not batched"


def test_bento_builds_with_and_without_gpu(servers, tmp_path):
    from atelier.models.recommend.export import model_name
    from atelier.serving.bento import build
    from atelier.settings import Settings

    cpu = servers["bento"]
    # The GPU bento is built from a data home under a hidden folder, like the default ~/.atelier
    # (BentoML refuses build files behind a dot folder, so the build must not read from there).
    settings = Settings(home=tmp_path / ".atelier")
    models = Path("models") / model_name("eu")
    shutil.copytree(servers["settings"].paths.bentoml_home / models, settings.paths.bentoml_home / models)
    gpu = build(settings, "eu", gpu=True)
    cpu_docker = open(cpu["dockerfile"]).read()
    gpu_docker = open(gpu["dockerfile"]).read()
    assert re.search(r"^FROM nvidia/cuda:\S+ ", gpu_docker, re.M)
    assert "nvidia/cuda" not in cpu_docker and re.search(r"^FROM \S*python\S* ", cpu_docker, re.M)
    gpu_reqs = open(gpu["path"] + "/env/python/requirements.txt").read()
    cpu_reqs = open(cpu["path"] + "/env/python/requirements.txt").read()
    assert "tensorflow[and-cuda]==" in gpu_reqs and "tensorflow==" in cpu_reqs and "and-cuda" not in cpu_reqs
    assert "atelier-0.1.0-py3-none-any.whl" in gpu_reqs
    gpu_yaml = open(gpu["path"] + "/bento.yaml").read()
    assert re.search(r"resources:\s+gpu: 1", gpu_yaml) and "ATELIER_REGION" in gpu_yaml
    assert gpu["model"] == cpu["model"] == latest_model(servers["settings"], "eu")
    assert gpu["path"].startswith(str(settings.home))


def test_store_outage_answers_with_fallback_then_recovers(servers):
    server = servers["servers"]["eu"]
    cid, _ = _clients_with_features(servers, "eu", 1)[0]
    assert server.post("/recommend", {"client_id": cid, "k": 5}).json()["fallback"] is False
    server.redis.stop()
    try:
        for _ in range(10):
            r = server.post("/recommend", {"client_id": cid, "k": 5})
            assert r.status_code == 200, r.text
            assert r.json()["fallback"] is True and len(r.json()["items"]) == 5
    finally:
        server.redis.start()
    for _ in range(40):
        r = server.post("/recommend", {"client_id": cid, "k": 5})
        if r.status_code == 200 and r.json()["fallback"] is False:
            break
    assert r.status_code == 200 and r.json()["fallback"] is False, "normal answers resume"


def test_a_store_restarted_empty_is_degraded_until_materialize_full_restores_it(servers):
    """Redis comes back without its data: answers fall back (never a 5xx), /readyz says degraded
    and what to run, and `atelier features materialize --full` makes the service whole again."""
    import subprocess
    import sys
    import time
    from pathlib import Path

    server = servers["servers"]["us"]
    cid, _ = _clients_with_features(servers, "us", 1)[0]
    assert server.post("/recommend", {"client_id": cid, "k": 5}).json()["fallback"] is False
    assert httpx.get(f"{server.url}/readyz").json() == {"status": "ready", "online_store": "ok"}
    server.redis.client().flushall()
    server.redis.stop()  # saves the empty data set: the restart comes back empty
    server.redis.start()
    assert server.redis.client().dbsize() == 0
    time.sleep(1.1)  # the readiness probe runs at most once a second
    ready = httpx.get(f"{server.url}/readyz")
    assert ready.status_code == 200 and ready.json()["status"] == "degraded" and ready.json()["online_store"] == "empty"
    assert ready.json()["fix"] == "atelier features materialize --full -r us"
    r = server.post("/recommend", {"client_id": cid, "k": 5})
    assert r.status_code == 200 and r.json()["fallback"] is True and len(r.json()["items"]) == 5

    env = {k: v for k, v in servers["env"].items()}
    restore = subprocess.run([str(Path(sys.executable).with_name("atelier")), "features", "materialize", "--full", "-r", "us"],
                             env=env, capture_output=True, text=True, timeout=300)
    assert restore.returncode == 0, restore.stderr[-2000:]
    time.sleep(1.1)
    assert httpx.get(f"{server.url}/readyz").json() == {"status": "ready", "online_store": "ok"}
    r = server.post("/recommend", {"client_id": cid, "k": 5})
    assert r.status_code == 200 and r.json()["fallback"] is False


def test_training_and_serving_agree_on_what_to_recommend(servers):
    """For sample clients, /recommend over HTTP returns what the exported model computes offline
    from the same feature values, through the code training evaluates with (models/recommend/ranking/).

    A skew between the features the service builds and those the ranker was trained on (a
    renamed column, a different order of purchases, a unit change) shows up here.
    """
    import time

    import numpy as np

    from atelier.models.recommend import ranking
    from atelier.models.recommend.export import LoadedModel
    from atelier.models.store import use_bentoml_home
    from atelier.serving.recommender import RANKING_INPUTS

    settings = servers["settings"]
    use_bentoml_home(settings)
    import bentoml

    model = LoadedModel.load(bentoml.models.get(latest_model(settings, "us")).path)
    assert model.ranking is not None, "the model was exported with its ranking stage"
    store = repo.feature_store(settings, "us")
    features = OnlineFeatures(store, model.feature_refs)
    popularity = OnlineFeatures(store, [f"product_popularity:{n}" for n in ranking.POPULARITY])
    products = list(model.products["product_id"])
    index = {p: i for i, p in enumerate(products)}
    pop_cols, _ = popularity.get(products)
    context = model.ranking.context.with_popularity({n: np.array([v or 0 for v in pop_cols[n]], np.float32) for n in ranking.POPULARITY})

    sample = [cid for cid, _ in _clients_with_features(servers, "us", n=8)]
    cols, found = features.get(sample)
    assert all(found)
    clients = ranking.Clients.from_features({n: cols[n] for n in RANKING_INPUTS | {"recent_products"}}, index, time.time())
    bought = [np.array(sorted(index[p] for p in (b or []) if p in index), np.int64) for b in cols["purchased_products"]]
    from atelier.models.recommend.inputs import to_inputs

    vectors = model.embed(to_inputs(cols, model.query_specs, "client_id", sample, as_of=time.time()))
    fetch = ranking.FROM_TOWER + max(len(b) for b in bought)
    _, ids = model.top(vectors, fetch)
    tower = ranking.Retrieved.of(ranking.TowerView.of(model.candidates), vectors, [row[row >= 0] for row in ids], bought)
    offline = ranking.ranked_scores(context, clients, model.ranking.scorer, bought, tower, fill=model.popularity)
    # ties (products the features cannot tell apart) go to the lower catalog index, as in the service
    expected = [[products[i] for i in np.argsort(-row, kind="stable") if i not in set(b)][:10] for row, b in zip(offline, bought)]

    for cid, want in zip(sample, expected):
        r = servers["servers"]["us"].post("/recommend", {"client_id": cid, "k": 10})
        assert r.status_code == 200 and r.json()["fallback"] is False, r.text
        assert [i["product_id"] for i in r.json()["items"]] == want, cid

    # A client the store does not hold, shopping in the region's busiest country: what training
    # scores as the service's answer (baselines.Fallback over the store's popularity and the counts
    # exported with the model), within what the catalog sells there.
    from atelier.models.recommend.baselines import FALLBACK_POPULARITY, Fallback, fallback_popularity
    from atelier.serving.recommender import Catalog

    region_cols, _ = OnlineFeatures(store, [f"product_popularity:{n}" for n, _ in FALLBACK_POPULARITY]).get(products)
    fallback = Fallback(fallback_popularity(region_cols), model.country_popularity)
    country = max(model.country_popularity, key=lambda c: model.country_popularity[c].sum())
    allowed = Catalog(model.products).allowed(None, country)
    want = [products[i] for i in allowed[np.argsort(-fallback.scores(country)[allowed], kind="stable")][:10]]
    assert want != [products[i] for i in allowed[np.argsort(-fallback.region[allowed], kind="stable")][:10]], "the country's list is its own"
    r = servers["servers"]["us"].post("/recommend", {"client_id": "a-client-nobody-has-seen", "k": 10, "country": country})
    assert r.status_code == 200 and r.json()["fallback"] is True, r.text
    assert [i["product_id"] for i in r.json()["items"]] == want, country


def _listening_addresses(port: int) -> set[str]:
    """IPv4 addresses with a socket listening on `port` (from /proc/net/tcp)."""
    import socket
    import struct

    found = set()
    for line in open("/proc/net/tcp").read().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        address, hex_port = local.split(":")
        if state == "0A" and int(hex_port, 16) == port:
            found.add(socket.inet_ntoa(struct.pack("<I", int(address, 16))))
    return found


def _group_alive(pgid: int) -> bool:
    import os

    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False


def test_atelier_serve_stops_its_whole_tree_on_sigterm_and_refuses_a_taken_port(servers):
    """SIGTERM used to stop `atelier serve` alone: bentoml's workers kept the port and answered."""
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    from atelier.local_redis import free_port
    from atelier.serving.bento import port_taken, serve_command, wait_until_ready

    atelier = str(Path(sys.executable).with_name("atelier"))
    port = free_port()
    env = {**servers["env"], "ATELIER_WORKERS": "1"}
    # secure by default: no tokens, no service, unless asked for a loopback-only one
    refused = subprocess.run([atelier, "serve", "-r", "eu", "--port", str(port)], env=env, capture_output=True, text=True, timeout=120)
    assert refused.returncode == 1 and "no API tokens" in refused.stderr and "--insecure-local" in refused.stderr
    # and the bento itself, as a container starts it (plain `bentoml serve`), refuses before any worker starts
    cmd, _ = serve_command(servers["settings"], "eu", port, insecure_local=True)
    bare = subprocess.run(cmd[: cmd.index("--host")], env=env, capture_output=True, text=True, timeout=180)
    assert bare.returncode != 0 and "no API tokens" in bare.stdout + bare.stderr, (bare.stdout + bare.stderr)[-2000:]
    assert not port_taken(port)
    proc = subprocess.Popen([atelier, "serve", "-r", "eu", "--port", str(port), "--insecure-local"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    try:
        wait_until_ready(f"http://127.0.0.1:{port}", proc)
        assert _listening_addresses(port) == {"127.0.0.1"}
        taken = subprocess.run([atelier, "serve", "-r", "eu", "--port", str(port), "--insecure-local"], env=env, capture_output=True, text=True, timeout=120)
        assert taken.returncode == 1 and f"port {port} is taken" in taken.stderr
        # the server's own process group (bentoml and its workers) is what SIGTERM must end
        children = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True).stdout.split()
        assert children, "atelier serve runs bentoml as a child"
        server_group = os.getpgid(int(children[0]))
        os.kill(proc.pid, signal.SIGTERM)
        proc.wait(30)
        deadline = time.time() + 15
        while time.time() < deadline and (_group_alive(server_group) or port_taken(port)):
            time.sleep(0.2)
        assert not _group_alive(server_group), "a bentoml process outlived atelier serve"
        assert not port_taken(port), "the port is still held"
        assert proc.returncode == 0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)


def test_the_demo_serves_its_bento_with_a_token_of_its_own(servers):
    """`make demo` failed here once: its settings copy held the token as a plain string."""
    from atelier.cli.demo import demo_service

    cmd, env = demo_service(servers["settings"], "eu", 3999, "demo-secret")
    assert cmd[1:4] == ["serve", servers["bento"]["bento"], "--port"] and "--host" not in cmd
    assert json.loads(env["ATELIER_API_TOKENS"]) == {"demo": "demo-secret"} and "ATELIER_INSECURE_LOCAL" not in env
