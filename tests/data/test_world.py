"""The generated world: deterministic, regional, and with structure a model can learn."""

import numpy as np
import pyarrow.compute as pc

from atelier.data.events import simulate_events
from atelier.data.generate import world_tables
from atelier.data.world import MAISONS, WorldSpec, make_catalog, make_clients
from atelier.regions import region_of_country

SPEC = WorldSpec(clients=300, products=80, events_per_client=30)


def test_same_seed_same_world_other_seed_other_world():
    a, b = world_tables(SPEC), world_tables(SPEC)
    assert a["events"].equals(b["events"]) and a["clients"].equals(b["clients"])
    c = world_tables(SPEC.model_copy(update={"seed": 8}))
    assert not c["events"].equals(a["events"])


def test_every_client_country_has_a_region():
    clients = world_tables(SPEC)["clients"]
    assert all(region_of_country(c) for c in clients.column("country").to_pylist())


def test_events_reference_known_clients_and_launched_products():
    w = world_tables(SPEC)
    events, products = w["events"], w["products"]
    assert pc.all(pc.is_in(events.column("client_id"), value_set=w["clients"].column("client_id"))).as_py()
    launch = dict(zip(products.column("product_id").to_pylist(), products.column("launch_date").to_pylist()))
    purchases = events.filter(pc.equal(events.column("event_type"), "purchase")).to_pylist()
    assert purchases, "a 300-client world over two years has purchases"
    # Products are chosen among those launched by the session's day (launch at 09:00 that day).
    assert all(e["event_timestamp"].date() >= launch[e["product_id"]].date() for e in purchases)


def test_every_maison_sells_and_types_are_known():
    w = world_tables(SPEC)
    assert set(w["products"].column("maison").to_pylist()) == {m[0] for m in MAISONS}
    assert set(w["events"].column("event_type").to_pylist()) == {"purchase", "view", "wishlist"}


def test_loyalty_is_concentrated_enough_to_learn():
    """Clients buy mostly from a few maisons: a favourite-maison signal a model can use."""
    w = world_tables(WorldSpec(clients=400, products=200, events_per_client=40))
    ev = w["events"].to_pandas()
    maison = dict(zip(w["products"].column("product_id").to_pylist(), w["products"].column("maison").to_pylist()))
    ev["maison"] = ev["product_id"].map(maison)
    share = ev.groupby("client_id")["maison"].agg(lambda s: s.value_counts(normalize=True).iloc[0])
    # 16 maisons: uniform would give a top share near 1/16.
    assert share[ev.groupby("client_id").size() >= 10].median() > 0.35


def test_simulation_handles_a_chunk_without_sessions():
    spec = WorldSpec(clients=20, products=40, events_per_client=0.001)
    catalog = make_catalog(spec)
    clients = make_clients(spec, catalog, 0, 20)
    events = simulate_events(spec, catalog, clients, 0)
    assert events.num_rows == 0 or set(events.column("event_type").to_pylist()) <= {"purchase", "view", "wishlist"}
    assert np.all(clients.loyalty.sum(axis=1) > 0.99)


def test_a_replica_redraws_the_same_clients_behaviour():
    """Replica 0 is the world as generated; another replica is another draw of the same clients'
    events (what benchmarks/forecast_reference.py averages over), repeatable and alike in volume."""
    catalog = make_catalog(SPEC)
    clients = make_clients(SPEC, catalog, 0, SPEC.clients)
    world = world_tables(SPEC)["events"]
    assert simulate_events(SPEC, catalog, clients, 0, replica=0).equals(world)
    again, other = simulate_events(SPEC, catalog, clients, 0, replica=1), simulate_events(SPEC, catalog, clients, 0, replica=1)
    assert again.equals(other) and not again.equals(world)
    assert set(again.column("client_id").to_pylist()) <= set(clients.table.column("client_id").to_pylist())
    assert 0.8 < again.num_rows / world.num_rows < 1.25
