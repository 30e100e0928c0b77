"""Two-tower against most-popular on a 100k-client world, and training throughput, per region.

    .venv/bin/python benchmarks/training.py [--clients 100000] [--epochs 4]

World: the `medium` preset (100k clients, 5,000 products, ~40 events each, two years). Each
region's model trains on that region's clients only, with point-in-time features, and is judged
on the purchases of the 4 weeks after its training cut-off over the full catalog, products
already bought left out, beside the region's most-popular list as of the cut-off.

Train one region per process (`--regions us`, then `--regions eu`, ...): results/training.json
keeps the regions of earlier runs on the same world and settings beside the new ones.
"""

from __future__ import annotations

import argparse
import json
import logging
import time

from common import RESULTS, bench_home, log, make_world, mark_ready, save, table


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--clients", type=int, default=100_000)
    ap.add_argument("--products", type=int, default=5_000)
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--regions", default="eu,us,apac")
    args = ap.parse_args()
    logging.disable(logging.WARNING)
    spec = {"clients": args.clients, "products": args.products, "events_per_client": 40.0, "chunk_clients": 50_000}
    home, fresh = bench_home("training", spec)
    from atelier.models.recommend.train import train_region
    from atelier.models.recommend.two_tower import TrainConfig
    from atelier.regions import region_codes
    from atelier.settings import Settings

    s = Settings(home=home)
    if fresh:
        make_world(s, spec, region_codes())
        mark_ready(home, spec)
    results = {} if fresh else _earlier(args)  # a world generated anew: earlier figures are of another
    for r in args.regions.split(","):
        log(f"training {r}")
        result = train_region(s, r, TrainConfig(epochs=args.epochs))
        m, b, t = result.metrics["model"], result.metrics["popularity"], result.metrics["training"]
        ease = next((v["all"] for k, v in result.metrics["test"].items() if k.startswith("EASE")), {})
        results[r] = {"model": m, "popularity": b, "two_tower": result.metrics["two_tower"], "ease": ease, "windows": result.metrics["windows"],
                      "choices": result.metrics["choices"], "training": t, "index": result.metrics["index"], "run": str(result.run_dir), "tag": result.tag,
                      "measured": time.strftime("%Y-%m-%dT%H:%M:%S")}
        _save(args, results)  # after each region: a run stopped part-way keeps what it measured


def _earlier(args) -> dict:
    """The regions earlier runs measured on the same world and settings, kept beside this run's:
    a region per process (`--regions us`, then `--regions eu`...) bounds memory, since one process
    does not give back what a region's training held."""
    try:
        old = json.loads((RESULTS / "training.json").read_text())
    except (OSError, ValueError):
        return {}
    if not all(old.get(k) == getattr(args, k) for k in ("clients", "products", "epochs")):
        return {}
    return {r: {"measured": old.get("when", "?"), **x} for r, x in old.get("results", {}).items()}


def _save(args, results: dict) -> None:
    rows = []
    for r, x in results.items():
        m, b, tower, ease, t = x["model"], x["popularity"], x["two_tower"], x["ease"], x["training"]
        for k in ("recall@10", "recall@50", "recall@100", "ndcg@10"):
            rows.append([r, k, round(m[k], 3), round(tower[k], 3), round(ease.get(k, 0), 3), round(b[k], 3), f"{m[k] / b[k]:.2f}x"])
        rows.append([r, "examples/s", f"{t['examples_per_second']:,.0f}", "", "", "",
                     f"{t['examples']:,} examples x {t['epochs']} epochs, {m['clients']:,} test clients; measured {x.get('measured', '?')}"])
    text = table(f"The served model vs most-popular-in-region, {args.clients:,} clients, {args.products:,} products (test: last 4 weeks, full catalog)",
                 ["region", "metric", "served", "two-tower", "EASE", "most-popular", "served / popular"], rows)
    save("training", {"clients": args.clients, "products": args.products, "epochs": args.epochs, "results": results, "tables": [text]})


if __name__ == "__main__":
    main()
