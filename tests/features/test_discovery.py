"""Maison teams find and register features from the command line: new -> check -> apply -> materialize -> list,
`list` naming the models trained on each view, and Feast's UI in a real headless browser (Chromium)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from atelier.errors import AtelierError
from atelier.features import catalog, repo, scaffold
from atelier.features.definitions import group_maisons
from atelier.local_redis import free_port
from atelier.protect.keys import key_store
from atelier.protect.parquet import read_dataset
from atelier.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
ATELIER = str(Path(sys.executable).with_name("atelier"))
ARTIFACTS = Path(os.environ.get("ATELIER_TEST_ARTIFACTS", ROOT / "test-artifacts"))


def _run(args: list[str], home: Path, repo_dir: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "ATELIER_HOME": str(home), "ATELIER_ONLINE_STORE": "sqlite", "ATELIER_FEATURE_REPO": str(repo_dir), "COLUMNS": "200"}
    return subprocess.run([ATELIER, *args], env=env, capture_output=True, text=True, timeout=600)


@pytest.fixture
def repo_dir(tmp_path: Path) -> Path:
    target = tmp_path / "feature_repo"
    shutil.copytree(ROOT / "feature_repo", target, ignore=shutil.ignore_patterns("__pycache__"))
    return target


def test_new_check_apply_materialize_list(home: Path, repo_dir: Path, settings: Settings):
    r = _run(["features", "new", "--maison", "casa-verbena", "--name", "gifting"], home, repo_dir)
    assert r.returncode == 0, r.stderr
    scaffold = repo_dir / "maisons" / "casa_verbena_gifting.py"
    assert scaffold.exists() and "casa_verbena_gifting_private_read" in scaffold.read_text()
    again = _run(["features", "new", "--maison", "casa-verbena", "--name", "gifting"], home, repo_dir)
    assert again.returncode == 1 and "casa_verbena_gifting.py exists already" in again.stderr and "--force" in again.stderr
    # no `features compute`: it writes an engagement table for every maison of the catalog already
    for args in (["features", "check"], ["features", "apply", "-r", "eu"],
                 ["features", "materialize", "-r", "eu", "--view", "casa_verbena_gifting", "--view", "client_profile"]):
        r = _run(args, home, repo_dir)
        assert r.returncode == 0, (args, r.stdout, r.stderr)
    listed = _run(["features", "list", "-r", "eu", "--owner", "casa-verbena", "--json"], home, repo_dir)
    assert listed.returncode == 0, listed.stderr
    listing = json.loads(listed.stdout)
    views = {v["name"]: v for v in listing["views"]}
    assert set(views) == {"casa_verbena_gifting"}, "--owner keeps the maison's objects only"
    view = views["casa_verbena_gifting"]
    assert view["tags"] == {"owner": "casa-verbena", "sharing": "private", "sensitivity": "confidential"}
    assert all(f["description"] for f in view["features"])
    assert view["feature_services"] == ["casa_verbena_gifting_v1"] and view["materialized_at"]
    # the online row count is the number of the region's clients with casa-verbena engagement
    s = settings.model_copy(update={"feature_repo": repo_dir})
    table = read_dataset(s.paths.feature_table("maison_engagement/casa-verbena", "eu"), key_store(s, "eu"), columns=["client_id"])
    assert view["online_rows"] == len(set(table.column("client_id").to_pylist())) > 0
    assert [sv["name"] for sv in listing["services"]] == ["casa_verbena_gifting_v1"]
    # the table form names the view, its tags and its row count
    text = _run(["features", "list", "-r", "eu", "--sharing", "private"], home, repo_dir).stdout
    assert "casa_verbena_gifting" in text and "casa-verbena" in text and f"{view['online_rows']:,}" in text
    assert "client_profile" not in text.split("feature services")[0], "--sharing private leaves the shared views out"


def test_new_refuses_bad_names_unknown_maisons_and_existing_files(settings: Settings, repo_dir: Path):
    s = settings.model_copy(update={"feature_repo": repo_dir})
    before = sorted(p.name for p in (repo_dir / "maisons").iterdir())
    for maison, name, words in (("maison-fantome", "gifting", "not in the group's catalog"),
                                ("casa-verbena", "Gifting!", "is not snake_case"),
                                ("Casa Verbena", "gifting", "is not a slug"),
                                ("lumiere-de-grasse", "engagement", "the repository already defines lumiere_de_grasse_engagement")):
        with pytest.raises(AtelierError) as e:
            scaffold.new(s, maison, name, known_maisons=group_maisons())
        assert words in str(e.value) and e.value.fix, (maison, name, str(e.value))
    assert sorted(p.name for p in (repo_dir / "maisons").iterdir()) == before, "nothing written"


def test_check_lists_problems_and_exits_1(home: Path, repo_dir: Path):
    (repo_dir / "maisons" / "careless.py").write_text(
        "from feast import FeatureService\nfrom client_features import client_profile\n"
        "casa_verbena_profile_v1 = FeatureService(name='casa_verbena_profile_v1', features=[client_profile])\n")
    r = _run(["features", "check"], home, repo_dir)
    assert r.returncode == 1
    assert "casa_verbena_profile_v1" in r.stdout and "lacks the tag(s) owner, sharing, sensitivity" in r.stdout
    r = _run(["features", "apply", "-r", "eu"], home, repo_dir)
    assert r.returncode == 1 and "nothing was applied" in r.stderr
    assert not (home / "feast" / "eu" / "registry.db").exists()


def test_list_names_the_models_trained_on_each_view(model_world):
    home, result = model_world
    listing = catalog.describe(Settings(home=home), "eu")
    views = {v["name"]: v for v in listing["views"]}
    tag = result.tag
    for used in ("client_profile", "client_activity", "client_attributes"):
        assert tag in views[used]["models"], (used, views[used]["models"])
    assert tag not in views["horlogerie_vauclair_engagement"]["models"]
    services = {s["name"]: s for s in listing["services"]}
    assert tag in services["query_tower_v1"]["models"] and tag not in services["weekly_sales_v1"]["models"]


def test_feast_ui_in_headless_chromium_shows_the_views_and_their_tags(home: Path, settings: Settings):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium, "Chromium is needed: `make system-deps` installs Debian's package"
    repo.apply(settings, "eu")
    port = free_port()
    env = {**os.environ, "ATELIER_HOME": str(home), "ATELIER_ONLINE_STORE": "sqlite"}
    proc = subprocess.Popen([ATELIER, "features", "ui", "-r", "eu", "--port", str(port)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            assert proc.poll() is None, proc.stderr.read()
            try:
                if httpx.get(f"{base}/projects-list.json", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "the UI did not answer in 90 s"
            time.sleep(0.5)
        # read-only: Feast's REST routes that write are refused, and the registry is untouched
        registry = home / "feast" / "eu" / "registry.db"
        before = registry.read_bytes()
        for method, path in (("POST", "/api/v1/feature_views"), ("DELETE", "/api/v1/feature_views/client_profile"), ("POST", "/api/v1/permissions")):
            r = httpx.request(method, f"{base}{path}", json={}, timeout=10)
            assert r.status_code == 405 and r.json()["code"] == "read_only", (method, path, r.text)
        assert registry.read_bytes() == before

        def dom(page: str, screenshot: Path | None = None) -> str:
            args = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--virtual-time-budget=20000", "--window-size=1400,1000"]
            args += [f"--screenshot={screenshot}"] if screenshot else ["--dump-dom"]
            r = subprocess.run([*args, f"{base}{page}"], capture_output=True, text=True, timeout=120)
            assert r.returncode == 0, r.stderr[-2000:]
            return r.stdout

        listing = dom("/p/atelier_eu/feature-view")
        for view in ("client_profile", "client_activity", "product_popularity", "country_sales_weekly", "lumiere_de_grasse_engagement"):
            assert view in listing, f"{view} not on the page"
        detail = dom("/p/atelier_eu/feature-view/lumiere_de_grasse_engagement")
        text = " ".join(detail.replace(">", "> ").split())
        for words in ("owner", "lumiere-de-grasse", "sharing", "private", "sensitivity", "confidential", "lumiere_de_grasse_clienteling_v1"):
            assert words in text, f"{words!r} not on the view's page"
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        shot = ARTIFACTS / "features-ui.png"
        shot.unlink(missing_ok=True)
        dom("/p/atelier_eu/feature-view", screenshot=shot)
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000
        dom("/p/atelier_eu/feature-view/lumiere_de_grasse_engagement", screenshot=ARTIFACTS / "features-ui-view.png")
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_list_and_ui_refuse_bad_input_with_the_fix(home: Path, repo_dir: Path, settings: Settings):
    """Wrong filter values, a region never applied, a taken port: one line each, with what to do."""
    r = _run(["features", "list", "--sharing", "open"], home, repo_dir)
    assert r.returncode == 1 and "--sharing 'open' is not one of shared, private" in r.stderr and "Traceback" not in r.stderr
    r = _run(["features", "list"], home, repo_dir)
    assert r.returncode == 1 and "no region has an applied feature repository" in r.stderr and "atelier features apply" in r.stderr
    r = _run(["features", "ui", "-r", "us"], home, repo_dir)
    assert r.returncode == 1 and "region 'us' has no applied feature repository" in r.stderr and "atelier features apply -r us" in r.stderr
    repo.apply(settings, "eu")
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        r = _run(["features", "ui", "-r", "eu", "--port", str(taken.getsockname()[1])], home, repo_dir)
    assert r.returncode == 1 and "is taken" in r.stderr and "--port" in r.stderr
    assert not (home / "feast" / "us").exists() or not (home / "feast" / "us" / "registry.db").exists(), "nothing was applied for us"
