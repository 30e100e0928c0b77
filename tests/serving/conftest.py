"""Regional services over real HTTP: `bentoml serve` subprocesses backed by real Redis servers.

eu is served from the bento `atelier build` makes; us and apac from the service's source (apac
with bearer tokens on). Each region has its own redis-server (persisted, so a restart keeps its
data) and its own model, trained on that region's clients only. eu and apac also carry a
forecast and an assortment model (eu in its bento); us has none, as a region that has not
trained them yet.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from atelier.regions import region_codes

REPO = Path(__file__).resolve().parents[2]
TOKENS = '{"clienteling": "apac-app-secret"}'


@dataclass
class Server:
    region: str
    url: str
    proc: subprocess.Popen
    redis: object
    log: Path

    def post(self, route: str, body: dict | str, token: str | None = None) -> httpx.Response:
        headers = {"content-type": "application/json"}
        if token:
            headers["authorization"] = f"Bearer {token}"
        content = body if isinstance(body, str) else None
        return httpx.post(f"{self.url}{route}", json=None if content else body, content=content, headers=headers, timeout=30)


@pytest.fixture(scope="session")
def served_world(model_world):
    """The model world with a model for every region (us and apac trained quickly)."""
    from worlds import FAST

    from atelier.models.recommend.train import train_region
    from atelier.models.recommend.two_tower import TrainConfig
    from atelier.settings import Settings

    home, _ = model_world
    s = Settings(home=home)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ATELIER_HOME", str(home))
        for r in ("us", "apac"):
            # us serves its ranking stage whatever validation says, so HTTP tests cover both paths (eu: auto)
            train_region(s, r, TrainConfig(epochs=1, serve="ranked" if r == "us" else "auto", **FAST))
        from atelier.models.assortment.train import train_assortment
        from atelier.models.forecast.backtest import ForecastConfig
        from atelier.models.forecast.train import train_forecast

        for r in ("eu", "apac"):
            forecast = train_forecast(s, r, ForecastConfig(epochs=1, origins=1, max_examples=5_000, training_origins=8))
            train_assortment(s, forecast, n=20, k=3)
    return home


@pytest.fixture(scope="session")
def serving_redis(tmp_path_factory):
    from atelier.local_redis import LocalRedis

    servers = {r: LocalRedis(f"svc-{r}", f"svc-secret-{r}", workdir=tmp_path_factory.mktemp(f"svc-redis-{r}"), persist=True).start() for r in region_codes()}
    yield servers
    for s in servers.values():
        s.stop()


@pytest.fixture(scope="session")
def servers(served_world, serving_redis, tmp_path_factory):
    from atelier.errors import AtelierError
    from atelier.features import repo
    from atelier.local_redis import free_port
    from atelier.serving.bento import build, serve_command, serving_home, wait_until_ready
    from atelier.settings import Settings

    home = served_world
    settings = Settings(home=home, online_store="redis", redis={r: s.endpoint() for r, s in serving_redis.items()})
    env = {**os.environ, "ATELIER_HOME": str(home), "ATELIER_ONLINE_STORE": "redis", "BENTOML_HOME": str(settings.paths.bentoml_home), "ATELIER_WORKERS": "1"}
    for region, server in serving_redis.items():
        env.update(server.env(region))
    with pytest.MonkeyPatch.context() as mp:
        for k, v in env.items():
            mp.setenv(k, v)
        for r in region_codes():
            repo.materialize(settings, r, incremental=False)
        built = build(settings, "eu")
    logs = tmp_path_factory.mktemp("serve-logs")

    def from_source(r: str, port: int, **extra: str) -> tuple[list[str], dict[str, str]]:
        """`bentoml serve` of the service's source for region `r` (no bento), and its environment."""
        cmd = [str(Path(sys.executable).with_name("bentoml")), "serve", "atelier.bentos.service:Recommender", "--port", str(port), "--host", "127.0.0.1"]
        return cmd, {**env, "ATELIER_REGION": r, "BENTOML_HOME": str(serving_home(settings, r)), **extra}

    def launch(r: str) -> Server:
        port = free_port()  # free now; another process may take it before bentoml binds it (see below)
        if r == "eu":
            cmd, run_env = serve_command(settings, "eu", port, workers=1, insecure_local=True)
            run_env = {**env, **{k: v for k, v in run_env.items() if k.startswith(("ATELIER_REGION", "ATELIER_MODEL", "ATELIER_BENTO", "ATELIER_INSECURE", "BENTOML_HOME",
                                                                                     "ATELIER_FORECAST", "ATELIER_ASSORTMENT"))}}
        else:
            # apac is served as in production, with tokens; us without, as a local service may be
            cmd, run_env = from_source(r, port, **({"ATELIER_API_TOKENS": TOKENS} if r == "apac" else {"ATELIER_INSECURE_LOCAL": "1"}))
            if r == "apac":
                run_env.update(ATELIER_FORECAST_TAG="atelier-forecast-apac:latest", ATELIER_ASSORTMENT_TAG="atelier-assortment-apac:latest")
        log = logs / f"{r}.log"
        proc = subprocess.Popen(cmd, cwd=REPO, env=run_env, stdout=open(log, "w"), stderr=subprocess.STDOUT)
        return Server(r, f"http://127.0.0.1:{port}", proc, serving_redis[r], log)

    started = {r: launch(r) for r in region_codes()}
    try:
        for r in list(started):
            for attempt in range(3):
                try:
                    wait_until_ready(started[r].url, started[r].proc, log=started[r].log)
                    break
                except AtelierError:
                    if attempt == 2 or "address already in use" not in started[r].log.read_text().lower():
                        raise
                    started[r] = launch(r)  # the port was taken meanwhile: a fresh one
        yield {"servers": started, "settings": settings, "bento": built, "env": env, "from_source": from_source}
    finally:
        for server in started.values():
            server.proc.terminate()
        for server in started.values():
            try:
                server.proc.wait(20)
            except subprocess.TimeoutExpired:
                server.proc.kill()
