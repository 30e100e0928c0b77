"""`atelier data`: fill the lake with a generated world or your own files."""

from __future__ import annotations

from enum import Enum
from pathlib import Path

import typer

from atelier.cli.common import out, progress_bar
from atelier.data.world import SIZES, WorldSpec, preset
from atelier.settings import get_settings

app = typer.Typer(help="The data lake: generate a world or import your own; load it into BigQuery.", no_args_is_help=True)


@app.command("generate")
def generate(
    size: str = typer.Option("small", help=f"Preset: {', '.join(f'{k} ({v.clients:,} clients)' for k, v in SIZES.items())}."),
    clients: int | None = typer.Option(None, help="Override the number of clients."),
    products: int | None = typer.Option(None, help="Override the number of products."),
    events_per_client: float | None = typer.Option(None, help="Override the mean number of events per client."),
    seed: int | None = typer.Option(None, help="Random seed (same seed, same world)."),
) -> None:
    """Generate a fictional luxury group: maisons, catalog, stores, clients, two years of events."""
    from atelier.data.generate import generate_world

    overrides = {k: v for k, v in dict(clients=clients, products=products, events_per_client=events_per_client, seed=seed).items() if v is not None}
    spec = WorldSpec(**{**preset(size).model_dump(), **overrides})
    s = get_settings()
    with progress_bar("generating clients and events", total=spec.clients) as advance:
        manifest = generate_world(s, spec, progress=advance)
    _summary(manifest, s.paths.lake)


@app.command("import")
def import_(
    clients: Path | None = typer.Option(None, help="Clients file (CSV or Parquet): client_id, country, any attributes."),
    products: Path | None = typer.Option(None, help="Products file: product_id, maison, category, any attributes."),
    events: Path | None = typer.Option(None, help="Events file: client_id, product_id, event_type, event_timestamp."),
    transactions: Path | None = typer.Option(None, help="Or: one raw export of transaction lines (CSV or Parquet), with --mapping."),
    mapping: Path | None = typer.Option(None, help="YAML mapping of the export's columns, values and rules (see examples/online_retail/)."),
    unknown_country: str = typer.Option("error", help="Clients whose country is no ISO code or English name: 'error' lists them, 'drop' leaves them out (counted)."),
) -> None:
    """Import your own data: three files, or one raw transaction export with a mapping.

    Everything is validated first; on any problem nothing is written.
    """
    from atelier.errors import AtelierError

    s = get_settings()
    three = (clients, products, events)
    if transactions is not None or mapping is not None:
        if transactions is None or mapping is None or any(three):
            raise AtelierError("--transactions and --mapping go together, without --clients/--products/--events")
        from atelier.data.transactions import import_transactions

        with progress_bar("validating and writing") as advance:
            manifest = import_transactions(s, transactions, mapping, progress=advance)
    elif all(three):
        from atelier.data.importer import import_files

        with progress_bar("validating and writing") as advance:
            manifest = import_files(s, clients, products, events, progress=advance, unknown_country=unknown_country)
    else:
        raise AtelierError("give --clients, --products and --events, or --transactions with --mapping", fix="see `atelier data import --help`")
    _rules(manifest.get("rules") or {})
    _summary(manifest, s.paths.lake)


class Destination(str, Enum):
    bigquery = "bigquery"


@app.command("load")
def load(
    to: Destination = typer.Option(..., "--to", help="Where: bigquery, the region's dataset."),
    region: str = typer.Option(..., "--region", "-r", help="The region whose lake and journal are loaded."),
    terraform_output: Path = typer.Option(..., help="`terraform -chdir=terraform/envs/<region> output -json` saved to a file: the dataset, its location and key."),
    project: str = typer.Option(..., help="The region's Google Cloud project."),
    features: bool = typer.Option(False, "--features", help="Also load the feature tables computed here (`atelier features compute`), under the names Feast's BigQuery sources read."),
) -> None:
    """Load the region's lake and real-time events into its BigQuery dataset, in the region, under its key.

    Incremental and idempotent: each Parquet part is loaded once, parts the home no longer has are deleted there, and a second run sends nothing.
    With --features, the feature tables computed on this machine go too, so that Feast's BigQuery offline store (`atelier features cloud-config`) reads them.
    """
    from atelier.context import RegionContext
    from atelier.data import load_bigquery
    from atelier.features.cloud import read_module_outputs

    target = load_bigquery.target_from_outputs(region, read_module_outputs(terraform_output), project)
    ctx = RegionContext.of(get_settings(), region)
    with progress_bar(f"{region}: loading into {target.project}.{target.dataset} ({target.location})") as advance:
        reports = load_bigquery.load(ctx, load_bigquery.bigquery_client(target), target, progress=advance, on_units=advance.total, features=features)
    if not any(r.loaded or r.deleted for r in reports.values()):
        out.print(f"{region}: nothing to load; {target.project}.{target.dataset} holds every part ({sum(r.held for r in reports.values()):,})")
        return
    from rich.table import Table

    table = Table(title=f"{region} -> {target.project}.{target.dataset}", title_justify="left")
    for column in ("table", "parts kept", "parts loaded", "rows loaded", "parts deleted"):
        table.add_column(column, justify="left" if column == "table" else "right")
    for name, r in reports.items():
        table.add_row(name, f"{r.held:,}", f"{r.loaded:,}", f"{r.rows:,}", f"{r.deleted:,}")
    out.print(table)


def _rules(counts: dict[str, int]) -> None:
    if not counts:
        return
    from rich.table import Table

    table = Table(title="import rules", title_justify="left")
    table.add_column("what")
    table.add_column("count", justify="right")
    for what, n in counts.items():
        table.add_row(what, f"{n:,}")
    out.print(table)


def _summary(manifest: dict, lake: Path) -> None:
    counts = manifest["counts"]
    for region in counts["clients"]:
        out.print(f"{region}: {counts['clients'][region]:,} clients, {counts['events'][region]:,} events (encrypted)")
    attrs = manifest["attributes"]
    out.print(f"products: {manifest['products']:,}; attributes: clients {[a['name'] for a in attrs['clients']]}, products {[a['name'] for a in attrs['products']]}")
    out.print(f"lake: {lake}")
