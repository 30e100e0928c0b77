"""The ranking stage's view of the two-tower and of the client's recent products: the features it
reads, and stages exported before them."""

import numpy as np
import pandas as pd

from atelier.models.recommend import ranking
from atelier.models.recommend.ranking import learn


def _view(products=40, dim=6, seed=0):
    rng = np.random.default_rng(seed)
    catalog = rng.normal(size=(products, dim)).astype(np.float32)
    queries = rng.normal(size=(3, dim)).astype(np.float32)
    return ranking.TowerView.of(catalog), queries


def test_tower_z_is_the_score_standardized_over_the_clients_whole_catalog():
    """Computed from the catalog's mean and covariance, it must equal the z-score over every product."""
    view, queries = _view()
    rows = np.array([0, 0, 1, 2, 2, 2])
    items = np.array([3, 17, 0, 39, 5, 5])
    scores = queries @ view.catalog.T
    expected = (scores[rows, items] - scores.mean(1)[rows]) / scores.std(1)[rows]
    np.testing.assert_allclose(view.z(queries, rows, items, chunk=4), expected, rtol=1e-4, atol=1e-5)
    # a client whose best product this is sits far above its catalog's mean
    best = scores[1].argmax()
    assert view.z(queries, np.array([1]), np.array([best]))[0] > 1.5


def test_tower_place_counts_after_the_bought_products_are_left_out():
    """tower_rank is the candidate's place in the tower's list once the client's purchases are
    removed, the same in training (exact lists) and serving (lists fetched with room for them)."""
    view, queries = _view()
    ctx = _context(products=40)
    clients = ranking.Clients([np.array([7, 9])], np.array([2.0], np.float32), np.array([3.0], np.float32), np.array(["FR"], object))
    exclude = [np.array([7, 9])]
    listed = [np.array([9, 4, 7, 12, 30])]  # 9 and 7 bought: the tower's list is 4, 12, 30
    tower = ranking.Retrieved.of(view, queries[:1], listed, exclude)
    prep = ranking.prepare(ctx, clients)
    cands = ranking.candidates(ctx, prep, exclude, tower)
    assert {4, 12, 30} <= set(cands[0]) and not {7, 9} & set(cands[0])
    f = ranking.features(ctx, prep, cands, tower)
    place = dict(zip(cands[0].tolist(), np.expm1(f[:, ranking.FEATURES.index("tower_rank")]).round().astype(int)))
    assert (place[4], place[12], place[30]) == (0, 1, 2)
    assert all(v == ranking.FROM_TOWER for p, v in place.items() if p not in (4, 12, 30))
    z = f[:, ranking.FEATURES.index("tower_z")]
    np.testing.assert_allclose(z, view.z(queries[:1], np.zeros(len(cands[0]), int), cands[0]), rtol=1e-5)


def test_loyalty_price_and_recent_views_by_hand():
    """maison_share, price_gap and recently_seen against a hand computation on four products.

    Products 0 and 1 are of maison 0, 2 of maison 1, 3 has no maison; prices 100, 400, 50, none.
    Client 0 bought 0 and 2 and last saw 1, 1, 2; client 1 has no history and saw nothing."""
    ctx = _context(products=4)
    ctx.maison = np.array([0, 0, 1, -1], np.int32)
    ctx.log_price = np.log(np.array([100, 400, 50, np.nan])).astype(np.float32)
    clients = ranking.Clients([np.array([0, 2]), np.zeros(0, np.int64)], np.array([2.0, 0.0], np.float32), np.array([3.0, 3650.0], np.float32),
                              np.array(["FR", "FR"], object), recent=[np.array([1, 1, 2]), np.zeros(0, np.int64)])
    prep = ranking.prepare(ctx, clients)
    cands = [np.array([1, 2, 3]), np.array([1])]
    f = ranking.features(ctx, prep, cands)
    col = lambda name: f[:, ranking.FEATURES.index(name)]  # noqa: E731
    np.testing.assert_allclose(col("maison_share"), [1 / 2, 1 / 2, 0, 0])
    np.testing.assert_allclose(col("maison_share_recent"), [2 / 3, 1 / 3, 0, 0], rtol=1e-6)
    bought_mean, seen_mean = np.log([100, 50]).mean(), np.log([400, 400, 50]).mean()
    np.testing.assert_allclose(col("price_gap"), [np.log(400) - bought_mean, np.log(50) - bought_mean, 0, 0], rtol=1e-5)
    np.testing.assert_allclose(col("price_gap_recent"), [np.log(400) - seen_mean, np.log(50) - seen_mean, 0, 0], rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(col("recently_seen"), [2, 1, 0, 0])


def test_the_products_a_client_saw_are_candidates_unless_excluded():
    """Product 3 sells nowhere and links to nothing: only the client's recent views bring it in."""
    ctx = _context(products=4)
    ctx.popularity = {name: np.array([5, 5, 5, 0], np.float32) for name in ranking.POPULARITY}
    nothing = np.zeros(0, np.int64)
    seer = lambda recent: ranking.Clients([nothing], np.zeros(1, np.float32), np.zeros(1, np.float32), np.array([""], object), recent=recent)  # noqa: E731
    found = lambda clients, exclude: ranking.candidates(ctx, ranking.prepare(ctx, clients), exclude)[0]  # noqa: E731
    assert 3 not in found(seer(None), None)
    assert 3 in found(seer([np.array([3])]), None)
    assert 3 not in found(seer([np.array([3])]), [np.array([3])])


def test_a_stage_exported_before_the_tower_features_still_scores(tmp_path):
    """A model in the store whose scorer knows the first 16 features is given those columns."""
    rng = np.random.default_rng(1)
    old = ranking.Scorer(seed=3)
    old.norm.adapt(rng.normal(size=(50, len(ranking.FEATURES_V1))).astype(np.float32))
    ranking.save_stage(old, _context(products=10), tmp_path / "stage", names=ranking.FEATURES_V1)
    stage = ranking.load_stage(tmp_path / "stage")
    rows = rng.normal(size=(5, len(ranking.FEATURES))).astype(np.float32)
    np.testing.assert_allclose(ranking.score(stage.scorer, rows), old(rows[:, :16]).numpy(), rtol=1e-5, atol=1e-6)
    new = ranking.Scorer(seed=3)
    new.norm.adapt(rng.normal(size=(50, len(ranking.FEATURES))).astype(np.float32))
    ranking.save_stage(new, _context(products=10), tmp_path / "current")
    current = ranking.load_stage(tmp_path / "current")
    np.testing.assert_allclose(ranking.score(current.scorer, rows), new(rows).numpy(), rtol=1e-5, atol=1e-6)
    # a stage trained without the last products seen is served without them, candidates included
    assert not stage.reads_recent and current.reads_recent


def _context(products: int) -> ranking.Context:
    from atelier.models.recommend.baselines import History
    from atelier.models.recommend.copurchase import CoPurchase

    rng = np.random.default_rng(2)
    n = 300
    purchases = pd.DataFrame({"client_id": [f"c{i}" for i in rng.integers(0, 30, n)], "product": rng.integers(0, products, n),
                              "event_timestamp": pd.Timestamp("2026-01-01", tz="UTC") + pd.to_timedelta(np.sort(rng.integers(0, 10**6, n)), unit="s"),
                              "country": "FR"})
    history = History.before(purchases, pd.Timestamp("2027-01-01", tz="UTC"), products)
    pop = {name: rng.integers(0, 20, products).astype(np.float32) for name in ranking.POPULARITY}
    return ranking.Context(CoPurchase.fit(history, None), CoPurchase.fit(history, None), pop,
                           {"FR": np.full(products, 1 / products, np.float32)}, np.arange(products, dtype=np.float32))


def test_training_lists_keep_the_clients_whose_candidates_hold_a_purchase_padded_to_the_longest_kept():
    f = np.arange(7 * 2, dtype=np.float32).reshape(7, 2)  # rows: client 0's 3 candidates, client 1's 2, client 2's 2
    cands = [np.array([4, 5, 6]), np.array([1, 2]), np.array([8, 9])]
    truth = [np.array([9]), np.array([2, 1, 7]), np.array([9])]  # client 0 bought none of its candidates
    lists = ranking.Lists.of(f, cands, truth)
    assert lists.features.shape == (2, 2, 2)  # the 3-long list was dropped, so 2 is the longest
    np.testing.assert_array_equal(lists.features[0], f[3:5])
    np.testing.assert_array_equal(lists.features[1], f[5:7])
    np.testing.assert_array_equal(lists.labels, [[0.5, 0.5], [0, 1]])
    assert lists.mask.all()
    one = ranking.Lists.of(f[:5], cands[:2], [np.array([4]), np.array([2])])
    np.testing.assert_array_equal(one.mask, [[True, True, True], [True, True, False]])
    np.testing.assert_array_equal(one.features[1, 2], [0, 0])
    assert ranking.Lists.of(f[:3], cands[:1], [np.array([0])]).labels.shape == (0, 1)


def _clients_with_a_tower(rng, n: int, products: int = 40):
    """(context, `n` clients, each one's first listed product excluded, the tower's view of them)."""
    view, _ = _view(products=products)
    clients = ranking.Clients([rng.choice(products, rng.integers(1, 6), replace=False) for _ in range(n)], rng.integers(1, 5, n).astype(np.float32),
                              rng.uniform(1, 90, n).astype(np.float32), np.array(["FR"] * n, object),
                              recent=[rng.choice(products, 3, replace=False) for _ in range(n)])
    exclude = [h[:1] for h in clients.history]
    queries = rng.normal(size=(n, 6)).astype(np.float32)
    tower = ranking.Retrieved.of(view, queries, ranking.tower_lists(queries @ view.catalog.T, exclude), exclude)
    return _context(products=products), clients, exclude, tower


def test_training_lists_built_a_few_clients_at_a_time_are_those_built_at_once():
    """`training_lists` builds a window's pairs a block of clients at a time (a whole window's were
    gigabytes at scale); the lists, their padding and their order are those of one block."""
    rng = np.random.default_rng(5)
    n = 9
    ctx, clients, exclude, tower = _clients_with_a_tower(rng, n)
    truth = [exclude[u] if u % 3 == 0 else rng.choice(40, 2, replace=False) for u in range(n)]  # bought again: never a candidate
    whole = ranking.training_lists(ctx, clients, truth, exclude, tower, block=n)
    blocks = ranking.training_lists(ctx, clients, truth, exclude, tower, block=2)
    assert len(whole.labels) == n - 3  # the clients who bought none of their candidates are left out
    for name in ("features", "labels", "mask"):
        np.testing.assert_array_equal(getattr(blocks, name), getattr(whole, name), err_msg=name)


def test_clients_ranked_a_few_at_a_time_rank_as_all_at_once():
    """`ranked_scores` builds and scores the pairs `block` clients at a time (a million pairs' features
    held 0.6 GiB at once): each client's scores are those of one block, candidates first."""
    rng = np.random.default_rng(8)
    n = 7
    ctx, clients, exclude, tower = _clients_with_a_tower(rng, n)
    scorer, _ = ranking.fit([], 0)
    fill = rng.random(40).astype(np.float32)
    whole = ranking.ranked_scores(ctx, clients, scorer, exclude, tower, fill, block=n)
    blocks = ranking.ranked_scores(ctx, clients, scorer, exclude, tower, fill, block=3)
    np.testing.assert_allclose(blocks, whole, rtol=1e-5)
    filled = (fill - fill.max() - 1e6).astype(np.float32)
    assert (blocks != filled).any(axis=1).all() and (blocks == filled).any(axis=1).all()  # each client: its candidates scored, the rest the fill's
    for u in range(n):
        assert set(np.argsort(-blocks[u])[:10]) == set(np.argsort(-whole[u])[:10])


def test_pairs_scored_a_few_at_a_time_score_as_all_at_once(monkeypatch):
    """`score` runs the scorer `SCORE_ROWS` pairs at a time (a block of clients' million pairs at
    once held 0.8 GiB of layer outputs); each pair's score is its own."""
    scorer, _ = ranking.fit([], 0)
    f = np.random.default_rng(1).normal(size=(1000, len(ranking.FEATURES))).astype(np.float32)
    whole = ranking.score(scorer, f)
    monkeypatch.setattr(learn, "SCORE_ROWS", 7)
    chunked = ranking.score(scorer, f)
    assert chunked.shape == (1000,)
    np.testing.assert_allclose(chunked, whole, rtol=1e-5, atol=1e-6)


def test_a_fitted_scorer_keeps_none_of_the_lists_it_learned_from():
    """TensorFlow keeps a `from_generator` dataset's function, and what it refers to, until the
    process ends: the normalization's pass over the lists must not keep them (eu of the 52M-event
    world: some 1.1 GiB of the selection's lists, held under the refit's build)."""
    import gc
    import weakref

    rng = np.random.default_rng(5)
    ctx, clients, exclude, tower = _clients_with_a_tower(rng, 40)
    truth = [np.concatenate([tower.lists[i][:2], clients.history[i][1:2]]) for i in range(40)]
    lists = ranking.training_lists(ctx, clients, truth, exclude, tower)
    assert len(lists.labels) > 10
    features = weakref.ref(lists.features)
    pairs = lists.features[lists.mask]  # a copy: the validation's, not the lists'
    scorer, history = ranking.fit([lists], 2, validation=lambda s: float(ranking.score(s, pairs).std()))
    assert len(history["validation"]) == 2 and history["lists"] == len(lists.labels)
    del lists
    gc.collect()
    assert features() is None
    assert np.isfinite(ranking.score(scorer, np.ones((3, len(ranking.FEATURES)), np.float32))).all()
