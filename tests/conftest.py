"""Shared fixtures: a tiny generated world, and one real redis-server per region.

Every test gets its own copy of the world's data home, so tests can write, break and rotate
freely. The Redis servers are started once per session with a per-region ACL user and the
default user switched off; each test that uses them starts from empty databases.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from atelier.regions import region_codes

TINY = dict(clients=240, products=64, events_per_client=30, chunk_clients=100)


def make_world(home: Path, **spec) -> None:
    from atelier.data.generate import generate_world
    from atelier.data.world import WorldSpec
    from atelier.features.pipeline import compute_features
    from atelier.protect.keys import LocalKeyStore
    from atelier.settings import Settings

    s = Settings(home=home)
    for r in region_codes():
        LocalKeyStore.init(s.paths.keys, r)
    generate_world(s, WorldSpec(**{**TINY, **spec}))
    for r in region_codes():
        compute_features(s, r)


@pytest.fixture(scope="session")
def tiny_world(tmp_path_factory) -> Path:
    home = tmp_path_factory.mktemp("tiny-world")
    make_world(home)
    return home


@pytest.fixture
def home(tiny_world: Path, tmp_path: Path, monkeypatch) -> Path:
    """A private copy of the tiny world; ATELIER_HOME points at it (the feature repo reads it)."""
    h = tmp_path / "home"
    shutil.copytree(tiny_world, h)
    monkeypatch.setenv("ATELIER_HOME", str(h))
    monkeypatch.setenv("ATELIER_ONLINE_STORE", "sqlite")
    return h


@pytest.fixture
def settings(home: Path):
    from atelier.settings import Settings

    return Settings(home=home)


# A world big enough for a model to show what it learns, small enough to train in seconds.
MODEL_WORLD = dict(clients=3000, products=200, events_per_client=40, chunk_clients=1000)
FAST = dict(embedding_dim=32, batch_size=256, learning_rate=0.01, eval_weeks=8)


@pytest.fixture(scope="session")
def model_world(tmp_path_factory):
    """Three regions with features applied; eu trained (3 epochs) and exported. Read-only for tests."""
    from atelier.features import repo
    from atelier.models.train import train_region
    from atelier.models.two_tower import TrainConfig
    from atelier.settings import Settings

    home = tmp_path_factory.mktemp("model-world")
    make_world(home, **MODEL_WORLD)
    s = Settings(home=home)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ATELIER_HOME", str(home))
        for r in region_codes():
            repo.apply(s, r)
        result = train_region(s, "eu", TrainConfig(epochs=3, **FAST))
    return home, result


@pytest.fixture(scope="session")
def redis_servers(tmp_path_factory):
    from atelier.local_redis import LocalRedis

    servers = {r: LocalRedis(f"atelier-{r}", f"test-secret-{r}", workdir=tmp_path_factory.mktemp(f"redis-{r}")).start() for r in region_codes()}
    yield servers
    for s in servers.values():
        s.stop()


@pytest.fixture
def redis_settings(home: Path, redis_servers, monkeypatch):
    """Settings for the Redis online stores, with every server emptied first."""
    from atelier.settings import Settings

    for region, server in redis_servers.items():
        if server.proc is None or server.proc.poll() is not None:
            server.start()
        server.client().flushall()
        for k, v in server.env(region).items():
            monkeypatch.setenv(k, v)
    monkeypatch.setenv("ATELIER_ONLINE_STORE", "redis")
    return Settings(home=home, online_store="redis", redis={r: s.endpoint() for r, s in redis_servers.items()})
