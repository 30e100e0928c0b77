"""The residency audit finds planted violations and passes on a clean platform."""

import dataclasses
import datetime as dt
import shutil

import pyarrow as pa
import pytest

from atelier.features import repo
from atelier.features.online import stock_key
from atelier.models.recommend.train import train_region
from atelier.models.recommend.two_tower import TrainConfig
from atelier.protect.audit import audit_residency
from atelier.protect.keys import key_store
from atelier.protect.parquet import read_dataset, write_dataset
from atelier.protect.residency import roster
from atelier.regions import region_codes

NOW = dt.datetime(2026, 11, 28, tzinfo=dt.timezone.utc)


@pytest.fixture(scope="module")
def trained(tiny_world, tmp_path_factory):
    """The tiny world with an eu model, trained once for the module (tests copy it, then plant)."""
    from atelier.settings import Settings

    template = tmp_path_factory.mktemp("audit") / "home"
    shutil.copytree(tiny_world, template)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ATELIER_HOME", str(template))
        s = Settings(home=template)
        repo.apply(s, "eu")
        run = train_region(s, "eu", TrainConfig(epochs=1, embedding_dim=8, batch_size=64, eval_weeks=8))
    return template, run


@pytest.fixture
def clean(redis_settings, home, trained):
    template, run = trained
    shutil.rmtree(home)
    shutil.copytree(template, home)
    for r in region_codes():
        repo.apply(redis_settings, r)
        repo.materialize(redis_settings, r, end=NOW)
    return redis_settings, dataclasses.replace(run, run_dir=home / run.run_dir.relative_to(template))


def test_clean_platform_passes(clean):
    settings, _ = clean
    report = audit_residency(settings)
    assert report.ok, report.findings
    places = " ".join(report.checked)
    for kind in ("offline: lake/clients", "offline: lake/events", "online: redis", "training set", "model: atelier-retrieval-eu"):
        assert kind in places, kind


def _us_client(settings) -> str:
    return roster(settings, "us").to_pylist()[0]


def test_us_client_copied_into_eu_online_store_is_found(clean, redis_servers):
    settings, _ = clean
    us, eu = redis_servers["us"].client(), redis_servers["eu"].client()
    client = _us_client(settings)
    key = stock_key("atelier_us", "client_id", client)
    assert us.exists(key)
    # copied as is (another project's key) and re-keyed as if it were an eu client
    eu.hset(key, mapping=us.hgetall(key))
    eu.hset(stock_key("atelier_eu", "client_id", client), mapping=us.hgetall(key))
    report = audit_residency(settings, ["eu"])
    online = [f for f in report.findings if f.place.startswith("online")]
    assert [f.detail for f in online] == ["holds keys of another region's project (us)", "1 client(s) of another region (1 of us)"]
    assert online[1].examples == [client]


def test_us_client_in_an_eu_training_set_is_found(clean):
    settings, run = clean
    path = run.run_dir / "training_set"
    table = read_dataset(path, key_store(settings, "eu"))
    client = _us_client(settings)
    planted = table.slice(0, 1).set_column(0, "client_id", pa.array([client]))
    write_dataset(path, pa.concat_tables([table, planted]), key_store(settings, "eu"))
    report = audit_residency(settings, ["eu"])
    found = [f for f in report.findings if f.place.startswith("training set")]
    assert len(found) == 1 and found[0].examples == [client] and "(1 of us)" in found[0].detail


def test_us_client_id_in_an_eu_model_file_is_found_and_look_alikes_are_not(clean):
    settings, run = clean
    model_dir = _model_dir(settings, run)
    client = _us_client(settings)
    # Look-alikes: an environment variable that starts with US, the id inside a longer word and number.
    planted = model_dir / "notes.txt"
    try:
        planted.write_bytes(b"USER_UID=0 USER_GID=0 x" + client.encode() + b"y 9" + client.encode() + b"7\n")
        assert audit_residency(settings, ["eu"]).ok
        planted.write_bytes(b'{"seen": "' + client.encode() + b'"}')
        found = [f for f in audit_residency(settings, ["eu"]).findings if f.place.startswith("model")]
        assert len(found) == 1 and found[0].examples == [client]
    finally:
        planted.unlink()  # the model store outlives this test's data home


def _model_dir(settings, run):
    from pathlib import Path

    import bentoml

    from atelier.models.store import use_bentoml_home

    use_bentoml_home(settings)
    return Path(bentoml.models.get(run.metrics["bentoml_tag"]).path)


def test_plaintext_client_data_is_a_finding(clean):
    settings, _ = clean
    eu_client = roster(settings, "eu").to_pylist()[0]
    write_dataset(settings.paths.lake / "notes" / "region=eu", pa.table({"client_id": [eu_client], "note": ["x"]}), None, encrypt=False)
    report = audit_residency(settings, ["eu"])
    assert any("without encryption" in f.detail for f in report.findings)


def test_cli_exit_code(clean, redis_servers, monkeypatch):
    from typer.testing import CliRunner

    from atelier.cli.main import cli

    runner = CliRunner()
    ok = runner.invoke(cli, ["audit", "residency"])
    assert ok.exit_code == 0, ok.output
    apac_client = roster(clean[0], "apac").to_pylist()[0]
    redis_servers["eu"].client().hset(stock_key("atelier_eu", "client_id", apac_client), mapping={b"x": b"y"})
    bad = runner.invoke(cli, ["audit", "residency", "--region", "eu"])
    assert bad.exit_code == 1 and apac_client in bad.output and "1 of apac" in bad.output


def test_a_us_store_in_eu_series_and_a_us_country_in_an_eu_forecast_are_found(clean):
    """A region's stores and countries live only in that region: its series and its forecast name no other's."""
    from pathlib import Path

    import pyarrow.parquet as pq

    settings, _ = clean
    keys = key_store(settings, "eu")
    path = settings.paths.feature_table("store_sales_weekly", "eu")
    table = read_dataset(path, keys)
    assert table.num_rows  # the generated world sells in stores
    stores = read_dataset(settings.paths.catalog("stores"), None).to_pandas()
    from atelier.regions import region_of_country

    us_store = stores.loc[stores["country"].map(region_of_country) == "us", "store_id"].iloc[0]
    planted = table.slice(0, 1).set_column(table.schema.get_field_index("store_id"), "store_id", pa.array([us_store]))
    write_dataset(path, pa.concat_tables([table, planted]), keys)
    found = [f for f in audit_residency(settings, ["eu"]).findings if "store_sales_weekly" in f.place]
    assert len(found) == 1 and found[0].examples == [f"store {us_store} (us)"]

    from atelier.models.forecast.backtest import ForecastConfig
    from atelier.models.forecast.train import train_forecast

    write_dataset(path, table, keys)  # the series as they were
    forecast = train_forecast(settings, "eu", ForecastConfig(epochs=1, origins=1, max_examples=2_000, training_origins=6), levels=["country"])
    assert audit_residency(settings, ["eu"]).ok
    import bentoml

    model_file = Path(bentoml.models.get(forecast.tag).path) / "forecasts.parquet"
    rows = pq.read_table(model_file)
    original = model_file.read_bytes()
    try:
        pq.write_table(rows.set_column(rows.schema.get_field_index("location"), "location", pa.array(["US"] * rows.num_rows)), model_file)
        found = [f for f in audit_residency(settings, ["eu"]).findings if f.place.startswith("model: atelier-forecast-eu")]
        assert len(found) == 1 and found[0].examples == ["country US (us)"]
    finally:
        model_file.write_bytes(original)  # the model store outlives this test's data home


def test_us_client_in_the_eu_event_journal_is_found(clean):
    """The journal of events received in real time is part of the region's offline store."""
    from atelier.context import RegionContext
    from atelier.events import journal

    settings, _ = clean
    ctx = RegionContext.of(settings, "eu")
    client = _us_client(settings)
    row = {"event_id": "planted", "client_id": client, "product_id": "P0000001", "event_type": "view", "event_timestamp": NOW,
           "channel": None, "store_id": None, "country": None, "quantity": 1, "amount": None, "received_at": NOW}
    journal.Journal(ctx).append(pa.Table.from_pylist([row], schema=journal.SCHEMA))
    report = audit_residency(settings, ["eu"])
    found = [f for f in report.findings if "stream/eu/events" in f.place]
    assert len(found) == 1 and found[0].examples == [client], report.findings
