"""The feature tables computed in the region's BigQuery dataset, from the same definitions.

`atelier features compute -r R --engine bigquery --terraform-output R.json --project P`: where one
machine is not enough, the tables Feast's BigQuery sources read are computed where the data is,
by the pipeline's own SQL (atelier.features.sql, held row for row to the pandas/numpy path):
one query job per table, run in the region's location, writing the table whole (a query result
replaces it: a job that fails leaves the previous table as it was), under the region's key,
clustered by its view's join keys. Its inputs are the tables `atelier data load --to bigquery`
loaded (events, clients, products, streamed_events); nothing leaves the dataset.

The real-time view's offline rows (`client_recent`) come from `streamed_events`, the journal's
parts as the loader sends them. A view whose table no SQL computes (a maison team's own table) is
reported, not computed: it is computed on a machine that holds the lake and loaded with
`atelier data load --features`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from atelier.data.load_bigquery import Target, check_dataset
from atelier.errors import AtelierError
from atelier.settings import Settings

INPUTS = ("events", "clients", "products", "streamed_events")
STAGING = "maison_engagement_windows"  # every maison's engagement windows, which each maison's table is cut from


@dataclass(frozen=True)
class Job:
    table: str  # the BigQuery table a view's source reads
    sql: str  # BigQuery's dialect, every input qualified with the dataset
    cluster: tuple[str, ...]  # the view's join keys (BigQuery clusters by 4 columns at most)


def plan(settings: Settings, target: Target) -> tuple[list[Job], list[str]]:
    """(the query jobs, the tables of views that no SQL computes), from the feature repository's views."""
    from atelier.features import sql
    from atelier.features.definitions import bigquery_table
    from atelier.features.repo import engagement_maisons, parse_definitions

    contents = parse_definitions(settings)
    join_keys = {e.name: e.join_key for e in contents.entities}
    maisons = engagement_maisons(settings)
    scripts = sql.scripts([])
    # Every maison's windows in one pass over the events, then one small query per maison's table:
    # a query per maison over the events would scan (and bill) them once per maison.
    scripts |= {bigquery_table(f"features/{{region}}/maison_engagement/{m}"): sql.maison_engagement(m, windows=STAGING) for m in maisons}
    jobs: dict[str, Job] = {}
    elsewhere: set[str] = set()
    for view in contents.feature_views:
        template = getattr(view.batch_source, "table", None) or ""
        if not template.startswith("features/"):
            continue  # the lake's own tables (clients, products), loaded as they are
        table = bigquery_table(template)
        if table in scripts:
            jobs[table] = Job(table, sql.for_bigquery(scripts[table], target.dataset), tuple(join_keys[e] for e in view.entities)[:4])
        else:
            elsewhere.add(table)
    ordered = sorted(jobs.values(), key=lambda j: j.table)
    if maisons:  # the staging table first: the maisons' queries read it
        ordered.insert(0, Job(STAGING, sql.for_bigquery(sql.maison_engagement_windows(), target.dataset), ("maison", "client_id")))
    return ordered, sorted(elsewhere - set(jobs))


def compute(settings: Settings, region: str, client, target: Target, progress: Callable[[int], None] = lambda n: None,
            on_jobs: Callable[[int], None] = lambda n: None) -> tuple[dict[str, int], list[str]]:
    """Run every table's query in the region's dataset: (rows per table, tables left to `data load --features`).

    Refused before any job runs when the dataset is not the region's (location, key) or lacks an
    input table; `client` is a `google.cloud.bigquery.Client` (or the tests' stand-in)."""
    from google.api_core.exceptions import NotFound
    from google.cloud import bigquery

    from atelier.regions import get_region

    if target.location != get_region(region).location:
        raise AtelierError(f"region {region!r} computes in {get_region(region).location}, not {target.location}")
    check_dataset(client, target)
    for name in INPUTS:
        try:
            client.get_table(target.table(name))
        except NotFound:
            raise AtelierError(f"BigQuery dataset {target.project}.{target.dataset} has no {name} table to compute features from",
                               fix=f"load the region's lake first: `atelier data load --to bigquery -r {region} ...`") from None
    jobs, elsewhere = plan(settings, target)
    on_jobs(len(jobs))
    rows: dict[str, int] = {}
    for job in jobs:
        config = bigquery.QueryJobConfig(
            destination=target.table(job.table),
            write_disposition=bigquery.WriteDisposition.WRITE_TRUNCATE,
            create_disposition=bigquery.CreateDisposition.CREATE_IF_NEEDED,
            destination_encryption_configuration=bigquery.EncryptionConfiguration(kms_key_name=target.kms_key),
            clustering_fields=list(job.cluster) or None,
        )
        try:
            client.query(job.sql, location=target.location, job_config=config).result()
        except Exception as e:  # a query BigQuery refused: nothing of that table changed
            raise AtelierError(f"BigQuery refused the query of {job.table} (region {region!r}): {e}", where=target.table(job.table),
                               fix="the tables computed before it are written, the others are as they were; fix the cause and run again") from None
        rows[job.table] = client.get_table(target.table(job.table)).num_rows
        progress(1)
    return rows, elsewhere

