"""The residency audit finds planted violations and passes on a clean platform."""

import datetime as dt

import pyarrow as pa
import pytest

from atelier.features import repo
from atelier.features.online import stock_key
from atelier.models.train import train_region
from atelier.models.two_tower import TrainConfig
from atelier.protect.audit import audit_residency
from atelier.protect.keys import key_store
from atelier.protect.parquet import read_dataset, write_dataset
from atelier.regions import region_codes

NOW = dt.datetime(2026, 11, 28, tzinfo=dt.timezone.utc)


@pytest.fixture
def clean(redis_settings):
    for r in region_codes():
        repo.apply(redis_settings, r)
        repo.materialize(redis_settings, r, end=NOW)
    run = train_region(redis_settings, "eu", TrainConfig(epochs=1, embedding_dim=8, batch_size=64, eval_weeks=8))
    return redis_settings, run


def test_clean_platform_passes(clean):
    settings, _ = clean
    report = audit_residency(settings)
    assert report.ok, report.findings
    places = " ".join(report.checked)
    for kind in ("offline: lake/clients", "offline: lake/events", "online: redis", "training set", "model: atelier-retrieval-eu"):
        assert kind in places, kind


def test_us_client_copied_into_eu_online_store_is_found(clean, redis_servers):
    settings, _ = clean
    us, eu = redis_servers["us"].client(), redis_servers["eu"].client()
    key = stock_key("atelier_us", "client_id", "US00000001")
    if not us.exists(key):
        key = next(k for k in us.scan_iter() if b"client_id" in k and b"US" in k)
    # copied as is (another project's key) and re-keyed as if it were an eu client
    eu.hset(key, mapping=us.hgetall(key))
    eu.hset(stock_key("atelier_eu", "client_id", "US00000001"), mapping=us.hgetall(key))
    report = audit_residency(settings, ["eu"])
    details = [f.detail for f in report.findings if f.place.startswith("online")]
    assert any("another region's project (us)" in d for d in details)
    assert any("client(s) of another region (1 of us)" in d or "of us" in d for d in details)


def test_us_client_in_an_eu_training_set_is_found(clean):
    settings, run = clean
    path = run.run_dir / "training_set"
    table = read_dataset(path, key_store(settings, "eu"))
    planted = table.slice(0, 1).set_column(0, "client_id", pa.array(["US00000042"]))
    write_dataset(path, pa.concat_tables([table, planted]), key_store(settings, "eu"))
    report = audit_residency(settings, ["eu"])
    found = [f for f in report.findings if f.place.startswith("training set")]
    assert found and "US00000042" in found[0].examples


def test_plaintext_client_data_is_a_finding(clean):
    settings, _ = clean
    write_dataset(settings.paths.lake / "notes" / "region=eu", pa.table({"client_id": ["EU00000001"], "note": ["x"]}), None, encrypt=False)
    report = audit_residency(settings, ["eu"])
    assert any("without encryption" in f.detail for f in report.findings)


def test_cli_exit_code(clean, redis_servers, monkeypatch):
    from typer.testing import CliRunner

    from atelier.cli.main import cli

    runner = CliRunner()
    ok = runner.invoke(cli, ["audit", "residency"])
    assert ok.exit_code == 0, ok.output
    redis_servers["eu"].client().hset(stock_key("atelier_eu", "client_id", "AP00000007"), mapping={b"x": b"y"})
    bad = runner.invoke(cli, ["audit", "residency", "--region", "eu"])
    assert bad.exit_code == 1 and "AP00000007" in bad.output
