"""The training set written a part at a time and streamed back (atelier.models.recommend.examples),
and the tower's statistics gathered a chunk at a time (inputs.SpecFitter)."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from atelier.models.recommend.examples import MIX, ExampleParts, assign_parts
from atelier.models.recommend.inputs import BAG, BAG_LENGTH, CATEGORICAL, NUMERIC, TIMESTAMP, FeatureSpec, SpecFitter, fit_specs

SPECS = [FeatureSpec("v:country", "country", CATEGORICAL), FeatureSpec("v:spend", "spend", NUMERIC),
         FeatureSpec("v:calm", "calm", NUMERIC), FeatureSpec("v:last", "last", TIMESTAMP), FeatureSpec("v:recent", "recent", BAG)]


def _inputs(n: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    bag = np.full((n, BAG_LENGTH), "", object)
    for i in range(n):
        k = rng.integers(0, 6)
        if k:
            bag[i, -k:] = [f"P{j}" for j in rng.integers(0, 40, k)]
    spend = rng.lognormal(3, 2, n).astype(np.float32)
    spend[rng.random(n) < 0.1] = np.nan
    return {
        "client_id": np.array([f"C{i % 97}" for i in range(n)], object),
        "country": rng.choice(np.array(["FR", "IT", "DE", ""], object), n),
        "spend": spend,
        "calm": rng.normal(50, 3, n).astype(np.float32),
        "last": np.where(rng.random(n) < 0.2, np.nan, 1.7e9 - rng.uniform(0, 3e7, n)),
        "recent": bag,
        "as_of": np.full(n, 1.7e9),
    }


def test_statistics_gathered_in_chunks_are_those_of_the_whole_set():
    chunks = [_inputs(n, seed) for seed, n in enumerate((700, 1, 1300, 250))]
    whole = {k: np.concatenate([c[k] for c in chunks]) for k in chunks[0]}
    fitter = SpecFitter(SPECS)
    for c in chunks:
        fitter.add(c)
    by_chunks, at_once = fitter.specs(), fit_specs(SPECS, whole)
    for a, b in zip(by_chunks, at_once):
        assert a.vocabulary == b.vocabulary and a.log == b.log, a.name
        assert a.mean == pytest.approx(b.mean, rel=1e-9) and a.variance == pytest.approx(b.variance, rel=1e-9), a.name
    spend, calm = by_chunks[1], by_chunks[2]
    assert spend.log and not calm.log  # heavy-tailed spend is log-scaled, a narrow one is not
    assert by_chunks[0].vocabulary[0] in ("FR", "IT", "DE") and "" not in by_chunks[0].vocabulary


def test_the_log_decision_on_a_thinned_sample_matches_the_whole(monkeypatch):
    monkeypatch.setattr(SpecFitter, "SAMPLE", 500)
    chunks = [_inputs(800, seed) for seed in range(6)]
    fitter = SpecFitter(SPECS)
    for c in chunks:
        fitter.add(c)
    assert sum(len(p) for p in fitter.sample["spend"]) <= 500
    whole = fit_specs(SPECS, {k: np.concatenate([c[k] for c in chunks]) for k in chunks[0]})
    assert [s.log for s in fitter.specs()] == [s.log for s in whole]
    assert fitter.specs()[1].mean == pytest.approx(whole[1].mean, rel=1e-9)  # the moments are never sampled


def test_the_thinned_sample_holds_no_more_than_its_own_values(monkeypatch):
    """The sample that decides the log scale is bounded by SAMPLE values, in memory too: kept as
    strided views, it held every chunk's values alive (a build of eu of the 52M-event world
    climbed 1.2 GiB over its parts)."""
    monkeypatch.setattr(SpecFitter, "SAMPLE", 500)
    fitter = SpecFitter(SPECS)
    for seed in range(40):
        fitter.add(_inputs(800, seed))
    for name in ("spend", "calm"):
        kept = fitter.sample[name]
        held = sum((p.base if p.base is not None else p).nbytes for p in kept)
        assert sum(len(p) for p in kept) <= 500 and held <= 500 * 8, (name, held)


def test_parts_hold_whole_clients_in_ranges_of_ids_and_are_about_the_size_asked():
    codes = np.repeat(np.arange(300), np.random.default_rng(0).integers(1, 30, 300))
    part = assign_parts(codes, 500)
    assert all(len(np.unique(part[codes == c])) == 1 for c in range(300))
    sizes = np.bincount(part)
    assert sizes[:-1].min() >= 500 - 30 and sizes.max() < 500 + 30
    first = [part[codes == c][0] for c in range(300)]
    assert first == sorted(first) and first[0] == 0  # a part is a range of clients, in the order of their codes
    mixed = np.random.default_rng(1).permutation(codes)  # the examples' order does not matter
    assert all(assign_parts(mixed, 500)[mixed == c][0] == first[c] for c in range(300))



def test_parts_of_clients_with_few_examples_are_cut_by_their_number_of_clients():
    """Capped training keeps a few examples per client: a part of `part_rows` examples would then
    span many clients, and its point-in-time read hold all their feature rows."""
    rng = np.random.default_rng(2)
    per_client = np.where(rng.random(1000) < 0.1, rng.integers(50, 200, 1000), rng.integers(1, 3, 1000))
    codes = np.repeat(np.arange(1000), per_client)
    part = assign_parts(codes, 500, part_clients=40)
    first = np.array([part[codes == c][0] for c in range(1000)])
    assert all(len(np.unique(part[codes == c])) == 1 for c in range(1000)) and (np.diff(first) >= 0).all()
    clients = np.bincount(first)
    rows = np.bincount(first, weights=per_client)
    assert clients.max() <= 40 + 1 and rows.max() <= 500 + per_client.max()  # both bounds hold, to one client
    assert clients.min() < 40 and rows.min() < 400  # and neither alone made every cut
    # a client costs the larger of its shares of the two bounds; a part holds a whole's cost, give
    # or take one client: its first (at most over), or the next part's first (at most under)
    cost = np.bincount(first, weights=np.maximum(per_client / 500, 1 / 40))
    opening = np.maximum(per_client[np.searchsorted(first, np.arange(first.max() + 1))] / 500, 1 / 40)
    assert (cost < 1 + opening + 1e-9).all() and (cost[:-1] > 1 - opening[1:] - 1e-9).all()
    # with a bound on clients that never binds, the cuts are those of examples alone
    assert (assign_parts(codes, 500, part_clients=500) == assign_parts(codes, 500, part_clients=10**6)).all()


@pytest.fixture
def parts(tmp_path):
    from atelier.protect.keys import LocalKeyStore

    LocalKeyStore.init(tmp_path / "keys", "eu")
    keys = LocalKeyStore(tmp_path / "keys", "eu")
    out = ExampleParts.scratch(tmp_path / "runs", keys, SPECS)
    for seed, n in enumerate((400, 350, 380, 420, 390, 100)):
        q = _inputs(n, seed)
        q["client_id"] = np.array([f"C{seed}-{i}" for i in range(n)], object)  # each row its own client: rows are traceable
        out.write(q, {"product_index": np.arange(n) % 40, "product_id": np.array([f"P{i % 40}" for i in range(n)], object),
                      "weight": np.full(n, 1.0 + seed, np.float32), "event_timestamp": pd.date_range("2026-01-01", periods=n, freq="h", tz="UTC")})
    out.commit()
    return out


def test_an_epoch_yields_every_example_once_in_full_batches(parts):
    assert len(parts.parts) == 6 > MIX  # two groups of parts: rows left over from the first join the second
    epoch = list(parts.batches(128, seed=7, epoch=0))
    ids = np.concatenate([b["query"]["client_id"] for b in epoch])
    assert len(ids) == parts.rows == 2040 and len(set(ids)) == 2040
    assert [len(b["weight"]) for b in epoch[:-1]] == [128] * (len(epoch) - 1) and 0 < len(epoch[-1]["weight"]) <= 128
    b = epoch[0]
    assert b["query"]["recent"].shape == (128, BAG_LENGTH) and b["query"]["spend"].dtype == np.float32 and b["product"].dtype == np.int32
    # a row's inputs travel together: its weight says which part it came from, and so does its id
    assert all(str(c).startswith(f"C{int(w) - 1}-") for c, w in zip(b["query"]["client_id"], b["weight"]))


def test_each_epoch_has_its_own_order_and_a_seed_repeats_it(parts):
    order = lambda seed, epoch: np.concatenate([b["query"]["client_id"] for b in parts.batches(128, seed, epoch)])  # noqa: E731
    assert np.array_equal(order(7, 0), order(7, 0))
    assert not np.array_equal(order(7, 0), order(7, 1))
    assert sorted(order(7, 0)) == sorted(order(7, 1))


def test_batches_are_mixed_across_parts(parts):
    first = next(parts.batches(256, seed=7, epoch=0))
    assert len(np.unique(first["weight"])) >= 3  # drawn from several parts, not one part after another


def test_parts_are_encrypted_and_saved_whole(parts, tmp_path):
    from atelier.errors import AtelierError
    from atelier.protect.parquet import read_dataset

    import pyarrow.parquet as pq

    for p in parts.parts:
        assert p.read_bytes()[:4] == b"PARE"  # Parquet with an encrypted footer
        with pytest.raises(OSError):
            pq.read_table(p)
    with pytest.raises(AtelierError, match="encrypted"):
        read_dataset(parts.path / "examples", None)
    target = tmp_path / "run" / "training_set"
    target.parent.mkdir()
    assert parts.save_as(target) == 2040
    saved = read_dataset(target, parts.keys)
    assert saved.column_names[0] == "client_id" and saved.num_rows == 2040
    assert sorted(saved.column("client_id").to_pylist()) == sorted(np.concatenate([b["query"]["client_id"] for b in parts.batches(512, 1, 0)]).tolist())


def test_the_scratch_goes_with_its_owner_and_with_a_dead_process(parts, tmp_path):
    import gc

    runs = tmp_path / "runs"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True).stdout.strip()
    left, mine = runs / f".examples-{dead}-0000", runs / f".examples-{os.getpid()}-1111"
    left.mkdir()
    mine.mkdir()
    other = ExampleParts.scratch(runs, parts.keys, SPECS)
    assert not left.exists() and mine.exists() and parts.path.exists()  # a live process's scratch is its own
    other.write(_inputs(10, 0), {"product_index": np.arange(10), "product_id": np.array(["P"] * 10, object),
                                 "weight": np.ones(10, np.float32), "event_timestamp": pd.date_range("2026-01-01", periods=10, tz="UTC")})
    path = other.path
    assert path.exists()
    del other
    gc.collect()
    assert not path.exists()  # nothing is left once the examples are no longer used, committed or not


def test_a_training_set_read_a_part_at_a_time_is_the_one_read_at_once(settings):
    """Point-in-time features read for one part's clients at a time give every example the inputs
    it gets when the whole set is read together, and the same fitted statistics."""
    from atelier.context import RegionContext
    from atelier.features import repo
    from atelier.models.recommend import dataset as ds

    repo.apply(settings, "eu")
    ctx = RegionContext.of(settings, "eu")
    events = ds.read_events(ctx)
    specs = ds.specs_from_service(ctx.store, ds.QUERY_SERVICE)
    cutoff = ds.windows(events, 4).validation_cutoff
    train = events[(events.event_timestamp < cutoff) & events.client_id.notna()].assign(weight=1.0)
    index = pd.Series(np.arange(events.product_id.nunique()), index=sorted(events.product_id.unique()))

    def rows(ex: ds.Examples) -> pd.DataFrame:
        out = []
        for part in ex.parts.parts:
            query, product, _ = ex.parts.read(part)
            out.append(pd.DataFrame({k: list(v) if v.ndim == 2 else v for k, v in query.items()} | {"product": product}))
        frame = pd.concat(out, ignore_index=True)
        frame["recent_products"] = frame["recent_products"].map(tuple)
        return frame.sort_values(["client_id", "as_of", "product"]).reset_index(drop=True)

    whole = ds._examples(ctx, train, specs, index, part_rows=10**9, part_clients=10**9)
    in_parts = ds._examples(ctx, train, specs, index, part_rows=len(train) // 7)
    by_clients = ds._examples(ctx, train, specs, index, part_rows=10**9, part_clients=train["client_id"].nunique() // 5)
    assert len(whole.parts.parts) == 1 and len(in_parts.parts.parts) >= 7
    assert len(by_clients.parts.parts) >= 5
    a, b = rows(whole), rows(in_parts)
    assert len(a) == len(train) and a.columns.tolist() == b.columns.tolist()
    pd.testing.assert_frame_equal(a, b)
    pd.testing.assert_frame_equal(a, rows(by_clients))
    assert a["recent_products"].map(lambda t: any(t)).mean() > 0.3  # the histories are there to compare
    for x, y in zip(whole.query_specs, in_parts.query_specs):
        assert (x.vocabulary, x.log) == (y.vocabulary, y.log) and x.mean == pytest.approx(y.mean) and x.variance == pytest.approx(y.variance)


def test_features_as_of_one_time_read_in_blocks_of_clients_are_those_read_at_once(settings, monkeypatch):
    """The evaluation's and the ranking stage's reads (many clients, one time) go a block of ids
    at a time: the inputs are those of one read, in the order asked, an unknown client included."""
    from atelier.context import RegionContext
    from atelier.features import repo
    from atelier.models.recommend import dataset as ds

    repo.apply(settings, "eu")
    ctx = RegionContext.of(settings, "eu")
    events = ds.read_events(ctx)
    specs = ds.specs_from_service(ctx.store, ds.QUERY_SERVICE)
    at = ds.windows(events, 4).validation_cutoff
    clients = np.array([*sorted(events.client_id.dropna().unique(), reverse=True)[:60], "nobody"], object)
    whole = ds.query_inputs(ctx, specs, clients, at)
    calls = []
    real = ctx.historical_features
    monkeypatch.setattr(ctx, "historical_features", lambda entity, features: calls.append(len(entity)) or real(entity, features))
    monkeypatch.setattr(ds, "AS_OF_CLIENTS", 7)
    blocks = ds.query_inputs(ctx, specs, clients, at)
    assert calls == [7] * 8 + [5]
    assert whole.keys() == blocks.keys() and np.array_equal(whole["client_id"], clients)
    for name in whole:
        np.testing.assert_array_equal(whole[name], blocks[name], err_msg=name)
    assert np.isfinite(whole["purchases_365d"].astype(float)).sum() > 30  # features were found: not a comparison of empty rows


def test_product_positions_are_those_reindexing_gives_with_nan_for_an_unknown_id():
    from atelier.models.recommend.dataset import _positions

    index = pd.Series(np.arange(5), index=["P0", "P1", "P2", "P3", "P4"])
    known = np.array(["P2", "P0", "P4", "P4"], object)
    got = _positions(index, known)
    np.testing.assert_array_equal(got, index.reindex(known).to_numpy())
    assert got.dtype == np.int64
    unknown = np.array(["P2", "nope", "P0"], object)
    got = _positions(index, unknown)
    np.testing.assert_array_equal(got, index.reindex(unknown).to_numpy())  # NaN where reindexing gives NaN
    assert np.isnan(got[1]) and got[[0, 2]].tolist() == [2.0, 0.0]


def test_a_build_reports_each_of_its_reads_once(settings, monkeypatch):
    """A build's progress is told its reads once the examples are cut (a part's each, then the
    evaluation clients'), before any is made, and advances once after each: at scale a build reads
    for tens of minutes, and a bar that starts full says nothing."""
    import functools

    from atelier.context import RegionContext
    from atelier.features import repo
    from atelier.models.recommend import dataset as ds
    from atelier.models.recommend.two_tower import TrainConfig

    repo.apply(settings, "eu")
    ctx = RegionContext.of(settings, "eu")
    events = ds.read_events(ctx)
    w = ds.windows(events, 4)
    monkeypatch.setattr(ds, "_examples", functools.partial(ds._examples, part_rows=150))
    log = []
    real_write = ExampleParts.write
    monkeypatch.setattr(ExampleParts, "write", lambda self, query, rows: log.append("write") or real_write(self, query, rows))
    real_as_of = ds.query_inputs
    monkeypatch.setattr(ds, "query_inputs", lambda *a: log.append("evaluation") or real_as_of(*a))

    def progress(total):
        log.append(("total", total))
        return lambda n=1: log.append(("advance", n))

    data = ds.build(ctx, event_weights=TrainConfig().event_weights, cutoff=w.validation_cutoff, end=w.test_cutoff, events=events, progress=progress)
    parts = len(data.train.parts.parts)
    assert parts >= 4  # several parts, or the count proves little
    assert log == [("total", parts + 1)] + ["write", ("advance", 1)] * parts + ["evaluation", ("advance", 1)]
