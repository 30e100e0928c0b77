"""The command line: known problems are one line plus what to do; the flow runs end to end."""

import os
import subprocess
import sys
from pathlib import Path

ATELIER = str(Path(sys.executable).with_name("atelier"))


def run(args, home, **env):
    return subprocess.run([ATELIER, *args], env={**os.environ, "ATELIER_HOME": str(home), "ATELIER_ONLINE_STORE": "sqlite", **env}, capture_output=True, text=True, timeout=600)


def test_missing_keys_is_one_clear_line_with_the_fix(tmp_path):
    r = run(["data", "generate", "--size", "tiny"], tmp_path)
    assert r.returncode == 1
    assert "error:" in r.stderr and "no master key for region 'eu'" in r.stderr and "atelier keys init" in r.stderr
    assert "Traceback" not in r.stderr
    debug = run(["data", "generate", "--size", "tiny"], tmp_path, ATELIER_DEBUG="1")
    assert debug.returncode != 0 and "Traceback" in debug.stderr


def test_unknown_region_and_size(tmp_path):
    r = run(["features", "compute", "--region", "mars"], tmp_path)
    assert r.returncode == 1 and "unknown region 'mars'" in r.stderr and "eu, us, apac" in r.stderr
    r = run(["data", "generate", "--size", "huge"], tmp_path)
    assert r.returncode == 1 and "unknown size 'huge'" in r.stderr
    # the demo checks its options before any work: nothing is written to the data home
    cases = [(["demo", "--size", "huge"], ["unknown size 'huge'", "tiny, small, medium, large"]),
             (["demo", "--serve-region", "mars"], ["unknown region 'mars'", "eu, us, apac"])]
    for args, expected in cases:
        r = run(args, tmp_path / "demo")
        assert r.returncode == 1 and all(e in r.stderr for e in expected), (args, r.stderr)
        assert not (tmp_path / "demo" / "lake").exists() and not (tmp_path / "demo" / "keys").exists()


def test_settings_that_do_not_parse_name_their_variable(tmp_path):
    """A token map or a store name set wrong in the environment: which variable, the expected form,
    no parser traceback, for any command."""
    r = run(["serve", "-r", "eu"], tmp_path, ATELIER_API_TOKENS="s3cret")
    assert r.returncode == 1 and "ATELIER_API_TOKENS does not parse" in r.stderr and '{"app": "<token>"}' in r.stderr
    assert "Traceback" not in r.stderr and "s3cret" not in r.stderr  # a token is never echoed
    r = run(["features", "list"], tmp_path, ATELIER_ONLINE_STORE="memcached")
    assert r.returncode == 1 and "ATELIER_ONLINE_STORE: Input should be 'sqlite' or 'redis'" in r.stderr and "Traceback" not in r.stderr


def test_unknown_model_kind_is_refused_before_any_work(tmp_path):
    r = run(["train", "assortments", "-r", "eu"], tmp_path)
    assert r.returncode == 1 and "unknown model kind 'assortments'" in r.stderr and "recommend, forecast, assortment, all" in r.stderr
    r = run(["train", "forecast", "-r", "eu", "--horizon", "13"], tmp_path)
    assert r.returncode == 1 and "--horizon 13 is out of range" in r.stderr
    r = run(["train", "forecast", "-r", "eu", "--forecast-members", "0"], tmp_path)
    assert r.returncode == 2 and "Invalid value for '--forecast-members'" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "runs").exists()


def test_build_and_serve_before_training_say_what_to_run(tmp_path):
    r = run(["build", "--region", "eu"], tmp_path)
    assert r.returncode == 1 and "no trained model for region 'eu'" in r.stderr and "atelier train --region eu" in r.stderr
    r = run(["serve", "--region", "us"], tmp_path)
    assert r.returncode == 1 and "no bento 'atelier-recommender-us:latest'" in r.stderr and "atelier build --region us" in r.stderr
    assert "Traceback" not in r.stderr


def test_data_to_online_features_from_the_command_line(tmp_path):
    for args in (["keys", "init"], ["data", "generate", "--size", "tiny", "--clients", "150"], ["features", "compute", "-r", "all"],
                 ["features", "compute", "-r", "us", "--engine", "duckdb"], ["features", "apply", "-r", "us"], ["features", "materialize", "-r", "us"], ["keys", "rotate", "-r", "us"], ["keys", "status"]):
        r = run(args, tmp_path)
        assert r.returncode == 0, (args, r.stdout, r.stderr)
    assert "v2 ENABLED (primary)" in r.stdout and "v1 DESTROYED" in r.stdout
    config = run(["features", "config", "-r", "us"], tmp_path)
    assert config.stdout.strip().endswith("feast/us/feature_store.yaml")


def test_train_no_export_trains_and_reports_but_exports_nothing(tmp_path):
    """`--no-export` used to be accepted and ignored: the model went to the store all the same.

    A plain `atelier train` trains every kind: the recommender and the forecast both report, neither exports."""
    for args in (["keys", "init"], ["data", "generate", "--size", "tiny", "--clients", "300"], ["features", "compute", "-r", "us"], ["features", "apply", "-r", "us"]):
        r = run(args, tmp_path)
        assert r.returncode == 0, (args, r.stdout, r.stderr)
    r = run(["train", "-r", "us", "--epochs", "1", "--embedding-dim", "8", "--eval-weeks", "8", "--no-export",
             "--forecast-epochs", "1", "--origins", "1"], tmp_path)
    assert r.returncode == 0, r.stderr
    assert "(served)" in r.stdout and "ranked" in r.stdout and "EASE" in r.stdout and "model atelier-retrieval" not in r.stdout
    assert "forecast backtest" in r.stdout and "lightgbm" in r.stdout and "seasonal naive" in r.stdout
    assert "own best-sellers" in r.stdout and "region best-sellers" in r.stdout
    store = tmp_path / "bentoml" / "models"
    assert not store.exists() or not any(store.rglob("model.json"))
    runs = list((tmp_path / "runs" / "us").glob("*/metrics.json"))
    assert len(runs) == 3 and not any("bentoml_tag" in r.read_text() for r in runs)  # the recommender's, the forecast's, the assortment's
    assert "Traceback" not in r.stderr and "WARNING" not in r.stderr  # quiet: library logs went to the log file
    assert (tmp_path / "logs" / "atelier.log").stat().st_size > 0
