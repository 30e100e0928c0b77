"""`atelier train [recommend|forecast|assortment|all] -r R`: each model kind per region, beside its baselines.

A plain `atelier train -r R` trains every kind. The assortment stands on the forecast: asking for
it trains the forecast first, in the same run.
"""

from __future__ import annotations

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from atelier.cli.common import console, out, regions_of

KINDS = ("recommend", "forecast", "assortment", "all")


def train(
    kind: str = typer.Argument("all", help="Which model kind: recommend, forecast, assortment (with its forecast), or all.", show_default=True),
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
    horizon: int = typer.Option(12, help="Forecast: weeks ahead (1..12).", rich_help_panel="forecast"),
    origins: int = typer.Option(4, help="Forecast: test origins of the rolling backtest.", rich_help_panel="forecast"),
    step_weeks: int = typer.Option(3, "--step", help="Forecast: weeks between test origins.", rich_help_panel="forecast"),
    assortment_size: int = typer.Option(100, help="Assortment: products per list in the evaluation (top-N).", rich_help_panel="assortment"),
    segments: int = typer.Option(6, help="Assortment: client segments (k-means).", rich_help_panel="assortment"),
    forecast_epochs: int = typer.Option(20, help="Forecast: most passes over the examples (the best on validation is kept).", rich_help_panel="forecast"),
    forecast_members: int = typer.Option(3, min=1, max=9, help="Forecast: networks trained from different seeds; the forecast is their median.", rich_help_panel="forecast"),
) -> None:
    """Train on the region's point-in-time features; write metrics, plots and the model."""
    from atelier.errors import AtelierError

    if kind not in KINDS:
        raise AtelierError(f"unknown model kind {kind!r}", fix=f"use one of: {', '.join(KINDS)}")
    if not 1 <= horizon <= 12:
        raise AtelierError(f"--horizon {horizon} is out of range", fix="use 1 to 12 weeks")
    from atelier.models.progress import Steps
    from atelier.models.recommend.train import summary, train_region
    from atelier.models.recommend.two_tower import TrainConfig
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

            if kind in ("recommend", "all"):
                result = train_region(s, r, config, steps=Steps(step), export_model=export)
            if kind in ("forecast", "assortment", "all"):
                from atelier.models.forecast.backtest import ForecastConfig
                from atelier.models.forecast.train import train_forecast

                forecast = train_forecast(s, r, ForecastConfig(horizon=horizon, origins=origins, step=step_weeks, epochs=forecast_epochs, members=forecast_members, seed=seed),
                                          steps=Steps(step), export_model=export)
            if kind in ("assortment", "all"):
                from atelier.models.assortment.train import train_assortment

                assortment = train_assortment(s, forecast, n=assortment_size, k=segments, seed=seed, steps=Steps(step), export_model=export)
            for t in tasks.values():
                p.update(t, completed=p.tasks[t].total or 1, total=p.tasks[t].total or 1)
        if kind in ("recommend", "all"):
            out.print(summary(result))
        if kind in ("forecast", "assortment", "all"):
            from atelier.models.forecast.train import summary as forecast_summary

            out.print(forecast_summary(forecast))
        if kind in ("assortment", "all"):
            from atelier.models.assortment.train import summary as assortment_summary

            out.print(assortment_summary(assortment))
