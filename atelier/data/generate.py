"""`atelier data generate`: write a generated world into the lake, chunk by chunk.

Memory stays bounded by the chunk size (`WorldSpec.chunk_clients`): each chunk of clients is
simulated, split by region, encrypted and written before the next one is made.
"""

from __future__ import annotations

from collections.abc import Callable

import pyarrow as pa

from atelier.data.events import simulate_events
from atelier.data.lake import write_lake
from atelier.data.schema import infer_attributes
from atelier.data.world import WorldSpec, make_catalog, make_clients
from atelier.settings import Settings


def generate_world(settings: Settings, spec: WorldSpec, progress: Callable[[int], None] = lambda n: None) -> dict:
    catalog = make_catalog(spec)

    def chunks():
        for first in range(0, spec.clients, spec.chunk_clients):
            count = min(spec.chunk_clients, spec.clients - first)
            clients = make_clients(spec, catalog, first, count)
            events = simulate_events(spec, catalog, clients, first)
            # the client master records when a profile took its values: here, the join date
            table = clients.table.append_column("updated_at", clients.table.column("join_date"))
            yield table, events

    sample = make_clients(spec, catalog, 0, min(spec.clients, 2000)).table
    manifest = {"source": "generated", "spec": spec.model_dump(mode="json")}
    return write_lake(
        settings,
        {"products": catalog.products, "maisons": catalog.maisons, "stores": catalog.stores},
        infer_attributes("clients", sample),
        infer_attributes("products", catalog.products),
        chunks(),
        manifest,
        progress,
    )


def world_tables(spec: WorldSpec) -> dict[str, pa.Table]:
    """The whole world in memory (small specs only): handy for tests and for writing import files."""
    catalog = make_catalog(spec)
    clients = make_clients(spec, catalog, 0, spec.clients)
    events = simulate_events(spec, catalog, clients, 0)
    return {"products": catalog.products, "clients": clients.table, "events": events}
