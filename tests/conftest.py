"""Shared fixtures: a tiny generated world, and one real redis-server per region.

Every test gets its own copy of the world's data home, so tests can write, break and rotate
freely. The Redis servers are started once per session with a per-region ACL user and the
default user switched off; each test that uses them starts from empty databases.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from worlds import FAST, MODEL_WORLD, make_world

from atelier.regions import region_codes

# Fixtures built once per session that several test files share. Under pytest-xdist (`make test`
# runs two workers) every worker would build its own copy; the tests that use one are kept on a
# single worker instead (`--dist loadgroup`), so each is built once and the other worker runs the
# rest of the suite meanwhile.
SHARED_WORLDS = ("model_world",)


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook, which reads the group marks
def pytest_collection_modifyitems(config, items):
    for item in items:
        for name in SHARED_WORLDS:
            if name in getattr(item, "fixturenames", ()):
                item.add_marker(pytest.mark.xdist_group(name))


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


@pytest.fixture(scope="session")
def model_world(tmp_path_factory):
    """Three regions with features applied; eu trained (3 epochs) and exported. Read-only for tests."""
    from atelier.features import repo
    from atelier.models.recommend.train import train_region
    from atelier.models.recommend.two_tower import TrainConfig
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
