"""Assortments: hand-checked capture and best-sellers, products borrowed from a similar location, reproducible segments."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from atelier.models.assortment import rank, segments
from test_forecast import _panel


def test_capture_and_best_sellers_by_hand():
    # Two products in one country: P0 sells 5 a week until week 9, then 1; P1 sells 1, then 5.
    units = np.array([[5.0] * 10 + [1.0] * 10, [1.0] * 10 + [5.0] * 10])
    panel = _panel(units)
    own, region = rank.best_sellers(panel, 10, 4, 1)
    assert own["FR"].tolist() == ["P0"] and region.tolist() == ["P0"]  # the 4 weeks before week 10: P0 sold 20, P1 4
    # Over weeks 10..13, P0 sells 4 and P1 20: a list of P1 covers 20 / 24 of the units, one of P0 4 / 24.
    assert rank.capture(panel, 10, 4, {"FR": np.array(["P1"])})["units"] == pytest.approx(20 / 24)
    assert rank.capture(panel, 10, 4, own)["units"] == pytest.approx(4 / 24)


def test_a_product_a_similar_location_sells_is_proposed_as_new_here():
    units = np.zeros((5, 60))
    units[:, :] = np.array([3, 1, 3, 1, 2])[:, None]
    sales_rows = [("FR", "P0"), ("FR", "P1"), ("DE", "P0"), ("DE", "P1"), ("DE", "P2")]
    from atelier.models.forecast.panel import build

    rows = [{"level": "country", "location": loc, "product_id": p, "week_start": pd.Timestamp("2024-01-01", tz="UTC") + pd.Timedelta(weeks=w),
             "units": units[i, w], "revenue": 0.0, "orders": 1} for i, (loc, p) in enumerate(sales_rows) for w in range(60)]
    places = pd.DataFrame({"level": "country", "location": ["FR", "DE"] * 60, "week_start": [pd.Timestamp("2024-01-01", tz="UTC") + pd.Timedelta(weeks=w) for w in range(60) for _ in (0, 1)],
                           "units": 1.0, "clients": 1, "new_clients": 0, "last_sale_at": pd.Timestamp("2025-03-01", tz="UTC")})
    products = pd.DataFrame({"product_id": ["P0", "P1", "P2"], "maison": "m", "category": "c", "price": 1.0})
    panel = build(pd.DataFrame(rows), places, products, "country")
    # The forecast for the next 4 weeks: each series' weekly rate times 4.
    series = np.arange(len(panel.series))
    rate = panel.units[:, -1]
    table = rank.expected_units(panel, 52, series, rate * 4, 4).set_index(["location", "product_id"])
    # FR does not sell P2. DE is FR's only neighbour: P2 is 2 of DE's 6 units a week (3 + 1 + 2),
    # FR sells 4 a week, so FR should sell 4 * 2/6 a week of it, over 4 weeks: 16/3.
    assert table.loc[("FR", "P2"), "new_here"] and table.loc[("FR", "P2"), "carried_by_similar"] == 1
    assert table.loc[("FR", "P2"), "expected_units"] == pytest.approx(4 * 4 * 2 / 6)
    assert not table.loc[("FR", "P0"), "new_here"] and table.loc[("FR", "P0"), "expected_units"] == pytest.approx(12.0)
    assert rank.top(table.reset_index(), 2)["FR"].tolist() == ["P0", "P2"]


def _clients(n=300, seed=0):
    rng = np.random.default_rng(seed)
    big = rng.random(n) < 0.3
    return pd.DataFrame({
        "purchases_365d": np.where(big, rng.poisson(12, n), rng.poisson(1, n)).astype(float),
        "spend_365d": np.where(big, rng.gamma(5, 2000, n), rng.gamma(2, 100, n)),
        "views_90d": rng.poisson(5, n).astype(float), "wishlist_90d": rng.poisson(1, n).astype(float),
        "days_since_purchase": rng.integers(0, 400, n).astype(float), "favourite_maison": rng.choice(["a", "b", "c"], n),
    }, index=[f"c{i}" for i in range(n)]).assign(spend_per_purchase=lambda d: d["spend_365d"] / d["purchases_365d"].clip(lower=1))


def test_segments_are_reproducible_under_a_seed_and_described():
    features = _clients()
    one, two = segments.fit(features, k=4, seed=11), segments.fit(features, k=4, seed=11)
    assert one.labels.equals(two.labels) and one.profiles == two.profiles
    assert sum(p["size"] for p in one.profiles) == len(features) and len(one.profiles) == 4
    assert all(p["name"] and len(p["top_features"]) == 3 for p in one.profiles if p["size"])
    # the big spenders planted in the data form a segment described by spend or purchases
    spenders = max(one.profiles, key=lambda p: p["top_features"][0]["z"] if p["top_features"][0]["feature"] in ("spend_365d", "purchases_365d") else -9)
    assert spenders["top_features"][0]["direction"] == "above"
    mix = one.mix(pd.Series(np.where(np.arange(len(features)) % 2, "FR", "DE"), index=features.index))
    assert mix.shape == (2, 4) and np.allclose(mix.sum(1), 1.0)
