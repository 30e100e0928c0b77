"""A Feast project per region: apply, materialize, read online and point-in-time, on Redis and sqlite."""

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from feast.infra.key_encoding_utils import deserialize_entity_key

from atelier.data.importer import import_files
from atelier.features import repo
from atelier.features.pipeline import compute_features
from atelier.protect.keys import key_store
from atelier.protect.parquet import read_dataset
from atelier.protect.residency import roster
from atelier.regions import get_region, region_codes

NOW = dt.datetime(2026, 11, 28, tzinfo=dt.timezone.utc)


def _latest_activity(settings, region: str) -> pd.DataFrame:
    t = read_dataset(settings.paths.feature_table("client_activity", region), key_store(settings, region)).to_pandas()
    t = t[t.event_timestamp <= NOW].sort_values("event_timestamp")
    return t.groupby("client_id").tail(1).set_index("client_id")


def _check_region_serves_its_clients(settings, region):
    repo.apply(settings, region)
    written = repo.materialize(settings, region, end=NOW)
    assert written["client_activity"] > 0 and written["product_catalog"] > 0
    store = repo.feature_store(settings, region)
    expected = _latest_activity(settings, region).head(20)
    got = store.get_online_features(
        features=["client_activity:purchases_365d", "client_activity:spend_365d", "client_activity:favourite_maison", "client_profile:country"],
        entity_rows=[{"client_id": c} for c in expected.index],
    ).to_dict()
    assert got["purchases_365d"] == expected.purchases_365d.tolist()
    assert got["spend_365d"] == pytest.approx(expected.spend_365d.tolist())
    assert got["favourite_maison"] == expected.favourite_maison.tolist()
    assert all(c in get_region(region).countries for c in got["country"])


@pytest.mark.redis
@pytest.mark.parametrize("region", region_codes())
def test_each_region_serves_its_clients_from_its_redis(redis_settings, region):
    _check_region_serves_its_clients(redis_settings, region)


@pytest.mark.parametrize("region", region_codes())
def test_each_region_serves_its_clients_from_embedded_sqlite(settings, region):
    _check_region_serves_its_clients(settings, region)


@pytest.mark.redis
def test_no_client_reaches_another_regions_online_store(redis_settings, redis_servers):
    for region in region_codes():
        repo.apply(redis_settings, region)
        repo.materialize(redis_settings, region, end=NOW)
    seen = {}
    for region, server in redis_servers.items():
        client_ids = set()
        for key in server.client().scan_iter(count=1000):
            project = f"atelier_{region}".encode()
            assert key.endswith(project), f"{region}'s Redis holds a key of another project: {key!r}"
            entity = deserialize_entity_key(key[: -len(project)], 3)
            if list(entity.join_keys) == ["client_id"]:
                client_ids.add(entity.entity_values[0].string_val)
        assert client_ids, f"{region} has clients online"
        assert client_ids <= set(roster(redis_settings, region).to_pylist()), f"{region} holds clients of another region"
        seen[region] = client_ids
    assert not (seen["eu"] & seen["us"]) and not (seen["eu"] & seen["apac"]) and not (seen["us"] & seen["apac"])


def test_embedded_stores_hold_only_their_region(settings):
    import sqlite3

    for region in region_codes():
        repo.apply(settings, region)
        repo.materialize(settings, region, end=NOW, views=["client_profile"])
    for region in region_codes():
        db = sqlite3.connect(settings.paths.feast_dir(region) / "online.db")
        table = [t for (t,) in db.execute("select name from sqlite_master where type='table'") if t.endswith("client_profile")][0]
        keys = [deserialize_entity_key(k, 3).entity_values[0].string_val for (k,) in db.execute(f'select distinct entity_key from "{table}"')]
        assert keys and set(keys) <= set(roster(settings, region).to_pylist())


def test_point_in_time_features_never_see_later_events(settings, tmp_path):
    """One client whose purchases we place by hand: features at t count only events before t's day."""
    (tmp_path / "clients.csv").write_text("client_id,country,tier\nEU1,FR,VIP\nEU2,DE,Standard\n")
    (tmp_path / "products.csv").write_text("product_id,maison,category,price\nP1,maison-aurele,handbags,1000.0\nP2,cognac-marceau,cognac,100.0\n")
    (tmp_path / "events.csv").write_text(
        "client_id,product_id,event_type,event_timestamp\n"
        "EU1,P1,purchase,2025-03-01T10:00:00Z\n"
        "EU1,P2,purchase,2025-03-20T10:00:00Z\n"
        "EU1,P2,purchase,2025-06-15T09:00:00Z\n"
        "EU2,P2,view,2025-03-05T12:00:00Z\n"
    )
    import_files(settings, tmp_path / "clients.csv", tmp_path / "products.csv", tmp_path / "events.csv")
    compute_features(settings, "eu")
    repo.apply(settings, "eu")
    store = repo.feature_store(settings, "eu")
    at = ["2025-03-01T09:00:00Z", "2025-03-01T23:00:00Z", "2025-03-02T00:00:01Z", "2025-03-21T08:00:00Z", "2025-04-15T00:00:00Z", "2025-06-15T12:00:00Z", "2025-06-16T00:00:01Z"]
    entity = pd.DataFrame({"client_id": ["EU1"] * len(at), "event_timestamp": pd.to_datetime(at, utc=True)})
    hist = store.get_historical_features(entity_df=entity, features=["client_activity:purchases_30d", "client_activity:spend_90d", "client_profile:country"]).to_df()
    hist = hist.sort_values("event_timestamp")
    # Before the first purchase's day is over, nothing is known; the row of March 1st becomes
    # visible at its end. On April 15th the March 1st purchase has left the 30-day window but not
    # the 90-day one (it leaves on May 30th). On June 15th only March 20th is within 90 days; the
    # June 15th purchase is invisible the same day and counted from the next.
    assert hist.purchases_30d.fillna(-1).astype(int).tolist() == [-1, -1, 1, 2, 1, 0, 1]
    assert hist.spend_90d.fillna(-1).tolist() == [-1, -1, 1000.0, 1100.0, 1100.0, 100.0, 200.0]
    assert set(hist.country) == {"FR"}


def test_point_in_time_reads_keep_nothing_after_their_answer(settings, tmp_path):
    """Feast's retrieval registers the decrypted tables it reads on ibis's DuckDB connection, which
    never drops them: a call leaves nothing registered, and Arrow holds none of its buffers, so a
    training that reads features window after window does not grow by a table each time."""
    import ibis
    import pyarrow as pa

    (tmp_path / "clients.csv").write_text("client_id,country,tier\nEU1,FR,VIP\n")
    (tmp_path / "products.csv").write_text("product_id,maison,category,price\nP1,maison-aurele,handbags,1000.0\n")
    (tmp_path / "events.csv").write_text("client_id,product_id,event_type,event_timestamp\nEU1,P1,purchase,2025-03-01T10:00:00Z\n")
    import_files(settings, tmp_path / "clients.csv", tmp_path / "products.csv", tmp_path / "events.csv")
    compute_features(settings, "eu")
    repo.apply(settings, "eu")
    con = ibis.get_backend().con
    views = "SELECT count(*) FROM duckdb_views() WHERE temporary AND NOT internal"
    held, arrow = con.execute(views).fetchall()[0][0], pa.total_allocated_bytes()
    entity = pd.DataFrame({"client_id": ["EU1"] * 3, "event_timestamp": pd.to_datetime(["2025-03-02", "2025-04-01", "2025-05-01"], utc=True)})
    for _ in range(3):
        hist = repo.historical_features(settings, "eu", entity, ["client_activity:purchases_30d", "client_profile:country"])
        assert hist.purchases_30d.fillna(-1).astype(int).tolist() == [1, 0, 0]
    del hist
    assert con.execute(views).fetchall()[0][0] == held
    assert pa.total_allocated_bytes() <= arrow


def test_stock_feast_cli_applies_the_generated_region_config(settings):
    config = repo.write_config(settings, "us")
    env = {**os.environ, "ATELIER_HOME": str(settings.home)}
    feast = Path(sys.executable).with_name("feast")
    result = subprocess.run([str(feast), "-f", str(config), "apply"], cwd=settings.feature_repo, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    listed = subprocess.run([str(feast), "-f", str(config), "feature-views", "list"], cwd=settings.feature_repo, env=env, capture_output=True, text=True, timeout=300)
    assert "client_activity" in listed.stdout and "lumiere_de_grasse_engagement" in listed.stdout
    assert "password" not in config.read_text()


def test_generated_config_keeps_redis_secrets_out(redis_settings):
    text = repo.write_config(redis_settings, "eu").read_text()
    assert "test-secret-eu" not in text
    assert "${ATELIER_REDIS__EU__PASSWORD}" in text and "username=atelier-eu" in text


def test_materialize_unknown_view_is_a_clear_error(settings):
    repo.apply(settings, "eu")
    with pytest.raises(Exception, match="unknown feature view\\(s\\): nope"):
        repo.materialize(settings, "eu", views=["nope"])


def test_a_read_for_a_range_of_clients_decrypts_only_the_files_of_that_range(settings):
    """Feature tables hold a sorted range of clients per file. A point-in-time read of some
    clients is bounded by their least and greatest id, so Arrow skips the other files' row
    groups by their statistics; an `isin` of many values alone is not checked against them.
    Shown by damaging the pages of a file outside the range: the bounded read never decrypts them."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    from atelier.errors import AtelierError
    from atelier.features.offline_store import RowsNeeded
    from atelier.protect.parquet import DatasetWriter, part_files

    keys = key_store(settings, "eu")
    path = settings.home / "features" / "eu" / "ranged"
    at = pd.Timestamp(NOW)
    with DatasetWriter(path, keys) as w:
        for k in range(3):  # c0000-c0199, c1000-c1199, c2000-c2199
            ids = [f"c{k}{i:03d}" for i in range(200)]
            w.write(pa.table({"client_id": ids, "event_timestamp": pa.array([at] * 200, pa.timestamp("us", "UTC")), "x": np.arange(200)}))
    last = part_files(path)[2]
    data = bytearray(last.read_bytes())
    data[8:40] = bytes(32)  # the first page of the third file (its footer, with the statistics, is at the end)
    last.write_bytes(bytes(data))

    wanted = np.array([f"c{k}{i:03d}" for k in (1, 0) for i in range(5, 200, 3)], object)  # 130 of the first two files
    needed = RowsNeeded([{"client_id": wanted}], "event_timestamp", at)
    schema = pa.schema([("client_id", pa.string()), ("event_timestamp", pa.timestamp("us", "UTC")), ("x", pa.int64())])
    got = read_dataset(path, keys, filter=needed.expression(schema))
    assert sorted(got.column("client_id").to_pylist()) == sorted(wanted)
    with pytest.raises((OSError, AtelierError)):  # the damage is real: a read that opens the third file fails
        read_dataset(path, keys, filter=pc.field("client_id").isin(pa.array(wanted)))


def test_point_in_time_reads_scan_only_their_entities_rows_and_answer_as_a_whole_read(settings, monkeypatch):
    """A read for a few clients (and a few products, countries) keeps only their rows of each
    source, up to the frame's latest time, and gives what reading every row gives."""
    from atelier.features import offline_store
    from atelier.protect import parquet

    repo.apply(settings, "eu")
    keys = key_store(settings, "eu")

    def some(table: str, columns: list[str]) -> pd.DataFrame:  # rows of a table, asked a day after they hold
        rows = read_dataset(settings.paths.feature_table(table, "eu"), keys).to_pandas().sample(4, random_state=1)
        return rows[columns].assign(event_timestamp=rows["event_timestamp"] + pd.Timedelta(days=1)).reset_index(drop=True)

    reads = {
        "query_tower_v1": some("client_activity", ["client_id"]),
        "popularity_v1": some("product_popularity", ["product_id"]),
        "country_sales_weekly": some("country_sales_weekly", ["product_id", "country_code"]),
    }
    refs = {"country_sales_weekly": ["country_sales_weekly:units", "country_sales_weekly:revenue", "country_clientele_weekly:clients"]}
    kept = []
    real = parquet.read_dataset
    monkeypatch.setattr(offline_store, "read_dataset", lambda *a, **k: kept.append(t := real(*a, **k)) or t)
    filtered = {name: repo.historical_features(settings, "eu", entity, refs.get(name, name)) for name, entity in reads.items()}
    rows_read = sum(t.num_rows for t in kept)
    kept.clear()
    monkeypatch.setattr(offline_store.RowsNeeded, "of", staticmethod(lambda *a: {}))
    whole = {name: repo.historical_features(settings, "eu", entity, refs.get(name, name)) for name, entity in reads.items()}
    assert rows_read * 5 < sum(t.num_rows for t in kept)  # the whole read scans every entity's rows
    for name, frame in filtered.items():
        keys = list(reads[name].columns)
        a = frame.sort_values(keys).reset_index(drop=True)
        b = whole[name].sort_values(keys).reset_index(drop=True)
        pd.testing.assert_frame_equal(a, b[a.columns])
        assert a.drop(columns=keys).notna().any().any(), name  # features were found: the comparison is not of empty rows


def test_rows_needed_keep_for_each_entity_row_its_keys_latest_rows_at_or_before_its_time():
    """What `latest_rows` keeps, row by row: ties at the latest time all, nothing before a key's
    first row (not another key's row), nothing for unknown or null keys; keys of two columns."""
    import numpy as np
    import pyarrow as pa

    from atelier.features.offline_store import RowsNeeded

    def at(*times):
        return pd.to_datetime(list(times), unit="D", utc=True)

    table = pa.table({"k": ["a", "a", "a", "a", "b", "c"], "n": [1, 2, 3, 4, 5, 6],
                      "event_timestamp": pa.array(at(1, 2, 2, 5, 3, 4), pa.timestamp("us", "UTC"))})
    entity = pd.DataFrame({"k": ["a", "a", "b", "c", "z", None], "event_timestamp": at(2, 4, 1, 10, 10, 10)})
    needed = RowsNeeded([{"k": entity["k"].to_numpy()}], "event_timestamp", entity["event_timestamp"].max(),
                        entity["event_timestamp"].dt.tz_localize(None).to_numpy("datetime64[us]").view(np.int64))
    assert needed.latest_rows(table).column("n").to_pylist() == [2, 3, 6]

    two = pa.table({"p": ["x", "x", "x", "y"], "c": ["FR", "IT", "FR", "FR"], "n": [1, 2, 3, 4],
                    "event_timestamp": pa.array(at(1, 1, 3, 1), pa.timestamp("us", "UTC"))})
    asked = pd.DataFrame({"p": ["x", "y", "y"], "c": ["FR", "IT", "FR"], "event_timestamp": at(2, 9, 0)})
    needed = RowsNeeded([{"p": asked["p"].to_numpy(), "c": asked["c"].to_numpy()}], "event_timestamp", None,
                        asked["event_timestamp"].dt.tz_localize(None).to_numpy("datetime64[us]").view(np.int64))
    assert needed.latest_rows(two).column("n").to_pylist() == [1]
    assert RowsNeeded([{"k": entity["k"].to_numpy()}], "event_timestamp", None).latest_rows(table).num_rows == 6  # no times: all rows

def test_point_in_time_reads_of_many_times_per_entity_give_the_join_only_the_rows_it_picks(settings, monkeypatch):
    """Training asks each client as of many days. The rows read are cut to those the join picks
    (atelier.features.offline_store.RowsNeeded.latest_rows): at, just before and after rows'
    own times, before a key's first row, for unknown keys, on a key of two columns; the answers
    are those of a read of every row."""
    import numpy as np

    from atelier.features import offline_store

    repo.apply(settings, "eu")
    keys = key_store(settings, "eu")
    rng = np.random.default_rng(5)

    def around(table: str, key: list[str], n: int) -> pd.DataFrame:
        rows = read_dataset(settings.paths.feature_table(table, "eu"), keys, columns=[*key, "event_timestamp"]).to_pandas()
        some = rows.drop_duplicates(key).sample(n, random_state=3)[key]
        rows = rows.merge(some, on=key)
        step = [pd.Timedelta(0), pd.Timedelta(microseconds=-1), pd.Timedelta(hours=30)]
        asked = pd.concat([rows[key].assign(event_timestamp=rows["event_timestamp"] + d) for d in step])
        first = some.assign(event_timestamp=rows["event_timestamp"].min() - pd.Timedelta(days=1))  # before any row of theirs
        unknown = some.head(1).assign(**{key[0]: "nobody"}, event_timestamp=pd.Timestamp(NOW))
        out = pd.concat([asked, first, unknown]).drop_duplicates()
        return out.iloc[rng.permutation(len(out))].reset_index(drop=True)

    asked = around("client_activity", ["client_id"], 25)
    reads = {"query_tower_v1": asked, "country_sales_weekly": around("country_sales_weekly", ["product_id", "country_code"], 15),
             "as of one time": asked.drop_duplicates("client_id").assign(event_timestamp=pd.Timestamp(NOW))}
    refs = {"country_sales_weekly": ["country_sales_weekly:units", "country_sales_weekly:revenue", "country_clientele_weekly:clients"],
            "as of one time": "query_tower_v1"}
    given = {}
    real = offline_store.read_source

    def read_source(config, source, only=None):
        t = real(config, source, only)
        if only is not None:
            given.setdefault(name, {})[source.name] = t.num_rows
        return t

    monkeypatch.setattr(offline_store, "read_source", read_source)
    cut = {}
    for name, entity in reads.items():
        cut[name] = repo.historical_features(settings, "eu", entity, refs.get(name, name))
    monkeypatch.setattr(offline_store.RowsNeeded, "of", staticmethod(lambda *a: {}))
    whole = {name: repo.historical_features(settings, "eu", entity, refs.get(name, name)) for name, entity in reads.items()}
    # as of one time, a client's latest row only; as of each row's own time, every row of theirs
    clients = asked["client_id"].nunique()
    assert given["as of one time"]["client_activity_source"] == clients - 1  # less the unknown one
    assert given["query_tower_v1"]["client_activity_source"] > 10 * clients
    for name, frame in cut.items():
        on = list(reads[name].columns)
        a = frame.sort_values(on).reset_index(drop=True)
        b = whole[name].sort_values(on).reset_index(drop=True)
        pd.testing.assert_frame_equal(a, b[a.columns])
        features = a.drop(columns=on)
        assert features.notna().any(axis=1).mean() > 0.5 and features.isna().all(axis=1).any(), name  # found, and not found before the first row
