"""Two years of behaviour: sessions of product views that sometimes end in a wishlist add or a purchase.

A session happens on a day drawn from the region's seasonal calendar (December gifting, Valentine's
day, Singles' Day and Lunar New Year in Asia-Pacific, Black Friday in the Americas), at a maison
drawn from the client's loyalty. Each view picks, among products of that maison already launched,
the one that best fits the client's taste, price level and the product's appeal and novelty (with
Gumbel noise, i.e. a softmax choice). A session ends in a purchase more often when the product is
within the client's budget.

Everything is vectorised over a chunk of clients, so a million clients take minutes, not hours.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pyarrow as pa

from atelier.data.world import MAISONS, Catalog, ClientChunk, WorldSpec
from atelier.regions import region_codes

VIEW_GAP_S = 90
CANDIDATES = 16
TASTE_WEIGHT = 8.0
NOVELTY_WEIGHT = 0.8
NOVELTY_DAYS = 120.0
RECENT = 3  # of the CANDIDATES, how many lean to recent launches


def seasonal_intensity(spec: WorldSpec, region: str) -> np.ndarray:
    """Relative number of sessions per day of the window for a region."""
    days = np.arange(spec.days)
    dates = [spec.start + dt.timedelta(days=int(d)) for d in days]
    doy = np.array([d.timetuple().tm_yday for d in dates], float)
    weekday = np.array([d.weekday() for d in dates])

    def bump(center: float, width: float, height: float) -> np.ndarray:
        dist = np.minimum(np.abs(doy - center), 365 - np.abs(doy - center))
        return height * np.exp(-0.5 * (dist / width) ** 2)

    f = 1.0 + bump(352, 12, 1.4) + bump(45, 4, 0.6) + bump(185, 30, 0.2)
    if region == "apac":
        f += bump(32, 10, 0.9) + bump(315, 3, 1.2)
    if region == "us":
        f += bump(331, 4, 1.0)
    f *= np.where(weekday >= 5, 1.25, 1.0)
    return f


def simulate_events(spec: WorldSpec, catalog: Catalog, clients: ClientChunk, first: int, replica: int = 0) -> pa.Table:
    """The events of a chunk of clients (`first`: the chunk's first client). `replica` 0 is the
    world as generated; another draws the same clients' behaviour again from the same catalog and
    traits, which is how `benchmarks/forecast_reference.py` measures the demand no forecast can
    know (the draw itself)."""
    rng = np.random.default_rng([spec.seed, 6, first] + ([replica] if replica else []))
    n = len(clients.region)
    events_per_session = 1 + 1.6 + 0.3 + 0.15
    mean_sessions = spec.events_per_client / events_per_session
    start_day = np.clip(clients.join_day, 0, spec.days - 1)
    active = (spec.days - start_day) / spec.days
    sessions = rng.poisson(mean_sessions * clients.activity * active)
    client_of = np.repeat(np.arange(n), sessions)
    s = len(client_of)
    if s == 0:
        return _empty()

    # Day and time of each session.
    day = np.empty(s, np.int64)
    for region in region_codes():
        mask = clients.region[client_of] == region
        if not mask.any():
            continue
        cum = np.cumsum(seasonal_intensity(spec, region))
        lo = np.where(start_day[client_of[mask]] > 0, cum[start_day[client_of[mask]] - 1], 0.0)
        u = lo + rng.random(mask.sum()) * (cum[-1] - lo)
        day[mask] = np.minimum(np.searchsorted(cum, u), spec.days - 1)
    seconds = np.clip(rng.normal(15.5, 3.0, s), 8, 22) * 3600 + rng.integers(0, 3600, s)
    t0 = np.datetime64(dt.datetime.combine(spec.start, dt.time()), "s")
    session_ts = t0 + (day * 86400 + seconds.astype(np.int64)).astype("timedelta64[s]")

    # Maison of each session: the client's loyalty, with some exploration.
    explore = rng.random(s) < 0.08
    cum_loyalty = np.cumsum(clients.loyalty[client_of], axis=1)
    maison = np.argmax(cum_loyalty > rng.random(s)[:, None] * cum_loyalty[:, -1:], axis=1)
    maison[explore] = rng.integers(0, len(MAISONS), explore.sum())

    # Views: each picks the best of a few launched candidates (a softmax choice via Gumbel noise).
    views_per = 1 + rng.poisson(1.6, s)
    session_of = np.repeat(np.arange(s), views_per)
    view_rank = np.arange(len(session_of)) - np.repeat(np.cumsum(views_per) - views_per, views_per)
    viewed, score = _choose_products(rng, catalog, clients, client_of[session_of], maison[session_of], day[session_of])

    # Purchase: the best-liked product of the session, more likely when it is within budget.
    best = _best_per_session(session_of, score, s)
    best_product = viewed[best]
    price = catalog.price[best_product]
    budget = clients.wealth[client_of] * 1.5
    p_buy = 0.33 / (1 + np.exp(2.0 * (np.log(price) - np.log(budget))))
    bought = rng.random(s) < p_buy
    wished = (rng.random(s) < 0.15) & ~bought
    wished_product = viewed[best]

    channel_pref = np.asarray(clients.table.column("preferred_channel").to_numpy(zero_copy_only=False))[client_of]
    in_store = np.where(channel_pref == "store", rng.random(s) < 0.85, np.where(channel_pref == "omni", rng.random(s) < 0.5, rng.random(s) < 0.1))
    store = _store_for(catalog, maison, clients.country[client_of])
    in_store &= store >= 0
    is_wine = np.isin(catalog.products.column("category").to_numpy(zero_copy_only=False)[best_product], ["champagne", "wine"])
    quantity = np.where(is_wine, rng.integers(1, 7, s), 1)

    ids = np.asarray(clients.table.column("client_id").to_numpy(zero_copy_only=False))
    pids = np.asarray(catalog.products.column("product_id").to_numpy(zero_copy_only=False))
    store_ids = np.asarray(catalog.stores.column("store_id").to_numpy(zero_copy_only=False))

    view_ts = session_ts[session_of] + (view_rank * VIEW_GAP_S).astype("timedelta64[s]")
    end_ts = session_ts + (views_per * VIEW_GAP_S + 60).astype("timedelta64[s]")
    parts = [
        dict(client=client_of[session_of], product=viewed, type="view", ts=view_ts, channel=np.full(len(viewed), "online"), store=np.full(len(viewed), -1), qty=np.ones(len(viewed), np.int64), amount=np.full(len(viewed), np.nan)),
        dict(client=client_of[wished], product=wished_product[wished], type="wishlist", ts=end_ts[wished], channel=np.full(wished.sum(), "online"), store=np.full(wished.sum(), -1), qty=np.ones(wished.sum(), np.int64), amount=np.full(wished.sum(), np.nan)),
        dict(client=client_of[bought], product=best_product[bought], type="purchase", ts=end_ts[bought], channel=np.where(in_store[bought], "store", "online"), store=np.where(in_store[bought], store[bought], -1), qty=quantity[bought], amount=(catalog.price[best_product] * quantity)[bought]),
    ]
    cat = {k: np.concatenate([p[k] for p in parts]) for k in ("client", "product", "ts", "channel", "store", "qty", "amount")}
    types = np.concatenate([np.full(len(p["client"]), p["type"]) for p in parts])
    order = np.lexsort((cat["ts"], cat["client"]))
    store_col = pa.array(np.where(cat["store"][order] >= 0, store_ids[np.maximum(cat["store"][order], 0)], None), pa.string())
    return pa.table(
        {
            "client_id": pa.array(ids[cat["client"][order]], pa.string()),
            "product_id": pa.array(pids[cat["product"][order]], pa.string()),
            "event_type": pa.array(types[order], pa.string()),
            "event_timestamp": pa.array(cat["ts"][order].astype("datetime64[us]"), pa.timestamp("us", "UTC")),
            "channel": pa.array(cat["channel"][order], pa.string()),
            "store_id": store_col,
            "quantity": pa.array(cat["qty"][order], pa.int64()),
            "amount": pa.array(cat["amount"][order], pa.float64(), from_pandas=True),
        }
    )


def _choose_products(rng, catalog: Catalog, clients: ClientChunk, client, maison, day):
    v = len(client)
    chosen = np.empty(v, np.int64)
    score = np.empty(v, np.float32)
    for m in range(len(MAISONS)):
        idx = np.flatnonzero(maison == m)
        if not len(idx):
            continue
        products = catalog.by_maison[m]
        launched = np.maximum(np.searchsorted(catalog.launch_day[products], day[idx], side="right"), 1)
        for lo in range(0, len(idx), 100_000):
            sl = idx[lo : lo + 100_000]
            nl = launched[lo : lo + 100_000, None]
            # half the candidates lean to recent launches, half are uniform over the launched range
            recent = nl - 1 - np.floor(rng.exponential(np.maximum(3.0, nl / 5.0), (len(sl), RECENT)))
            uniform = np.floor(rng.random((len(sl), CANDIDATES - RECENT)) * nl)
            pos = np.clip(np.concatenate([recent, uniform], axis=1), 0, nl - 1).astype(np.int64)
            cand = products[pos]
            taste = clients.taste[client[sl]].astype(np.float32)
            fit = np.einsum("vd,vkd->vk", taste, catalog.style[cand].astype(np.float32))
            age = day[sl, None] - catalog.launch_day[cand]
            novelty = np.exp(-np.maximum(age, 0) / NOVELTY_DAYS)
            over_budget = np.maximum(0, np.log(catalog.price[cand] / (clients.wealth[client[sl], None] * 3)))
            s = TASTE_WEIGHT * fit + catalog.appeal[cand] + NOVELTY_WEIGHT * novelty - 0.7 * over_budget
            g = s + rng.gumbel(size=s.shape)
            k = np.argmax(g, axis=1)
            chosen[sl] = cand[np.arange(len(sl)), k]
            score[sl] = s[np.arange(len(sl)), k]
    return chosen, score


def _best_per_session(session_of: np.ndarray, score: np.ndarray, s: int) -> np.ndarray:
    """Index (into the views) of the highest-scoring view of each session."""
    order = np.lexsort((-score, session_of))
    first = np.ones(len(order), bool)
    first[1:] = session_of[order][1:] != session_of[order][:-1]
    best = np.empty(s, np.int64)
    best[session_of[order][first]] = order[first]
    return best


def _store_for(catalog: Catalog, maison: np.ndarray, country: np.ndarray) -> np.ndarray:
    """A store of the maison in the client's country, or -1 where there is none."""
    return catalog.store_lookup[maison, np.searchsorted(catalog.store_countries, country)]


def _empty() -> pa.Table:
    return pa.table(
        {
            "client_id": pa.array([], pa.string()),
            "product_id": pa.array([], pa.string()),
            "event_type": pa.array([], pa.string()),
            "event_timestamp": pa.array([], pa.timestamp("us", "UTC")),
            "channel": pa.array([], pa.string()),
            "store_id": pa.array([], pa.string()),
            "quantity": pa.array([], pa.int64()),
            "amount": pa.array([], pa.float64()),
        }
    )
