"""`atelier audit`: independent checks of what the platform promises."""

from __future__ import annotations

import typer
from rich.table import Table

from atelier.cli.common import out, regions_of

app = typer.Typer(help="Audits: residency of client data.", no_args_is_help=True)


@app.command("residency")
def residency(region: str = typer.Option("all", "--region", "-r", help="Region to audit, or 'all'.")) -> None:
    """Report every client found in another region's storage; exit code 1 on any violation."""
    from atelier.protect.audit import audit_residency
    from atelier.settings import get_settings

    report = audit_residency(get_settings(), regions_of(region))
    table = Table(title="places checked", show_lines=False)
    table.add_column("place")
    table.add_column("items checked", justify="right")
    for place, n in sorted(report.checked.items()):
        table.add_row(place, f"{n:,}")
    out.print(table)
    if report.ok:
        out.print("[green]residency: no client outside its region[/]")
        return
    for f in report.findings:
        out.print(f"[red]VIOLATION[/] {f.place} ({f.region}): {f.detail}" + (f" e.g. {', '.join(f.examples)}" if f.examples else ""))
    raise typer.Exit(1)
