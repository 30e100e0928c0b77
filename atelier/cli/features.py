"""`atelier features`: compute, register and serve features, region by region."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import typer

from atelier.cli.common import RegionOption, out, progress_bar, regions_of
from atelier.settings import get_settings

app = typer.Typer(help="Features: compute from events, apply definitions, materialize online.", no_args_is_help=True)


@app.command("compute")
def compute(
    region: str = RegionOption,
    engine: str = typer.Option("local", help="local: this machine's pandas/numpy pipeline, into the encrypted lake; duckdb: the same tables by the SQL BigQuery runs, on DuckDB here, in memory; bigquery: that SQL in the region's dataset."),
    terraform_output: Path | None = typer.Option(None, help="bigquery: `terraform -chdir=terraform/envs/<region> output -json` saved to a file (the dataset, its location and key)."),
    project: str | None = typer.Option(None, help="bigquery: the region's Google Cloud project."),
) -> None:
    """Run the feature pipeline: the region's events -> its feature tables (encrypted).

    With --engine duckdb, the tables are the same, computed by the SQL of --engine bigquery on DuckDB over the decrypted
    events in memory (slower than local on a machine of few cores). With --engine bigquery, each table Feast's BigQuery
    sources read is computed where the data is, by one query job in the region's location under its key, from the tables
    `atelier data load --to bigquery` loaded.
    """
    from atelier.errors import AtelierError
    from atelier.features.pipeline import ENGINES, compute_features

    s = get_settings()
    if engine not in (*ENGINES, "bigquery"):
        raise AtelierError(f"no engine {engine!r}", fix="use --engine local, --engine duckdb or --engine bigquery")
    if engine == "bigquery":
        if terraform_output is None or project is None or region == "all":
            raise AtelierError("--engine bigquery needs one region, its --terraform-output and its --project",
                               fix="atelier features compute -r eu --engine bigquery --terraform-output eu.json --project <eu-project>")
        _compute_in_bigquery(s, region, terraform_output, project)
        return
    for r in regions_of(region):
        with progress_bar(f"{r}: computing features from events") as advance:
            counts = compute_features(s, r, progress=advance, engine=engine, on_total=advance.total)
        out.print(f"{r}: " + ", ".join(f"{k} {v:,} rows" for k, v in counts.items()))


def _compute_in_bigquery(s, region: str, terraform_output: Path, project: str) -> None:
    from rich.table import Table

    from atelier.data import load_bigquery
    from atelier.features.cloud import read_module_outputs
    from atelier.features.compute_bigquery import compute as compute_there

    target = load_bigquery.target_from_outputs(region, read_module_outputs(terraform_output), project)
    with progress_bar(f"{region}: computing features in {target.project}.{target.dataset} ({target.location})") as advance:
        rows, elsewhere = compute_there(s, region, load_bigquery.bigquery_client(target), target, progress=advance, on_jobs=advance.total)
    table = Table(title=f"{region}: feature tables in {target.project}.{target.dataset}", title_justify="left")
    table.add_column("table")
    table.add_column("rows", justify="right")
    for name, n in rows.items():
        table.add_row(name, f"{n:,}")
    out.print(table)
    if elsewhere:
        out.print(f"not computed by SQL: {', '.join(elsewhere)}; compute them here and load them (`atelier data load --to bigquery -r {region} ... --features`)")


@app.command("apply")
def apply(region: str = RegionOption) -> None:
    """Register feature_repo/ in the region's Feast project (as `feast apply` does)."""
    from atelier.features.repo import apply as apply_region
    from atelier.features.repo import write_config

    s = get_settings()
    for r in regions_of(region):
        result = apply_region(s, r)
        out.print(f"{r}: applied {len(result['applied'])} objects, deleted {len(result['deleted'])}; config {write_config(s, r)}")


@app.command("materialize")
def materialize(
    region: str = RegionOption,
    full: bool = typer.Option(False, "--full", help="Reload everything instead of what arrived since the last run."),
    end: dt.datetime | None = typer.Option(None, help="Load rows up to this time (default: now)."),
    view: list[str] = typer.Option([], "--view", help="Only these feature views."),
) -> None:
    """Load the latest feature values into the region's online store."""
    from atelier.features.repo import materialize as materialize_region

    s = get_settings()
    end = end.replace(tzinfo=dt.timezone.utc) if end and end.tzinfo is None else end
    for r in regions_of(region):
        with progress_bar(f"{r}: materializing") as advance:
            written = materialize_region(s, r, incremental=not full, end=end, views=view or None, progress=lambda _v, n: advance(n))
        out.print(f"{r}: " + (", ".join(f"{k} {v:,}" for k, v in sorted(written.items())) or "nothing new"))


@app.command("config")
def config(region: str = RegionOption) -> None:
    """Write and print the path of the region's feature_store.yaml, for stock `feast -f`."""
    from atelier.features.repo import write_config

    s = get_settings()
    for r in regions_of(region):
        out.print(str(write_config(s, r)))


@app.command("cloud-config")
def cloud_config(
    region: str = typer.Option(..., "--region", "-r"),
    terraform_output: Path = typer.Option(..., help="`terraform -chdir=terraform/envs/<region> output -json` saved to a file."),
    project: str = typer.Option(..., help="The region's Google Cloud project."),
    out_dir: Path | None = typer.Option(None, help="Where to write (default: <home>/cloud/<region>)."),
) -> None:
    """Write the region's cloud feature_store.yaml (BigQuery + Memorystore) and its environment file."""
    from atelier.features.cloud import write_cloud_config

    s = get_settings()
    yaml_path, env_path = write_cloud_config(region, terraform_output, project, out_dir or s.home / "cloud" / region)
    out.print(f"{region}: {yaml_path}\n{region}: {env_path}")


@app.command("sql")
def sql_scripts(
    out_dir: Path | None = typer.Option(None, "--out", help="Write one <query>.sql per aggregation here (default: print them)."),
    dialect: str = typer.Option("bigquery", help="bigquery (the source, for the cloud), or duckdb (as the tests run it here)."),
    dataset: str = typer.Option("atelier", help="BigQuery: the region's dataset (Terraform output bigquery_dataset) that holds events, clients and products."),
) -> None:
    """The feature pipeline's aggregations as SQL: the client_activity, product_popularity and maison_engagement_<maison> tables, the windows alone, and the weekly series.

    The same queries the tests run on DuckDB against the pandas pipeline, row for row. In the
    cloud: `bq query --use_legacy_sql=false --location=<region's location> --destination_table=<dataset>.client_activity --replace < client_activity.sql`.
    """
    from atelier.errors import AtelierError
    from atelier.features import sql
    from atelier.io import write_bytes_atomic

    if dialect not in ("bigquery", "duckdb"):  # the two engines whose results the tests hold to the pipeline's
        raise AtelierError(f"no tested SQL for {dialect!r}", fix="use --dialect bigquery or duckdb")
    from atelier.features.repo import engagement_maisons

    scripts = {name: sql.for_bigquery(text, dataset) if dialect == "bigquery" else sql.transpile(text)
               for name, text in sql.scripts(engagement_maisons(get_settings())).items()}  # every script built before anything is written
    if out_dir is not None:
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise AtelierError(f"cannot write the scripts to {out_dir}: {e.strerror}", fix="pass a folder that can be created (or exists)") from None
    for name, text in scripts.items():
        if out_dir is None:
            out.print(f"-- {name}\n{text};\n")
        else:
            write_bytes_atomic(out_dir / f"{name}.sql", (text + ";\n").encode())
    if out_dir is not None:
        out.print(f"wrote {len(scripts)} queries ({dialect}) to {out_dir}")


@app.command("check")
def check_rules(as_json: bool = typer.Option(False, "--json", help="Print the problems as JSON.")) -> None:
    """Check feature_repo/ against the governance rules (tags, descriptions, permissions, reuse, names).

    The same check runs before every apply; exits 1 when anything breaks a rule."""
    import json

    from rich.table import Table

    from atelier.features.governance import check, views_of
    from atelier.features.repo import parse_definitions

    s = get_settings()
    contents = parse_definitions(s)
    problems = check(contents)
    if as_json:
        out.print_json(json.dumps([p.to_json() for p in problems]))
    elif problems:
        table = Table(title=f"{len(problems)} problem(s) in {s.feature_repo}", show_lines=False)
        for col in ("rule", "object", "problem", "fix"):
            table.add_column(col, overflow="fold")
        for p in problems:
            table.add_row(p.rule, f"{p.kind} {p.name}", p.message, p.fix)
        out.print(table)
    else:
        out.print(f"{len(views_of(contents))} feature views, {len(contents.feature_services)} feature services, "
                  f"{len(contents.permissions)} permissions: no problems")
    if problems:
        raise typer.Exit(1)


@app.command("list")
def list_features(
    region: str | None = typer.Option(None, "--region", "-r", help="One region (default: every region with an applied repository)."),
    owner: str | None = typer.Option(None, help="Only objects owned by this maison slug (or 'group')."),
    sharing: str | None = typer.Option(None, help="shared or private."),
    sensitivity: str | None = typer.Option(None, help="public, internal, confidential or restricted."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of tables."),
) -> None:
    """The feature views and services of a region: features, tags, freshness, online rows and who uses them."""
    import json

    from atelier.errors import AtelierError
    from atelier.features import catalog
    from atelier.features.governance import SENSITIVITY, SHARING
    from atelier.features.repo import registry_path

    if sharing is not None and sharing not in SHARING:
        raise AtelierError(f"--sharing {sharing!r} is not one of {', '.join(SHARING)}")
    if sensitivity is not None and sensitivity not in SENSITIVITY:
        raise AtelierError(f"--sensitivity {sensitivity!r} is not one of {', '.join(SENSITIVITY)}")
    s = get_settings()
    from atelier.regions import get_region, region_codes

    codes = [get_region(region).code] if region else [r for r in region_codes() if registry_path(s, r).exists()]
    if not codes:
        raise AtelierError("no region has an applied feature repository", fix="run `atelier features apply -r <region>`")
    listings = [catalog.describe(s, r, owner=owner, sharing=sharing, sensitivity=sensitivity) for r in codes]
    if as_json:
        out.print_json(json.dumps(listings if not region else listings[0]))
        return
    for listing in listings:
        _print_listing(listing)


def _print_listing(listing: dict) -> None:
    from rich.table import Table

    region = listing["region"]
    views = Table(title=f"{region}: feature views ({listing['project']})", show_lines=True)
    for col in ("view", "features", "owner", "sharing", "sensitivity", "materialized", "online rows", "used by"):
        views.add_column(col, overflow="fold")
    for v in listing["views"]:
        features = "\n".join(f"[bold]{f['name']}[/] {f['type']}: {f['description'] or '[red](no description)[/]'}" for f in v["features"])
        used = [f"service {s}" for s in v["feature_services"]] + [f"model {m}" for m in v["models"]]
        rows = v["online_rows"]
        views.add_row(f"[bold]{v['name']}[/]\n{v['description']}", features, v["tags"]["owner"], v["tags"]["sharing"], v["tags"]["sensitivity"],
                      v["materialized_at"] or "never", "?" if rows is None else f"{rows:,}", "\n".join(used) or "-")
    out.print(views)
    services = Table(title=f"{region}: feature services", show_lines=True)
    for col in ("service", "views", "owner", "sharing", "sensitivity", "models"):
        services.add_column(col, overflow="fold")
    for sv in listing["services"]:
        services.add_row(f"[bold]{sv['name']}[/]\n{sv['description']}", "\n".join(sv["views"]), sv["tags"]["owner"], sv["tags"]["sharing"],
                         sv["tags"]["sensitivity"], "\n".join(sv["models"]) or "-")
    out.print(services)


@app.command("new")
def new_view(
    maison: str = typer.Option(..., help="The maison's slug, as in the catalog (lumiere-de-grasse)."),
    name: str = typer.Option(..., help="What the features are about, snake_case (gifting)."),
    force: bool = typer.Option(False, "--force", help="Overwrite the file if it exists."),
) -> None:
    """Scaffold a maison's private view, the feature service reusing the shared client views with it,
    and the permission that lets only that maison read them (feature_repo/maisons/<maison>_<name>.py)."""
    from atelier.features.definitions import group_maisons
    from atelier.features.scaffold import names, new

    s = get_settings()
    path = new(s, maison, name, known_maisons=group_maisons(), force=force)
    n = names(maison, name)
    out.print(f"wrote {path}\n  view {n['view']}, service {n['service']}, permission {n['permission']}\n"
              f"next: atelier features check; atelier features apply -r <region>; atelier features materialize -r <region> --view {n['view']}")


@app.command("ui")
def ui(
    region: str = typer.Option(..., "--region", "-r", help="The region whose registry to browse."),
    host: str = typer.Option("127.0.0.1", help="Address to listen on (loopback by default: the UI has no login)."),
    port: int = typer.Option(8888, help="Port to listen on."),
) -> None:
    """Feast's own feature browser on the region's registry (views, services, entities, tags)."""
    from atelier.errors import AtelierError
    from atelier.features.repo import project_name, registry_path
    from atelier.features.ui import serve
    from atelier.logs import to_log
    from atelier.regions import get_region
    from atelier.serving.bento import port_taken

    s = get_settings()
    code = get_region(region).code
    if not registry_path(s, code).exists():
        raise AtelierError(f"region {code!r} has no applied feature repository", fix=f"run `atelier features apply -r {code}`")
    if port_taken(port):
        raise AtelierError(f"port {port} is taken", fix="choose another with --port")
    out.print(f"{code}: Feast UI (read-only) on http://{host}:{port}/p/{project_name(code)}/feature-view  (Ctrl-C stops it)")
    with to_log():
        serve(s, code, host, port)
