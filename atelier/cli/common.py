"""Shared CLI pieces: the console, progress bars, region options."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from atelier.regions import region_codes

console = Console(stderr=True, soft_wrap=True)
out = Console(soft_wrap=True)

RegionOption = typer.Option(..., "--region", "-r", help=f"One of: {', '.join(region_codes())}, or 'all'.")


def regions_of(region: str) -> list[str]:
    from atelier.regions import get_region

    return region_codes() if region == "all" else [get_region(region).code]


@contextlib.contextmanager
def progress_bar(description: str, total: int | None = None) -> Iterator:
    """A Rich progress bar; yields `advance(n)`."""
    with Progress(
        SpinnerColumn(), TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn(),
        console=console, transient=False,
    ) as p:
        yield _Advance(p, p.add_task(description, total=total))


class _Advance:
    """`advance(n)` moves the bar on; `advance.total(n)` sets its length once it is known."""

    def __init__(self, progress: Progress, task):
        self.progress, self.task = progress, task

    def __call__(self, n: int = 1) -> None:
        self.progress.advance(self.task, n)

    def total(self, n: int) -> None:
        self.progress.update(self.task, total=n)
