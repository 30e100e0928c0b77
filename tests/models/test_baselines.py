"""The baselines match a hand computation on a tiny example.

Three clients, three products, purchases before the cut-off:

    client a: p0, p1        X = [[1, 1, 0],
    client b: p1, p2             [0, 1, 1],
    client c: p0                 [1, 0, 0]]

    XᵀX = [[2, 1, 0],        co-purchase counts; the diagonal is how many clients bought each
           [1, 2, 1],
           [0, 1, 1]]
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from atelier.models.recommend import baselines as bl
from atelier.models.recommend.evaluate import group_metrics

CUTOFF = pd.Timestamp("2026-03-01", tz="UTC")


def _history(rows: list[tuple[str | None, int, str, str]]) -> bl.History:
    purchases = pd.DataFrame(rows, columns=["client_id", "product", "day", "country"])
    purchases["event_timestamp"] = pd.to_datetime(purchases.pop("day"), utc=True)
    return bl.History.before(purchases, CUTOFF, products=3)


@pytest.fixture
def h() -> bl.History:
    return _history([
        ("a", 0, "2026-02-01", "FR"), ("a", 1, "2026-02-02", "FR"),
        ("b", 1, "2026-02-20", "DE"), ("b", 2, "2026-02-21", "DE"),
        ("c", 0, "2025-06-01", "FR"),  # long before: outside the 30 days
        (None, 2, "2026-02-25", "DE"),  # an anonymous line: popularity only
        ("a", 2, "2026-03-05", "FR"),  # after the cut-off: never seen
    ])


def test_purchase_matrix_and_gram(h):
    x = h.matrix(h.rows_of(np.array(["a", "b", "c", "new"], dtype=object)))
    np.testing.assert_array_equal(x, [[1, 1, 0], [0, 1, 1], [1, 0, 0], [0, 0, 0]])
    np.testing.assert_array_equal(h.gram(), [[2, 1, 0], [1, 2, 1], [0, 1, 1]])


def test_recent_popularity_counts_the_last_30_days_and_anonymous_lines(h):
    # p0: a's (Feb 1); p1: a's and b's; p2: b's and the anonymous line. c's purchase is too old.
    np.testing.assert_array_equal(bl.recent_popularity(h), [1, 2, 2])
    np.testing.assert_array_equal(bl.recent_popularity(h, countries=np.array(["FR"], dtype=object)), [1, 1, 0])


def test_item_knn_is_cosine_over_co_purchases(h):
    # cos(p0, p1) = 1 / sqrt(2 * 2) = 0.5; cos(p1, p2) = 1 / sqrt(2 * 1) = 0.7071; cos(p0, p2) = 0
    s = bl.ItemKNN(h).similarity
    np.testing.assert_allclose(s, [[0, 0.5, 0], [0.5, 0, 0.70710678], [0, 0.70710678, 0]], rtol=1e-6)
    # client c bought p0: its scores are row p0 of the similarity
    np.testing.assert_allclose(bl.ItemKNN(h).scores(np.array([[1, 0, 0]], np.float32)), [[0, 0.5, 0]], rtol=1e-6)
    # keeping one neighbour per product keeps the strongest
    np.testing.assert_allclose(bl.ItemKNN(h, neighbours=1).similarity, [[0, 0.5, 0], [0, 0, 0.70710678], [0, 0.70710678, 0]], rtol=1e-6)


def test_ease_matches_the_closed_form_by_hand(h):
    lam = 1.0
    # G + λI = [[3, 1, 0], [1, 3, 1], [0, 1, 2]]; its inverse P, by the adjugate (det = 13):
    p = np.array([[5, -2, 1], [-2, 6, -3], [1, -3, 8]]) / 13
    # B = I - P / diag(P) (column j divided by P_jj), with a zero diagonal: B_ij = -P_ij / P_jj
    expected = np.array([
        [0, 2 / 6, -1 / 8],
        [2 / 5, 0, 3 / 8],
        [-1 / 5, 3 / 6, 0],
    ])
    assert np.allclose(np.linalg.inv(np.array([[3, 1, 0], [1, 3, 1], [0, 1, 2]])), p)
    np.testing.assert_allclose(bl.Ease(h, lam).weights, expected, rtol=1e-5)
    # client c (bought p0) scores p1 at 2/6 and p2 at -1/8
    np.testing.assert_allclose(bl.Ease(h, lam).scores(np.array([[1, 0, 0]], np.float32)), [[0, 2 / 6, -1 / 8]], rtol=1e-5)


def test_buy_again_weighs_by_recency(h):
    # b bought p1 9 days and p2 8 days before the cut-off; half-life 90 days
    scores = bl.buy_again_scores(h, h.rows_of(np.array(["b"], dtype=object)))
    np.testing.assert_allclose(scores, [[0, 0.5 ** (9 / 90), 0.5 ** (8 / 90)]], rtol=1e-5)


def test_country_popularity_leans_on_the_region_where_the_country_buys_little(h):
    scores = bl.country_popularity_scores(h, np.array(["FR", "JP"], dtype=object), min_purchases=4)
    region = np.array([1, 2, 2]) / 5
    # FR has 2 recent purchases (p0, p1): weight 2/4 on FR's shares, 2/4 on the region's
    np.testing.assert_allclose(scores[0], 0.5 * np.array([0.5, 0.5, 0]) + 0.5 * region, rtol=1e-6)
    np.testing.assert_allclose(scores[1], region, rtol=1e-6)  # JP bought nothing: the region's list


def test_the_fallback_for_a_clients_country_is_the_country_popularity_baseline(h):
    """What the service answers a client it does not hold, from the counts exported with the
    model, is the list of the "popularity in country" baseline, for every country."""
    counts = bl.country_counts(h)
    assert set(counts) == {"FR", "DE"}  # JP bought nothing; c's FR purchase is too old
    np.testing.assert_array_equal(counts["FR"], [1, 1, 0])
    np.testing.assert_array_equal(counts["DE"], [0, 1, 2])  # b's two and the anonymous line
    region = bl.recent_popularity(h)
    fallback = bl.Fallback(region, counts)
    countries = np.array(["FR", "DE", "JP", None], dtype=object)
    baseline = bl.country_popularity_scores(h, countries)
    for i, country in enumerate(countries):  # as shares: without a country's counts the service keeps the region's own scale
        np.testing.assert_allclose(fallback.scores(country) / fallback.scores(country).sum(), baseline[i], rtol=1e-6)
    # FR bought 2 of the 50 purchases that make a list its own: 2/50 FR's shares, 48/50 the region's
    np.testing.assert_allclose(fallback.scores("FR"), 0.04 * np.array([0.5, 0.5, 0]) + 0.96 * region / 5, rtol=1e-6)
    np.testing.assert_array_equal(fallback.scores(None), region)  # no country named: the region's list
    assert list(fallback.order("DE")) == [2, 1, 0] and list(fallback.order("JP")) == list(np.argsort(-region, kind="stable"))


def test_group_metrics_split_warm_and_cold():
    ranked = np.array([[0, 1], [2, 0], [1, 2]])
    truth = [np.array([1]), np.array([1]), np.array([1, 2])]
    warm = np.array([True, True, False])
    m = group_metrics(ranked, truth, warm, products=4, ks=(1, 2))
    assert m["warm"]["recall@2"] == 0.5 and m["cold"]["recall@1"] == 0.5 and m["all"]["recall@2"] == pytest.approx(2 / 3)
    assert m["all"]["coverage@10"] == 3 / 4 and m["cold"]["coverage@10"] == 2 / 4


def test_fallback_popularity_orders_by_the_last_30_days_then_longer_windows():
    from atelier.models.recommend.baselines import fallback_popularity

    cols = {  # 4 products; the store may hold nothing (None) for some
        "purchases_30d": [2, 2, 0, None],
        "purchases_90d": [2, 5, 9, None],
        "purchases_365d": [4, 5, 9, 30],
        "views_30d": [0, 0, 0, 1],
    }
    score = fallback_popularity(cols)
    # 30 days first (products 0 and 1 tie there, 90 days breaks it), then a quiet month is ordered by 90 and 365 days
    assert list(np.argsort(-score, kind="stable")) == [1, 0, 2, 3]
    assert score[3] > 0  # a product that sold only long ago still has an order
    assert fallback_popularity({"purchases_30d": [0, 0]}).tolist() == [0.0, 0.0]


def _contenders(exclude_purchased: bool = False):
    from types import SimpleNamespace

    from atelier.models.recommend import compare

    purchases = pd.DataFrame({"client_id": ["a", "a", "b", "b", "c", "a", "c", "d"], "product": [0, 1, 1, 2, 0, 2, 1, 3],
                              "event_timestamp": pd.to_datetime(["2026-02-01", "2026-02-02", "2026-02-20", "2026-02-21", "2026-02-25",
                                                                 "2026-03-05", "2026-03-06", "2026-03-07"], utc=True),
                              "country": ["FR", "FR", "DE", "DE", "FR", "FR", "FR", "DE"]})
    ids = np.array(["a", "c", "b", "d"], object)
    data = SimpleNamespace(purchases=purchases, products=pd.DataFrame({"product_id": ["p0", "p1", "p2", "p3"]}), window={"cutoff": str(CUTOFF)},
                           eval=SimpleNamespace(client_ids=ids, bought_before=[np.array([0, 1]), np.array([0]), np.array([1, 2]), np.zeros(0, np.int64)],
                                                truth=[np.array([2]), np.array([1]), np.array([3]), np.array([3])],
                                                warm=np.array([True, True, True, False]), country=np.array(["FR", "FR", "DE", "DE"], object)))
    return compare.Contenders(data, exclude_purchased=exclude_purchased)


def test_contenders_let_xtx_go_and_measure_the_same_after():
    """XᵀX goes before the ranking stage's tower builds its own set (`Contenders.release`);
    anything asked after computes it again, to the same figures."""
    from atelier.models.recommend import compare

    val = _contenders()
    before = compare.table(val, np.zeros((4, 4), np.float32), 10.0)
    assert val._gram is not None
    val.release()
    assert val._gram is None
    assert compare.table(val, np.zeros((4, 4), np.float32), 10.0) == before


@pytest.mark.parametrize("exclude_purchased", [False, True])
def test_contenders_scored_a_block_of_clients_at_a_time_rank_as_the_whole_matrix(monkeypatch, exclude_purchased):
    """Every recommender is ranked from `RowScores`, a block of clients at a time, so no clients x
    products matrix is held; blocks of one client rank each client as the whole matrix does."""
    from atelier.models.recommend import compare, evaluate

    val = _contenders(exclude_purchased)
    lam = 10.0
    contenders = dict(val.baselines(lam))
    assert {"popularity in country", "item-kNN", f"EASE (λ={lam:g})"} <= set(contenders)
    assert ("buy again" in contenders) != exclude_purchased
    whole = {name: evaluate.top_k(np.array(scores()[0:4]), 4, val.exclude) for name, scores in contenders.items()}
    assert not np.array_equal(whole["popularity in country"][0], whole["popularity in country"][2])  # FR and DE differ
    measured = compare.table(val, np.zeros((4, 4), np.float32), lam)
    monkeypatch.setattr(evaluate, "BLOCK_ROWS", 1)
    for name, scores in contenders.items():
        assert scores().shape == (4, 4), name
        np.testing.assert_array_equal(evaluate.top_k(scores(), 4, val.exclude), whole[name], err_msg=name)
    assert compare.table(val, evaluate.RowScores((4, 4), lambda a, b: np.zeros((b - a, 4), np.float32)), lam) == measured
