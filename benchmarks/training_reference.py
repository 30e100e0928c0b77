"""How much a model could learn: the training benchmark's held-out weeks scored by the world's hidden traits.

    .venv/bin/python benchmarks/training_reference.py      # after benchmarks/training.py

The generated world draws every purchase from hidden traits: each client's taste vector,
maison loyalty and budget, each product's style, appeal, launch date and price. Ranking the
catalog by the generator's own score for a client (taste fit, appeal, novelty in the middle of
the held-out weeks, loyalty to the product's maison, the chance of buying at that price) is a
reference no model can see. It is not an exact ceiling (the purchase draw also depends on
which products a session happened to show), but it shows how much of the region's purchases are
predictable at all, and so how large a ratio over most-popular each region allows.

Same clients, held-out purchases and exclusions as the training benchmark (models.dataset.build),
same metric code (models.evaluate). The two-tower and most-popular figures are read from
results/training.json, so run benchmarks/training.py first.
"""

from __future__ import annotations

import json
import logging

import numpy as np
import pandas as pd
from common import RESULTS, bench_home, log, save, table


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
    s = Settings(home=home)
    rows, out = [], {}
    for region, result in trained["results"].items():
        log(f"scoring {region}'s held-out clients by the hidden traits")
        w = result["windows"]
        data = ds.build(RegionContext.of(s, region), event_weights=TrainConfig().event_weights, cutoff=pd.Timestamp(w["test_cutoff"]), end=pd.Timestamp(w["end"]))
        cutoff_day = (np.datetime64(data.window["cutoff"][:10]) - np.datetime64(world.start.isoformat())).astype(int)
        mid = cutoff_day + 14
        # products as the training set orders them, mapped to the generator's rows
        row = data.products["product_id"].str[1:].astype(int).to_numpy()
        style, appeal, launch, price, maison = catalog.style[row], catalog.appeal[row], catalog.launch_day[row], catalog.price[row], catalog.maison_idx[row]
        product_part = appeal + E.NOVELTY_WEIGHT * np.exp(-np.maximum(mid - launch, 0) / E.NOVELTY_DAYS)
        clients = np.array([int(c[2:]) for c in data.eval.client_ids])
        ranked = np.empty((len(clients), 100), np.int64)
        for lo in range(0, len(clients), 2048):
            c = clients[lo : lo + 2048]
            score = E.TASTE_WEIGHT * taste[c] @ style.T + product_part
            score -= 0.7 * np.maximum(0, np.log(price[None, :] / (wealth[c, None] * 3)))
            score += np.log(loyalty[c][:, maison])
            score -= np.log1p(np.exp(2.0 * (np.log(price[None, :]) - np.log(wealth[c, None] * 1.5))))  # chance of buying
            score[:, launch > cutoff_day + 28] = -np.inf  # not on sale before the window ends
            ranked[lo : lo + 2048] = top_k(score, 100, data.eval.bought_before[lo : lo + 2048])
        reference = retrieval_metrics(ranked, data.eval.truth)
        model, popular = result["model"], result["popularity"]
        out[region] = {"reference": {k: v for k, v in reference.items() if k != "per_maison"}, "model": model, "popularity": popular}
        for k in ("recall@10", "recall@100"):
            rows.append([region, k, f"{model[k]:.3f}", f"{popular[k]:.3f}", f"{reference[k]:.3f}", f"{model[k] / popular[k]:.2f}x",
                         f"{reference[k] / popular[k]:.2f}x", f"{model[k] / reference[k]:.0%}"])
    text = table("The served recommender and most-popular beside a ranking by the world's hidden traits (same test weeks)",
                 ["region", "metric", "served", "most-popular", "hidden traits", "served / popular", "hidden / popular", "served / hidden"], rows)
    save("training_reference", {"results": out, "tables": [text]})


if __name__ == "__main__":
    main()
