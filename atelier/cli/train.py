"""`atelier train`: a two-tower retrieval model per region, evaluated against most-popular."""

from __future__ import annotations

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from atelier.cli.common import console, out, regions_of


def train(
    region: str = typer.Option(..., "--region", "-r", help="Region to train (its clients only), or 'all'."),
    epochs: int = typer.Option(6, help="Most passes over the training examples (stops early when validation recall stops rising)."),
    batch_size: int = typer.Option(1024, help="Examples per batch (also the number of in-batch negatives)."),
    learning_rate: float = typer.Option(0.004, help="Adam learning rate."),
    embedding_dim: int = typer.Option(64, help="Size of the client and product vectors."),
    temperature: float = typer.Option(0.1, help="Softmax temperature on cosine scores."),
    logq: bool = typer.Option(True, help="Correct in-batch negatives for popularity (log-Q)."),
    eval_weeks: int = typer.Option(4, help="Weeks of the validation window (choices) and of the test window after it (the report)."),
    refit: bool = typer.Option(True, help="Retrain on train + validation with the chosen epochs before testing and exporting."),
    exclude_purchased: bool = typer.Option(True, help="Do not recommend what a client already bought."),
    view_weight: float = typer.Option(0.25, help="Weight of a product view as a positive (0 drops views)."),
    wishlist_weight: float = typer.Option(0.5, help="Weight of a wishlist add as a positive."),
    max_examples: int | None = typer.Option(None, help="Sample at most this many training examples."),
    seed: int = typer.Option(7, help="Random seed."),
    export: bool = typer.Option(True, help="Save the model to the BentoML model store."),
) -> None:
    """Train on the region's point-in-time features; write metrics, plots and the model."""
    from atelier.models.train import Steps, summary, train_region
    from atelier.models.two_tower import TrainConfig
    from atelier.settings import get_settings

    config = TrainConfig(
        epochs=epochs, batch_size=batch_size, learning_rate=learning_rate, embedding_dim=embedding_dim,
        temperature=temperature, logq=logq, eval_weeks=eval_weeks, refit=refit, exclude_purchased=exclude_purchased,
        event_weights={"purchase": 1.0, "wishlist": wishlist_weight, "view": view_weight}, max_examples=max_examples, seed=seed,
    )
    s = get_settings()
    for r in regions_of(region):
        with Progress(SpinnerColumn(), TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console) as p:
            tasks: dict = {}

            def step(name: str, total: int | None):
                for t in tasks.values():
                    p.update(t, completed=p.tasks[t].total or 1, total=p.tasks[t].total or 1)
                tasks[name] = p.add_task(f"{r}: {name}", total=total)
                return lambda n=1: p.advance(tasks[name], n)

            result = train_region(s, r, config, steps=Steps(step), export_model=export)
            for t in tasks.values():
                p.update(t, completed=p.tasks[t].total or 1, total=p.tasks[t].total or 1)
        out.print(summary(result))
