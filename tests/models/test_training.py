"""Two-tower training: it learns, it exports faithfully, and it stays in its region."""

import re

import numpy as np
import pytest

from atelier.models.recommend.evaluate import top_k
from atelier.models.recommend.export import LoadedModel
from atelier.models.recommend.two_tower import embed
from atelier.models.store import use_bentoml_home
from atelier.protect.residency import roster
from atelier.settings import Settings


def test_beats_most_popular_by_a_clear_margin(model_world):
    """What serves (chosen on validation: the two-tower in this taste-driven world) beats recent popularity."""
    _, result = model_world
    m, b = result.metrics["model"], result.metrics["popularity"]
    assert result.metrics["served"] in ("two-tower", "ranked")
    validation = result.metrics["validation"]
    assert validation[result.metrics["served"]]["all"]["recall@10"] == max(validation[n]["all"]["recall@10"] for n in ("two-tower", "ranked"))
    assert m["clients"] > 100, "enough held-out clients to mean something"
    # 200 products: top-10 and NDCG@10 are where personalization shows.
    assert m["recall@10"] >= 1.5 * b["recall@10"], (m, b)
    assert m["ndcg@10"] >= 1.5 * b["ndcg@10"], (m, b)
    assert m["recall@100"] >= b["recall@100"]
    losses = result.metrics["training"]["loss"]
    assert losses[-1] < losses[0], "the loss goes down"
    for f in ("metrics.json", "loss.png", "recall.png"):
        assert (result.run_dir / f).stat().st_size > 0


def _loaded(model_world) -> LoadedModel:
    home, result = model_world
    use_bentoml_home(Settings(home=home))
    import bentoml

    return LoadedModel.load(bentoml.models.get(result.tag).path)


def test_exported_savedmodel_and_index_give_the_in_memory_top_k(model_world):
    _, result = model_world
    loaded = _loaded(model_world)
    queries = result.data.eval.query
    in_memory = embed(result.model.query_tower, queries)
    exported = loaded.embed(queries)
    np.testing.assert_allclose(exported, in_memory, atol=1e-5)
    candidates = embed(result.model.candidate_tower, result.catalog)
    np.testing.assert_allclose(loaded.candidates, candidates, atol=1e-5)
    expected = top_k(in_memory @ candidates.T, 10)
    _, exact = loaded.exact.search(exported, 10)
    assert (exact == expected).mean() > 0.99
    _, approx = loaded.ann.search(exported, 10)
    overlap = np.mean([len(set(a) & set(e)) / 10 for a, e in zip(approx, expected)])
    assert overlap >= 0.9
    assert loaded.description["index"]["recall@10_vs_exact"] >= 0.9


def test_eu_model_holds_no_other_regions_clients(model_world):
    _, result = model_world
    vocabulary = result.model.query_tower.id_lookup.get_vocabulary()[1:]
    home, _ = model_world
    assert len(vocabulary) > 500 and set(vocabulary) <= set(roster(Settings(home=home), "eu").to_pylist())
    loaded = _loaded(model_world)
    other = re.compile(rb"(US|AP)\d{8}")
    for f in loaded.path.rglob("*"):
        if f.is_file():
            assert not other.search(f.read_bytes()), f
    assert loaded.region == "eu" and loaded.description["window"]["cutoff"]
    assert set(loaded.description["feature_services"]) == {"query", "candidate", "popularity"}


def test_metadata_records_what_serving_needs(model_world):
    home, result = model_world
    use_bentoml_home(Settings(home=home))
    import bentoml

    meta = bentoml.models.get(result.tag).info.metadata
    assert meta["region"] == "eu"
    assert "client_activity:spend_90d" in meta["feature_refs"] and "client_activity:recent_products" in meta["feature_refs"]
    assert meta["training_window"]["cutoff"] < meta["training_window"]["eval_end"]
    assert meta["recall@100"] > 0 and meta["baseline_recall@100"] > 0 and meta["code_version"]


def test_training_on_imported_data_uses_its_extra_attributes(settings, tmp_path):
    import pyarrow as pa
    import pyarrow.csv as pcsv

    from atelier.data.generate import world_tables
    from atelier.data.importer import import_files
    from atelier.data.world import WorldSpec
    from atelier.features import repo
    from atelier.features.pipeline import compute_features
    from atelier.models.recommend.train import train_region
    from atelier.models.recommend.two_tower import TrainConfig

    w = world_tables(WorldSpec(clients=400, products=64, events_per_client=30))
    n = w["clients"].num_rows
    clients = w["clients"].drop(["join_date", "tier"]).append_column("clienteling_score", pa.array(np.linspace(0, 1, n).round(3))).append_column("home_boutique", pa.array([f"B{i % 5}" for i in range(n)]))
    products = w["products"].drop(["countries", "collection"]).append_column("limited_edition", pa.array([bool(i % 3 == 0) for i in range(w["products"].num_rows)]))
    for name, table in (("clients", clients), ("products", products), ("events", w["events"])):
        pcsv.write_csv(table, tmp_path / f"{name}.csv")
    import_files(settings, tmp_path / "clients.csv", tmp_path / "products.csv", tmp_path / "events.csv")
    compute_features(settings, "eu")
    repo.apply(settings, "eu")
    result = train_region(settings, "eu", TrainConfig(epochs=1, embedding_dim=16, batch_size=128, eval_weeks=4), export_model=False)
    query = {s.name: s.kind for s in result.model.query_tower.specs}
    candidate = {s.name: s.kind for s in result.model.candidate_tower.specs}
    assert query["clienteling_score"] == "numeric" and query["home_boutique"] == "categorical" and "tier" not in query
    assert candidate["limited_edition"] == "categorical" and "collection" not in candidate
    assert "home_boutique" in result.model.query_tower.embeddings and "limited_edition" in result.model.candidate_tower.embeddings
    assert result.metrics["model"]["clients"] > 0 and np.isfinite(result.metrics["training"]["loss"]).all()


def test_model_selection_never_reads_the_test_weeks(settings):
    """Poison the test weeks (every purchase there becomes a random product): no choice changes.

    The choices (EASE's λ, the two-tower's epochs) and the whole validation table must come out
    the same; the test table must not, or the poison did not reach what the report reads.
    """
    import pandas as pd
    import pyarrow as pa

    from atelier.features import repo
    from atelier.features.pipeline import compute_features
    from atelier.models.recommend import dataset as ds
    from atelier.models.recommend.train import train_region
    from atelier.models.recommend.two_tower import TrainConfig
    from atelier.protect.keys import key_store
    from atelier.protect.parquet import read_dataset, write_dataset

    config = TrainConfig(epochs=3, embedding_dim=16, batch_size=128, learning_rate=0.01, eval_weeks=6)
    repo.apply(settings, "eu")
    clean = train_region(settings, "eu", config, export_model=False).metrics

    path, keys = settings.paths.client_table("events", "eu"), key_store(settings, "eu")
    events = read_dataset(path, keys)
    test_cutoff = pd.Timestamp(clean["windows"]["test_cutoff"])
    late = (events.column("event_timestamp").to_pandas() >= test_cutoff).to_numpy()
    products = read_dataset(settings.paths.catalog("products"), None, columns=["product_id"]).column("product_id").to_pylist()
    rng = np.random.default_rng(0)
    poisoned = [products[rng.integers(len(products))] if is_late else p for p, is_late in zip(events.column("product_id").to_pylist(), late)]
    assert late.sum() > 20
    write_dataset(path, events.set_column(events.schema.get_field_index("product_id"), "product_id", pa.array(poisoned)), keys)
    compute_features(settings, "eu")
    poison = train_region(settings, "eu", config, export_model=False).metrics

    assert poison["choices"] == clean["choices"]
    assert poison["validation"] == clean["validation"]
    assert poison["test"] != clean["test"]
    assert ds.Windows.of(pd.Timestamp(clean["windows"]["end"]) - pd.Timedelta(days=1), 6).to_json() == clean["windows"]


def test_signatures_called_flat_answer_as_called_by_keyword(model_world):
    """The serving path calls exported signatures positionally (models.signatures); same numbers as the keyword call."""
    import tensorflow as tf

    from atelier.models.recommend import ranking
    from atelier.models.signatures import Signature

    _, result = model_world
    loaded = _loaded(model_world)
    assert loaded.embed_fn.fast, "this TensorFlow has ConcreteFunction._call_flat: the fast path must be the one in use"
    queries = result.data.eval.query
    slow = Signature(loaded.embed_fn.signature, fast=False)
    assert not slow.fast
    np.testing.assert_array_equal(loaded.embed_fn(queries)["embedding"].numpy(), slow(queries)["embedding"].numpy())
    stage = ranking.load_stage(loaded.path / "ranking")
    rows = np.random.default_rng(0).normal(size=(7, len(ranking.FEATURES))).astype(np.float32)
    by_keyword = stage.scorer.signature(features=tf.constant(rows))["score"].numpy()
    np.testing.assert_array_equal(ranking.score(stage.scorer, rows), by_keyword)
    # a missing input is named, not a TensorFlow error about positions
    with pytest.raises(KeyError, match="client_id"):
        loaded.embed_fn({k: v for k, v in queries.items() if k != "client_id"})


def test_the_ranking_stage_learns_from_a_tower_that_never_saw_its_label_weeks(model_world):
    """The ranker reads the tower's scores; on its training windows they come from a tower fitted
    before the first of them (the served tower has seen those weeks and would teach it to trust
    the tower too much). Clients first seen in those weeks are unknown to that tower."""
    import pandas as pd

    from atelier.context import RegionContext
    from atelier.models.recommend import dataset as ds

    home, result = model_world
    c = result.metrics["choices"]
    starts = pd.to_datetime(c["ranking_windows"])
    assert len(starts) >= 2, "the model world is long enough for several ranking windows"
    before = pd.Timestamp(c["ranking_tower_before"])
    assert before == starts.min()
    events = ds.read_events(RegionContext.of(Settings(home=home), "eu"))
    first_seen = events.dropna(subset=["client_id"]).groupby("client_id")["event_timestamp"].min()
    late = set(first_seen[first_seen >= before].index)
    assert len(late) > 10, "clients arrive during the ranker's windows"
    ranker_known = set(result.ranking_tower.model.query_tower.id_lookup.get_vocabulary()[1:])
    served_known = set(result.model.query_tower.id_lookup.get_vocabulary()[1:])
    assert not late & ranker_known
    assert late & served_known, "the served tower, fitted later, knows them"


def test_windows_without_a_purchase_are_refused_with_the_reason():
    """A window with nothing to choose on or to measure with stops training before any work, and
    says why: here views received in real time weeks after the last imported purchase."""
    import pandas as pd

    from atelier.errors import AtelierError
    from atelier.models.recommend.dataset import windows

    days = pd.date_range("2026-01-01", "2026-03-31", freq="D", tz="UTC")
    bought = pd.DataFrame({"client_id": "c1", "product_id": "p1", "event_type": "purchase", "event_timestamp": days})
    w = windows(bought, 4)
    assert (w.validation_cutoff, w.test_cutoff, w.end) == tuple(pd.Timestamp(d, tz="UTC") for d in ("2026-02-04", "2026-03-04", "2026-04-01"))
    late = pd.concat([bought, pd.DataFrame({"client_id": ["c1"], "product_id": ["p1"], "event_type": ["view"], "event_timestamp": [pd.Timestamp("2026-06-01 10:00", tz="UTC")]})])
    with pytest.raises(AtelierError, match=r"the validation weeks \(2026-04-07 to 2026-05-04\) hold no purchase.*last purchase of a known client is 2026-03-31") as e:
        windows(late, 4)
    assert "import the events" in e.value.fix
    anonymous = bought.assign(client_id=None)
    with pytest.raises(AtelierError, match="validation weeks"):
        windows(anonymous, 4)


def test_a_refused_training_leaves_no_run_behind(settings):
    """A view received in real time months after the last purchase leaves the validation weeks
    empty: `train_region` refuses before writing anything, not even an empty run folder."""
    import datetime as dt

    import pyarrow as pa

    from atelier.context import RegionContext
    from atelier.errors import AtelierError
    from atelier.events import journal
    from atelier.models.recommend.train import train_region
    from atelier.protect.residency import roster

    ctx = RegionContext.of(settings, "eu")
    late = dt.datetime(2031, 1, 1, tzinfo=dt.timezone.utc)
    row = {"event_id": "late-view", "client_id": roster(settings, "eu")[0].as_py(), "product_id": "P0000001", "event_type": "view",
           "event_timestamp": late, "channel": "web", "store_id": None, "country": None, "quantity": 1, "amount": None, "received_at": late}
    journal.Journal(ctx).append(pa.Table.from_pylist([row], schema=journal.SCHEMA))
    runs = settings.paths.runs("eu")
    before = sorted(p.name for p in runs.iterdir()) if runs.exists() else []
    with pytest.raises(AtelierError, match="validation weeks"):
        train_region(settings, "eu", export_model=False)
    assert (sorted(p.name for p in runs.iterdir()) if runs.exists() else []) == before


def test_the_ranking_stage_answered_a_block_of_clients_at_a_time_scores_each_client_as_all_at_once(model_world, monkeypatch):
    """Training measures what /recommend would answer (`_served`) a block of clients at a time, so
    no clients x catalog matrix is held: a client's answer is the same in blocks of 5 as in one."""
    import pandas as pd

    from atelier.context import RegionContext
    from atelier.models.recommend import evaluate, ranking, train
    from atelier.models.recommend.ranking.window import ranking_window

    home, result = model_world
    data, w = result.data, result.metrics["windows"]
    window = ranking_window(RegionContext.of(Settings(home=home), "eu"), data, pd.Timestamp(w["test_cutoff"]), pd.Timestamp(w["end"]),
                               result.metrics["choices"]["ease_lambda"], client_ids=data.eval.client_ids)
    assert window.warm.any() and not window.warm.all(), "both the ranked answer and the fallback are measured"
    scorer, _ = ranking.fit([], 0)  # any scorer: what is pinned is that a block changes nothing
    from atelier.models.recommend import compare

    served = train._served(window, scorer, train._retrieval(result.model, data), compare.Contenders(data, True), exclude_purchased=True)
    assert served.shape == (len(data.eval.client_ids), len(data.products))
    dense = served.dense()
    by_five = np.concatenate([served[a : a + 5] for a in range(0, len(dense), 5)])
    # The tower's scores are a matrix product, which rounds by block size: a near-tie at the end of
    # a client's tower list can move a candidate's place feature, and nothing else may differ.
    assert np.isclose(by_five, dense, rtol=1e-5).mean() > 0.999
    whole = top_k(dense, 100, data.eval.bought_before)
    monkeypatch.setattr(evaluate, "BLOCK_ROWS", 5)
    assert (top_k(served, 100, data.eval.bought_before) == whole).mean() > 0.999
    # The others get the service's fallback: their country's best-sellers blended with the region's.
    from atelier.models.recommend import baselines as bl

    cold = np.flatnonzero(~window.warm)
    fallback = bl.Fallback(data.popularity, bl.country_counts(bl.History.before(data.purchases, pd.Timestamp(w["test_cutoff"]), len(data.products))))
    assert fallback.counts and set(data.eval.country[cold]) & set(fallback.counts), "some cold clients' countries have a list of their own"
    np.testing.assert_array_equal(whole[cold], top_k(np.stack([fallback.scores(data.eval.country[i]) for i in cold]), 100,
                                                     [data.eval.bought_before[i] for i in cold]))


def test_a_ranking_window_sampled_to_a_few_buyers_holds_those_buyers_as_the_whole_window_does(model_world):
    """The ranker's lists of a large region are drawn from a sample of each window's buyers
    (`TrainConfig.ranking_lists`): a seeded draw, in id order, whose clients carry the same truth,
    history and features as in the whole window; a sample as large as the window is the window."""
    import pandas as pd

    from atelier.context import RegionContext
    from atelier.models.recommend.ranking.window import ranking_window

    home, result = model_world
    ctx, data, w = RegionContext.of(Settings(home=home), "eu"), result.data, result.metrics["windows"]
    start, end, lam = pd.Timestamp(w["test_cutoff"]), pd.Timestamp(w["end"]), result.metrics["choices"]["ease_lambda"]
    whole = ranking_window(ctx, data, start, end, lam)
    n = len(whole.client_ids)
    assert n > 40, "enough buyers to sample"
    few = ranking_window(ctx, data, start, end, lam, most=n // 4, seed=3)
    assert len(few.client_ids) == n // 4 and list(few.client_ids) == sorted(few.client_ids)
    at = {c: i for i, c in enumerate(whole.client_ids)}
    rows = [at[c] for c in few.client_ids]  # every sampled client is one of the window's buyers
    for i, r in enumerate(rows):
        np.testing.assert_array_equal(few.truth[i], whole.truth[r])
        np.testing.assert_array_equal(few.bought_before[i], whole.bought_before[r])
        np.testing.assert_array_equal(few.clients.history[i], whole.clients.history[r])
    np.testing.assert_array_equal(few.warm, whole.warm[rows])
    np.testing.assert_array_equal(few.clients.purchases_365d, whole.clients.purchases_365d[rows])
    again = ranking_window(ctx, data, start, end, lam, most=n // 4, seed=3)
    np.testing.assert_array_equal(again.client_ids, few.client_ids)
    other = ranking_window(ctx, data, start, end, lam, most=n // 4, seed=4)
    assert list(other.client_ids) != list(few.client_ids)
    np.testing.assert_array_equal(ranking_window(ctx, data, start, end, lam, most=n).client_ids, whole.client_ids)


def test_the_ranking_stage_learns_from_at_most_ranking_lists_buyers_per_window(model_world):
    """`TrainConfig.ranking_lists` bounds each label window's lists, whatever the region's size."""
    import pandas as pd

    from atelier.context import RegionContext
    from atelier.models.progress import Steps
    from atelier.models.recommend import train
    from atelier.models.recommend.two_tower import TrainConfig

    home, result = model_world
    ctx, data, m = RegionContext.of(Settings(home=home), "eu"), result.data, result.metrics
    config = TrainConfig(**m["config"])
    cutoff, lam = pd.Timestamp(m["windows"]["test_cutoff"]), m["choices"]["ease_lambda"]
    whole = train._ranking_lists(ctx, data, cutoff, config, lam, result.ranking_tower, Steps())
    assert len(whole) >= 2 and max(len(w.labels) for w in whole) > 12, "windows with more lists than the cap below"
    capped = train._ranking_lists(ctx, data, cutoff, config.model_copy(update={"ranking_lists": 12}), lam, result.ranking_tower, Steps())
    assert len(capped) == len(whole)
    assert all(0 < len(w.labels) <= 12 for w in capped)


def test_a_fitted_model_keeps_neither_its_examples_nor_their_parts(settings):
    """Once a fit is over and its data lets go of the examples, they are freed, and their scratch
    parts removed: TensorFlow keeps what a dataset's generator refers to until the process ends,
    so every earlier fit's training set sat under the refit's build."""
    import gc
    import weakref

    from atelier.context import RegionContext
    from atelier.features import repo
    from atelier.models.recommend import dataset as ds
    from atelier.models.recommend.two_tower import TrainConfig, fit

    repo.apply(settings, "eu")
    ctx = RegionContext.of(settings, "eu")
    events = ds.read_events(ctx)
    w = ds.windows(events, 4)
    config = TrainConfig(epochs=2, embedding_dim=16, batch_size=128)
    data = ds.build(ctx, cutoff=w.validation_cutoff, end=w.test_cutoff, events=events, event_weights=config.event_weights)
    scratch = data.train.parts.path
    assert scratch.is_dir() and data.train.parts.parts
    model, history = fit(data, config)
    assert history["epochs"] == 2 and np.isfinite(history["loss"]).all()
    examples = weakref.ref(data.train)
    data.train = None
    gc.collect()
    assert examples() is None, [type(r).__name__ for r in gc.get_referrers(examples())]
    assert not scratch.exists()
    assert len(embed(model.query_tower, data.eval.query)) == len(data.eval.client_ids)  # the model itself is whole
