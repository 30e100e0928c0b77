"""A stand-in for BigQuery: Google Cloud cannot be reached from where the tests run.

It answers the calls that `atelier.data.load_bigquery`, the batch engine and Feast's BigQuery
offline store (materialization, and point-in-time retrieval with its entity table) make of a
`google.cloud.bigquery.Client` (get_dataset, get_table, query, load_table_from_file,
load_table_from_dataframe, update_table, delete_table, get_job; query results also as Arrow
pages, as the Storage Read API gives them), holds the datasets' tables in DuckDB (the
SQL is BigQuery's, transpiled by sqlglot), and keeps the rules of BigQuery that the loader
relies on:

* a dataset lives in one location: a job run elsewhere does not find it (404);
* a job id is used once per project: a second job with it is refused (409 Conflict), and a
  failed job keeps its id;
* a table that does not exist is a 404 to a query; a load job creates it (CREATE_IF_NEEDED) with
  its partitioning, clustering and key, and later loads must match its columns;
* a job that names a key other than the dataset's is refused.

It also records what it was sent, so tests can check that every file came from memory.
"""

from __future__ import annotations

import io
import itertools
from dataclasses import dataclass
from types import SimpleNamespace

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import sqlglot
from google.api_core.exceptions import BadRequest, Conflict, NotFound


READER = object()  # the stand-in's Storage Read API client


class Rows:
    """A query's rows: iterable as tuples, or as Arrow record batches a page at a time (the Storage
    Read API, which is what `to_arrow_iterable` uses when it is given a read client)."""

    def __init__(self, table: pa.Table | None, page_rows: int, stats: dict):
        self.table, self.page_rows, self.stats = table, page_rows, stats

    def __iter__(self):
        return iter([] if self.table is None else [tuple(r.values()) for r in self.table.to_pylist()])

    def __len__(self):
        return 0 if self.table is None else self.table.num_rows

    def to_arrow_iterable(self, bqstorage_client=None):
        assert bqstorage_client is READER, "pages are read through the Storage Read API client"
        for batch in ([] if self.table is None else self.table.to_batches(max_chunksize=self.page_rows)):
            self.stats["pages"] = self.stats.get("pages", 0) + 1
            yield batch


@dataclass
class Job:
    job_id: str
    kind: str
    state: str = "DONE"
    error_result: dict | None = None
    rows: Rows | None = None

    def result(self):
        if self.error_result:
            raise BadRequest(self.error_result["message"])
        return self.rows

    def exception(self, timeout=None):
        return BadRequest(self.error_result["message"]) if self.error_result else None

    def to_arrow(self, bqstorage_client=None, create_bqstorage_client: bool = True) -> pa.Table:
        """The query's result, its pages read through the Storage Read API (never whole)."""
        assert create_bqstorage_client or bqstorage_client is READER, "results are read through the Storage Read API"
        rows = self.result()
        batches = list(rows.to_arrow_iterable(bqstorage_client=READER))
        return pa.Table.from_batches(batches, schema=rows.table.schema) if rows.table is not None else pa.table({})

    def to_dataframe(self, bqstorage_client=None, create_bqstorage_client: bool = True, **_):
        return self.to_arrow(bqstorage_client, create_bqstorage_client).to_pandas()


class StandInBigQuery:
    """BigQuery, as far as the loader sees it. `datasets`: "project.dataset" -> (location, key)."""

    def __init__(self, datasets: dict[str, tuple[str, str]]):
        self.datasets = datasets
        self.project = next(iter(datasets)).split(".")[0]  # the client's project: names without one are in it
        self.db = duckdb.connect(":memory:")
        for name in datasets:
            self.db.execute(f'CREATE SCHEMA "{name.split(".")[1]}"').fetchall()
        self.location: str | None = None  # the client's default location for jobs (Feast makes its client with one)
        self.jobs: dict[str, Job] = {}
        self.tables: dict[str, dict] = {}  # "project.dataset.table" -> its settings (partitioning, clustering, key)
        self.sent: list[type] = []  # the type of every file object a load job was given
        self.fail: set[int] = set()  # load jobs (numbered from 1) that fail, as BigQuery may
        self.page_rows = 1_000  # rows per page of a query's results
        self.stats: dict[str, int] = {}  # pages read
        self._loads = itertools.count(1)

    # -- the client's calls ------------------------------------------------------------------

    def get_dataset(self, name):
        name = _name(name)
        if name not in self.datasets:
            raise NotFound(f"Not found: Dataset {name}")
        location, key = self.datasets[name]
        return SimpleNamespace(location=location, default_encryption_configuration=SimpleNamespace(kms_key_name=key))

    def get_table(self, table):
        full = self._full(table)
        if full not in self.tables:
            raise NotFound(f"Not found: Table {full}")
        columns = [r[0] for r in self.db.execute(f"DESCRIBE {full.split('.', 1)[1]}").fetchall()]
        return SimpleNamespace(table_id=full.rsplit(".", 1)[1], num_rows=self.rows(full), schema=[SimpleNamespace(name=c) for c in columns],
                               clustering_fields=self.tables[full]["clustering"])

    def get_job(self, job_id, location: str | None = None):
        job_id = getattr(job_id, "job_id", job_id)  # an id, or the job itself
        if job_id not in self.jobs:
            raise NotFound(f"Not found: Job {job_id}")
        return self.jobs[job_id]

    def query(self, sql: str, location: str | None = None, job_config=None, job_id: str | None = None):
        location = location or self.location
        trees = [t for t in sqlglot.parse(sql, read="bigquery") if t is not None]
        if len(trees) > 1:  # a script (Feast's point-in-time join): its temporary tables live as long as it runs
            return self._script(trees, location, job_id)
        tree = trees[0]
        self._qualify(tree, location)
        if tree.key == "alter":  # BigQuery refuses to drop a column the table is clustered by
            full = f"{self.project}.{tree.this.db}.{tree.this.name}"
            dropped = {c.name for action in tree.args.get("actions") or [] for c in action.find_all(sqlglot.exp.Column)}
            if dropped & set(self.tables[full]["clustering"] or []):
                raise BadRequest(f"Cannot drop clustering column(s) {sorted(dropped)} of {full}")
        destination = getattr(job_config, "destination", None)
        if destination is not None:  # a query job that writes its result to a table (WRITE_TRUNCATE: replaces it)
            destination = destination if isinstance(destination, str) else f"{destination.project}.{destination.dataset_id}.{destination.table_id}"
            dataset = destination.rsplit(".", 1)[0]
            self._in_location(dataset, location)
            key = job_config.destination_encryption_configuration.kms_key_name
            if key != self.datasets[dataset][1]:
                raise BadRequest(f"the job's key {key} is not the dataset's {self.datasets[dataset][1]}")
            if job_config.write_disposition != "WRITE_TRUNCATE" and destination in self.tables:
                raise BadRequest(f"Already Exists: Table {destination}")
            try:
                self.db.execute(f"CREATE OR REPLACE TABLE {destination.split('.', 1)[1]} AS {tree.sql(dialect='duckdb')}").fetchall()
            except duckdb.Error as e:
                raise BadRequest(f"Invalid query: {str(e).splitlines()[0]}") from None
            self.tables[destination] = {"partitioning": None, "clustering": job_config.clustering_fields, "key": key}
            return self._job(job_id or f"query_{len(self.jobs)}", "query", rows=Rows(None, self.page_rows, self.stats))
        try:
            if tree.key in ("delete", "alter"):
                self.db.execute(tree.sql(dialect="duckdb")).fetchall()
                rows = Rows(None, self.page_rows, self.stats)
            else:
                rows = Rows(self.db.cursor().sql(tree.sql(dialect="duckdb")).to_arrow_table(), self.page_rows, self.stats)
        except duckdb.Error as e:  # BigQuery answers a query it cannot run (an unknown column, ...) with 400
            raise BadRequest(f"Invalid query: {str(e).splitlines()[0]}") from None
        return self._job(job_id or f"query_{len(self.jobs)}", "query", rows=rows)

    def _qualify(self, tree, location: str | None, temporary: frozenset[str] = frozenset()) -> None:
        """Each table the statement names must be in a dataset of `location`, and exist (404
        otherwise), as BigQuery checks; its names are then DuckDB's (schema.table)."""
        ctes = {cte.alias_or_name for cte in tree.find_all(sqlglot.exp.CTE)}
        for table in tree.find_all(sqlglot.exp.Table):
            if table.name in ctes or (not table.db and table.name in temporary):
                continue
            if "." in table.name:  # `project.dataset.table` quoted whole
                catalog, db, name = table.name.split(".")
                table.set("this", sqlglot.exp.to_identifier(name))
                table.set("db", sqlglot.exp.to_identifier(db))
                table.set("catalog", sqlglot.exp.to_identifier(catalog))
            dataset = f"{table.catalog or self.project}.{table.db}"
            full = f"{dataset}.{table.name}"
            self._in_location(dataset, location)
            if full not in self.tables:
                raise NotFound(f"Not found: Table {full} was not found in location {location}")
            table.set("catalog", None)

    def _script(self, trees: list, location: str | None, job_id: str | None) -> Job:
        """Statements run in order on a connection of their own, whose temporary tables go with it;
        the last one's result is the job's."""
        temporary = frozenset(t.this.name for t in trees if t.key == "create" and t.args.get("properties")
                              and any(isinstance(p, sqlglot.exp.TemporaryProperty) for p in t.args["properties"].expressions))
        con = self.db.cursor()
        try:
            for tree in trees[:-1]:
                self._qualify(tree, location, temporary)
                con.execute(tree.sql(dialect="duckdb")).fetchall()
            self._qualify(trees[-1], location, temporary)
            rows = Rows(con.sql(trees[-1].sql(dialect="duckdb")).to_arrow_table(), self.page_rows, self.stats)
        except duckdb.Error as e:
            raise BadRequest(f"Invalid query: {str(e).splitlines()[0]}") from None
        finally:
            con.close()
        return self._job(job_id or f"query_{len(self.jobs)}", "query", rows=rows)

    def _ensure_bqstorage_client(self, *args, **kwargs):
        return READER

    def load_table_from_dataframe(self, frame, destination, job_config=None, **_):
        """A frame loaded into a new table (Feast's entity table for a point-in-time join), under the
        dataset's default key as in BigQuery."""
        destination = _name(destination)
        dataset = destination.rsplit(".", 1)[0]
        if dataset not in self.datasets:
            raise NotFound(f"Not found: Dataset {dataset}")
        if destination in self.tables:
            raise Conflict(f"Already Exists: Table {destination}")
        self.put(destination, pa.Table.from_pandas(frame, preserve_index=False))
        return self._job(f"load_{len(self.jobs)}", "load")

    def update_table(self, table, fields):
        return table  # only an entity table's expiry is ever updated: nothing expires here

    def delete_table(self, table, not_found_ok: bool = False):
        full = self._full(table)
        if full not in self.tables:
            if not_found_ok:
                return
            raise NotFound(f"Not found: Table {full}")
        self.db.execute(f"DROP TABLE {full.split('.', 1)[1]}").fetchall()
        del self.tables[full]

    def put(self, destination: str, table: pa.Table) -> None:
        """A table as another job would have written it (the feature tables the SQL computes)."""
        self.db.register("incoming", table)
        self.db.execute(f"CREATE OR REPLACE TABLE {destination.split('.', 1)[1]} AS SELECT * FROM incoming").fetchall()
        self.db.unregister("incoming")
        self.tables[destination] = {"partitioning": None, "clustering": None, "key": self.datasets[destination.rsplit(".", 1)[0]][1]}

    def load_table_from_file(self, file_obj, destination: str, *, job_id: str, job_config, location: str, rewind: bool = False, **_):
        self.sent.append(type(file_obj))
        if job_id in self.jobs:
            raise Conflict(f"Already Exists: Job {destination.split('.')[0]}:{location}.{job_id}")
        dataset = destination.rsplit(".", 1)[0]
        self._in_location(dataset, location)
        key = job_config.destination_encryption_configuration.kms_key_name
        if key != self.datasets[dataset][1]:
            raise BadRequest(f"the job's key {key} is not the dataset's {self.datasets[dataset][1]}")
        if rewind:
            file_obj.seek(0)
        table = pq.read_table(io.BytesIO(file_obj.read()))
        if next(self._loads) in self.fail:
            return self._job(job_id, "load", error_result={"reason": "backendError", "message": "Error encountered during execution. Retrying may solve the problem."})
        name = destination.split(".", 1)[1]
        self.db.register("incoming", table)
        try:
            if destination not in self.tables:
                self.db.execute(f"CREATE TABLE {name} AS SELECT * FROM incoming").fetchall()
                self.tables[destination] = {"partitioning": job_config.time_partitioning, "clustering": job_config.clustering_fields, "key": key}
            else:
                held = [r[0] for r in self.db.execute(f"DESCRIBE {name}").fetchall()]
                added = [c for c in table.column_names if c not in held]
                # BigQuery matches a Parquet file's columns by name; a new one needs ALLOW_FIELD_ADDITION
                if set(held) - set(table.column_names) or (added and "ALLOW_FIELD_ADDITION" not in (job_config.schema_update_options or [])):
                    return self._job(job_id, "load", error_result={"reason": "invalid", "message": f"Provided Schema does not match Table {destination}"})
                types = {r[0]: r[1] for r in self.db.execute("DESCRIBE incoming").fetchall()}
                for column in added:
                    self.db.execute(f'ALTER TABLE {name} ADD COLUMN "{column}" {types[column]}').fetchall()
                self.db.execute(f"INSERT INTO {name} BY NAME SELECT * FROM incoming").fetchall()
        finally:
            self.db.unregister("incoming")
        return self._job(job_id, "load")

    # -- for the tests -------------------------------------------------------------------------

    def rows(self, destination: str, where: str = "TRUE") -> int:
        return self.db.execute(f"SELECT COUNT(*) FROM {destination.split('.', 1)[1]} WHERE {where}").fetchall()[0][0]  # every result read: DuckDB refuses other work on a connection with one pending

    def column(self, destination: str, name: str) -> list:
        return [r[0] for r in self.db.execute(f"SELECT {name} FROM {destination.split('.', 1)[1]}").fetchall()]

    def load_jobs(self) -> list[str]:
        return [j.job_id for j in self.jobs.values() if j.kind == "load"]

    # -- rules ---------------------------------------------------------------------------------

    def _full(self, table) -> str:
        """"project.dataset.table" of a table's name or reference; a name without a project is in the client's."""
        name = _name(table)
        return name if name.count(".") == 2 else f"{self.project}.{name}"

    def _in_location(self, dataset: str, location: str | None) -> None:
        if dataset not in self.datasets or self.datasets[dataset][0] != location:
            raise NotFound(f"Not found: Dataset {dataset} was not found in location {location}")

    def _job(self, job_id: str, kind: str, **kw) -> Job:
        job = Job(job_id, kind, **kw)
        self.jobs[job_id] = job
        return job


def _name(ref) -> str:
    """"project.dataset[.table]" from a name or a Dataset/Table reference (or table)."""
    if isinstance(ref, str):
        return ref.replace("`", "")
    parts = [getattr(ref, "project", None), getattr(ref, "dataset_id", None), getattr(ref, "table_id", None)]
    return ".".join(p for p in parts if p)
