"""/forecast and /assortment over real HTTP: eu from its bento (built with both models), apac from source with
tokens, us without either model. Happy paths agree with the exported tables; every bad input gets its 4xx."""

from __future__ import annotations

import pandas as pd
import pytest

from atelier.regions import region_of_country

pytestmark = pytest.mark.slow
TOKEN = "apac-app-secret"


@pytest.fixture(scope="module")
def exported(servers):
    """The eu forecast and assortment tables, as the bento's models hold them, and the group's stores."""
    import bentoml

    from atelier.models.store import use_bentoml_home

    settings = servers["settings"]
    use_bentoml_home(settings)
    assert servers["bento"]["forecast"] and servers["bento"]["assortment"], "the eu bento carries both models"
    forecast = bentoml.models.get(servers["bento"]["forecast"])
    assortment = bentoml.models.get(servers["bento"]["assortment"])
    stores = pd.read_parquet(forecast.path_of("stores.parquet"))
    return {"forecasts": pd.read_parquet(forecast.path_of("forecasts.parquet")), "lists": pd.read_parquet(assortment.path_of("assortments.parquet")),
            "stores": stores, "forecast_tag": str(forecast.tag), "assortment_tag": str(assortment.tag)}


def test_forecast_answers_what_the_exported_model_holds(servers, exported):
    eu = servers["servers"]["eu"]
    f = exported["forecasts"]
    country = f[f["level"] == "country"].groupby("location")["p50"].sum().idxmax()
    here = f[(f["level"] == "country") & (f["location"] == country)]
    products = list(here["product_id"].unique()[:2])
    unknown_here = next(p for p in f["product_id"].unique() if p not in set(here["product_id"]))
    r = eu.post("/forecast", {"product_ids": products + [unknown_here], "country": country, "horizon_weeks": 4})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["region"] == "eu" and body["model"] == exported["forecast_tag"]
    got = {x["product_id"]: x for x in body["forecasts"]}
    assert list(got) == products + [unknown_here]
    for p in products:
        expected = here[here["product_id"] == p].sort_values("week_start").head(4)
        assert got[p]["active"] and got[p]["country"] == country and len(got[p]["weeks"]) == 4
        assert [w["p50"] for w in got[p]["weeks"]] == pytest.approx(expected["p50"].round(3).tolist(), abs=1e-3)
        assert all(w["p10"] <= w["p50"] <= w["p90"] for w in got[p]["weeks"])
    # a known product this country has not sold in a year: zeros, flagged inactive, never an error
    assert not got[unknown_here]["active"] and all(w["p90"] == 0 for w in got[unknown_here]["weeks"])
    # a store of the region, and a whole maison
    from atelier.protect.parquet import read_dataset

    catalog = read_dataset(servers["settings"].paths.catalog("products"), None, columns=["product_id", "maison"]).to_pandas()
    store = f.loc[f["level"] == "store", "location"].iloc[0]
    sold = f.loc[(f["level"] == "store") & (f["location"] == store), "product_id"].unique()
    maison = catalog.loc[catalog["product_id"].isin(sold), "maison"].iloc[0]
    r = eu.post("/forecast", {"maison": maison, "store_id": store})
    assert r.status_code == 200, r.text
    answered = r.json()["forecasts"]
    assert {x["product_id"] for x in answered} == set(catalog.loc[catalog["product_id"].isin(sold) & (catalog["maison"] == maison), "product_id"])
    assert all(x["store_id"] == store and x["active"] and len(x["weeks"]) == 12 for x in answered)


def test_assortment_is_the_exported_list_with_its_segments(servers, exported):
    eu = servers["servers"]["eu"]
    lists = exported["lists"]
    country = lists[lists["level"] == "country"].groupby("location")["expected_units"].sum().idxmax()
    r = eu.post("/assortment", {"country": country, "n": 5})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"] == exported["assortment_tag"] and len(body["items"]) == min(5, (lists["location"] == country).sum())
    expected = lists[lists["location"] == country].sort_values("expected_units", ascending=False).head(5)
    assert [i["product_id"] for i in body["items"]] == expected["product_id"].tolist()
    units = [i["expected_units"] for i in body["items"]]
    assert units == sorted(units, reverse=True) and all(i["maison"] and i["category"] for i in body["items"])
    assert len(body["segments"]) == 3 and sum(s["share"] for s in body["segments"]) == pytest.approx(1.0, abs=0.01)
    assert all(s["name"] and s["top_features"] for s in body["segments"] if s["share"] > 0)
    maison = body["items"][0]["maison"]
    r = eu.post("/assortment", {"country": country, "n": 500, "maison": maison})
    assert r.status_code == 200 and {i["maison"] for i in r.json()["items"]} == {maison}


def test_each_bad_input_gets_its_status_and_code(servers, exported):
    eu, apac, us = (servers["servers"][r] for r in ("eu", "apac", "us"))
    stores = exported["stores"]
    us_store = stores.loc[stores["country"].map(region_of_country) == "us", "store_id"].iloc[0]
    product = exported["forecasts"]["product_id"].iloc[0]
    cases = [
        (eu, "/forecast", {"product_ids": [product], "maison": "x", "country": "FR"}, 400, "invalid_request"),
        (eu, "/forecast", {"product_ids": [product]}, 400, "invalid_request"),
        (eu, "/forecast", {"product_ids": [product], "country": "FR", "store_id": "S0001"}, 400, "invalid_request"),
        (eu, "/forecast", {"product_ids": [product], "country": None}, 400, "invalid_request"),
        (eu, "/forecast", {"product_ids": [product], "country": "FR", "horizon_weeks": 13}, 400, "invalid_request"),
        (eu, "/forecast", {"product_ids": [], "country": "FR"}, 400, "invalid_request"),
        (eu, "/forecast", {"product_ids": ["NO-SUCH"], "country": "FR"}, 404, "unknown_product"),
        (eu, "/forecast", {"product_ids": [product], "store_id": "NO-SUCH"}, 404, "unknown_store"),
        (eu, "/forecast", {"product_ids": [product], "store_id": us_store}, 403, "other_region"),
        (eu, "/forecast", {"product_ids": [product], "country": "US"}, 403, "other_region"),
        (eu, "/forecast", {"product_ids": [product], "country": "XX"}, 422, "unknown_country"),
        (eu, "/forecast", {"maison": "no-such-maison", "country": "FR"}, 422, "unknown_maison"),
        (eu, "/assortment", {"country": "FR", "n": 0}, 400, "invalid_request"),
        (eu, "/assortment", {"n": 10}, 400, "invalid_request"),
        (eu, "/assortment", {"store_id": us_store}, 403, "other_region"),
        (eu, "/assortment", {"country": "FR", "maison": "no-such-maison"}, 422, "unknown_maison"),
        (us, "/forecast", {"product_ids": [product], "country": "US"}, 404, "no_model"),
        (us, "/assortment", {"country": "US"}, 404, "no_model"),
        (apac, "/assortment", {"country": "SG"}, 401, "unauthorized"),
    ]
    for server, route, body, status, code in cases:
        r = server.post(route, body)
        assert (r.status_code, r.json().get("code")) == (status, code), (server.region, route, body, r.text)
    assert "atelier train forecast -r us" in us.post("/forecast", {"product_ids": [product], "country": "US"}).json()["error"]
    assert apac.post("/assortment", {"country": "SG", "n": 3}, token=TOKEN).status_code == 200
