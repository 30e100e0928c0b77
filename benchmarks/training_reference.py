"""How much a model could learn: the training benchmark's held-out weeks scored by the world's hidden traits.

    .venv/bin/python benchmarks/training_reference.py      # after benchmarks/training.py

The generated world draws every purchase from hidden traits: each client's taste vector,
maison loyalty and budget, each product's style, appeal, launch date and price. Ranking the
catalog by the generator's own score for a client (taste fit, appeal, novelty in the middle of
the held-out weeks, loyalty to the product's maison, the chance of buying at that price) is a
reference no model can see. It is not an exact ceiling (the purchase draw also depends on
which products a session happened to show), but it shows how much of the region's purchases are
predictable at all, and so how large a ratio over most-popular each region allows.

A second reference says how much of that a model could reach from what the store holds. It is
the same formula with every product's hidden traits still known, but each client's estimated
from the client's own events before the cut-off, as a model has to (`estimated_traits`): loyalty
from the client's sessions per maison, taste from the mean style of the products the client
looked at, wished for and bought, budget from the client's tier. Its three settings are chosen
on the validation weeks. No model can know every product's traits exactly, so this is more than a
learned model should expect; the served model is best read against it.

Same clients, held-out purchases and exclusions as the training benchmark (models.dataset.build),
same metric code (models.evaluate). The two-tower and most-popular figures are read from
results/training.json, so run benchmarks/training.py first.
"""

from __future__ import annotations

import itertools
import json
import logging

import numpy as np
import pandas as pd
from common import RESULTS, bench_home, log, save, table

GRID = {"sessions_prior": (0.1, 0.25, 0.5), "taste_shrink": (4.0, 8.0), "taste_scale": (0.65, 0.8, 1.0)}


def main() -> None:
    logging.disable(logging.WARNING)
    trained = json.loads((RESULTS / "training.json").read_text())
    spec = {"clients": trained["clients"], "products": trained["products"], "events_per_client": 40.0, "chunk_clients": 50_000}
    home, fresh = bench_home("training", spec)
    if fresh:
        raise SystemExit("the training benchmark's world is missing: run benchmarks/training.py first")
    from atelier.context import RegionContext
    from atelier.data import events as E
    from atelier.data.world import MAISONS, WorldSpec, make_catalog, make_clients
    from atelier.models.recommend import dataset as ds
    from atelier.models.recommend.evaluate import retrieval_metrics, top_k
    from atelier.models.recommend.two_tower import TrainConfig
    from atelier.settings import Settings

    world = WorldSpec(**spec)
    catalog = make_catalog(world)
    chunks = [make_clients(world, catalog, first, min(world.chunk_clients, world.clients - first)) for first in range(0, world.clients, world.chunk_clients)]
    taste = np.concatenate([c.taste for c in chunks])
    loyalty = np.concatenate([c.loyalty for c in chunks]) * 0.92 + 0.08 / len(MAISONS)  # sessions explore 8% of the time
    wealth = np.concatenate([c.wealth for c in chunks])
    tier = np.concatenate([np.asarray(c.table.column("tier").to_numpy(zero_copy_only=False)) for c in chunks])
    log("replaying the world's events (the lake holds the same)")
    events = _events(world, catalog, chunks, E)
    s = Settings(home=home)
    rows, out = [], {}
    for region, result in trained["results"].items():
        w = result["windows"]
        ctx = RegionContext.of(s, region)

        def scorer(cutoff: str, end: str):
            """The window's evaluation set and a ranking of it by the generator's formula, given client traits."""
            data = ds.build(ctx, event_weights=TrainConfig().event_weights, cutoff=pd.Timestamp(cutoff), end=pd.Timestamp(end))
            cutoff_day = (np.datetime64(data.window["cutoff"][:10]) - np.datetime64(world.start.isoformat())).astype(int)
            mid = cutoff_day + 14
            # products as the training set orders them, mapped to the generator's rows
            row = data.products["product_id"].str[1:].astype(int).to_numpy()
            style, appeal, launch, price, maison = catalog.style[row], catalog.appeal[row], catalog.launch_day[row], catalog.price[row], catalog.maison_idx[row]
            product_part = appeal + E.NOVELTY_WEIGHT * np.exp(-np.maximum(mid - launch, 0) / E.NOVELTY_DAYS)
            clients = np.array([int(c[2:]) for c in data.eval.client_ids])

            def rank(client_taste: np.ndarray, client_loyalty: np.ndarray, client_wealth: np.ndarray) -> dict:
                ranked = np.empty((len(clients), 100), np.int64)
                for lo in range(0, len(clients), 2048):
                    sl = slice(lo, lo + 2048)
                    wc = client_wealth[sl, None]
                    score = E.TASTE_WEIGHT * client_taste[sl] @ style.T + product_part
                    score -= 0.7 * np.maximum(0, np.log(price[None, :] / (wc * 3)))
                    score += np.log(client_loyalty[sl][:, maison])
                    score -= np.log1p(np.exp(2.0 * (np.log(price[None, :]) - np.log(wc * 1.5))))  # chance of buying
                    score[:, launch > cutoff_day + 28] = -np.inf  # not on sale before the window ends
                    ranked[sl] = top_k(score, 100, data.eval.bought_before[sl])
                return retrieval_metrics(ranked, data.eval.truth)

            return clients, pd.Timestamp(data.window["cutoff"]), rank

        log(f"{region}: choosing the estimates' settings on the validation weeks")
        clients, cutoff, rank = scorer(w["validation_cutoff"], w["test_cutoff"])
        tried = []
        for setting in itertools.product(*GRID.values()):
            chosen = dict(zip(GRID, setting))
            est = estimated_traits(events, clients, cutoff, catalog, tier, wealth, len(MAISONS), **chosen)
            tried.append((rank(*est)["recall@100"], chosen))
        best_val, chosen = max(tried, key=lambda t: t[0])
        log(f"{region}: scoring the held-out clients by the hidden traits, and by the traits estimated ({chosen})")
        clients, cutoff, rank = scorer(w["test_cutoff"], w["end"])
        reference = rank(taste[clients], loyalty[clients], wealth[clients])
        estimated = rank(*estimated_traits(events, clients, cutoff, catalog, tier, wealth, len(MAISONS), **chosen))
        model, popular = result["model"], result["popularity"]
        keep = lambda m: {k: v for k, v in m.items() if k != "per_maison"}  # noqa: E731
        out[region] = {"reference": keep(reference), "estimated": keep(estimated) | {"settings": chosen, "validation_recall@100": best_val},
                       "model": model, "popularity": popular}
        for k in ("recall@10", "recall@100"):
            rows.append([region, k, f"{model[k]:.3f}", f"{popular[k]:.3f}", f"{reference[k]:.3f}", f"{estimated[k]:.3f}",
                         f"{model[k] / popular[k]:.2f}x", f"{model[k] / reference[k]:.0%}", f"{estimated[k] / reference[k]:.0%}",
                         f"{model[k] / estimated[k]:.0%}"])
    text = table("The served recommender and most-popular beside a ranking by the world's hidden traits, and by the same formula with the clients' traits estimated from their events (same test weeks)",
                 ["region", "metric", "served", "most-popular", "hidden traits", "estimated traits", "served / popular", "served / hidden",
                  "estimated / hidden", "served / estimated"], rows)
    save("training_reference", {"results": out, "tables": [text]})


def _events(world, catalog, chunks, E) -> pd.DataFrame:
    """Every client's views, wishes and purchases: client row, product row, type, time (the generator's own stream)."""
    parts = []
    for first, chunk in zip(range(0, world.clients, world.chunk_clients), chunks):
        t = E.simulate_events(world, catalog, chunk, first)
        parts.append(pd.DataFrame({
            "client": pd.Series(t.column("client_id").to_numpy(zero_copy_only=False)).str[2:].astype(np.int64),
            "product": pd.Series(t.column("product_id").to_numpy(zero_copy_only=False)).str[1:].astype(np.int64),
            "type": t.column("event_type").to_numpy(zero_copy_only=False),
            "ts": t.column("event_timestamp").to_pandas(),
        }))
    return pd.concat(parts, ignore_index=True).sort_values(["client", "ts"], kind="stable", ignore_index=True)


def estimated_traits(events: pd.DataFrame, clients: np.ndarray, cutoff: pd.Timestamp, catalog, tier: np.ndarray, wealth: np.ndarray,
                     maisons: int, *, sessions_prior: float, taste_shrink: float, taste_scale: float):
    """Each client's taste, loyalty and budget as its events before `cutoff` show them.

    Loyalty decides a session's maison, so it is read from sessions (views 90 s apart), smoothed
    towards the clients' mean share by `sessions_prior` sessions per maison. Taste decides which
    products a session shows, so it is the mean style of what the client looked at, wished for
    and bought, shrunk towards nothing by `taste_shrink` events and scaled. Budget: the mean of
    the client's tier (tiers are wealth quantiles, a client feature the store holds).
    """
    from atelier.data.events import VIEW_GAP_S

    pos = pd.Series(np.arange(len(clients)), index=clients)
    e = events[(events["ts"] < cutoff) & events["client"].isin(pos.index)]
    who = pos.reindex(e["client"]).to_numpy()
    product = e["product"].to_numpy()
    view = (e["type"] == "view").to_numpy()
    seconds = e["ts"].dt.tz_convert(None).to_numpy().astype("datetime64[s]").astype(np.int64)
    vw, vs, vp = who[view], seconds[view], product[view]
    opens = np.ones(len(vw), bool)
    opens[1:] = (vw[1:] != vw[:-1]) | (vs[1:] - vs[:-1] != VIEW_GAP_S)
    sessions = np.zeros((len(clients), maisons))
    np.add.at(sessions, (vw[opens], catalog.maison_idx[vp[opens]]), 1)
    share = sessions.sum(0) / max(sessions.sum(), 1)
    loyalty = (sessions + sessions_prior * maisons * share) / (sessions.sum(1, keepdims=True) + sessions_prior * maisons)
    style_sum = np.zeros((len(clients), catalog.style.shape[1]))
    np.add.at(style_sum, who, catalog.style[product])
    taste = taste_scale * style_sum / (np.bincount(who, minlength=len(clients))[:, None] + taste_shrink)
    log_wealth = np.log(wealth)
    by_tier = {t: np.exp(log_wealth[tier == t].mean()) for t in np.unique(tier)}
    return taste, loyalty, np.array([by_tier[t] for t in tier[clients]])


if __name__ == "__main__":
    main()
