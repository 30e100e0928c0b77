"""Training and evaluation data for one region, read through the feature store.

Positives are (client, product) pairs from the region's events: purchases, and views and wishlist
adds as weaker signals (weights configurable; weight 0 drops a type). Client features come from
`get_historical_features` as of each event's day, so no example sees anything that happened
later; product features come from the candidate tower's feature service.

Time split: training events end at a day boundary (`cutoff`); evaluation uses purchases in the
following weeks, with client features as of the cutoff: the model is judged exactly as it will
serve, on the future. `windows` places the cut-offs: train, then validation (choices are made
there), then test (read once, for the report); `build` is called once per cut-off.

Anonymous lines (events without a client) and returns never become training examples; anonymous
purchases count towards popularity, which the baselines read from `purchases`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa

from atelier.context import RegionContext
from atelier.errors import AtelierError
from atelier.features.pipeline import journaled_events
from atelier.models.recommend import baselines as bl
from atelier.models.recommend.examples import PART_CLIENTS, PART_ROWS, ExampleParts, assign_parts
from atelier.models.recommend.inputs import FeatureSpec, SpecFitter, specs_from_service, to_inputs
from atelier.protect.parquet import dataset_info, read_dataset, release_arrow_memory
from atelier.protect.residency import assert_region_clients

QUERY_SERVICE = "query_tower_v1"
CANDIDATE_SERVICE = "candidate_tower_v1"
POPULARITY_SERVICE = "popularity_v1"
DAY = pd.Timedelta(days=1)


@dataclass
class Examples:
    """One row per training event in memory; the query tower's inputs on disk (`parts`), with the
    statistics the tower is fitted with, gathered while they were written."""

    client_ids: np.ndarray
    product_index: np.ndarray  # row in the product table
    weight: np.ndarray
    timestamp: np.ndarray  # datetime64[us], UTC
    parts: ExampleParts  # the query inputs, product and weight of every row, encrypted, streamed into training
    query_specs: list[FeatureSpec]  # fitted on every row's inputs


@dataclass
class EvalSet:
    client_ids: np.ndarray
    query: dict[str, np.ndarray]
    truth: list[np.ndarray]  # product indices bought in the evaluation window, per client
    bought_before: list[np.ndarray]  # product indices bought before the cutoff, per client
    warm: np.ndarray  # bool: the client had events before the cutoff
    country: np.ndarray  # the client's country


@dataclass(frozen=True)
class Windows:
    """Train < validation_cutoff <= validation < test_cutoff <= test < end (whole days, UTC)."""

    validation_cutoff: pd.Timestamp
    test_cutoff: pd.Timestamp
    end: pd.Timestamp

    @staticmethod
    def of(last_event: pd.Timestamp, weeks: int) -> Windows:
        end = last_event.floor("D") + DAY
        test = end - pd.Timedelta(weeks=weeks)
        return Windows(test - pd.Timedelta(weeks=weeks), test, end)

    def to_json(self) -> dict[str, str]:
        return {"validation_cutoff": str(self.validation_cutoff), "test_cutoff": str(self.test_cutoff), "end": str(self.end)}


@dataclass
class RegionData:
    region: str
    query_specs: list[FeatureSpec]
    candidate_specs: list[FeatureSpec]
    products: pd.DataFrame  # product_id, maison, category, countries + candidate features
    candidate: dict[str, np.ndarray]  # candidate tower inputs, one row per product
    train: Examples | None  # None once fitted, where nothing reads them again (the selection's)
    eval: EvalSet
    popularity: np.ndarray  # baseline score per product, as of the cutoff
    purchases: pd.DataFrame  # every purchase (client_id None when anonymous), product index, time, country
    window: dict[str, str] = field(default_factory=dict)


def _products(ctx: RegionContext, specs: list[FeatureSpec], at: pd.Timestamp) -> pd.DataFrame:
    catalog = read_dataset(ctx.paths.catalog("products"), None, columns=["product_id", "maison", "category", "countries"]).to_pandas()
    entity = pd.DataFrame({"product_id": catalog["product_id"], "event_timestamp": at})
    features = ctx.historical_features(entity, CANDIDATE_SERVICE)
    features = features.drop(columns=["event_timestamp"]).set_index("product_id")
    keep = [s.name for s in specs if s.name not in ("maison", "category")]
    return catalog.set_index("product_id").join(features[keep]).reset_index()


def catalog_as_of(ctx: RegionContext, specs: list[FeatureSpec], at: pd.Timestamp) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """The products and their candidate-tower inputs as of `at` (the export uses the latest)."""
    products = _products(ctx, specs, at)
    return products, to_inputs({s.name: products[s.name].to_numpy() for s in specs}, specs, "product_id", products["product_id"].to_numpy())


def _query_features(ctx: RegionContext, ids: pd.Series, at: pd.Series) -> pd.DataFrame:
    entity = pd.DataFrame({"client_id": ids.to_numpy(), "event_timestamp": at.to_numpy()}).drop_duplicates()
    hist = ctx.historical_features(entity, QUERY_SERVICE)
    return hist.set_index(["client_id", "event_timestamp"])


AS_OF_CLIENTS = 5_000  # clients per point-in-time read of many clients as of one time (`features_as_of`)


def features_as_of(ctx: RegionContext, client_ids: np.ndarray, at: pd.Timestamp, features: str | list[str]) -> pd.DataFrame:
    """Point-in-time `features` (a feature service or references) of `client_ids` as of `at`,
    indexed by client, each client once.

    Read `AS_OF_CLIENTS` clients at a time, in the order of their ids: each read decrypts only
    the row groups of its range of ids (atelier.features.offline_store.RowsNeeded), so memory
    holds one block's rows rather than every client's. The evaluation clients of a 12M-event
    region (28,000, spread over every file) took 2.6 GiB more than the frame of events in one
    read. In the 52M-event world, three reads of 40,000 clients of eu took RSS up at most 1.12 GiB
    in blocks of 20,000 and 0.72 GiB in blocks of 5,000, for 18% more time (27 and 32 s)."""
    ids = np.unique(np.asarray(client_ids, dtype=object))  # each once, in id order
    blocks = [ctx.historical_features(pd.DataFrame({"client_id": ids[lo : lo + AS_OF_CLIENTS], "event_timestamp": at}), features)
              for lo in range(0, len(ids), AS_OF_CLIENTS)]
    return pd.concat(blocks, ignore_index=True).set_index("client_id")


def query_inputs(ctx: RegionContext, specs: list[FeatureSpec], client_ids: np.ndarray, at: pd.Timestamp) -> dict[str, np.ndarray]:
    """The query tower's inputs for `client_ids`, with their features as of `at`."""
    if not len(client_ids):
        return to_inputs({}, specs, "client_id", client_ids, as_of=at.to_pydatetime())
    rows = features_as_of(ctx, client_ids, at, QUERY_SERVICE).reindex(client_ids)
    return to_inputs({s.name: rows[s.name].to_numpy() for s in specs}, specs, "client_id", client_ids, as_of=at.to_pydatetime())


def read_events(ctx: RegionContext) -> pd.DataFrame:
    """The region's events, the lake's and those received since in real time, with each event's
    country (the client's; the line's when anonymous)."""
    settings, region, keys = ctx.settings, ctx.region, ctx.keys
    path = settings.paths.client_table("events", region)
    names = dataset_info(path)["schema"].names
    cols = ["client_id", "product_id", "event_type", "event_timestamp"] + (["country"] if "country" in names else [])
    table = read_dataset(path, keys, columns=cols)  # only these: the lake's ids and channels are most of its bytes
    streamed = journaled_events(ctx, table.schema)  # received in real time (atelier.events)
    if streamed.num_rows:
        table = pa.concat_tables([table, streamed])
    events = table.to_pandas()
    del table
    release_arrow_memory()
    if events.empty:
        raise AtelierError(f"region {region!r} has no events to train on", fix="generate or import data first")
    assert_region_clients(settings, region, pa.array(events["client_id"], pa.string()), where=f"training events of {region}")
    clients = read_dataset(settings.paths.client_table("clients", region), keys, columns=["client_id", "country"]).to_pandas()
    home = events["client_id"].map(clients.set_index("client_id")["country"])
    events["country"] = home.where(home.notna(), events["country"] if "country" in events else None)
    return events


def windows(events: pd.DataFrame, weeks: int) -> Windows:
    """The windows, ending with the last event; each must hold purchases of known clients, or
    nothing could be chosen on it, or measured (a model is never exported unmeasured)."""
    last = events["event_timestamp"].max()
    w = Windows.of(last, weeks)
    bought = events.loc[(events["event_type"] == "purchase") & events["client_id"].notna(), "event_timestamp"]
    for name, start, end in (("validation", w.validation_cutoff, w.test_cutoff), ("test", w.test_cutoff, w.end)):
        if not ((bought >= start) & (bought < end)).any():
            latest = bought.max() if len(bought) else None
            raise AtelierError(
                f"the {name} weeks ({start:%Y-%m-%d} to {end - DAY:%Y-%m-%d}) hold no purchase of a known client: "
                f"nothing to {'choose on' if name == 'validation' else 'measure the model with'}. The windows end with the last event "
                f"({last:%Y-%m-%d}); the last purchase of a known client is {f'{latest:%Y-%m-%d}' if latest is not None else 'none'}",
                fix="import the events up to the last one received (real-time events after a long gap pull the windows with them), "
                    "or choose --eval-weeks so that each window holds purchases")
    return w


def build(
    ctx: RegionContext,
    *,
    event_weights: dict[str, float],
    cutoff: pd.Timestamp,
    end: pd.Timestamp,
    events: pd.DataFrame | None = None,
    max_examples: int | None = None,
    seed: int = 7,
    progress: Callable[[int], Callable[[int], None]] | None = None,
) -> RegionData:
    """Training examples before `cutoff`; evaluation on the purchases in [cutoff, end).

    `progress`, once the examples are cut into parts, is given the number of reads to come (a
    part's each, then the evaluation clients'), and returns what to call after each: at scale a
    build reads for tens of minutes (eu of the 52M-event world: some 19 minutes)."""
    region = ctx.region
    query_specs = specs_from_service(ctx.store, QUERY_SERVICE)
    candidate_specs = specs_from_service(ctx.store, CANDIDATE_SERVICE)
    events = read_events(ctx) if events is None else events
    # Product features as of the cut-off: as of `end` they would count the evaluation weeks' sales.
    products = _products(ctx, candidate_specs, cutoff)
    index = pd.Series(np.arange(len(products)), index=products["product_id"])

    # Training examples: weighted events before the cutoff.
    weights = events["event_type"].map(event_weights).fillna(0.0)
    keep = (events["event_timestamp"] < cutoff) & (weights > 0) & events["client_id"].notna()
    train = events.loc[keep, ["client_id", "product_id", "event_timestamp"]].assign(weight=weights[keep])  # what the examples read
    del weights, keep  # a float and a flag per event: 0.2 GiB for eu of the 52M-event world, held through every read below
    if max_examples and len(train) > max_examples:
        train = train.sample(max_examples, random_state=seed).sort_values("event_timestamp")
    if train.empty:
        raise AtelierError(f"no training events before {cutoff:%Y-%m-%d} in region {region!r}", fix="use more data or fewer --eval-weeks")
    train.index = pd.RangeIndex(len(train))  # the events' labels are not read: 8 bytes an example less, without a copy
    reads = _Reads(progress)
    examples = _examples(ctx, train, query_specs, index, progress=reads.start)
    del train  # the examples hold what they need; the evaluation's reads come next

    # Evaluation: purchases in the weeks after the cutoff, features as of the cutoff.
    every_purchase = events[events["event_type"] == "purchase"]
    purchases = every_purchase[every_purchase["client_id"].notna()]
    future = purchases[(purchases["event_timestamp"] >= cutoff) & (purchases["event_timestamp"] < end)]
    before = purchases[purchases["event_timestamp"] < cutoff]
    eval_ids = np.array(sorted(future["client_id"].unique()), dtype=object)
    eval_query = query_inputs(ctx, query_specs, eval_ids, cutoff)
    reads.advance(1)
    truth = future.groupby("client_id")["product_id"].agg(lambda s: index.reindex(s.unique()).to_numpy())
    bought = before.groupby("client_id")["product_id"].agg(lambda s: index.reindex(s.unique()).to_numpy())
    empty = np.zeros(0, np.int64)
    seen = set(events.loc[(events["event_timestamp"] < cutoff) & events["client_id"].notna(), "client_id"].unique())
    country = future.groupby("client_id")["country"].first()
    eval_set = EvalSet(
        eval_ids, eval_query, [truth[c] for c in eval_ids], [bought.get(c, empty) for c in eval_ids],
        warm=np.array([c in seen for c in eval_ids], bool), country=country.reindex(eval_ids).to_numpy(object),
    )

    # Most popular in the region as of the cutoff (what the service falls back on)
    pop_entity = pd.DataFrame({"product_id": products["product_id"], "event_timestamp": cutoff})
    pop = ctx.historical_features(pop_entity, POPULARITY_SERVICE).set_index("product_id").reindex(products["product_id"])
    popularity = bl.fallback_popularity({name: pop[name].to_numpy(float) for name, _ in bl.FALLBACK_POPULARITY})

    candidate = to_inputs({s.name: products[s.name].to_numpy() for s in candidate_specs}, candidate_specs, "product_id", products["product_id"].to_numpy())
    return RegionData(
        region=region,
        query_specs=query_specs,
        candidate_specs=candidate_specs,
        products=products,
        candidate=candidate,
        train=examples,
        eval=eval_set,
        popularity=popularity,
        purchases=pd.DataFrame({
            "client_id": every_purchase["client_id"].to_numpy(object),
            "product": index.reindex(every_purchase["product_id"]).to_numpy(),
            "event_timestamp": every_purchase["event_timestamp"].to_numpy(),
            "country": every_purchase["country"].to_numpy(object),
        }),
        window={
            "train_start": str(pd.Timestamp(examples.timestamp.min(), tz="UTC")),
            "cutoff": str(cutoff),
            "eval_end": str(end),
        },
    )


def _examples(ctx: RegionContext, train: pd.DataFrame, specs: list[FeatureSpec], index: pd.Series,
              part_rows: int = PART_ROWS, part_clients: int = PART_CLIENTS,
              progress: Callable[[int], Callable[[int], None]] | None = None) -> Examples:
    """The training rows, their query inputs written a part at a time (`ExampleParts`): a part's
    point-in-time features are read, converted and written before the next part's are read.

    `progress` is told the number of parts, and returns what to call after each."""
    parts = ExampleParts.scratch(ctx.settings.paths.runs(ctx.region), ctx.keys, specs)
    fitter = SpecFitter(specs)
    part = assign_parts(pd.factorize(train["client_id"], sort=True)[0], part_rows, part_clients)
    order = np.argsort(part, kind="stable")  # the rows, part by part: `train` is indexed, not copied in that order
    part = part[order]
    product_index = _positions(index, train["product_id"].to_numpy()[order])
    cuts = np.flatnonzero(np.diff(part)) + 1
    advance = progress(len(cuts) + 1) if progress else _nothing
    for rows in np.split(np.arange(len(order)), cuts):
        chunk = train.iloc[order[rows]]
        # Features change at day boundaries only: query them once per (client, day).
        day = chunk["event_timestamp"].dt.floor("D")
        hist = _query_features(ctx, chunk["client_id"], day)
        found = hist.reindex(pd.MultiIndex.from_arrays([chunk["client_id"], day]))
        query = to_inputs({s.name: found[s.name].to_numpy() for s in specs}, specs, "client_id", chunk["client_id"].to_numpy(), as_of=chunk["event_timestamp"])
        del hist, found
        fitter.add(query)
        parts.write(query, {"product_index": product_index[rows], "product_id": chunk["product_id"].to_numpy(object),
                            "weight": chunk["weight"].to_numpy(np.float32), "event_timestamp": chunk["event_timestamp"].to_numpy()})
        advance(1)
    parts.commit()
    return Examples(
        client_ids=train["client_id"].to_numpy()[order],
        product_index=product_index,
        weight=train["weight"].to_numpy(np.float32)[order],
        timestamp=train["event_timestamp"].to_numpy("datetime64[us]")[order],  # not Timestamp objects: 2.6 GiB for 19M examples
        parts=parts,
        query_specs=fitter.specs(),
    )


def _nothing(n: int = 1) -> None:
    """Progress reported to no one."""


class _Reads:
    """A build's progress: its reads are known once the examples are cut into parts (a read
    each), and the evaluation clients' read comes after them."""

    def __init__(self, progress: Callable[[int], Callable[[int], None]] | None):
        self.progress, self.advance = progress, _nothing

    def start(self, parts: int) -> Callable[[int], None]:
        if self.progress:
            self.advance = self.progress(parts + 1)
        return self.advance


def _positions(index: pd.Series, ids: np.ndarray) -> np.ndarray:
    """`index.reindex(ids).to_numpy()` (NaN where an id is not in `index`) without the Series of
    one entry per example that reindexing builds (two arrays of 19M for eu of the 52M-event
    world), where `index` maps each id to its position, as the product index does."""
    at = index.index.get_indexer(ids)
    values = index.to_numpy()
    return values[at] if (at >= 0).all() else np.where(at >= 0, values[np.maximum(at, 0)], np.nan)


def save_training_set(ctx: RegionContext, data: RegionData, run_dir) -> int:
    """Keep the examples (encrypted with the region's key, as they were written) for
    reproducibility and audits: the run's `training_set`."""
    assert_region_clients(ctx.settings, ctx.region, pa.array(data.train.client_ids, pa.string()), where=f"training set of {ctx.region}")
    return data.train.parts.save_as(run_dir / "training_set")
