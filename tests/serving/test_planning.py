"""The planner behind /forecast and /assortment, on hand-made exported tables (no server)."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from atelier.serving.planning import Planner
from atelier.serving.recommender import RequestError

WEEKS = pd.to_datetime(["2026-11-02", "2026-11-09", "2026-11-16"], utc=True)


@pytest.fixture
def planner(tmp_path):
    forecast, assortment = tmp_path / "forecast", tmp_path / "assortment"
    forecast.mkdir(), assortment.mkdir()
    # FR sells P1 (2, 3, 4 units a week at P50); store S1 (in France) sells P2.
    rows = [("country", "FR", "P1", w, 1.0 + i, 2.0 + i, 3.0 + i) for i, w in enumerate(WEEKS)]
    rows += [("store", "S1", "P2", w, 0.0, 1.0, 2.0) for w in WEEKS]
    rows += [("country", "FR", "P3", WEEKS[2], 0.5, 1.5, 4.0)]  # P3 launches in the third week: forecast from its attributes
    pd.DataFrame(rows, columns=["level", "location", "product_id", "week_start", "p10", "p50", "p90"]).assign(unit_price=10.0).to_parquet(forecast / "forecasts.parquet")
    pd.DataFrame({"level": ["country", "country"], "location": ["FR", "FR"], "product_id": ["P1", "P2"], "expected_units": [9.0, 1.5],
                  "expected_revenue": [90.0, 30.0], "new_here": [False, True], "carried_by_similar": [0, 1], "segments": [[0], [1, 0]],
                  "country": ["FR", "FR"]}).to_parquet(assortment / "assortments.parquet")
    profiles = [{"id": 0, "name": "big spenders", "share": 0.4, "top_features": [{"feature": "spend_365d", "direction": "above"}]},
                {"id": 1, "name": "wishlisters", "share": 0.6, "top_features": [{"feature": "wishlist_90d", "direction": "above"}]}]
    (assortment / "segments.json").write_text(json.dumps({"profiles": profiles, "mix": {"FR": [0.25, 0.75]}}))
    products = pd.DataFrame({"product_id": ["P1", "P2", "P3"], "maison": ["maison-aurele", "orris-ambre", "maison-aurele"], "category": ["handbags", "perfume", "shoes"]})
    stores = pd.DataFrame({"store_id": ["S1", "S9"], "country": ["FR", "US"]})
    return Planner("eu", products, stores, forecast, assortment, forecast_tag="f:1", assortment_tag="a:1")


def test_forecast_weeks_in_order_a_launch_from_its_week_and_a_product_the_location_never_sold_is_zero(planner):
    where, rows = planner.forecast(product_ids=["P1", "P3"], maison=None, country="FR", store_id=None, horizon=2)
    assert (where.level, where.id) == ("country", "FR")
    assert rows[0] == {"product_id": "P1", "active": True, "weeks": [
        {"week_start": "2026-11-02", "p10": 1.0, "p50": 2.0, "p90": 3.0}, {"week_start": "2026-11-09", "p10": 2.0, "p50": 3.0, "p90": 4.0}]}
    assert rows[1]["active"] is False and [w["p50"] for w in rows[1]["weeks"]] == [0.0, 0.0]  # it launches after these 2 weeks
    _, launch = planner.forecast(product_ids=["P3"], maison=None, country="FR", store_id=None, horizon=3)
    assert launch[0]["active"] is True
    assert [(w["week_start"], w["p50"]) for w in launch[0]["weeks"]] == [("2026-11-02", 0.0), ("2026-11-09", 0.0), ("2026-11-16", 1.5)]
    _, never = planner.forecast(product_ids=["P2"], maison=None, country="FR", store_id=None, horizon=2)
    assert never[0]["active"] is False and [w["p50"] for w in never[0]["weeks"]] == [0.0, 0.0]
    _, by_maison = planner.forecast(product_ids=None, maison="orris-ambre", country=None, store_id="S1", horizon=3)
    assert [r["product_id"] for r in by_maison] == ["P2"] and len(by_maison[0]["weeks"]) == 3


def test_assortment_with_the_location_mix_and_a_maison_filter(planner):
    _, items, segments = planner.assortment(country="FR", store_id=None, n=5, maison=None)
    assert [i["product_id"] for i in items] == ["P1", "P2"] and items[1]["new_here"] and items[1]["segments"] == [1, 0]
    assert [s["share"] for s in segments] == [0.25, 0.75]  # France's mix, not the region's
    assert segments[0]["top_features"] == ["spend_365d (above average)"]
    _, only, _ = planner.assortment(country="FR", store_id=None, n=5, maison="orris-ambre")
    assert [i["product_id"] for i in only] == ["P2"]
    _, one, _ = planner.assortment(country="FR", store_id=None, n=1, maison=None)
    assert len(one) == 1


@pytest.mark.parametrize("kwargs, status, code", [
    ({"country": "US"}, 403, "other_region"),
    ({"store_id": "S9"}, 403, "other_region"),
    ({"store_id": "S404"}, 404, "unknown_store"),
    ({"country": "France"}, 422, "unknown_country"),  # codes only, as the schema says
])
def test_locations_another_region_holds_or_none_does(planner, kwargs, status, code):
    with pytest.raises(RequestError) as e:
        planner.assortment(**{"country": None, "store_id": None, **kwargs}, n=5, maison=None)
    assert (e.value.status, e.value.code) == (status, code)


def test_unknown_products_and_maisons_and_a_missing_model(planner):
    with pytest.raises(RequestError) as e:
        planner.forecast(product_ids=["P404"], maison=None, country="FR", store_id=None, horizon=2)
    assert (e.value.status, e.value.code) == (404, "unknown_product")
    with pytest.raises(RequestError) as e:
        planner.forecast(product_ids=None, maison="nobody", country="FR", store_id=None, horizon=2)
    assert (e.value.status, e.value.code) == (422, "unknown_maison")
    bare = Planner("eu", pd.DataFrame({"product_id": ["P1"], "maison": ["m"], "category": ["c"]}), pd.DataFrame({"store_id": [], "country": []}))
    with pytest.raises(RequestError) as e:
        bare.assortment(country="FR", store_id=None, n=5, maison=None)
    assert (e.value.status, e.value.code) == (404, "no_model") and "atelier train assortment -r eu" in e.value.message
