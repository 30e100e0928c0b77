"""The pipeline's SQL (BigQuery's dialect, atelier.features.sql) run on DuckDB against the pandas
path, row for row: on the tiny generated world and on a slice of Online Retail (returns,
anonymous lines, quantities, line countries). Google Cloud cannot be reached from here, so the
BigQuery side is checked as text: every query parses in BigQuery's dialect."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import sqlglot

from atelier.features import series, sql
from atelier.features.compute_bigquery import STAGING
from atelier.features.pipeline import client_activity, client_recent, daily_counts, engaged_events, events_frame, maison_engagement, product_popularity, windows_by
from atelier.features.schemas import CLIENT_ACTIVITY, CLIENT_RECENT, CLIENT_WINDOWS, FRESH_LOG, ENGAGEMENT_WINDOWS, MAISON_ENGAGEMENT, POPULARITY_WINDOWS, PRODUCT_POPULARITY
from atelier.protect.keys import LocalKeyStore
from atelier.protect.parquet import read_dataset

ROOT = Path(__file__).resolve().parents[2]
SOURCE = ROOT.parent / "shared" / "datasets" / "online_retail" / "online_retail.parquet"


def _tables(settings, region="eu"):
    keys = LocalKeyStore(settings.paths.keys, region)
    events = read_dataset(settings.paths.client_table("events", region), keys)
    clients = read_dataset(settings.paths.client_table("clients", region), keys, columns=["client_id", "country"])
    products = read_dataset(settings.paths.catalog("products"), None, columns=["product_id", "maison", "category"])
    return events, clients, products


def _windows_frame(id_column: str, ids, w, windows) -> pd.DataFrame:
    out = pd.DataFrame({id_column: ids[w.key], "day": w.day})
    for name in windows:
        out[name] = w.values[name]
    return out


def _pandas_windows(events, products) -> dict[str, pd.DataFrame]:
    """What atelier.features.pipeline computes, before the favourites, histories and timestamps."""
    df = events_frame(events, products.to_pandas().set_index("product_id"))
    engaged = engaged_events(df)
    _, ids, w = windows_by(engaged["client_id"], engaged, CLIENT_WINDOWS)
    out = {"client_activity_windows": _windows_frame("client_id", ids, w, CLIENT_WINDOWS)}
    parts = []
    for maison, part in engaged.groupby("maison"):
        _, ids, w = windows_by(part["client_id"], part, ENGAGEMENT_WINDOWS)
        parts.append(_windows_frame("client_id", ids, w, ENGAGEMENT_WINDOWS).assign(maison=maison))
    out["maison_engagement_windows"] = pd.concat(parts)
    daily = daily_counts(df)
    _, ids, w = windows_by(daily["product_id"], daily, POPULARITY_WINDOWS, count=daily["n"].to_numpy())
    out["product_popularity_windows"] = _windows_frame("product_id", ids, w, POPULARITY_WINDOWS)
    return out


def _same(got: pd.DataFrame, want: pd.DataFrame, keys: list[str]) -> None:
    assert sorted(got.columns) == sorted(want.columns)
    got = got.sort_values(keys).reset_index(drop=True)
    want = want[list(got.columns)].sort_values(keys).reset_index(drop=True)
    assert len(got) == len(want) > 0
    for c in got.columns:
        if c in keys or got[c].dtype == object or pd.api.types.is_datetime64_any_dtype(got[c]):  # times exactly, not within a float's tolerance
            assert got[c].astype(str).tolist() == want[c].astype(str).tolist(), c
        else:
            assert np.allclose(got[c].to_numpy(float), want[c].to_numpy(float)), c


def _as_streamed(events):
    """Lake events as the journal holds events received in real time (atelier.events.journal.SCHEMA)."""
    from datetime import datetime, timezone

    from atelier.events.journal import SCHEMA

    cols = {"event_id": pa.array([f"rt{i:06d}" for i in range(events.num_rows)]),
            "received_at": pa.array([datetime.now(timezone.utc)] * events.num_rows, SCHEMA.field("received_at").type)}
    return pa.table({f.name: cols[f.name] if f.name in cols else (events.column(f.name).cast(f.type) if f.name in events.column_names else pa.nulls(events.num_rows, f.type))
                     for f in SCHEMA})


def _check_parity(settings, region="eu"):
    events, clients, products = _tables(settings, region)
    want = _pandas_windows(events, products)
    for name, keys in (("client_activity_windows", ["client_id"]), ("maison_engagement_windows", ["maison", "client_id"]),
                       ("product_popularity_windows", ["product_id"])):
        got = sql.run(sql.QUERIES[name](), events=events, products=products, clients=clients).to_pandas()
        _same(got, want[name], [*keys, "day"])
    # the real-time view's offline rows, from events as the journal holds them
    named = events.filter(pc.is_valid(events.column("client_id")))  # a streamed event always names its client
    one = named.filter(pc.equal(named.column("client_id"), named.column("client_id")[0]))
    later = [one.set_column(one.schema.get_field_index("event_timestamp"), "event_timestamp",
                            pc.add(one.column("event_timestamp"), pa.scalar(k * 3_600_000_000, pa.duration("us")))) for k in range(1, 1 + -(-FRESH_LOG // one.num_rows))]
    streamed = _as_streamed(pa.concat_tables([named.slice(0, 3_000), *later]))  # one client with more than the log keeps
    want = client_recent(streamed).to_pylist()
    got = sql.run(sql.QUERIES["client_recent"](), events=events, streamed=streamed).cast(CLIENT_RECENT).to_pylist()
    assert len(got) == len(want) > 10 and sorted(got, key=lambda r: r["client_id"]) == sorted(want, key=lambda r: r["client_id"])
    assert any(r["session_events"] > 1 for r in want) and any(r["session_events"] < len(r["event_ids"]) for r in want)
    assert max(len(r["event_ids"]) for r in want) == FRESH_LOG
    # the whole feature tables, as Feast reads them
    frame = events_frame(events, products.to_pandas().set_index("product_id"))
    whole = {"product_popularity": (product_popularity(daily_counts(frame)), sql.product_popularity(), PRODUCT_POPULARITY, "product_id")}
    for maison, part in engaged_events(frame).groupby("maison"):
        whole[maison] = (maison_engagement(part), sql.maison_engagement(maison), MAISON_ENGAGEMENT, "client_id")
    assert len(whole) >= 2
    for name, (table, query, schema, key) in whole.items():
        got = sql.run(query, events=events, products=products, clients=clients).cast(schema).to_pandas()
        _same(got, table.to_pandas(), [key, "event_timestamp"])
    # as BigQuery computes the maisons' tables: every maison's windows once, each table cut from them
    staging = {STAGING: sql.run(sql.maison_engagement_windows(), events=events, products=products, clients=clients)}
    for maison, (table, _, schema, key) in whole.items():
        if maison != "product_popularity":
            got = sql.run(sql.maison_engagement(maison, windows=STAGING), events=events, tables=staging).cast(schema).to_pandas()
            _same(got, table.to_pandas(), [key, "event_timestamp"])
    # the whole client_activity table: windows, favourites, last purchase and histories
    want = client_activity(engaged_events(events_frame(events, products.to_pandas().set_index("product_id")))).to_pylist()
    got = sql.run(sql.QUERIES["client_activity"](), events=events, products=products, clients=clients)
    got = got.cast(CLIENT_ACTIVITY).to_pylist()  # the table's schema, stated once (DuckDB's timestamps carry no zone)
    assert len(got) == len(want) > 0
    order = lambda row: (row["client_id"], row["event_timestamp"])  # noqa: E731
    floats = [name for name, (_, what, _) in CLIENT_WINDOWS.items() if what == "amount"]
    for g, w in zip(sorted(got, key=order), sorted(want, key=order)):
        assert {k: v for k, v in g.items() if k not in floats} == {k: v for k, v in w.items() if k not in floats}, g["client_id"]
        assert np.allclose([g[k] for k in floats], [w[k] for k in floats]), g["client_id"]
    assert any(len(row["purchased_products"]) > 1 for row in want) and any(row["favourite_maison"] for row in want)
    lines = series.sales_lines(events_frame(events, products.to_pandas().set_index("product_id")), clients.to_pandas().set_index("client_id")["country"])
    for kind, compute in (("sales", series.weekly_sales), ("clientele", series.weekly_clientele)):
        want_frame = series.combine([compute(lines)], series.KEYS[kind])
        got = sql.run(sql.QUERIES[f"weekly_{kind}"](), events=events, products=products, clients=clients).to_pandas()
        _same(got, want_frame, series.KEYS[kind])
        for level in series.LEVELS:  # each level's feature table, as Feast reads it
            table = series.to_table(want_frame, kind, level)
            got = sql.run(sql.QUERIES[series.table_name(kind, level)](), events=events, products=products, clients=clients).cast(table.schema)
            assert got.num_rows == table.num_rows and (got.num_rows > 0 or level == "store")
            if got.num_rows:
                keys = [series.KEY[level], *(["product_id"] if kind == "sales" else []), "week_start"]
                _same(got.to_pandas(), table.to_pandas(), keys)


def test_the_sql_gives_the_pandas_tables_on_the_generated_world(settings):
    _check_parity(settings)


def test_the_sql_gives_the_pandas_tables_on_a_slice_of_online_retail(tmp_path, monkeypatch):
    if not SOURCE.exists():
        pytest.skip(f"the shared data set is not at {SOURCE}")
    from atelier.data.transactions import import_transactions
    from atelier.settings import Settings

    monkeypatch.setenv("ATELIER_HOME", str(tmp_path / "home"))
    s = Settings(home=tmp_path / "home")
    for r in ("eu", "us", "apac"):
        LocalKeyStore.init(s.paths.keys, r)
    table = pq.read_table(SOURCE)
    codes = pc.unique(table.column("stock_code")).slice(0, 60)
    path = tmp_path / "slice.parquet"
    pq.write_table(table.filter(pc.is_in(table.column("stock_code"), value_set=codes)), path)
    import_transactions(s, path, ROOT / "examples" / "online_retail" / "mapping.yaml")
    events = _tables(s)[0]
    assert pc.sum(pc.is_null(events.column("client_id"))).as_py() > 0 and "return" in events.column("event_type").to_pylist()
    _check_parity(s)


def test_every_query_is_bigquery_and_transpiles():
    for name, text in sql.scripts(["lumiere-de-grasse"]).items():
        sqlglot.parse_one(text, read="bigquery", error_level=sqlglot.ErrorLevel.RAISE)
        duck = sql.transpile(text)
        assert "DIV(" not in duck.upper(), name  # DuckDB's integer division is the // operator
        assert sql.transpile(text, "bigquery").count("UNIX_MICROS") >= 1, name


def test_the_cloud_scripts_name_the_regions_dataset_and_nothing_else(tmp_path):
    """`atelier features sql --out DIR --dataset D` writes BigQuery scripts whose every table is in
    D (or a step of the query itself); an engine without tested SQL is refused."""
    import subprocess
    import sys

    from sqlglot import exp

    atelier = str(Path(sys.executable).with_name("atelier"))
    r = subprocess.run([atelier, "features", "sql", "--out", str(tmp_path / "sql"), "--dataset", "atelier_eu"], capture_output=True, text=True, timeout=120,
                       env={"ATELIER_HOME": str(tmp_path / "home"), "PATH": str(Path(sys.executable).parent)})
    assert r.returncode == 0, r.stderr
    from atelier.features.definitions import bigquery_table
    from atelier.features.repo import parse_definitions
    from atelier.settings import Settings

    views = parse_definitions(Settings(home=tmp_path / "home")).feature_views
    computed = {bigquery_table(v.batch_source.table) for v in views if v.batch_source.table.startswith("features/")} - {"client_recent"}  # fed by POST /events
    engagement = sorted(t for t in computed if t.startswith("maison_engagement_"))
    assert engagement and sorted(p.stem for p in (tmp_path / "sql").glob("*.sql")) == sorted([*sql.QUERIES, *engagement])
    assert computed <= set(sql.QUERIES) | set(engagement)  # every feature table the pipeline computes, under the name Feast's source reads
    for path in (tmp_path / "sql").glob("*.sql"):
        tree = sqlglot.parse_one(path.read_text().rstrip().rstrip(";"), read="bigquery")
        steps = {cte.alias_or_name for cte in tree.find_all(exp.CTE)}
        tables = {(t.db, t.name) for t in tree.find_all(exp.Table) if t.name not in steps}
        assert tables and all(db == "atelier_eu" for db, _ in tables), (path.name, tables)
        assert {name for _, name in tables} <= {"events", "clients", "products", "streamed_events"}
    bad = subprocess.run([atelier, "features", "sql", "--dialect", "snowflake"], capture_output=True, text=True, timeout=120,
                         env={"ATELIER_HOME": str(tmp_path / "home"), "PATH": str(Path(sys.executable).parent)})
    assert bad.returncode == 1 and "no tested SQL for 'snowflake'" in bad.stderr and "Traceback" not in bad.stderr
    (tmp_path / "a_file").write_text("mine")
    into_file = subprocess.run([atelier, "features", "sql", "--out", str(tmp_path / "a_file")], capture_output=True, text=True, timeout=120,
                               env={"ATELIER_HOME": str(tmp_path / "home"), "PATH": str(Path(sys.executable).parent)})
    assert into_file.returncode == 1 and "cannot write the scripts to" in into_file.stderr and "Traceback" not in into_file.stderr
    assert (tmp_path / "a_file").read_text() == "mine"


def test_features_compute_on_duckdb_writes_the_numpy_paths_tables(settings):
    """`atelier features compute --engine duckdb`: every feature table the numpy path writes, the
    same rows, with events received in real time (the journal) among the lake's."""
    from datetime import datetime, timedelta, timezone

    from atelier.context import RegionContext
    from atelier.events.batch import Event, to_table
    from atelier.events.journal import Journal
    from atelier.features.pipeline import compute_features
    from atelier.protect.parquet import MARKER
    from atelier.protect.residency import roster

    ctx = RegionContext.of(settings, "eu")
    clients = roster(settings, "eu").to_pylist()[:5] + roster(settings, "eu").to_pylist()[-2:]
    products = read_dataset(settings.paths.catalog("products"), None, columns=["product_id"]).column("product_id").to_pylist()[:10]
    at = datetime(2026, 11, 20, 10, tzinfo=timezone.utc)
    kinds = ("view", "purchase", "wishlist", "return")
    received = [Event(event_id=f"rt{i}", client_id=clients[i % len(clients)], product_id=products[i % 10], event_type=kinds[i % 4],
                      event_timestamp=at + timedelta(minutes=i)) for i in range(40)]
    with Journal(ctx) as j:
        j.append(to_table(received, at + timedelta(hours=1)))

    def written() -> dict[str, pd.DataFrame]:
        root = settings.paths.features("eu")
        return {str(m.parent.relative_to(root)): read_dataset(m.parent, ctx.keys).to_pandas() for m in root.rglob(MARKER)}

    counts = compute_features(settings, "eu")
    ours = written()
    assert compute_features(settings, "eu", engine="duckdb") == counts
    theirs = written()
    assert ours.keys() == theirs.keys() and {"client_activity", "client_recent", "product_popularity", "store_sales_weekly"} <= set(ours)
    assert len(ours) > 8 and counts["client_recent"] == len(set(clients))
    for name, want in ours.items():
        got = theirs[name]
        assert list(got.columns) == list(want.columns), name
        if not len(want):
            assert not len(got), name
            continue
        lists = {c for c in want.columns if want[c].dtype == object and isinstance(want[c].dropna().iloc[0] if want[c].notna().any() else "", np.ndarray)}
        keys = [c for c in want.columns if c not in lists and (want[c].dtype == object or want[c].dtype.kind in "iuM")]
        _same(got.assign(**{c: got[c].map(list) for c in lists}), want.assign(**{c: want[c].map(list) for c in lists}), keys)
