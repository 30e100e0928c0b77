"""The weekly series as Feast views: applied and materialized per region, read online and point in time."""

from __future__ import annotations

import pandas as pd

from atelier.data.importer import import_files
from atelier.features import repo
from atelier.features.pipeline import compute_features


def test_weekly_sales_are_views_a_week_visible_only_once_it_is_over(settings, tmp_path):
    # FR sells P1: 2 in the week of Monday 2025-03-03 (one client buying twice), 3 the next week (a
    # second client, new); store S1 in France sells 1 of P1 in the first week.
    (tmp_path / "clients.csv").write_text("client_id,country\nA,FR\nB,FR\n")
    (tmp_path / "products.csv").write_text("product_id,maison,category,price\nP1,maison-aurele,handbags,1000.0\n")
    (tmp_path / "events.csv").write_text(
        "client_id,product_id,event_type,event_timestamp,quantity,store_id\n"
        "A,P1,purchase,2025-03-04T10:00:00Z,1,S1\n"
        "A,P1,purchase,2025-03-06T10:00:00Z,1,\n"
        "B,P1,purchase,2025-03-11T10:00:00Z,3,\n"
    )
    import_files(settings, tmp_path / "clients.csv", tmp_path / "products.csv", tmp_path / "events.csv")
    compute_features(settings, "eu")
    repo.apply(settings, "eu")
    store = repo.feature_store(settings, "eu")
    at = ["2025-03-09T23:00:00Z", "2025-03-10T00:00:01Z", "2025-03-17T00:00:01Z"]
    entity = pd.DataFrame({"country_code": "FR", "product_id": "P1", "event_timestamp": pd.to_datetime(at, utc=True)})
    hist = store.get_historical_features(entity_df=entity, features=["country_sales_weekly:units", "country_clientele_weekly:new_clients"]).to_df()
    hist = hist.sort_values("event_timestamp")
    # Sunday night of the first week: not over, nothing known. Monday after: the first week (2
    # units, 1 new client). A week later: the second (3 units, 1 new client).
    assert hist.units.fillna(-1).tolist() == [-1, 2.0, 3.0]
    assert hist.new_clients.fillna(-1).astype(int).tolist() == [-1, 1, 1]

    repo.materialize(settings, "eu", incremental=False)
    online = store.get_online_features(features=["country_sales_weekly:units"], entity_rows=[{"country_code": "FR", "product_id": "P1"}]).to_dict()
    assert online["units"] == [3.0]  # the latest week with sales
    store_online = store.get_online_features(features=["store_sales_weekly:units", "store_sales_weekly:week_start"],
                                             entity_rows=[{"store_id": "S1", "product_id": "P1"}]).to_dict()
    assert store_online["units"] == [1.0] and str(store_online["week_start"][0].date()) == "2025-03-03"
