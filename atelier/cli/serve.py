"""`atelier build` and `atelier serve`: the regional service (recommendations, events, forecasts, assortments)."""

from __future__ import annotations

import typer

from atelier.cli.common import console, out, regions_of


def build(
    region: str = typer.Option(..., "--region", "-r", help="Region, or 'all'."),
    gpu: bool = typer.Option(False, "--gpu", help="CUDA base image, TensorFlow's CUDA build, and a GPU requested through resources."),
) -> None:
    """Build a bento (model, service, pinned runtime, Dockerfile) from the region's latest model."""
    from atelier.serving.bento import build as build_bento
    from atelier.settings import get_settings

    s = get_settings()
    for r in regions_of(region):
        with console.status(f"{r}: building the bento"):
            result = build_bento(s, r, gpu=gpu)
        planning = ", ".join(f"{kind} {result[kind]}" for kind in ("forecast", "assortment") if result.get(kind)) or "no forecast or assortment model yet"
        out.print(f"{r}: bento {result['bento']} (model {result['model']}; {planning})\n  Dockerfile: {result['dockerfile']}\n  containerize with: bentoml containerize {result['bento']}")


def serve(
    region: str = typer.Option(..., "--region", "-r", help="The region to serve."),
    port: int = typer.Option(3000, help="HTTP port."),
    gpu: bool = typer.Option(False, "--gpu", help="Serve the GPU bento."),
    workers: int | None = typer.Option(None, help="Worker processes (default 2)."),
    insecure_local: bool = typer.Option(False, "--insecure-local", help="Serve without API tokens, on 127.0.0.1 only (a demo, a developer's machine)."),
) -> None:
    """Serve the region's latest bento locally (POST /recommend, /similar, /events, /forecast, /assortment; GET /livez, /readyz, /metrics; the OpenAPI page at /)."""
    from atelier.errors import AtelierError
    from atelier.serving.bento import port_taken, run_foreground, serve_command
    from atelier.settings import get_settings

    cmd, env = serve_command(get_settings(), region, port, gpu=gpu, workers=workers, insecure_local=insecure_local)
    if port_taken(port):
        raise AtelierError(f"port {port} is taken: another server listens there", fix="stop it, or choose another --port")
    console.print(f"serving {cmd[2]} on http://localhost:{port} (Ctrl-C to stop)")
    raise typer.Exit(run_foreground(cmd, env))
