"""`atelier deploy`: the bentos onto each region's GKE cluster."""

from __future__ import annotations

from pathlib import Path

import typer

from atelier.cli.common import out

app = typer.Typer(help="Kubernetes manifests for a region's bento.", no_args_is_help=True)


@app.command("manifests")
def manifests(
    region: str = typer.Option(..., "--region", "-r", help="The region whose bento and cluster these are."),
    outputs: Path = typer.Option(..., help="The region's Terraform outputs (`terraform output -json` in terraform/envs/<region>)."),
    out_dir: Path = typer.Option(..., "--out", help="Folder for the manifests (one YAML file per object)."),
    bento: str | None = typer.Option(None, help="name:version of the bento (default: the region's latest, CPU or GPU)."),
    gpu: bool = typer.Option(False, help="The GPU variant: the L4 pool, its toleration, nvidia.com/gpu: 1."),
    replicas: int = typer.Option(2, min=1, help="Pods at least (the autoscaler's minimum)."),
    max_replicas: int = typer.Option(10, min=1, help="Pods at most."),
) -> None:
    """Write the Deployment, Service, autoscaler, disruption budget, service account and secret
    references of a region's bento. Apply them with `kubectl apply -f DIR`."""
    from atelier.deploy import manifests as m
    from atelier.errors import AtelierError
    from atelier.regions import get_region
    from atelier.settings import get_settings

    code = get_region(region).code
    if max_replicas < replicas:
        raise AtelierError(f"--max-replicas {max_replicas} is below --replicas {replicas}")
    values = m.read_outputs(outputs, code)
    if bento is None:
        from atelier.models.store import use_bentoml_home
        from atelier.serving.bento import bento_name

        use_bentoml_home(get_settings())
        import bentoml

        try:
            bento = str(bentoml.bentos.get(f"{bento_name(code, gpu)}:latest").tag)
        except bentoml.exceptions.NotFound:
            raise AtelierError(f"no bento {bento_name(code, gpu)!r}", fix=f"run `atelier build -r {code}{' --gpu' if gpu else ''}` first") from None
    objects = m.manifests(code, bento, values, gpu=gpu, replicas=replicas, max_replicas=max_replicas)
    for path in m.write(objects, out_dir):
        out.print(f"wrote {path}")
    out.print(f"apply: kubectl apply -f {out_dir}   (cluster {values['gke_cluster']}, {values['location']})")
