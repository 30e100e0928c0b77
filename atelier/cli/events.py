"""`atelier events`: the real-time path from the command line."""

from __future__ import annotations

from pathlib import Path

import typer

from atelier.cli.common import out, progress_bar

app = typer.Typer(help="Client events in real time: replay a file into a region, compact its journal.", no_args_is_help=True)


@app.command("replay")
def replay(
    file: Path = typer.Option(..., "--file", "-f", help="Events (CSV, Parquet or JSON Lines): event_id, client_id, product_id, event_type, event_timestamp, and optionally channel, store_id, amount, quantity."),
    region: str = typer.Option(..., "--region", "-r", help="The region whose clients these are."),
    rate: float | None = typer.Option(None, help="Events per second (default: as fast as they are taken)."),
    batch: int = typer.Option(100, help="Events per batch (1 to 1,000)."),
    url: str | None = typer.Option(None, help="Send to this regional service's POST /events instead of writing the region's stores from here."),
    token: str | None = typer.Option(None, envvar="ATELIER_TOKEN", help="The service's bearer token (with --url)."),
) -> None:
    """Push a file of events at a chosen rate, through the checks of POST /events.

    Nothing is sent if a row of the file is malformed; a batch the region refuses (an unknown
    product, a client of another region) stops the replay with its reasons. Events already
    stored are counted as duplicates, never twice.
    """
    from rich.table import Table

    from atelier.events import replay as rp
    from atelier.regions import get_region
    from atelier.settings import get_settings

    code = get_region(region).code
    events = rp.read_events(file)
    ingestor = None
    if url:
        send = rp.over_http(url, token)
    else:
        from atelier.context import RegionContext
        from atelier.events.ingest import Ingestor
        from atelier.features.repo import feature_store

        feature_store(get_settings(), code)  # refuses a region whose features were never applied, with the fix
        ingestor = Ingestor(RegionContext.of(get_settings(), code))
        send = rp.direct(ingestor)
        import gc

        gc.freeze()  # as the service does once started: what is loaded stays out of the collector's way
    try:
        with progress_bar(f"replaying into {code}", total=len(events)) as advance:
            totals = rp.replay(events, send, rate=rate, batch=batch, progress=advance)
    finally:
        if ingestor is not None:
            ingestor.close()
    table = Table(title=f"events replayed into {code}" + (f" via {url}" if url else ""), title_justify="left")
    for name in ("sent", "accepted", "duplicates", "batches", "events/s", "batch p50 ms"):
        table.add_column(name, justify="right")
    lat = sorted(totals.latencies_ms)
    table.add_row(f"{totals.sent:,}", f"{totals.accepted:,}", f"{totals.duplicates:,}", f"{totals.batches:,}",
                  f"{totals.sent / max(totals.seconds, 1e-9):,.0f}", f"{lat[len(lat) // 2]:.1f}")
    out.print(table)


@app.command("compact")
def compact(
    region: str = typer.Option(..., "--region", "-r", help="The region whose journal is compacted."),
    max_rows: int = typer.Option(500_000, "--max-rows", min=2, help="Events per merged part at most."),
) -> None:
    """Merge the journal's small parts (one per batch received) into parts of up to --max-rows events.

    Only parts already applied to the online store are merged; a service may keep ingesting
    meanwhile. `atelier features compute` does this before it reads the journal. A compaction
    stopped half-way is finished by the next one, and no event is ever read twice.
    """
    import time

    from rich.table import Table

    from atelier.context import RegionContext
    from atelier.events import journal
    from atelier.regions import get_region
    from atelier.settings import get_settings

    ctx = RegionContext.of(get_settings(), get_region(region).code)
    t0 = time.perf_counter()
    with journal.Journal(ctx) as j, progress_bar(f"compacting the journal of {ctx.region}") as advance:
        done = j.compact(max_rows=max_rows, progress=advance)
    table = Table(title=f"journal of {ctx.region} compacted", title_justify="left")
    for name in ("parts before", "parts after", "parts merged", "parts written", "seconds"):
        table.add_column(name, justify="right")
    table.add_row(f"{done.before:,}", f"{done.after:,}", f"{done.merged:,}", f"{done.written:,}", f"{time.perf_counter() - t0:.1f}")
    out.print(table)
