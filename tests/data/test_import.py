"""Bring your own data: valid files import; every class of bad input is refused, nothing written."""

import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
import pytest

from worlds import lake_digest

from atelier.data.generate import world_tables
from atelier.data.importer import ImportProblems, import_files
from atelier.data.world import WorldSpec
from atelier.protect.keys import key_store
from atelier.protect.parquet import read_dataset
from atelier.regions import region_of_country


@pytest.fixture(scope="module")
def world():
    return world_tables(WorldSpec(clients=40, products=40, events_per_client=10))


def _write(d: Path, world, *, clients=None, products=None, events=None, fmt="csv") -> dict[str, Path]:
    tables = {
        "clients": clients if clients is not None else world["clients"].drop(["join_date"]),
        "products": products if products is not None else world["products"].drop(["countries", "launch_date"]),
        "events": events if events is not None else world["events"],
    }
    paths = {}
    for name, t in tables.items():
        p = d / f"{name}.{fmt}"
        if fmt == "csv":
            pcsv.write_csv(t, p)
        else:
            pq.write_table(t, p)
        paths[name] = p
    return paths


def test_import_csv_with_extra_attributes_becomes_features(settings, tmp_path, world):
    clients = world["clients"].drop(["join_date"]).append_column("vip_since_years", pa.array([round(0.37 * i, 2) for i in range(world["clients"].num_rows)]))
    paths = _write(tmp_path, world, clients=clients)
    manifest = import_files(settings, paths["clients"], paths["products"], paths["events"])
    attrs = {a["name"]: a["kind"] for a in manifest["attributes"]["clients"]}
    assert attrs == {"tier": "categorical", "age_band": "categorical", "preferred_channel": "categorical", "vip_since_years": "numeric"}
    assert manifest["source"] == "imported"
    eu = read_dataset(settings.paths.client_table("clients", "eu"), key_store(settings, "eu"))
    assert set(eu.column("region").to_pylist()) == {"eu"}
    assert sum(manifest["counts"]["clients"].values()) == world["clients"].num_rows


def test_import_parquet_fills_amount_from_price(settings, tmp_path, world):
    events = world["events"].drop(["amount"])
    paths = _write(tmp_path, world, events=events, fmt="parquet")
    import_files(settings, paths["clients"], paths["products"], paths["events"])
    ev = pa.concat_tables(read_dataset(settings.paths.client_table("events", r), key_store(settings, r)) for r in ("eu", "us", "apac"))
    purchases = ev.filter(pa.compute.equal(ev.column("event_type"), "purchase")).to_pylist()
    price = dict(zip(world["products"].column("product_id").to_pylist(), world["products"].column("price").to_pylist()))
    assert purchases and all(abs(p["amount"] - price[p["product_id"]] * p["quantity"]) < 1e-6 for p in purchases)


def _rename_clients(w, rename) -> dict:
    """The world with every client id replaced by `rename(id)`, in clients and events alike."""
    clients = w["clients"].drop(["join_date"])
    new = {c: rename(c) for c in clients.column("client_id").to_pylist()}
    clients = clients.set_column(0, "client_id", pa.array([new[c] for c in clients.column("client_id").to_pylist()]))
    events = w["events"].set_column(0, "client_id", pa.array([new[c] for c in w["events"].column("client_id").to_pylist()]))
    return {"clients": clients, "events": events}


BAD = {
    "missing column": (lambda w: {"clients": w["clients"].drop(["country"])}, "missing required column(s) country"),
    "mistyped id": (lambda w: {"products": w["products"].drop(["countries", "launch_date"]).set_column(0, "product_id", pa.array([1.5] * w["products"].num_rows))}, "must hold text or whole numbers"),
    "unknown country": (lambda w: {"clients": w["clients"].drop(["join_date"]).set_column(1, "country", pa.array(["Atlantis"] + w["clients"].column("country").to_pylist()[1:]))}, "countries that match no ISO 3166 code or English name — row 1: 'Atlantis'"),
    "unknown event type": (lambda w: {"events": w["events"].set_column(2, "event_type", pa.array(["click"] + w["events"].column("event_type").to_pylist()[1:]))}, "unknown event_type"),
    "duplicate client": (lambda w: {"clients": pa.concat_tables([w["clients"].drop(["join_date"]), w["clients"].drop(["join_date"]).slice(0, 1)])}, "duplicate client_id"),
    "duplicate product": (lambda w: {"products": pa.concat_tables([w["products"].drop(["countries", "launch_date"]), w["products"].drop(["countries", "launch_date"]).slice(3, 2)])}, "duplicate product_id"),
    "unknown client": (lambda w: {"events": w["events"].set_column(0, "client_id", pa.array(["EU99999999"] + w["events"].column("client_id").to_pylist()[1:]))}, "events point at clients missing"),
    "unknown product": (lambda w: {"events": w["events"].set_column(1, "product_id", pa.array(["P9999999"] + w["events"].column("product_id").to_pylist()[1:]))}, "events point at products missing"),
    "bad timestamp": (lambda w: {"events": w["events"].set_column(3, "event_timestamp", pa.array(["not a date"] + [str(t) for t in w["events"].column("event_timestamp").to_pylist()[1:]]))}, "not timestamps"),
    "id too long": (lambda w: _rename_clients(w, lambda c: c * 13), "client_id longer than 128 characters"),
    "empty id": (lambda w: {"clients": w["clients"].drop(["join_date"]).set_column(0, "client_id", pa.array([""] + w["clients"].column("client_id").to_pylist()[1:]))}, "column 'client_id' has empty values — row 1"),
    "attribute name": (lambda w: {"clients": w["clients"].drop(["join_date"]).append_column("vip since", pa.array(["x"] * w["clients"].num_rows))}, "column name 'vip since' cannot become a feature name"),
    "bad launch date": (lambda w: {"products": _products(w).append_column("launch_date", pa.array(["soon"] + ["2025-01-01"] * (w["products"].num_rows - 1)))}, "column 'launch_date' has values that are not timestamps (use ISO-8601, e.g. 2025-03-01T14:30:00Z) — row 1: 'soon'"),
    "unknown product country": (lambda w: {"products": _products(w).append_column("countries", pa.array(["FR|Narnia"] + ["FR|IT"] * (w["products"].num_rows - 1)))}, "column 'countries' names unknown countries"),
    "mistyped product countries": (lambda w: {"products": _products(w).append_column("countries", pa.array([3] * w["products"].num_rows))}, "column 'countries' must be a list or 'FR|IT' text"),
    "unknown event country": (lambda w: {"events": w["events"].append_column("country", pa.array(["Atlantis"] + ["FR"] * (w["events"].num_rows - 1)))}, "column 'country' has values that match no ISO 3166 code or English name — row 1: 'Atlantis'"),
    "non-numeric quantity": (lambda w: {"events": w["events"].set_column(w["events"].schema.get_field_index("quantity"), "quantity", pa.array(["many"] * w["events"].num_rows))}, "column 'quantity' must be numeric, found string"),
}


def _products(w) -> pa.Table:
    return w["products"].drop(["countries", "launch_date"])


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_is_refused_with_a_clear_message_and_nothing_written(settings, tmp_path, world, case):
    change, message = BAD[case]
    before = lake_digest(settings)
    paths = _write(tmp_path, world, **change(world))
    with pytest.raises(ImportProblems) as e:
        import_files(settings, paths["clients"], paths["products"], paths["events"])
    text = e.value.render()
    assert message in text, text
    assert "nothing was written" in text
    assert "row " in text or "column" in text
    assert lake_digest(settings) == before


def test_all_problems_reported_at_once(settings, tmp_path, world):
    clients = world["clients"].drop(["join_date"]).set_column(1, "country", pa.array(["ZZ"] * world["clients"].num_rows))
    events = world["events"].set_column(2, "event_type", pa.array(["click"] * world["events"].num_rows))
    paths = _write(tmp_path, world, clients=clients, events=events)
    with pytest.raises(ImportProblems) as e:
        import_files(settings, paths["clients"], paths["products"], paths["events"])
    assert len(e.value.details) >= 2
    assert "(and " in e.value.render()  # counts beyond the shown examples


def test_unreadable_and_unsupported_files(settings, tmp_path, world):
    paths = _write(tmp_path, world)
    bogus = tmp_path / "clients.xlsx"
    bogus.write_text("x")
    with pytest.raises(Exception, match="unsupported file type"):
        import_files(settings, bogus, paths["products"], paths["events"])
    with pytest.raises(Exception, match="file not found"):
        import_files(settings, tmp_path / "nope.csv", paths["products"], paths["events"])


def test_ids_without_prefix_and_country_names_place_clients_by_country(settings, tmp_path, world):
    """Ids are whatever the client system uses; "France", "FRA" and "fr" are all France (eu)."""
    renamed = _rename_clients(world, lambda c: str(int(c[2:]) * 7 + 1000))  # plain numbers, no region in them
    spellings = {"FR": "France", "US": "USA", "JP": "jpn", "GB": "United Kingdom", "KR": "Korea, Republic of"}
    clients = renamed["clients"]
    countries = [spellings.get(c, c) for c in clients.column("country").to_pylist()]
    clients = clients.set_column(1, "country", pa.array(countries))
    paths = _write(tmp_path, world, clients=clients, events=renamed["events"])
    manifest = import_files(settings, paths["clients"], paths["products"], paths["events"])
    assert sum(manifest["counts"]["clients"].values()) == clients.num_rows
    expected = {}
    for cid, country in zip(world["clients"].column("client_id").to_pylist(), world["clients"].column("country").to_pylist()):
        expected[str(int(cid[2:]) * 7 + 1000)] = region_of_country(country)
    for region in ("eu", "us", "apac"):
        got = read_dataset(settings.paths.client_table("clients", region), key_store(settings, region), columns=["client_id", "country"])
        assert got.num_rows and all(expected[c] == region for c in got.column("client_id").to_pylist())
        assert all(len(c) == 2 for c in got.column("country").to_pylist())  # stored as ISO alpha-2


def test_unknown_countries_can_be_dropped_by_rule_with_a_count(settings, tmp_path, world):
    clients = world["clients"].drop(["join_date"])
    gone = clients.column("client_id").to_pylist()[:2]
    clients = clients.set_column(1, "country", pa.array(["Unspecified", "European Community"] + clients.column("country").to_pylist()[2:]))
    paths = _write(tmp_path, world, clients=clients)
    manifest = import_files(settings, paths["clients"], paths["products"], paths["events"], unknown_country="drop")
    lost_events = sum(1 for c in world["events"].column("client_id").to_pylist() if c in gone)
    assert manifest["rules"] == {"clients dropped: unknown country": 2, "events dropped: client of unknown country": lost_events}
    assert sum(manifest["counts"]["clients"].values()) == clients.num_rows - 2
    assert sum(manifest["counts"]["events"].values()) == world["events"].num_rows - lost_events


def _atelier(*args: str) -> subprocess.CompletedProcess:
    """The real command line, as a user runs it (ATELIER_HOME comes from the `home` fixture)."""
    return subprocess.run([sys.executable, "-m", "atelier.cli.main", *args], capture_output=True, text=True, timeout=300)


def test_import_command_line_refuses_bad_input_and_writes_nothing(settings, tmp_path, world):
    before = lake_digest(settings)
    change, _ = BAD["unknown country"]
    paths = _write(tmp_path, world, **change(world))
    files = ["--clients", str(paths["clients"]), "--products", str(paths["products"]), "--events", str(paths["events"])]
    bad = _atelier("data", "import", *files)
    assert bad.returncode == 1, bad.stderr
    assert "match no ISO 3166 code" in bad.stderr and "--unknown-country drop" in bad.stderr and "Traceback" not in bad.stderr
    assert lake_digest(settings) == before
    ok = _atelier("data", "import", *files, "--unknown-country", "drop")
    assert ok.returncode == 0, ok.stderr
    assert "clients dropped: unknown country" in ok.stdout and lake_digest(settings) != before
