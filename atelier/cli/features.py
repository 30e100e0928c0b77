"""`atelier features`: compute, register and serve features, region by region."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import typer

from atelier.cli.common import RegionOption, out, progress_bar, regions_of
from atelier.settings import get_settings

app = typer.Typer(help="Features: compute from events, apply definitions, materialize online.", no_args_is_help=True)


@app.command("compute")
def compute(region: str = RegionOption) -> None:
    """Run the feature pipeline: the region's events -> its feature tables (encrypted)."""
    from atelier.features.pipeline import compute_features

    s = get_settings()
    for r in regions_of(region):
        with progress_bar(f"{r}: computing features from events") as advance:
            counts = compute_features(s, r, progress=advance)
        out.print(f"{r}: " + ", ".join(f"{k} {v:,} rows" for k, v in counts.items()))


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
