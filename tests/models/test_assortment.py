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
    # A listed product the panel never sold covers nothing; a location without a list covers nothing.
    both = rank.capture(panel, 10, 4, {"FR": np.array(["NO-SUCH", "P1", "P0"])})
    assert both["units"] == pytest.approx(1.0) and both["per_location"] == {"FR": pytest.approx(1.0)}
    assert rank.capture(panel, 10, 4, {"NO-SUCH": np.array(["P1"])})["units"] == 0.0


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
    # The forecast for the next 4 weeks: each series' weekly rate times 4 (FR: P0 12, P1 4; DE: P0 12, P1 4, P2 8).
    series = np.arange(len(panel.series))
    rate = panel.units[:, -1]
    # Sizes (units over the last year): FR 4 x 52 = 208, DE 6 x 52 = 312. DE is FR's only
    # neighbour: P2 is 8 of DE's 312, so FR's size says 208 * 8/312 = 16/3 of it; P0 208 * 12/312 = 8.
    est = rank.estimates(panel, 52, series, rate * 4, 4)
    fr, de = list(panel.locations).index("FR"), list(panel.locations).index("DE")
    p0, p2 = list(panel.products).index("P0"), list(panel.products).index("P2")
    assert est.similar[fr, p2] == pytest.approx(16 / 3) and est.similar[fr, p0] == pytest.approx(8.0)
    assert np.isnan(est.forecast[fr, p2]) and est.carried_by[fr, p2] == 1
    # Leaning fully on the others (lam = 1): the mean of the forecast and the similar locations'.
    even = rank.expected_units(panel, 52, series, rate * 4, 4, rank.Blend(lean=np.inf)).set_index(["location", "product_id"])
    assert even.loc[("FR", "P2"), "new_here"] and even.loc[("FR", "P2"), "carried_by_similar"] == 1
    assert even.loc[("FR", "P2"), "expected_units"] == pytest.approx((0 + 16 / 3) / 2)
    assert not even.loc[("FR", "P0"), "new_here"] and even.loc[("FR", "P0"), "expected_units"] == pytest.approx((12 + 8) / 2)
    # Every estimate at weight 1: FR's own last 4 weeks sold 12 of P0; the region's forecast mix
    # gives P0 24 of 40 units, times FR's forecast total of 16: 9.6.
    assert est.blend(rank.Blend(recent=1, lean=np.inf, region=1))[fr, p0] == pytest.approx((12 + 12 + 8 + 9.6) / 4)
    # lean 1: k is the median location's yearly units (260), FR leans lam = 260 / (260 + 208) = 5/9,
    # DE (the larger) 260 / (260 + 312) = 5/11: the smaller location leans more on the others.
    leaned = est.blend(rank.Blend(lean=1.0))
    assert leaned[fr, p0] == pytest.approx((12 + 5 / 9 * 8) / (1 + 5 / 9))
    assert leaned[de, p2] == pytest.approx(8 / (1 + 5 / 11))  # FR sells no P2: the others say 0
    # FR's P1: (4 + 5/9 * 208 * 4/312) / (14/9) = 3.52; P2, never sold in FR: (5/9 * 16/3) / (14/9) = 1.90.
    assert leaned[fr, [p0, list(panel.products).index("P1"), p2]] == pytest.approx([148 / 14, (4 + 5 / 9 * 8 / 3) * 9 / 14, 5 / 9 * 16 / 3 * 9 / 14])
    assert rank.top_of(panel, leaned, 3)["FR"].tolist() == ["P0", "P1", "P2"]
    assert rank.top_of(panel, leaned, 3, keep=~np.isnan(est.forecast))["FR"].tolist() == ["P0", "P1"]  # carried only


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


def _sales_panel(seed: int = 0, weeks: int = 80):
    """Four countries, 12 products, Poisson weekly sales whose rates differ per country."""
    from atelier.models.forecast.panel import build

    rng = np.random.default_rng(seed)
    locations, products = ["FR", "DE", "IT", "ES"], [f"P{i}" for i in range(12)]
    week = lambda w: pd.Timestamp("2024-01-01", tz="UTC") + pd.Timedelta(weeks=w)  # noqa: E731
    rates = rng.gamma(1.0, 1.0, (len(locations), len(products))) * (rng.random((len(locations), len(products))) < 0.7)
    rows = [{"level": "country", "location": loc, "product_id": p, "week_start": week(w), "units": float(u), "revenue": 0.0, "orders": 1}
            for i, loc in enumerate(locations) for j, p in enumerate(products) for w, u in enumerate(rng.poisson(rates[i, j], weeks)) if u]
    places = pd.DataFrame({"level": "country", "location": locations * weeks, "week_start": [week(w) for w in range(weeks) for _ in locations],
                           "units": 1.0, "clients": 1, "new_clients": 0, "last_sale_at": week(weeks)})
    return build(pd.DataFrame(rows), places, pd.DataFrame({"product_id": products, "maison": "m", "category": "c", "price": 1.0}), "country")


def _scored(panel, origin: int, weeks: int, rng):
    """A stand-in for one origin's forecasts: every series, horizons 1..weeks, a noisy mean of its last 12 weeks."""
    from types import SimpleNamespace

    n = len(panel.series)
    series, horizon = np.repeat(np.arange(n), weeks), np.tile(np.arange(1, weeks + 1), n)
    rate = panel.units[:, max(0, origin - 12):origin].mean(1)
    return SimpleNamespace(origin=origin, examples=SimpleNamespace(series=series, horizon=horizon),
                           mean=rate[series] * rng.uniform(0.5, 1.5, len(series)))


def test_the_blend_is_chosen_on_the_validation_weeks_only():
    from atelier.models.assortment import evaluate
    from atelier.models.forecast.backtest import Backtest

    weeks, validation, tests = 12, 50, [62, 65]
    clean = _sales_panel()
    poisoned = clean.poisoned(validation + weeks, np.random.default_rng(1))  # every week the test origins read
    chosen, test_capture = [], []
    for panel in (clean, poisoned):
        rng = np.random.default_rng(2)
        bt = Backtest(validation, tests, {}, {}, scored=[_scored(panel, o, weeks, rng) for o in tests], validation_scored=_scored(panel, validation, weeks, rng))
        result = evaluate.backtest(panel, bt, n=3, weeks=weeks)
        chosen.append((result["blend"], result["validation"]))
        test_capture.append([o["assortment"]["units"] for o in result["per_origin"]])
    assert chosen[0] == chosen[1]  # the same blend, every candidate's validation capture to the last digit
    assert test_capture[0] != test_capture[1]  # while what the test origins read did change
    assert len(chosen[0][1]) == len(evaluate.GRID)
