"""Events into both sides of a region's feature store, against a real Redis: counted once, all or
nothing, consistent after a kill -9 between the two writes, and read by the next features and training."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from datetime import datetime, timedelta, timezone

import pyarrow.compute as pc
import pytest
from feast.permissions.user import User
from threads import submit_all, until

from atelier.context import RegionContext
from atelier.events import fresh, journal
from atelier.events.batch import Event, ForeignClients, Problems
from atelier.events.ingest import Ingestor, StoreUnavailable
from atelier.features import repo
from atelier.features.definitions import SERVING
from atelier.features.online import OnlineFeatures
from atelier.protect.residency import roster

pytestmark = pytest.mark.redis
NOW = datetime.now(timezone.utc)


def _ready(settings, region="eu") -> Ingestor:
    repo.apply(settings, region)
    repo.materialize(settings, region, incremental=False)
    return Ingestor(RegionContext.of(settings, region, User("svc", [SERVING])))


def _events(client, products, kinds, prefix="e", start=NOW - timedelta(minutes=10)):
    return [Event(event_id=f"{prefix}{i}", client_id=client, product_id=p, event_type=k, event_timestamp=start + timedelta(seconds=i))
            for i, (p, k) in enumerate(zip(products, kinds))]


def _online_log(settings, client, region="eu") -> fresh.Log:
    reader = OnlineFeatures(repo.feature_store(settings, region), fresh.REFS)
    return fresh.Log.of(reader.get_one(client) or {})


def test_a_resent_batch_counts_nothing_twice(redis_settings):
    ing = _ready(redis_settings)
    client = roster(redis_settings, "eu")[0].as_py()
    products = ing.products().to_pylist()[:4]
    batch = _events(client, products, ["view", "view", "wishlist", "purchase"])
    first = ing.ingest(batch)
    assert (first.accepted, first.duplicates) == (4, 0)
    again = ing.ingest(batch[1:] + _events(client, products[:1], ["view"], prefix="new"))
    assert (again.accepted, again.duplicates) == (1, 3)
    log = _online_log(redis_settings, client)
    assert sorted(log.ids) == ["e0", "e1", "e2", "e3", "new0"]
    assert log.products == [products[0], products[0], products[1], products[2], products[3]]  # time order
    stock = repo.feature_store(redis_settings, "eu").get_online_features(
        features=["client_recent:event_products", "client_recent:last_purchase_at", "client_recent:session_events"], entity_rows=[{"client_id": client}]).to_dict()
    assert stock["event_products"] == [log.products] and stock["session_events"] == [5]  # stock Feast reads the push view
    assert stock["last_purchase_at"][0] is not None
    offline = journal.read(ing.ctx)
    assert offline.num_rows == 5 and pc.count_distinct(offline.column("event_id")).as_py() == 5


def test_a_batch_sent_to_redis_in_pieces_writes_every_clients_row(redis_settings, monkeypatch):
    """The rows go to Redis a few clients at a time (`SEND_ROWS`), those the stored bytes cannot
    answer (an event older than the row's last) the exact way: every client's row is its merge."""
    from atelier.events import ingest

    monkeypatch.setattr(ingest, "SEND_ROWS", 2)
    ing = _ready(redis_settings)
    clients = roster(redis_settings, "eu")[:5].to_pylist()
    products = ing.products().to_pylist()[:3]
    first = [e for k, c in enumerate(clients) for e in _events(c, products, ["view", "wishlist", "view"], prefix=f"a{k}-")]
    late = [e for k, c in enumerate(clients)
            for e in _events(c, products[:1], ["purchase"], prefix=f"b{k}-", start=NOW - timedelta(minutes=20 if k == 3 else 1))]
    assert ing.ingest(first).accepted == 15 and ing.ingest(late).accepted == 5
    for k, c in enumerate(clients):
        want = fresh.merge(fresh.Log(), [(int(e.event_timestamp.timestamp() * 10**6), e.event_id, e.product_id, e.event_type)
                                         for e in first + late if e.client_id == c])
        assert _online_log(redis_settings, c) == want, c
        assert _online_log(redis_settings, c).types[0 if k == 3 else -1] == "purchase"


def test_a_bad_row_or_a_foreign_client_rejects_the_batch_and_writes_nothing(redis_settings):
    ing = _ready(redis_settings)
    eu_client = roster(redis_settings, "eu")[0].as_py()
    us_client = roster(redis_settings, "us")[0].as_py()
    products = ing.products().to_pylist()[:3]
    good = _events(eu_client, products, ["view"] * 3)
    bad = [*good[:2], Event(event_id="x", client_id=eu_client, product_id="NO-SUCH", event_type="view", event_timestamp=NOW),
           Event(event_id="y", client_id=eu_client, product_id=products[0], event_type="view", event_timestamp=NOW + timedelta(hours=1)),
           good[0]]
    with pytest.raises(Problems) as e:
        ing.ingest(bad)
    assert [p["loc"] for p in e.value.problems] == [["events", 2, "product_id"], ["events", 3, "event_timestamp"], ["events", 4, "event_id"]]
    with pytest.raises(ForeignClients) as e:
        ing.ingest(good + _events(us_client, products[:1], ["view"], prefix="us"))
    assert e.value.clients == [us_client]
    assert journal.part_names(ing.ctx) == [] and _online_log(redis_settings, eu_client).ids == []
    with pytest.raises(Exception, match="event_type"):
        Event(event_id="z", client_id=eu_client, product_id=products[0], event_type="like", event_timestamp=NOW)


def test_a_ledger_that_fails_while_the_rows_are_asked_for_writes_nothing(redis_settings):
    """The ledger looks a batch's ids up on its own thread while the clients' rows are asked for:
    its failure stops the batch before anything is written, and the read is given up. A batch
    with a bad row is refused before the ledger is asked. Injected fault: the ledger's lookup
    raises as SQLite does on a bad disk."""
    ing = _ready(redis_settings)
    client = roster(redis_settings, "eu")[0].as_py()
    products = ing.products().to_pylist()[:2]
    batch = _events(client, products, ["view", "purchase"])
    healthy = ing.journal.seen

    def broken(*args):
        raise sqlite3.OperationalError("disk I/O error")

    ing.journal.seen = broken
    with pytest.raises(sqlite3.OperationalError, match="disk I/O"):
        ing.ingest(batch)
    bad = [*batch, Event(event_id="x", client_id=client, product_id="NO-SUCH", event_type="view", event_timestamp=NOW)]
    with pytest.raises(Problems, match="unknown product"):
        ing.ingest(bad)
    assert journal.part_names(ing.ctx) == [] and _online_log(redis_settings, client).ids == []
    ing.journal.seen = healthy
    assert (ing.ingest(batch).accepted, ing.ingest(batch).duplicates) == (2, 2)
    assert sorted(_online_log(redis_settings, client).ids) == ["e0", "e1"]


def test_an_unreachable_store_acknowledges_nothing_and_writes_nothing(redis_settings, redis_servers):
    ing = _ready(redis_settings)
    client = roster(redis_settings, "eu")[0].as_py()
    batch = _events(client, ing.products().to_pylist()[:2], ["view", "purchase"])
    redis_servers["eu"].stop()
    try:
        with pytest.raises(StoreUnavailable, match="cannot be reached"):
            ing.ingest(batch)
        assert journal.part_names(ing.ctx) == []
    finally:
        redis_servers["eu"].start()
    assert ing.ingest(batch).accepted == 2


def _one(event_id: str, client: str, product: str, seconds: int) -> list[Event]:
    return [Event(event_id=event_id, client_id=client, product_id=product, event_type="view", event_timestamp=NOW - timedelta(minutes=5) + timedelta(seconds=seconds))]


def test_batches_that_wait_for_the_writer_become_one_part_and_each_is_counted_once(redis_settings):
    """While a batch waits for the region's writer lock (held here, as another worker would), the
    batches behind it queue; once it is written they go in one journal part and one Redis round,
    each answered with its own counts. An event sent in two of them (the same time and id) is
    stored once and counted as a duplicate in the later one."""
    ing = _ready(redis_settings)
    clients = roster(redis_settings, "eu")[:4].to_pylist()
    products = ing.products().to_pylist()[:4]
    first = _one("first", clients[0], products[0], 0)
    waiting = [_one(f"w{k}", clients[k], products[k], k) for k in range(4)] + [_one("w1", clients[1], products[1], 1)]
    with ing.journal.lock():
        threads, out = submit_all(ing.ingest, [first])
        until(lambda: ing._group.writing())  # taken as a group of its own, its writer waiting for the lock
        more, receipts = submit_all(ing.ingest, waiting, ing._group.waiting)
        assert ing._group.waiting() == len(waiting)
    for t in threads + more:
        t.join(60)
    assert (out[0].accepted, out[0].duplicates) == (1, 0)
    assert [(r.accepted, r.duplicates) for r in receipts] == [(1, 0)] * 4 + [(0, 1)]
    assert len(journal.part_names(ing.ctx)) == 2  # the first batch's part, then the group's
    assert sorted(journal.read(ing.ctx).column("event_id").to_pylist()) == ["first", "w0", "w1", "w2", "w3"]
    assert _online_log(redis_settings, clients[0]).ids == ["first", "w0"]
    assert _online_log(redis_settings, clients[1]).ids == ["w1"]


def test_a_group_the_online_store_cannot_take_is_refused_whole(redis_settings, redis_servers):
    """Every batch of a group gets the 503 (`StoreUnavailable`): none is acknowledged, none written."""
    ing = _ready(redis_settings)
    clients = roster(redis_settings, "eu")[:3].to_pylist()
    products = ing.products().to_pylist()[:3]
    redis_servers["eu"].stop()
    try:
        with ing.journal.lock():
            threads, out = submit_all(ing.ingest, [_one("a", clients[0], products[0], 0)])
            until(lambda: ing._group.writing())
            more, grouped = submit_all(ing.ingest, [_one(f"b{k}", clients[k], products[k], k) for k in range(3)], ing._group.waiting)
        for t in threads + more:
            t.join(60)
        assert all(isinstance(e, StoreUnavailable) for e in out + grouped)
        assert journal.part_names(ing.ctx) == []
    finally:
        redis_servers["eu"].start()
    assert ing.ingest(_one("b0", clients[0], products[0], 0)).accepted == 1


CRASHING = """
import sys
from datetime import datetime
from feast.permissions.user import User
from atelier.context import RegionContext
from atelier.events.batch import Event
from atelier.events.ingest import Ingestor
from atelier.features.definitions import SERVING
from atelier.settings import Settings
client, products = sys.argv[1], sys.argv[2].split(",")
ing = Ingestor(RegionContext.of(Settings(), "eu", User("svc", [SERVING])))
ing.ingest([Event(event_id=f"k{i}", client_id=client, product_id=p, event_type="purchase", event_timestamp=datetime.fromisoformat("2026-12-01T10:00:00+00:00"))
            for i, p in enumerate(products)])
"""


@pytest.mark.parametrize("point", ["events.part", "events.sent", "events.online"])
def test_kill_9_between_the_two_writes_then_resend_leaves_both_stores_consistent(redis_settings, point):
    """Killed after the offline part is written: before the online write; once the rows are sent to
    Redis, before the ledger knows the part; or once both stores hold the events, before the part
    is marked applied. A resend (or a restart's recovery) puts every event in both places, each once."""
    ing = _ready(redis_settings)
    client = roster(redis_settings, "eu")[0].as_py()
    products = ing.products().to_pylist()[:3]
    env = {**__import__("os").environ, "ATELIER_CRASH_AT": point}
    died = subprocess.run([sys.executable, "-c", CRASHING, client, ",".join(products)], env=env, capture_output=True, text=True, timeout=120)
    assert died.returncode == -9, died.stderr[-2000:]
    assert len(journal.part_names(ing.ctx)) == 1  # the crash's state: offline, and online too once the rows were written
    online = sorted(_online_log(redis_settings, client).ids)
    if point == "events.part":
        assert online == []
    elif point == "events.online":
        assert online == ["k0", "k1", "k2"]
    resend = [Event(event_id=f"k{i}", client_id=client, product_id=p, event_type="purchase", event_timestamp=datetime(2026, 12, 1, 10, tzinfo=timezone.utc))
              for i, p in enumerate(products)]
    receipt = Ingestor(ing.ctx).ingest(resend)
    assert (receipt.accepted, receipt.duplicates) == (0, 3)  # stored already; applied online before the answer
    assert sorted(_online_log(redis_settings, client).ids) == ["k0", "k1", "k2"]
    assert sorted(journal.read(ing.ctx).column("event_id").to_pylist()) == ["k0", "k1", "k2"]


def test_events_reach_the_next_batch_features_and_training_set_point_in_time(settings):
    """The journal joins the lake: training reads the streamed events; client_activity after
    `features compute` holds them from the end of their day on, never before (Feast's
    point-in-time join); and the overlay serving applies until then gives the lists the batch
    features then hold."""
    import pandas as pd

    from atelier.features.pipeline import compute_features
    from atelier.models.recommend.dataset import read_events
    from atelier.protect.keys import key_store
    from atelier.protect.parquet import read_dataset

    ing = _ready(settings)
    ctx = ing.ctx
    client = roster(settings, "eu")[0].as_py()
    keys = key_store(settings, "eu")
    table = read_dataset(settings.paths.feature_table("client_activity", "eu"), keys).to_pandas()
    rows = table[(table.client_id == client) & (table.event_timestamp <= pd.Timestamp(NOW))].sort_values("event_timestamp")
    batch = rows.iloc[-1]  # the row the online store serves now
    when = NOW - timedelta(minutes=30)
    products = ing.products().to_pylist()[-3:]
    ing.ingest(_events(client, products, ["view", "purchase", "return"], start=when))

    events = read_events(ctx)
    mine = events[(events.client_id == client) & (events.event_timestamp >= pd.Timestamp(when))]
    assert sorted(mine.product_id) == sorted(products) and set(mine.event_type) == {"view", "purchase", "return"}

    cols = {"recent_products": [list(batch["recent_products"])], "purchased_products": [list(batch["purchased_products"])], "views_30d": [int(batch["views_30d"])]}
    log = _online_log(settings, client)
    fresh.overlay(cols, [True], {n: [getattr(log, a)] for n, a in zip(fresh.LOG_FIELDS, ("ids", "products", "types", "times"))},
                  [batch["event_timestamp"].to_pydatetime()])
    assert cols["purchased_products"][0][-1] == products[1] and cols["recent_products"][0][-2:] == products[:2]  # a return is no engagement
    assert cols["views_30d"][0] == int(batch["views_30d"]) + 1

    compute_features(settings, "eu")
    day_end = pd.Timestamp(when).floor("D") + pd.Timedelta(days=1) - pd.Timedelta(seconds=1)
    probe = pd.DataFrame({"client_id": [client] * 2, "event_timestamp": [pd.Timestamp(when) + pd.Timedelta(seconds=5), day_end + pd.Timedelta(seconds=1)]})
    hist = ctx.historical_features(probe, ["client_activity:purchased_products", "client_activity:recent_products"]).sort_values("event_timestamp")
    during, after = hist.iloc[0], hist.iloc[1]
    assert list(during["purchased_products"]) == list(batch["purchased_products"])  # the day is not complete: not visible yet
    assert list(after["purchased_products"]) == cols["purchased_products"][0]
    assert list(after["recent_products"]) == cols["recent_products"][0]
    recent = read_dataset(settings.paths.feature_table("client_recent", "eu"), keys).to_pandas()
    assert list(recent[recent.client_id == client].iloc[0]["event_ids"]) == ["e0", "e1", "e2"]


def test_a_registry_without_the_real_time_view_is_refused_with_the_fix(settings):
    """A region applied before `client_recent` existed: the intake says what to run (the service
    then answers /events with a 503 saying so, and keeps answering /recommend)."""
    from atelier.errors import AtelierError

    repo.apply(settings, "eu")
    store = repo.feature_store(settings, "eu")
    store.registry.delete_feature_view(fresh.VIEW, store.project)
    with pytest.raises(AtelierError, match="features apply -r eu"):
        Ingestor(RegionContext.of(settings, "eu", User("svc", [SERVING])))
