"""The data lake: global catalog tables, and client tables split by region and encrypted.

Both `atelier data generate` and `atelier data import` end here. The whole lake is built in a
staging directory and swapped in with one rename, so a failure at any point (bad input found
late, a crash, a full disk) leaves the previous lake exactly as it was.

Residency is enforced here, at the write: a region's partition only accepts clients whose
country belongs to the region, and events of those clients (or, for anonymous lines, events
whose country belongs to the region). The partition's client table is then the region's roster
(`atelier.protect.residency`), which every later stage checks against.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from atelier.data.schema import EPOCH, Attribute, infer_attributes, normalize_attribute
from atelier.errors import AtelierError
from atelier.io import staged_dir, write_json_atomic
from atelier.protect.keys import key_store
from atelier.protect.parquet import DatasetWriter, write_dataset
from atelier.protect.residency import refuse
from atelier.regions import all_regions, region_codes
from atelier.settings import Paths, Settings


class LakeWriter:
    """Writes one complete lake into a staging root; `atelier.io.staged_dir` swaps it in."""

    def __init__(self, settings: Settings, root: Path):
        self.settings = settings
        self.paths = Paths(settings.home)
        self.stage_paths = _RootedPaths(root)
        self.writers: dict[tuple[str, str], DatasetWriter] = {}
        self.counts: dict[str, dict[str, int]] = {"clients": {}, "events": {}}
        self._clients: dict[str, pa.Array] = {}  # the clients of the chunk being written, per region

    def write_catalog(self, name: str, table: pa.Table) -> None:
        write_dataset(self.stage_paths.catalog(name), table, None, encrypt=False)

    def append(self, name: str, region: str, table: pa.Table) -> None:
        self._check_residency(name, region, table)
        key = (name, region)
        if key not in self.writers:
            self.writers[key] = DatasetWriter(
                self.stage_paths.client_table(name, region), key_store(self.settings, region)
            )
        if table.num_rows:
            self.writers[key].write(table)
        self.counts[name][region] = self.counts[name].get(region, 0) + table.num_rows

    def _check_residency(self, name: str, region: str, table: pa.Table) -> None:
        """Clients by their country; events by their client (this chunk's) or, anonymous, their country."""
        where = f"{name}/region={region}"
        ids = table.column("client_id").combine_chunks() if table.num_rows else pa.array([], pa.string())
        if name == "clients":
            home = client_regions(table.column("country"))
            refuse(pc.not_equal(home, region), ids, region, where, "whose country is in another region")
            self._clients[region] = ids
        elif name == "events":
            ours = pc.is_in(ids, value_set=self._clients.get(region, pa.array([], pa.string())))
            country = table.column("country") if "country" in table.column_names else pa.nulls(table.num_rows, pa.string())
            anonymous_here = pc.and_(pc.is_null(ids), pc.equal(client_regions(country), region))
            refuse(pc.invert(pc.or_(ours, pc.fill_null(anonymous_here, False))), ids, region, where, "of another region (by their client or country)")

    def finish(self, schemas: dict[str, pa.Schema], manifest: dict) -> None:
        for name, schema in schemas.items():
            for region in region_codes():
                if (name, region) not in self.writers:
                    self.append(name, region, schema.empty_table())
                self.writers[(name, region)].commit(schema)
        manifest["counts"] = self.counts
        write_json_atomic(self.stage_paths.manifest, manifest)


class _RootedPaths(Paths):
    """The lake's layout under a staging root instead of the data home."""

    def __init__(self, root: Path):
        super().__init__(root.parent)
        self.root = root

    @property
    def lake(self) -> Path:
        return self.root


def split_by_region(table: pa.Table, region_column: pa.Array) -> dict[str, pa.Table]:
    return {r: table.filter(pc.equal(region_column, r)) for r in region_codes()}


def client_regions(countries: pa.ChunkedArray | pa.Array) -> pa.Array:
    """The region of each ISO alpha-2 country code (null where none)."""
    mapping = {c: r.code for r in all_regions() for c in r.countries}
    keys = pa.array(list(mapping))
    idx = pc.index_in(countries, value_set=keys)
    return pc.take(pa.array(list(mapping.values())), idx)


def finalize_clients(table: pa.Table, attributes: list[Attribute]) -> pa.Table:
    """Add the platform's derived columns and store attributes in their normalized form."""
    regions = client_regions(table.column("country"))
    if "updated_at" in table.column_names:
        ts = pc.cast(table.column("updated_at"), pa.timestamp("us", "UTC"))
    else:
        ts = pa.array([EPOCH] * table.num_rows, pa.timestamp("us", "UTC"))
    cols = {"client_id": table.column("client_id"), "country": table.column("country"), "region": regions}
    for a in attributes:
        cols[a.name] = normalize_attribute(table.column(a.name), a.kind)
    cols["profile_timestamp"] = ts
    return pa.table(cols)


def finalize_products(table: pa.Table, attributes: list[Attribute]) -> pa.Table:
    if "launch_date" in table.column_names:
        ts = pc.cast(table.column("launch_date"), pa.timestamp("us", "UTC"))
        ts = pc.fill_null(ts, pa.scalar(EPOCH, pa.timestamp("us", "UTC")))
    else:
        ts = pa.array([EPOCH] * table.num_rows, pa.timestamp("us", "UTC"))
    cols = {n: table.column(n) for n in ("product_id", "maison", "category")}
    for a in attributes:
        cols[a.name] = normalize_attribute(table.column(a.name), a.kind)
    countries = table.column("countries") if "countries" in table.column_names else pa.nulls(table.num_rows, pa.list_(pa.string()))
    cols["countries"] = countries
    cols["catalog_timestamp"] = ts
    return pa.table(cols)


def finalize_events(table: pa.Table, products: pa.Table) -> pa.Table:
    """Events with amount filled from the product price where the source had none."""
    n = table.num_rows
    qty = pc.cast(table.column("quantity"), pa.int64()) if "quantity" in table.column_names else pa.array(np.ones(n, np.int64))
    amount = pc.cast(table.column("amount"), pa.float64()) if "amount" in table.column_names else pa.nulls(n, pa.float64())
    if "price" in products.column_names and pa.types.is_floating(products.schema.field("price").type):
        idx = pc.index_in(table.column("product_id"), value_set=products.column("product_id"))
        price = pc.take(products.column("price"), idx)
        is_purchase = pc.equal(table.column("event_type"), "purchase")
        fill = pc.if_else(is_purchase, pc.multiply(price, pc.cast(qty, pa.float64())), pa.scalar(None, pa.float64()))
        amount = pc.coalesce(amount, fill)
    cols = {
        "client_id": table.column("client_id"),
        "product_id": table.column("product_id"),
        "event_type": table.column("event_type"),
        "event_timestamp": pc.cast(table.column("event_timestamp"), pa.timestamp("us", "UTC")),
        "channel": table.column("channel") if "channel" in table.column_names else pa.nulls(n, pa.string()),
        "store_id": table.column("store_id") if "store_id" in table.column_names else pa.nulls(n, pa.string()),
        "country": table.column("country") if "country" in table.column_names else pa.nulls(n, pa.string()),
        "quantity": qty,
        "amount": amount,
    }
    return pa.table(cols)


def write_lake(
    settings: Settings,
    catalog: dict[str, pa.Table],
    client_attributes: list[Attribute],
    product_attributes: list[Attribute],
    chunks,
    manifest: dict,
    progress: Callable[[int], None] = lambda n: None,
) -> dict:
    """Write a whole lake. `chunks` yields (clients, events) tables of any regions, already valid.

    Returns the manifest as written.
    """
    products = finalize_products(catalog["products"], product_attributes)
    client_schema = None
    with staged_dir(settings.paths.lake) as root:
        writer = LakeWriter(settings, root)
        writer.write_catalog("products", products)
        for name, table in catalog.items():
            if name != "products":
                writer.write_catalog(name, table)
        event_schema = None
        t_min, t_max = None, None
        for clients, events in chunks:
            clients = finalize_clients(clients, client_attributes)
            events = finalize_events(events, products)
            client_schema, event_schema = clients.schema, events.schema
            for region, part in split_by_region(clients, clients.column("region")).items():
                writer.append("clients", region, part)
            # An event lives with its client; an anonymous line (no client) in its country's region.
            by_client = pc.take(clients.column("region"), pc.index_in(events.column("client_id"), value_set=clients.column("client_id")))
            event_regions = pc.coalesce(by_client, client_regions(events.column("country")))
            for region, part in split_by_region(events, event_regions).items():
                writer.append("events", region, part)
            if events.num_rows:
                lo, hi = pc.min_max(events.column("event_timestamp")).values()
                t_min = lo.as_py() if t_min is None else min(t_min, lo.as_py())
                t_max = hi.as_py() if t_max is None else max(t_max, hi.as_py())
            progress(clients.num_rows)
        if client_schema is None:
            raise AtelierError("no clients to write")
        manifest = {
            **manifest,
            "written_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "attributes": {
                "clients": [a.to_json() for a in client_attributes],
                "products": [a.to_json() for a in product_attributes],
            },
            "products": products.num_rows,
            "maisons": sorted(set(products.column("maison").to_pylist())),
            "time_range": {"min": t_min.isoformat() if t_min else None, "max": t_max.isoformat() if t_max else None},
        }
        writer.finish({"clients": client_schema, "events": event_schema}, manifest)
    return manifest


def infer_catalog_attributes(clients_sample: pa.Table, products: pa.Table) -> tuple[list[Attribute], list[Attribute]]:
    return infer_attributes("clients", clients_sample), infer_attributes("products", products)
