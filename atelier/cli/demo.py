"""`atelier demo` (what `make demo` runs): the whole flow on the embedded default.

keys -> a generated world -> features per region (embedded sqlite online stores) -> a two-tower
model per region, and a forecast and assortments for the served region -> residency audit -> a
bento -> a served region answering a recommendation, the same again after a few live events
(POST /events), a forecast and an assortment over HTTP. No server to start by hand; the demo
starts and stops its own.
"""

from __future__ import annotations

import json
import secrets
import subprocess

import httpx
import typer
from pydantic import SecretStr

from atelier.cli.common import console, out, progress_bar


def demo(
    size: str = typer.Option("small", help="World size preset (tiny, small, medium, large)."),
    epochs: int = typer.Option(3, help="Training epochs per region."),
    serve_region: str = typer.Option("eu", help="The region served at the end."),
    port: int = typer.Option(0, help="HTTP port for the served region (0: any free port)."),
) -> None:
    """Run data -> features -> training -> serving end to end, then ask the service for a recommendation, a forecast and an assortment."""
    from atelier.data.world import preset
    from atelier.regions import get_region, region_codes

    spec = preset(size)  # both checked before any work (and before TensorFlow loads), not after an hour of it
    serve_region = get_region(serve_region).code

    from atelier.data.generate import generate_world
    from atelier.features import repo
    from atelier.features.online import OnlineFeatures
    from atelier.features.pipeline import compute_features
    from atelier.local_redis import free_port
    from atelier.models.recommend.train import summary, train_region
    from atelier.models.recommend.two_tower import TrainConfig
    from atelier.protect.audit import audit_residency
    from atelier.protect.keys import LocalKeyStore
    from atelier.protect.residency import roster
    from atelier.serving.bento import build, wait_until_ready
    from atelier.settings import get_settings

    s = get_settings()
    console.rule(f"[bold]atelier demo[/]  data home {s.home}  online store {s.online_store}")
    if s.kms == "local":
        for r in region_codes():
            LocalKeyStore.init(s.paths.keys, r)
    with progress_bar(f"1/6 generating a {size} world", total=spec.clients) as advance:
        manifest = generate_world(s, spec, progress=advance)
    out.print("   " + ", ".join(f"{r}: {n:,} clients" for r, n in manifest["counts"]["clients"].items()) + f"; {manifest['products']:,} products")
    for r in region_codes():
        with progress_bar(f"2/6 {r}: features (compute, apply, materialize)") as advance:
            compute_features(s, r, progress=advance, on_total=advance.total)
            repo.apply(s, r)
            repo.materialize(s, r, incremental=False, progress=lambda _v, n: advance(n))
    for r in region_codes():
        with console.status(f"3/6 {r}: training the two-tower model"):
            result = train_region(s, r, TrainConfig(epochs=epochs))
        out.print(summary(result))
    from atelier.models.assortment.train import summary as assortment_summary
    from atelier.models.assortment.train import train_assortment
    from atelier.models.forecast.backtest import ForecastConfig
    from atelier.models.forecast.train import summary as forecast_summary
    from atelier.models.forecast.train import train_forecast

    with console.status(f"3/6 {serve_region}: forecast (backtest beside its baselines) and assortments"):
        forecast = train_forecast(s, serve_region, ForecastConfig(epochs=6, origins=2))
        assortment = train_assortment(s, forecast, n=50)
    out.print(forecast_summary(forecast))
    out.print(assortment_summary(assortment))
    report = audit_residency(s)
    out.print(f"4/6 residency audit: {'no client outside its region' if report.ok else f'{len(report.findings)} violation(s)'}")
    with console.status(f"5/6 {serve_region}: building the bento"):
        built = build(s, serve_region)
    out.print(f"   bento {built['bento']}")

    port = port or free_port()
    token = secrets.token_urlsafe(24)  # the service is never open: the demo gets a token of its own
    cmd, env = demo_service(s, serve_region, port, token)
    auth = {"authorization": f"Bearer {token}"}
    with console.status(f"6/6 {serve_region}: serving on http://localhost:{port}"):
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            url = f"http://127.0.0.1:{port}"
            wait_until_ready(url, proc)
            reader = OnlineFeatures(repo.feature_store(s, serve_region), ["client_activity:purchases_365d"])
            client = next(c for c in roster(s, serve_region).to_pylist() if (reader.get_one(c) or {}).get("purchases_365d"))
            answer = httpx.post(f"{url}/recommend", json={"client_id": client, "k": 5}, headers=auth, timeout=30)
            similar = httpx.post(f"{url}/similar", json={"product_id": answer.json()["items"][0]["product_id"], "k": 3}, headers=auth, timeout=30)
            replayed, after = live_events(url, token, client, answer.json()["items"])
            lists = assortment.assortments[assortment.assortments["level"] == "country"]
            country = lists.groupby("location")["expected_units"].sum().idxmax()
            newcomer_ask = {"client_id": "a-client-seen-for-the-first-time", "k": 3, "country": country}
            newcomer = httpx.post(f"{url}/recommend", json=newcomer_ask, headers=auth, timeout=30)  # the country's best-sellers
            planning = {"product_ids": [lists.loc[lists["location"] == country, "product_id"].iloc[0]], "country": country, "horizon_weeks": 4}
            forecasted = httpx.post(f"{url}/forecast", json=planning, headers=auth, timeout=30)
            assorted = httpx.post(f"{url}/assortment", json={"country": country, "n": 3}, headers=auth, timeout=30)
        finally:
            proc.terminate()
            proc.wait(30)
    out.print(f"\nPOST {url}/recommend {{\"client_id\": \"{client}\", \"k\": 5}}  ->  {answer.status_code}")
    out.print_json(json.dumps(answer.json()))
    out.print(f"POST {url}/events: {replayed}  ->  /recommend again, at once:")
    out.print(_before_after(answer.json()["items"], after.json()["items"]))
    out.print(f"POST {url}/similar {{\"product_id\": \"{answer.json()['items'][0]['product_id']}\", \"k\": 3}}  ->  {similar.status_code}")
    out.print_json(json.dumps(similar.json()))
    out.print(f"POST {url}/recommend {json.dumps(newcomer_ask)}  ->  {newcomer.status_code} (a client the store does not hold: {country}'s best-sellers)")
    out.print_json(json.dumps(newcomer.json()))
    out.print(f"POST {url}/forecast {json.dumps(planning)}  ->  {forecasted.status_code}")
    out.print_json(json.dumps(forecasted.json()))
    out.print(f"POST {url}/assortment {{\"country\": \"{country}\", \"n\": 3}}  ->  {assorted.status_code}")
    out.print_json(json.dumps(assorted.json()))
    console.rule("[bold green]demo complete[/]")


def live_events(url: str, token: str, client: str, items: list[dict]):
    """Replay a few events of `client` into the service (as `atelier events replay --url` does):
    views of the products most similar to its last recommendation, and a purchase of its first;
    then ask /recommend again. Returns what was sent, and the new answer."""
    import uuid
    from datetime import datetime, timedelta, timezone

    from atelier.events import replay
    from atelier.events.batch import Event

    auth = {"authorization": f"Bearer {token}"}
    near = httpx.post(f"{url}/similar", json={"product_id": items[-1]["product_id"], "k": 3}, headers=auth, timeout=30).json()["items"]
    now = datetime.now(timezone.utc) - timedelta(seconds=10)
    kinds = [(i["product_id"], "view") for i in near] * 2 + [(items[0]["product_id"], "purchase")]
    events = [Event(event_id=f"demo-{uuid.uuid4().hex[:12]}", client_id=client, product_id=p, event_type=k, channel="web",
                    event_timestamp=now + timedelta(seconds=n)) for n, (p, k) in enumerate(kinds)]
    totals = replay.replay(events, replay.over_http(url, token), rate=50, batch=len(events))
    after = httpx.post(f"{url}/recommend", json={"client_id": client, "k": 5}, headers=auth, timeout=30)
    what = f"{len(near) * 2} views of {', '.join(i['product_id'] for i in near)}, a purchase of {items[0]['product_id']} ({totals.accepted} accepted)"
    return what, after


def _before_after(before: list[dict], after: list[dict]):
    from rich.table import Table

    table = Table(title="recommendations before and after the events", title_justify="left")
    table.add_column("rank", justify="right")
    table.add_column("before")
    table.add_column("after")
    for n in range(max(len(before), len(after))):
        b = before[n]["product_id"] if n < len(before) else ""
        a = after[n]["product_id"] if n < len(after) else ""
        table.add_row(str(n + 1), b, a if a == b else f"[bold]{a}[/]")
    return table


def demo_service(settings, region: str, port: int, token: str) -> tuple[list[str], dict]:
    """The `bentoml serve` command and environment of the demo's service, with its own token."""
    from atelier.serving.bento import serve_command

    # model_copy does not validate: the token goes in as the SecretStr that settings hold
    cmd, env = serve_command(settings.model_copy(update={"api_tokens": {"demo": SecretStr(token)}}), region, port, workers=1)
    env["ATELIER_API_TOKENS"] = json.dumps({"demo": token})
    return cmd, env
