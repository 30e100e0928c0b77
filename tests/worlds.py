"""World sizes and builders shared by the fixtures (tests/conftest.py, tests/serving/conftest.py)."""

from __future__ import annotations

from pathlib import Path

from atelier.regions import region_codes

TINY = dict(clients=240, products=64, events_per_client=30, chunk_clients=100)
# A world big enough for a model to show what it learns, small enough to train in seconds.
MODEL_WORLD = dict(clients=3000, products=200, events_per_client=40, chunk_clients=1000)
FAST = dict(embedding_dim=32, batch_size=256, learning_rate=0.01, eval_weeks=8)


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


def lake_digest(settings) -> str:
    """One hash of every file of the lake: equal before and after means nothing was written."""
    import hashlib

    h = hashlib.sha256()
    for p in sorted(settings.paths.lake.rglob("*")):
        if p.is_file():
            h.update(str(p.relative_to(settings.paths.lake)).encode() + p.read_bytes())
    return h.hexdigest()
