"""`atelier data import`: bring your own clients, products and events (CSV or Parquet).

Everything is checked before anything is written, and every problem is reported at once, each
with example rows, so one run tells the user all there is to fix. Required columns:

* clients:  client_id (any non-empty text up to 128 characters), country (an ISO 3166 alpha-2
            or alpha-3 code or an English name: "FR", "FRA" and "France" are the same)
* products: product_id, maison, category
* events:   client_id, product_id, event_type (purchase | view | wishlist | return), event_timestamp

A client's region is its country's (`atelier/regions.json` places every country of the world).
A country nobody can place ("Unspecified") is a problem, unless the rule `unknown_country="drop"`
is chosen: then those clients and their events are left out, and counted.

Optional columns with a meaning: clients.updated_at, products.launch_date, products.countries
(where a product is sold: a list, or "FR|IT" in CSV), events.amount, events.quantity,
events.channel, events.store_id. Any other client or product column is an attribute and becomes a
feature, categorical or numeric as inferred and recorded in the manifest.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
import pyarrow.types as pat

from atelier.data.lake import write_lake
from atelier.data.schema import EVENT_TYPES, REQUIRED, attribute_columns, infer_attributes
from atelier.errors import AtelierError
from atelier.regions import country_code, country_to_region
from atelier.settings import Settings

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_MAX_EXAMPLES = 3
MAX_ID_LENGTH = 128
UNKNOWN_COUNTRY_RULES = ("error", "drop")


class ImportProblems(AtelierError):
    pass


class _Problems:
    def __init__(self):
        self.items: list[str] = []
        self.fix_hint: str | None = None

    def add(self, where: str, what: str, rows: "_Rows | None" = None) -> None:
        if rows:
            examples, total = rows
            shown = ", ".join(f"row {r}: {v!r}" for r, v in examples)
            more = f" (and {total - len(examples)} more)" if total > len(examples) else ""
            what = f"{what} — {shown}{more}"
        self.items.append(f"{where}: {what}")


def read_table(path: Path) -> pa.Table:
    path = Path(path)
    if not path.exists():
        raise AtelierError("file not found", where=str(path))
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            return pcsv.read_csv(path, convert_options=pcsv.ConvertOptions(strings_can_be_null=True))
        if suffix in (".parquet", ".pq"):
            return pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as e:
        raise AtelierError(f"cannot read file: {str(e).splitlines()[0]}", where=str(path)) from None
    raise AtelierError(f"unsupported file type {suffix!r}", where=str(path), fix="give a .csv or .parquet file")


_Rows = tuple[list[tuple[int, object]], int]


def _rows(mask, values) -> _Rows:
    """Example offending rows (1-based data rows) and how many there are in all."""
    idx = pc.indices_nonzero(pc.fill_null(mask, False)).to_pylist()
    return [(i + 1, values[i].as_py() if hasattr(values[i], "as_py") else values[i]) for i in idx[:_MAX_EXAMPLES]], len(idx)


def _country_codes(values: pa.Array) -> pa.Array:
    """ISO alpha-2 codes for codes or English names (null where nothing matches)."""
    uniques = pc.unique(values)
    codes = pa.array([country_code(v) for v in uniques.to_pylist()], pa.string())
    return pc.take(codes, pc.index_in(values, value_set=uniques))


def _as_string(table: pa.Table, name: str, where: str, problems: _Problems, allow_empty: bool = False) -> pa.Array | None:
    col = table.column(name)
    if pat.is_floating(col.type):
        problems.add(where, f"column {name!r} must hold text or whole numbers, found {col.type}")
        return None
    if not (pat.is_string(col.type) or pat.is_large_string(col.type) or pat.is_integer(col.type) or pat.is_dictionary(col.type)):
        problems.add(where, f"column {name!r} must hold text, found {col.type}")
        return None
    col = pc.cast(col, pa.string()).combine_chunks()
    # is_null OR blank; or_ of a null is null (never true), so a missing id would pass
    empty = pc.or_(pc.is_null(col), pc.fill_null(pc.equal(pc.utf8_trim_whitespace(col), ""), False))
    if allow_empty:
        return pc.if_else(empty, pa.scalar(None, pa.string()), col)
    if pc.any(empty).as_py():
        problems.add(where, f"column {name!r} has empty values", _rows(empty, col))
    return col


def _as_timestamp(col: pa.ChunkedArray, name: str, where: str, problems: _Problems, required: bool) -> pa.Array | None:
    if pat.is_timestamp(col.type):
        out = pc.cast(col, pa.timestamp("us", "UTC") if col.type.tz else pa.timestamp("us"))
        if not col.type.tz:
            out = pc.assume_timezone(out, "UTC")
        return out.combine_chunks()
    if pat.is_date(col.type):
        return pc.assume_timezone(pc.cast(pc.cast(col, pa.timestamp("s")), pa.timestamp("us")), "UTC").combine_chunks()
    if not (pat.is_string(col.type) or pat.is_large_string(col.type)):
        problems.add(where, f"column {name!r} must hold dates or ISO-8601 timestamps, found {col.type}")
        return None
    values = col.to_pandas()
    parsed = pd.to_datetime(values, errors="coerce", utc=True, format="ISO8601")
    bad = parsed.isna() & values.notna()
    if required:
        bad |= values.isna()
    if bad.any():
        problems.add(where, f"column {name!r} has values that are not timestamps (use ISO-8601, e.g. 2025-03-01T14:30:00Z)", _rows(pa.array(bad.to_numpy()), values.tolist()))
        return None
    return pa.array(parsed, pa.timestamp("us", "UTC"))


def _check_columns(table: pa.Table, kind: str, where: str, problems: _Problems) -> bool:
    missing = [c for c in REQUIRED[kind] if c not in table.column_names]
    if missing:
        problems.add(where, f"missing required column(s) {', '.join(missing)} (required: {', '.join(REQUIRED[kind])})")
    for name in attribute_columns(kind, table.schema):
        if not _NAME.match(name):
            problems.add(where, f"column name {name!r} cannot become a feature name; use letters, digits and underscores")
    return not missing


def _duplicates(col: pa.Array, name: str, where: str, problems: _Problems) -> None:
    counts = pc.value_counts(col)
    dup = pc.filter(counts.field("values"), pc.greater(counts.field("counts"), 1))
    if len(dup):
        mask = pc.is_in(col, value_set=dup)
        problems.add(where, f"duplicate {name} values ({len(dup)} ids appear more than once)", _rows(mask, col))


def validate(
    clients: pa.Table, products: pa.Table, events: pa.Table, names: dict[str, str], *,
    unknown_country: str = "error", anonymous_events: bool = False, counts: dict[str, int] | None = None,
) -> tuple[pa.Table, pa.Table, pa.Table]:
    """Return normalized tables, or raise ImportProblems listing everything that is wrong.

    `unknown_country="drop"` leaves out clients whose country cannot be placed, and their events,
    counting them in `counts`; `anonymous_events` accepts events without a client (they feed
    product popularity only) when they name a country.
    """
    if unknown_country not in UNKNOWN_COUNTRY_RULES:
        raise AtelierError(f"unknown rule unknown_country={unknown_country!r}", fix=f"use one of: {', '.join(UNKNOWN_COUNTRY_RULES)}")
    counts = counts if counts is not None else {}
    problems = _Problems()
    wc, wp, we = names["clients"], names["products"], names["events"]
    ok = {
        "clients": _check_columns(clients, "clients", wc, problems),
        "products": _check_columns(products, "products", wp, problems),
        "events": _check_columns(events, "events", we, problems),
    }
    c2r = country_to_region()
    cid = pid = None

    if ok["clients"]:
        cid = _as_string(clients, "client_id", wc, problems)
        country = _as_string(clients, "country", wc, problems)
        if cid is not None:
            _duplicates(cid, "client_id", wc, problems)
            clients = clients.set_column(clients.schema.get_field_index("client_id"), "client_id", cid)
        if cid is not None:
            too_long = pc.greater(pc.utf8_length(cid), MAX_ID_LENGTH)
            if pc.any(pc.fill_null(too_long, False)).as_py():
                problems.add(wc, f"client_id longer than {MAX_ID_LENGTH} characters", _rows(too_long, cid))
        if country is not None:
            raw = country
            country = _country_codes(raw)
            unknown = pc.and_(pc.is_null(country), pc.is_valid(raw))
            if pc.any(unknown).as_py():
                if unknown_country == "drop":
                    dropped = pc.filter(cid, unknown) if cid is not None else pa.array([], pa.string())
                    counts["clients dropped: unknown country"] = len(dropped)
                    keep = pc.invert(unknown)
                    clients, country, raw = clients.filter(keep), pc.filter(country, keep), pc.filter(raw, keep)
                    if cid is not None:
                        cid = pc.filter(cid, keep)
                    if ok["events"] and "client_id" in events.column_names:
                        gone = pc.is_in(pc.cast(events.column("client_id"), pa.string()), value_set=dropped)
                        counts["events dropped: client of unknown country"] = pc.sum(gone).as_py() or 0
                        events = events.filter(pc.invert(pc.fill_null(gone, False)))
                else:
                    problems.add(
                        wc, "countries that match no ISO 3166 code or English name",
                        _rows(unknown, raw),
                    )
                    problems.fix_hint = "correct them, map them in a mapping file, or choose the rule unknown_country=drop (`--unknown-country drop`)"
            clients = clients.set_column(clients.schema.get_field_index("country"), "country", country)
            if cid is not None:
                clients = clients.set_column(clients.schema.get_field_index("client_id"), "client_id", cid)
        if "updated_at" in clients.column_names:
            ts = _as_timestamp(clients.column("updated_at"), "updated_at", wc, problems, required=False)
            if ts is not None:
                clients = clients.set_column(clients.schema.get_field_index("updated_at"), "updated_at", ts)

    if ok["products"]:
        pid = _as_string(products, "product_id", wp, problems)
        for name in ("maison", "category"):
            col = _as_string(products, name, wp, problems)
            if col is not None:
                products = products.set_column(products.schema.get_field_index(name), name, col)
        if pid is not None:
            _duplicates(pid, "product_id", wp, problems)
            products = products.set_column(products.schema.get_field_index("product_id"), "product_id", pid)
        if "launch_date" in products.column_names:
            ts = _as_timestamp(products.column("launch_date"), "launch_date", wp, problems, required=False)
            if ts is not None:
                products = products.set_column(products.schema.get_field_index("launch_date"), "launch_date", ts)
        if "countries" in products.column_names:
            lists = _countries(products.column("countries"), wp, problems, c2r)
            if lists is not None:
                products = products.set_column(products.schema.get_field_index("countries"), "countries", lists)

    if ok["events"]:
        ecid = _as_string(events, "client_id", we, problems, allow_empty=anonymous_events)
        ecountry = None
        if "country" in events.column_names:
            raw = pc.cast(events.column("country"), pa.string()).combine_chunks()
            ecountry = _country_codes(raw)
            bad = pc.and_(pc.is_null(ecountry), pc.is_valid(raw))
            if pc.any(bad).as_py():
                problems.add(we, "column 'country' has values that match no ISO 3166 code or English name", _rows(bad, raw))
        if anonymous_events and ecid is not None:
            placed = pc.is_valid(ecountry) if ecountry is not None else pa.repeat(pa.scalar(False), len(ecid))
            lost = pc.and_(pc.is_null(ecid), pc.invert(placed))
            if pc.any(lost).as_py():
                problems.add(we, "events without a client need a country (their region)", _rows(lost, ecid))
        epid = _as_string(events, "product_id", we, problems)
        etype = _as_string(events, "event_type", we, problems)
        ets = _as_timestamp(events.column("event_timestamp"), "event_timestamp", we, problems, required=True)
        if etype is not None:
            etype = pc.utf8_lower(etype)
            unknown = pc.invert(pc.is_in(etype, value_set=pa.array(EVENT_TYPES)))
            if pc.any(pc.fill_null(unknown, False)).as_py():
                problems.add(we, f"unknown event_type (known: {', '.join(EVENT_TYPES)})", _rows(unknown, etype))
        if ecid is not None and cid is not None:
            unknown = pc.and_(pc.invert(pc.is_in(ecid, value_set=cid)), pc.is_valid(ecid))
            if pc.any(pc.fill_null(unknown, False)).as_py():
                problems.add(we, f"events point at clients missing from {wc}", _rows(unknown, ecid))
        if epid is not None and pid is not None:
            unknown = pc.invert(pc.is_in(epid, value_set=pid))
            if pc.any(pc.fill_null(unknown, False)).as_py():
                problems.add(we, f"events point at products missing from {wp}", _rows(unknown, epid))
        for name in ("amount", "quantity"):
            if name in events.column_names and not (pat.is_integer(events.schema.field(name).type) or pat.is_floating(events.schema.field(name).type) or pat.is_null(events.schema.field(name).type)):
                problems.add(we, f"column {name!r} must be numeric, found {events.schema.field(name).type}")
        if not problems.items:
            for name, col in (("client_id", ecid), ("product_id", epid), ("event_type", etype), ("event_timestamp", ets), ("country", ecountry)):
                if col is not None:
                    events = events.set_column(events.schema.get_field_index(name), name, col)

    if problems.items:
        raise ImportProblems(
            f"{len(problems.items)} problem(s) found; nothing was written",
            details=problems.items,
            fix=problems.fix_hint or "correct the files and run `atelier data import` again",
        )
    return clients, products, events


def _countries(col: pa.ChunkedArray, where: str, problems: _Problems, c2r: dict) -> pa.Array | None:
    if pat.is_list(col.type) or pat.is_large_list(col.type):
        lists = [None if v is None else [country_code(c) or c for c in v] for v in col.to_pylist()]
    elif pat.is_string(col.type) or pat.is_null(col.type):
        lists = [None if s is None or not s.strip() else [country_code(p) or p.strip() for p in s.split("|") if p.strip()] for s in col.to_pylist()]
    else:
        problems.add(where, f"column 'countries' must be a list or 'FR|IT' text, found {col.type}")
        return None
    bad = pa.array([v is not None and any(c not in c2r for c in v) for v in lists])
    if pc.any(bad).as_py():
        problems.add(where, "column 'countries' names unknown countries", _rows(bad, lists))
        return None
    return pa.array(lists, pa.list_(pa.string()))


def import_files(
    settings: Settings, clients: Path, products: Path, events: Path, progress: Callable[[int], None] = lambda n: None,
    *, unknown_country: str = "error",
) -> dict:
    tables = {"clients": read_table(clients), "products": read_table(products), "events": read_table(events)}
    names = {"clients": Path(clients).name, "products": Path(products).name, "events": Path(events).name}
    counts: dict[str, int] = {}
    c, p, e = validate(tables["clients"], tables["products"], tables["events"], names, unknown_country=unknown_country, counts=counts)
    files = {k: str(Path(v).resolve()) for k, v in (("clients", clients), ("products", products), ("events", events))}
    return write_validated(settings, c, p, e, {"source": "imported", "files": files, "rules": counts}, progress)


def write_validated(settings: Settings, clients: pa.Table, products: pa.Table, events: pa.Table, manifest: dict, progress: Callable[[int], None] = lambda n: None) -> dict:
    """Write validated tables to the lake, with attributes inferred from the extra columns."""
    client_attrs = infer_attributes("clients", clients)
    product_attrs = infer_attributes("products", products)
    return write_lake(settings, {"products": products}, client_attrs, product_attrs, iter([(clients, events)]), manifest, progress)
