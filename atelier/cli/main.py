"""`atelier`: data, features, training, bentos, keys and audits for every region.

Known problems print as one line with what to do next; set ATELIER_DEBUG=1 for the traceback.
"""

from __future__ import annotations

import os
import sys

import typer

from atelier.cli import audit, data, demo, deploy, events, features, keys, serve, train
from atelier.cli.common import console
from atelier.errors import AtelierError

cli = typer.Typer(
    name="atelier",
    help="Feature store and model serving for every maison of the group, region by region.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
@cli.callback()
def _options(verbose: bool = typer.Option(False, "--verbose", "-v", help="Show library logs and warnings (TensorFlow, Feast, BentoML) on the terminal.")) -> None:
    """Feature store and model serving for every maison of the group, region by region."""
    from atelier.logs import setup
    from atelier.settings import get_settings

    path = setup(get_settings().home, loud=verbose)
    if path is not None:
        os.environ.setdefault("ATELIER_LOG_FILE", str(path))


cli.add_typer(data.app, name="data")
cli.add_typer(features.app, name="features")
cli.add_typer(deploy.app, name="deploy")
cli.add_typer(events.app, name="events")
cli.add_typer(keys.app, name="keys")
cli.add_typer(audit.app, name="audit")
cli.command("train")(train.train)
cli.command("build")(serve.build)
cli.command("serve")(serve.serve)
cli.command("demo")(demo.demo)


def app() -> None:
    from atelier.logs import native_stderr_to_log, verbose

    try:
        if not verbose() and not {"-v", "--verbose"} & set(sys.argv[1:2]):
            from atelier.settings import get_settings

            native_stderr_to_log(get_settings().home)
        cli()
    except AtelierError as e:
        if os.environ.get("ATELIER_DEBUG"):
            raise
        console.print(f"[bold red]error:[/] {e.render()}", highlight=False)
        console.print("[dim](set ATELIER_DEBUG=1 for the traceback)[/]")
        sys.exit(1)


if __name__ == "__main__":
    app()
