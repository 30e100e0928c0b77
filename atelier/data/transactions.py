"""`atelier data import --transactions FILE --mapping MAPPING`: a raw export of sales lines, as it is.

Real exports are one table of transaction lines, with their own column names and their own mess:
cancellations, anonymous lines, postage and fee lines, zero prices, free-text countries. A mapping
file (YAML, see `examples/online_retail/mapping.yaml`) says how the source's columns and values
map onto atelier's schema, and which documented rule applies to each kind of mess. From the
lines alone the importer then derives:

* clients: one per client id, in the country of most of its lines;
* products: one per product id, with attributes taken from the lines (the most frequent
  description, the median unit price, ...), maison and category from the mapping;
* events: a `purchase` per sales line; a `return` per cancellation or negative quantity
  (never a purchase); anonymous lines, kept without a client, feed product popularity only.

The rules, and what each does (each rule's count is printed and kept in the lake's manifest):

| rule               | choices                              | default          |
|--------------------|--------------------------------------|------------------|
| anonymous          | popularity_only, drop, error         | popularity_only  |
| price_not_positive | drop, error                          | drop             |
| unknown_country    | drop, error                          | error            |
| returns            | return_event, drop                   | return_event     |

`error` lists the offending lines and writes nothing, like every other problem. The tables the
rules produce then go through the same validation as any import (`atelier.data.importer`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from atelier.data.importer import ImportProblems, read_table, validate, write_validated
from atelier.errors import AtelierError
from atelier.settings import Settings

_MAX_EXAMPLES = 3


class Derived(BaseModel):
    """A product field: a constant (`value`), or a column of the lines reduced per product (`how`)."""

    model_config = ConfigDict(extra="forbid")
    value: str | None = None
    column: str | None = None
    how: Literal["most_frequent", "median", "first"] = "most_frequent"

    @model_validator(mode="after")
    def _one(self):
        if (self.value is None) == (self.column is None):
            raise ValueError("give exactly one of `value` or `column`")
        return self


class Columns(BaseModel):
    """Which source column holds each of atelier's fields."""

    model_config = ConfigDict(extra="forbid")
    client_id: str
    product_id: str
    event_timestamp: str
    country: str
    quantity: str | None = None
    unit_price: str | None = None
    order_id: str | None = None


class Products(BaseModel):
    model_config = ConfigDict(extra="forbid")
    maison: Derived
    category: Derived
    attributes: dict[str, Derived] = {}


class Rules(BaseModel):
    model_config = ConfigDict(extra="forbid")
    anonymous: Literal["popularity_only", "drop", "error"] = "popularity_only"
    price_not_positive: Literal["drop", "error"] = "drop"
    unknown_country: Literal["drop", "error"] = "error"
    returns: Literal["return_event", "drop"] = "return_event"
    return_order_prefix: str | None = Field(None, description="order ids starting with this are cancellations")


class Mapping(BaseModel):
    """A mapping file: how one source's transaction lines become atelier's clients, products, events."""

    model_config = ConfigDict(extra="forbid")
    format: Literal["transactions"] = "transactions"
    columns: Columns
    timezone: str = "UTC"
    products: Products
    values: dict[str, dict[str, str | None]] = {}
    exclude_products: list[str] = []
    rules: Rules = Rules()

    @classmethod
    def load(cls, path: Path) -> Mapping:
        path = Path(path)
        if not path.exists():
            raise AtelierError("mapping file not found", where=str(path))
        try:
            raw = yaml.safe_load(path.read_text())
            return cls.model_validate(raw or {})
        except yaml.YAMLError as e:
            raise AtelierError(f"not valid YAML: {str(e).splitlines()[0]}", where=str(path)) from None
        except ValidationError as e:
            details = [f"{'.'.join(str(p) for p in err['loc']) or '(top)'}: {err['msg']}" for err in e.errors()]
            raise AtelierError("the mapping file does not fit the mapping schema", where=str(path), details=details,
                               fix="see examples/online_retail/mapping.yaml for a complete mapping") from None

    def source_columns(self) -> set[str]:
        cols = {v for v in self.columns.model_dump().values() if v}
        cols |= {d.column for d in (self.products.maison, self.products.category, *self.products.attributes.values()) if d.column}
        return cols


def import_transactions(settings: Settings, lines_path: Path, mapping_path: Path, progress: Callable[[int], None] = lambda n: None) -> dict:
    """Import a raw transaction export with its mapping; returns the lake manifest (with `rules` counts)."""
    mapping = Mapping.load(mapping_path)
    table = read_table(lines_path)
    where = Path(lines_path).name
    missing = sorted(mapping.source_columns() - set(table.column_names))
    if missing:
        raise AtelierError(
            f"the mapping names column(s) the file does not have: {', '.join(missing)}",
            where=f"{mapping_path} -> {where}",
            fix=f"the file's columns are: {', '.join(table.column_names)}",
        )
    clients, products, events, counts = derive(table.to_pandas(), mapping, where)
    names = {"clients": f"{where} (clients)", "products": f"{where} (products)", "events": where}
    c, p, e = validate(clients, products, events, names, unknown_country="error", anonymous_events=True, counts=counts)
    manifest = {
        "source": "imported",
        "files": {"transactions": str(Path(lines_path).resolve()), "mapping": str(Path(mapping_path).resolve())},
        "rules": counts,
    }
    return write_validated(settings, c, p, e, manifest, progress)


def derive(lines: pd.DataFrame, mapping: Mapping, where: str) -> tuple[pa.Table, pa.Table, pa.Table, dict[str, int]]:
    """Apply the mapping and its rules to the lines; derive clients, products and events."""
    from atelier.regions import country_code

    col = mapping.columns
    rules = mapping.rules
    counts: dict[str, int] = {"lines read": len(lines)}
    problems: list[str] = []
    df = pd.DataFrame({"row": np.arange(1, len(lines) + 1)})
    df["client_id"] = _ids(lines[col.client_id])
    df["product_id"] = _ids(lines[col.product_id])
    df["event_timestamp"] = _timestamps(lines[col.event_timestamp], mapping.timezone)
    df["quantity"] = pd.to_numeric(lines[col.quantity], errors="coerce").to_numpy() if col.quantity else 1
    df["unit_price"] = pd.to_numeric(lines[col.unit_price], errors="coerce").to_numpy() if col.unit_price else np.nan
    order = _ids(lines[col.order_id]) if col.order_id else pd.Series([None] * len(lines), dtype=object)
    for name, d in {"maison": mapping.products.maison, "category": mapping.products.category, **mapping.products.attributes}.items():
        if d.column:
            df[f"attr:{name}"] = lines[d.column].to_numpy()

    def drop(mask: pd.Series, label: str) -> None:
        nonlocal df, order
        counts[label] = int(mask.sum())
        df, order = df[~mask.to_numpy()], order[~mask.to_numpy()]

    # Lines that are not products at all (postage, fees, manual adjustments).
    drop(df["product_id"].isin(set(mapping.exclude_products)), "lines dropped: excluded product codes")

    # Countries: the mapping's own values first, then ISO codes and English names.
    raw_country = lines[col.country].reindex(df.index).astype(object)
    fixed = raw_country.map(lambda v: mapping.values.get("country", {}).get(v, v) if v is not None and not pd.isna(v) else None)
    df["country"] = fixed.map(lambda v: country_code(v) if v is not None else None)
    unknown = df["country"].isna()
    if unknown.any():
        if rules.unknown_country == "error":
            problems.append(_problem(where, "countries that match no ISO code or English name (rule unknown_country=error)", df["row"][unknown], raw_country[unknown]))
        else:
            drop(unknown, "lines dropped: unknown country")

    # Prices: zero and negative prices are adjustments and samples, not sales.
    if col.unit_price:
        bad_price = ~(df["unit_price"] > 0)
        if bad_price.any():
            if rules.price_not_positive == "error":
                problems.append(_problem(where, "unit prices that are zero, negative or missing (rule price_not_positive=error)", df["row"][bad_price], df["unit_price"][bad_price]))
            else:
                drop(bad_price, "lines dropped: price not positive")

    # Lines without a client.
    anonymous = df["client_id"].isna()
    if anonymous.any():
        if rules.anonymous == "error":
            problems.append(_problem(where, "lines without a client id (rule anonymous=error)", df["row"][anonymous], df["product_id"][anonymous]))
        elif rules.anonymous == "drop":
            drop(anonymous, "lines dropped: no client")
        else:
            counts["lines kept for popularity only: no client"] = int(anonymous.sum())

    if problems:
        raise ImportProblems(f"{len(problems)} problem(s) found; nothing was written", details=problems,
                             fix="correct the file, map the values in the mapping file, or choose another rule there")

    # Returns and cancellations: a `return` event, never a purchase.
    is_return = pd.Series(df["quantity"] < 0, index=df.index)
    if rules.return_order_prefix:
        is_return |= order.fillna("").str.startswith(rules.return_order_prefix).to_numpy()
    if rules.returns == "drop":
        drop(is_return, "lines dropped: returns and cancellations")
        is_return = is_return[~is_return]
    else:
        counts["lines kept as return events"] = int(is_return.sum())
    df["event_type"] = np.where(is_return, "return", "purchase")
    df["quantity"] = np.abs(df["quantity"])
    df["amount"] = np.where(is_return, -1.0, 1.0) * df["quantity"] * df["unit_price"]
    counts["purchase events"] = int((~is_return).sum())

    clients = _clients(df)
    products = _products(df, mapping)
    events = pa.Table.from_pandas(
        df[["client_id", "product_id", "event_type", "event_timestamp", "quantity", "amount", "country"]].reset_index(drop=True),
        preserve_index=False,
    )
    counts["clients"] = clients.num_rows
    counts["products"] = products.num_rows
    return clients, products, events, counts


def _ids(s: pd.Series) -> pd.Series:
    """Ids as text: integers without a decimal point, blanks as missing."""
    if pd.api.types.is_float_dtype(s):
        s = s.astype("Int64")
    out = s.astype("string").str.strip()
    return out.where(out.notna() & (out != ""), None).astype(object)


def _timestamps(s: pd.Series, tz: str) -> pd.Series:
    ts = pd.to_datetime(s, errors="coerce")
    if ts.dt.tz is None:
        ts = ts.dt.tz_localize(tz, ambiguous="NaT", nonexistent="shift_forward")
    return ts.dt.tz_convert("UTC")


def _problem(where: str, what: str, rows: pd.Series, values: pd.Series) -> str:
    shown = ", ".join(f"row {r}: {v!r}" for r, v in zip(rows[:_MAX_EXAMPLES], values[:_MAX_EXAMPLES]))
    more = f" (and {len(rows) - _MAX_EXAMPLES} more)" if len(rows) > _MAX_EXAMPLES else ""
    return f"{where}: {what} — {shown}{more}"


def _clients(df: pd.DataFrame) -> pa.Table:
    """One row per client: the country of most of its lines."""
    known = df[df["client_id"].notna()]
    country = known.groupby(["client_id", "country"]).size().reset_index(name="n")
    country = country.sort_values(["client_id", "n", "country"], ascending=[True, False, True]).drop_duplicates("client_id")
    return pa.table({"client_id": pa.array(country["client_id"], pa.string()), "country": pa.array(country["country"], pa.string())})


def _products(df: pd.DataFrame, mapping: Mapping) -> pa.Table:
    ids = pd.Index(sorted(df["product_id"].unique()), name="product_id")
    cols: dict[str, pa.Array] = {"product_id": pa.array(ids, pa.string())}
    sales = df[df["event_type"] == "purchase"]
    for name, d in {"maison": mapping.products.maison, "category": mapping.products.category, **mapping.products.attributes}.items():
        if d.value is not None:
            cols[name] = pa.array([d.value] * len(ids), pa.string())
            continue
        source = sales if d.how == "median" else df
        values = source[["product_id", f"attr:{name}"]].dropna()
        grouped = values.groupby("product_id")[f"attr:{name}"]
        if d.how == "median":
            reduced = grouped.median()
        elif d.how == "first":
            reduced = grouped.first()
        else:
            reduced = grouped.agg(lambda v: v.value_counts().index[0])
        reduced = reduced.reindex(ids)
        if d.how == "median":
            cols[name] = pa.array(reduced.to_numpy(float), pa.float64(), from_pandas=True)
        else:
            cols[name] = pa.array(reduced.astype(object).where(reduced.notna(), None), pa.string())
    return pa.table(cols)
