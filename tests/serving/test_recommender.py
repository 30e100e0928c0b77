"""The serving logic without HTTP, on the embedded store: filters, exclusions, fallbacks."""

import datetime as dt
import shutil

import numpy as np
import pytest
from feast.permissions.user import User

from atelier.errors import AtelierError
from atelier.features import repo
from atelier.features.online import OnlineFeatures
from atelier.models.store import use_bentoml_home
from atelier.serving.recommender import PURCHASED, Query
from atelier.serving.runtime import serving_context, start
from atelier.settings import Settings

NOW = dt.datetime(2026, 11, 28, tzinfo=dt.timezone.utc)


@pytest.fixture(scope="module")
def engine(model_world, tmp_path_factory):
    src, result = model_world
    home = tmp_path_factory.mktemp("recommender") / "home"
    shutil.copytree(src, home)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ATELIER_HOME", str(home))
        mp.setenv("ATELIER_ONLINE_STORE", "sqlite")
        s = Settings(home=home)
        repo.materialize(s, "eu", end=NOW, incremental=False)
        use_bentoml_home(s)
        import bentoml

        yield start(serving_context(s, "eu"), bentoml.models.get(result.tag).path, result.tag), s


def test_a_model_serves_only_its_own_region(model_world, engine):
    _, result = model_world
    eng, s = engine
    with pytest.raises(AtelierError, match="trained for region 'eu', not 'us'") as e:
        start(serving_context(s, "us"), eng.model.path, result.tag)
    assert "its own model" in e.value.fix


def _client(engine, with_purchases=True):
    eng, s = engine
    reader = OnlineFeatures(repo.feature_store(s, "eu"), [PURCHASED])
    for i in range(3000):
        row = reader.get_one(f"EU{i:08d}")
        if row and (bool(row["purchased_products"]) == with_purchases):
            return f"EU{i:08d}", row["purchased_products"]
    raise AssertionError("no such client")


def test_known_client_gets_personal_items_without_what_it_bought(engine):
    eng, _ = engine
    cid, bought = _client(engine)
    [answer] = eng.recommend([Query(cid, k=10)])
    assert answer.error is None and answer.fallback is False and len(answer.items) == 10
    assert not {i["product_id"] for i in answer.items} & set(bought)
    [keep] = eng.recommend([Query(cid, k=200, exclude_purchased=False)])
    assert {i["product_id"] for i in keep.items} >= set(bought)


def test_a_batch_mixes_known_unknown_and_refused_clients(engine):
    eng, _ = engine
    cid, _ = _client(engine)
    answers = eng.recommend([Query(cid, 3), Query("EU99999999", 3), Query("US00000001", 3), Query(cid, 3, maison="nope")])
    assert [a.fallback for a in answers[:3]] == [False, True, True]  # another region's client: not held here
    assert answers[2].error is None
    assert answers[3].error.status == 422 and "cognac-marceau" in answers[3].error.message
    assert answers[0].timings["batch"] == 4


def test_a_client_the_store_does_not_hold_gets_the_best_sellers_of_the_country_named(engine):
    """A new client in a French boutique gets France's recent best-sellers (among what is sold in
    France), not the region's: the list offline evaluation scores as what the service answers."""
    from atelier.models.recommend.baselines import country_blend

    eng, _ = engine
    counts = eng.model.country_popularity
    assert counts and all(len(v) == len(eng.catalog.ids) for v in counts.values()), "the model exports each country's recent purchases"
    region = eng.popularity.scores
    differs = []
    for country in sorted(counts):
        allowed = eng.catalog.allowed(None, country)
        blend = country_blend(counts[country], region)
        expected = list(eng.catalog.ids[allowed[np.argsort(-blend[allowed], kind="stable")][:5]])
        [plain, named] = eng.recommend([Query("EU99999999", 5, country=None), Query("EU99999999", 5, country=country)])
        assert plain.fallback and named.fallback and named.error is None
        assert [i["product_id"] for i in named.items] == expected, country
        differs.append(expected != list(eng.catalog.ids[allowed[np.argsort(-region[allowed], kind="stable")][:5]]))
    assert any(differs), "some country's best-sellers differ from the region's (else this test shows nothing)"
    # A country the model has no recent purchases for: the region's order, within what is sold there.
    [other] = eng.recommend([Query("EU99999999", 5, country="JP")])
    allowed = eng.catalog.allowed(None, "JP")
    assert "JP" not in counts and [i["product_id"] for i in other.items] == list(eng.catalog.ids[allowed[np.argsort(-region[allowed], kind="stable")][:5]])


def test_filters_return_k_items_whenever_k_exist(engine):
    eng, _ = engine
    cid, _ = _client(engine)
    for maison in eng.catalog.maisons:
        available = len(eng.catalog.by_maison[maison])
        [a] = eng.recommend([Query(cid, k=100, maison=maison, exclude_purchased=False)])
        assert len(a.items) == min(100, available) and {i["maison"] for i in a.items} == {maison}
    sold_in_jp = eng.catalog.allowed(None, "JP")
    [a] = eng.recommend([Query(cid, k=100, country="JP", exclude_purchased=False)])
    assert len(a.items) == min(100, len(sold_in_jp))
    assert {eng.catalog.index[i["product_id"]] for i in a.items} <= set(sold_in_jp.tolist())


def test_over_fetch_finds_k_when_the_approximate_index_alone_would_not(engine, monkeypatch):
    eng, _ = engine
    cid, _ = _client(engine)
    monkeypatch.setattr("atelier.serving.recommender.EXACT_BELOW", 0)  # force the index path
    rare = min(eng.catalog.maisons, key=lambda m: len(eng.catalog.by_maison[m]))
    [a] = eng.recommend([Query(cid, k=100, maison=rare, exclude_purchased=False)])
    assert len(a.items) == len(eng.catalog.by_maison[rare])


def test_store_failure_answers_with_popularity(engine, monkeypatch):
    eng, _ = engine
    cid, _ = _client(engine)
    monkeypatch.setattr(eng.features, "get", lambda ids: (_ for _ in ()).throw(ConnectionError("store down")))
    [a] = eng.recommend([Query(cid, 5)])
    assert a.fallback is True and len(a.items) == 5
    order = np.argsort(-eng.popularity.scores, kind="stable")[:5]
    assert [i["product_id"] for i in a.items] == list(eng.catalog.ids[order])


def test_popularity_comes_from_the_online_store(engine):
    eng, _ = engine
    assert eng.popularity.source == "online store" and eng.popularity.scores.max() > 0


def test_similar_and_unknown_product(engine):
    eng, _ = engine
    items = eng.similar("P0000003", 5)
    assert len(items) == 5 and "P0000003" not in {i["product_id"] for i in items}
    with pytest.raises(Exception, match="unknown product"):
        eng.similar("P404", 5)


def test_service_reads_with_the_service_role_only(engine):
    _, s = engine
    from atelier.protect.access import PermissionDenied

    store = repo.feature_store(s, "eu")
    with pytest.raises(PermissionDenied):
        OnlineFeatures(store, ["lumiere_de_grasse_engagement:maison_spend_365d"], user=User("recommender-eu", ["service:recommender"]))


@pytest.mark.slow
def test_plain_ids_and_country_names_work_end_to_end(settings, tmp_path):
    """Ids without any region in them and countries as English names: import, features, train, serve."""
    import pyarrow as pa
    import pyarrow.csv as pcsv

    from atelier.data.generate import world_tables
    from atelier.data.importer import import_files
    from atelier.data.world import WorldSpec
    from atelier.features.pipeline import compute_features
    from atelier.models.recommend.train import train_region
    from atelier.models.recommend.two_tower import TrainConfig
    from atelier.protect.residency import roster

    w = world_tables(WorldSpec(clients=600, products=60, events_per_client=30))
    plain = {c: f"client-{i * 37 % 1000:04d}" for i, c in enumerate(w["clients"].column("client_id").to_pylist())}
    names = {"FR": "France", "DE": "Germany", "GB": "United Kingdom", "US": "United States", "JP": "Japan", "IT": "Italy"}
    clients = w["clients"].drop(["join_date"])
    clients = clients.set_column(0, "client_id", pa.array([plain[c] for c in clients.column("client_id").to_pylist()]))
    clients = clients.set_column(1, "country", pa.array([names.get(c, c) for c in clients.column("country").to_pylist()]))
    events = w["events"].set_column(0, "client_id", pa.array([plain[c] for c in w["events"].column("client_id").to_pylist()]))
    for name, table in (("clients", clients), ("products", w["products"].drop(["countries"])), ("events", events)):
        pcsv.write_csv(table, tmp_path / f"{name}.csv")
    import_files(settings, tmp_path / "clients.csv", tmp_path / "products.csv", tmp_path / "events.csv")
    for r in ("eu", "us"):
        compute_features(settings, r)
        repo.apply(settings, r)
    result = train_region(settings, "eu", TrainConfig(epochs=2, embedding_dim=16, batch_size=128, eval_weeks=4, ranking_windows=2, ranking_epochs=2, serve="ranked"))
    repo.materialize(settings, "eu", end=NOW, incremental=False)
    use_bentoml_home(settings)
    import bentoml

    eng = start(serving_context(settings, "eu"), bentoml.models.get(result.tag).path, result.tag)
    eu, us = roster(settings, "eu").to_pylist(), roster(settings, "us").to_pylist()
    assert eu and us and all(c.startswith("client-") for c in eu + us)
    reader = OnlineFeatures(repo.feature_store(settings, "eu"), [PURCHASED])
    known = next(c for c in eu if (reader.get_one(c) or {}).get("purchased_products"))
    mine, theirs = eng.recommend([Query(known, 5), Query(us[0], 5)])
    assert mine.error is None and mine.fallback is False and len(mine.items) == 5
    assert theirs.error is None and theirs.fallback is True  # the eu service holds no us client
    assert {"retrieval_ms", "ranking_ms", "filters_ms"} <= set(mine.timings)
