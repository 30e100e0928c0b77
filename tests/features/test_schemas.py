"""Each feature table's columns are stated once (atelier.features.schemas, .series): the pipeline
writes exactly them and the Feast views read exactly them, descriptions included."""

from __future__ import annotations

import pytest

from atelier.features import repo, schemas, series
from atelier.protect.keys import key_store
from atelier.protect.parquet import open_dataset
from atelier.settings import Settings

TABLES = {
    "client_activity": (schemas.CLIENT_ACTIVITY, "client_activity", ("client_id",)),
    "product_popularity": (schemas.PRODUCT_POPULARITY, "product_popularity", ("product_id",)),
    "maison_engagement/lumiere-de-grasse": (schemas.MAISON_ENGAGEMENT, "lumiere_de_grasse_engagement", ("client_id",)),
    **{series.table_name(k, lv): (series.schema(k, lv), series.table_name(k, lv), (series.KEY[lv], "product_id"))
       for k in series.TABLES for lv in series.LEVELS},
}


@pytest.mark.parametrize("table", sorted(TABLES))
def test_the_pipeline_writes_and_the_view_reads_the_one_schema(settings: Settings, table: str):
    schema, view_name, keys = TABLES[table]
    written = open_dataset(settings.paths.feature_table(table, "eu"), key_store(settings, "eu")).schema
    assert [(f.name, f.type) for f in written] == [(f.name, f.type) for f in schema]
    view = next(v for v in repo.parse_definitions(settings).feature_views if v.name == view_name)
    declared = [f for f in schema if f.name not in (*keys, "event_timestamp")]
    assert [f.name for f in view.features] == [f.name for f in declared]
    assert [f.description for f in view.features] == [schemas.description(f) for f in declared]
    assert all(f.description for f in view.features)
