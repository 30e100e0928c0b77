"""A kill -9 at the worst moments of each writing command leaves the old state or the new one.

Each command runs from the command line with ATELIER_CRASH_AT naming a point (atelier/crash.py):
it dies there by SIGKILL, with no chance to clean up. Then the state reads exactly as before
(or, once the publishing swap is done, exactly as after), the command re-runs to completion,
nothing a crash left behind survives the re-run, the residency audit passes, and everything
reads with the region's current keys.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pyarrow.csv as pcsv
import pytest

from atelier.protect.keys import key_store
from atelier.protect.parquet import MARKER, read_dataset
from atelier.protect.rotation import region_datasets
from atelier.settings import Settings

pytestmark = pytest.mark.slow
ATELIER = str(Path(sys.executable).with_name("atelier"))
KILLED = -signal.SIGKILL


def run(args: list[str], home: Path, crash: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "ATELIER_HOME": str(home), "ATELIER_ONLINE_STORE": "sqlite"}
    env.pop("ATELIER_CRASH_AT", None)
    if crash:
        env["ATELIER_CRASH_AT"] = crash
    return subprocess.run([ATELIER, *args], env=env, capture_output=True, text=True, timeout=600)


def ok(args: list[str], home: Path) -> subprocess.CompletedProcess:
    r = run(args, home)
    assert r.returncode == 0, (args, r.stdout[-2000:], r.stderr[-2000:])
    return r


def killed(args: list[str], home: Path, point: str) -> None:
    r = run(args, home, crash=point)
    assert r.returncode == KILLED, f"{args} was not killed at {point}: exit {r.returncode}\n{r.stderr[-2000:]}"


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    """Keys, a generated world, eu features computed, applied and materialized: the 'old' state."""
    home = tmp_path_factory.mktemp("crash-base") / "home"
    for args in (["keys", "init"], ["data", "generate", "--size", "tiny", "--clients", "150"], ["features", "compute", "-r", "eu"],
                 ["features", "apply", "-r", "eu"], ["features", "materialize", "-r", "eu"]):
        ok(args, home)
    return home


@pytest.fixture
def home(base, tmp_path) -> Path:
    h = tmp_path / "home"
    shutil.copytree(base, h)
    return h


def lake_state(home: Path) -> dict:
    """What the lake says, decrypted: its manifest's source and counts, and each region's clients."""
    s = Settings(home=home)
    manifest = json.loads(s.paths.manifest.read_text())
    clients = {r: sorted(read_dataset(s.paths.client_table("clients", r), key_store(s, r)).column("client_id").to_pylist()) for r in ("eu", "us", "apac")}
    return {"source": manifest.get("source"), "counts": manifest["counts"], "clients": clients}


def features_state(home: Path, region: str = "eu") -> dict:
    """Each feature table of the region, decrypted: rows and the clients of client_activity."""
    s = Settings(home=home)
    root = s.paths.features(region)
    tables = {str(m.parent.relative_to(root)): json.loads(m.read_text())["rows"] for m in sorted(root.rglob(MARKER))}
    activity = read_dataset(root / "client_activity", key_store(s, region))
    return {"tables": tables, "clients": sorted(set(activity.column("client_id").to_pylist()))}


def leftovers(home: Path) -> list[str]:
    """Hidden staging and set-aside folders anywhere under the home: what a crash leaves."""
    return sorted(str(p.relative_to(home)) for p in home.rglob(".*") if ".staging" in p.name or ".old-" in p.name or "models-staging" in p.name)


def audit_passes(home: Path) -> None:
    r = run(["audit", "residency"], home)
    assert r.returncode == 0, (r.returncode, r.stdout[-3000:], r.stderr[-3000:])


def everything_reads(home: Path) -> None:
    s = Settings(home=home)
    for region in ("eu", "us", "apac"):
        for d in region_datasets(s, region):
            assert read_dataset(d, key_store(s, region)).num_rows == json.loads((d / MARKER).read_text())["rows"], d


def _import_files(tmp: Path) -> list[str]:
    from atelier.data.generate import world_tables
    from atelier.data.world import WorldSpec

    world = world_tables(WorldSpec(clients=90, products=40, events_per_client=12, seed=3))
    tables = {"clients": world["clients"].drop(["join_date"]), "products": world["products"].drop(["countries", "launch_date"]), "events": world["events"]}
    args = ["data", "import"]
    for name, table in tables.items():
        pcsv.write_csv(table, tmp / f"{name}.csv")
        args += [f"--{name}", str(tmp / f"{name}.csv")]
    return args


@pytest.mark.parametrize("point", ["dataset.part#2", "swap.before:lake", "swap.after:lake"])
def test_a_killed_import_leaves_the_old_lake_or_the_new_one(home, tmp_path, point):
    for stage in ("features", "feast"):  # a lake only: features of the old world would hold clients the new one lacks
        shutil.rmtree(home / stage)
    args = _import_files(tmp_path)
    old = lake_state(home)
    killed(args, home, point)
    after_crash = lake_state(home)
    ok(args, home)
    new = lake_state(home)
    assert new["source"] == "imported" and new != old
    # before the swap the old lake is whole; after it the new one is
    assert after_crash == (new if point == "swap.after:lake" else old), point
    assert leftovers(home) == []
    everything_reads(home)
    audit_passes(home)


@pytest.mark.parametrize("point", ["dataset.part#3", "swap.before:eu", "swap.after:eu"])
def test_a_killed_feature_computation_leaves_the_old_tables_or_the_new_ones(home, point):
    old = features_state(home)
    ok(["data", "generate", "--size", "tiny", "--clients", "120", "--seed", "3"], home)
    killed(["features", "compute", "-r", "eu"], home, point)
    after_crash = features_state(home)
    ok(["features", "compute", "-r", "eu"], home)
    new = features_state(home)
    assert new != old
    assert after_crash == (new if point == "swap.after:eu" else old), point
    assert leftovers(home) == []
    everything_reads(home)


FEATURES = {"client_activity": "purchases_365d", "client_profile": "country"}  # one feature per view


def _online(home: Path, clients: list[str]) -> dict:
    from atelier.features import repo
    from atelier.features.online import OnlineFeatures

    reader = OnlineFeatures(repo.feature_store(Settings(home=home), "eu"), [f"{view}:{name}" for view, name in FEATURES.items()])
    cols, _ = reader.get(clients)
    return {c: {view: cols[name][i] for view, name in FEATURES.items()} for i, c in enumerate(clients)}


@pytest.mark.parametrize("point", ["materialize.chunk#2", "replace:registry.db#1"])
def test_a_killed_materialization_leaves_each_row_old_or_new_and_the_registry_whole(home, tmp_path, point):
    shutil.rmtree(home / "feast" / "eu")  # a region applied, never materialized: its online store is empty
    ok(["features", "apply", "-r", "eu"], home)
    clients = features_state(home)["clients"]
    old = _online(home, clients)
    assert all(v is None for row in old.values() for v in row.values())
    reference = tmp_path / "reference"
    shutil.copytree(home, reference)
    ok(["features", "materialize", "-r", "eu"], reference)
    new = _online(reference, clients)
    assert sum(all(v is not None for v in row.values()) for row in new.values()) > 50

    killed(["features", "materialize", "-r", "eu"], home, point)
    mixed = _online(home, clients)  # the registry still parses (stock Feast rewrites it in place)
    # a row is one view's features for one client: each is the old one or the new one (views are
    # loaded one after the other, so a client may have one view new and another still old)
    neither = {(c, f): (mixed[c][f], new[c][f]) for c in clients for f in FEATURES if mixed[c][f] not in (old[c][f], new[c][f])}
    assert not neither, f"rows neither old nor new: {list(neither.items())[:3]}"
    assert any(mixed[c] != new[c] for c in clients), "the kill came before the last view was loaded"
    ok(["features", "materialize", "-r", "eu"], home)  # what the crash did not record as done is loaded again
    assert _online(home, clients) == new
    assert leftovers(home) == []


def _models(home: Path) -> dict:
    store = home / "bentoml" / "models" / "atelier-retrieval-eu"
    if not store.exists():
        return {"versions": [], "latest": None}
    versions = sorted(p.name for p in store.iterdir() if p.is_dir())
    for v in versions:
        assert (store / v / "model.yaml").exists() and (store / v / "model.json").exists(), f"model {v} is incomplete"
    latest = (store / "latest").read_text() if (store / "latest").exists() else None
    return {"versions": versions, "latest": latest}


# the recommender alone: its export is what is killed (a plain `train` would run every kind four times)
TRAIN = ["train", "recommend", "-r", "eu", "--epochs", "1", "--embedding-dim", "8", "--eval-weeks", "8", "--no-refit"]


def test_a_kill_during_export_leaves_the_model_store_whole(home, tmp_path, monkeypatch):
    system_temp = tmp_path / "system-temp"  # the commands' TMPDIR: BentoML's own work folder went there, and stayed
    system_temp.mkdir()
    monkeypatch.setenv("TMPDIR", str(system_temp))
    killed(TRAIN, home, "export.copy#3")
    assert _models(home) == {"versions": [], "latest": None}  # nothing half-copied is in the store
    ok(TRAIN, home)
    first = _models(home)
    assert len(first["versions"]) == 1 and first["latest"] == first["versions"][0]

    killed(TRAIN, home, "export.published")  # the new model is in place; `latest` still names the old one
    second = _models(home)
    assert len(second["versions"]) == 2 and second["latest"] == first["latest"]
    latest = subprocess.run([str(Path(sys.executable).with_name("bentoml")), "models", "get", "atelier-retrieval-eu:latest", "-o", "json"],
                            env={**os.environ, "BENTOML_HOME": str(home / "bentoml")}, capture_output=True, text=True, timeout=120)
    assert latest.returncode == 0 and first["latest"] in latest.stdout, latest.stderr[-1000:]  # `latest` is a whole model
    ok(TRAIN, home)
    third = _models(home)
    assert len(third["versions"]) == 3 and third["latest"] not in first["versions"] + second["versions"][:1]
    assert leftovers(home) == []
    assert list(system_temp.glob("bentoml-model-*")) == []  # no copy of a model (its client ids) outside the home
    audit_passes(home)


def _key_versions(home: Path, region: str = "eu") -> dict[str, str]:
    return {v: s["state"] for v, s in json.loads((home / "keys" / f"{region}.json").read_text())["versions"].items()}


@pytest.mark.parametrize("point", ["rotate.dataset#1", "replace:eu.json#1"])
def test_a_killed_key_rotation_leaves_everything_readable(home, point):
    before = _key_versions(home)
    killed(["keys", "rotate", "-r", "eu"], home, point)
    after_crash = _key_versions(home)
    # the new version is primary or not there yet; the old one is still enabled either way
    assert after_crash in (before, {**before, "2": after_crash.get("2", "ENABLED")}), after_crash
    assert after_crash["1"] == "ENABLED"
    everything_reads(home)
    ok(["keys", "rotate", "-r", "eu"], home)
    final = _key_versions(home)
    assert final[max(final, key=int)] == "ENABLED" and all(state == "DESTROYED" for v, state in final.items() if v != max(final, key=int))
    everything_reads(home)
    audit_passes(home)
