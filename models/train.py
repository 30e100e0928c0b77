"""`atelier train --region R`: data -> model -> evaluation -> index -> export, for one region.

A run lives in `<home>/runs/<region>/<run id>/`: metrics.json, loss.png, recall.png, the exported
artifacts, and the training set (encrypted with the region's key). It reads only the region's
clients, and checks before exporting that the model holds no other region's client.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
from feast.permissions.user import User

from atelier.data.lake import assert_region_clients
from atelier.io import write_json_atomic
from atelier.models import dataset as ds
from atelier.models.evaluate import popularity_ranking, retrieval_metrics, top_k
from atelier.models.export import export, use_bentoml_home
from atelier.models.index import AnnIndex, ExactIndex
from atelier.models.plots import loss_plot, recall_plot
from atelier.models.two_tower import TrainConfig, embed, fit
from atelier.regions import get_region
from atelier.settings import Settings


@dataclass
class RunResult:
    region: str
    run_dir: Path
    tag: str | None
    metrics: dict
    model: object = None  # the in-memory TwoTower, for callers that compare it with the export
    data: object = None


class Steps:
    """Named progress: the CLI shows a bar per step; tests pass nothing."""

    def __init__(self, report: Callable[[str, int | None], Callable[[int], None]] | None = None):
        self.report = report

    def step(self, name: str, total: int | None = None) -> Callable[[int], None]:
        return self.report(name, total) if self.report else (lambda n=1: None)


def train_region(
    settings: Settings,
    region: str,
    config: TrainConfig | None = None,
    *,
    user: User | None = None,
    export_model: bool = True,
    steps: Steps | None = None,
) -> RunResult:
    config = config or TrainConfig()
    steps = steps or Steps()
    region = get_region(region).code
    run_id = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    run_dir = settings.paths.runs(region) / run_id
    run_dir.mkdir(parents=True, exist_ok=True)

    steps.step("reading point-in-time features")(1)
    data = ds.build(settings, region, event_weights=config.event_weights, eval_weeks=config.eval_weeks, user=user, max_examples=config.max_examples, seed=config.seed)
    ds.save_training_set(settings, region, data, run_dir)

    batches = int(np.ceil(len(data.train.product_index) / config.batch_size)) * config.epochs
    model, history = fit(data, config, progress=steps.step("training", batches))

    advance = steps.step("evaluating on the held-out weeks")
    candidates = embed(model.candidate_tower, data.candidate)
    queries = embed(model.query_tower, data.eval.query)
    exclude = data.eval.bought_before if config.exclude_purchased else None
    maison_of = data.products["maison"].to_numpy()
    ranked = top_k(queries @ candidates.T, 100, exclude) if len(queries) else np.zeros((0, 100), int)
    baseline = popularity_ranking(data.popularity, len(queries), 100, exclude)
    metrics = {
        "model": retrieval_metrics(ranked, data.eval.truth, maison_of),
        "popularity": retrieval_metrics(baseline, data.eval.truth, maison_of),
        "training": history,
        "config": config.model_dump(),
        "window": data.window,
        "products": len(data.products),
    }
    advance(1)

    advance = steps.step("building the top-k index")
    exact = ExactIndex(candidates)
    ann = AnnIndex.build(candidates)
    # Tuned on client queries, which are what it will serve (product vectors only when there are none).
    sample = queries[:1000] if len(queries) >= 50 else np.concatenate([queries, candidates[:200]])
    metrics["index"] = ann.tune(exact, sample)
    advance(1)

    write_json_atomic(run_dir / "metrics.json", metrics)
    np.save(run_dir / "query_sample.npy", queries[:2000])  # for index benchmarks: vectors, no ids
    loss_plot(history["loss"], run_dir / "loss.png", f"{region}: training loss")
    recall_plot(metrics["model"], metrics["popularity"], run_dir / "recall.png", f"{region}: next {config.eval_weeks} weeks")

    vocabulary = model.query_tower.id_lookup.get_vocabulary()[1:]
    assert_region_clients(pa.array(vocabulary, pa.string()), region, where=f"model vocabulary of {region}")

    tag = None
    if export_model:
        advance = steps.step("exporting to the BentoML model store")
        use_bentoml_home(settings)
        info = {
            "feature_services": {"query": ds.QUERY_SERVICE, "candidate": ds.CANDIDATE_SERVICE, "popularity": ds.POPULARITY_SERVICE},
            "window": data.window,
            "metrics": {"model": _headline(metrics["model"]), "popularity": _headline(metrics["popularity"])},
            "index": metrics["index"],
            "run": str(run_dir),
            "config": config.model_dump(),
        }
        tag = export(
            run_dir / "model",
            region=region,
            query=model.query_tower,
            candidate=model.candidate_tower,
            candidates=candidates,
            ann=ann,
            products=data.products,
            popularity=data.popularity,
            info=info,
        )
        metrics["bentoml_tag"] = tag
        write_json_atomic(run_dir / "metrics.json", metrics)
        advance(1)
    return RunResult(region, run_dir, tag, metrics, model=model, data=data)


def _headline(m: dict) -> dict:
    return {k: v for k, v in m.items() if k != "per_maison"}


def summary(result: RunResult) -> str:
    m, b = result.metrics["model"], result.metrics["popularity"]
    lines = [f"{result.region}: {m.get('clients', 0):,} clients with purchases in the held-out weeks"]
    for key in ("recall@10", "recall@50", "recall@100", "ndcg@10"):
        if key in m:
            lines.append(f"  {key:<10} two-tower {m[key]:.3f}   most-popular {b[key]:.3f}   ({m[key] / max(b[key], 1e-9):.2f}x)")
    t = result.metrics["training"]
    lines.append(f"  training: {t['examples']:,} examples, {t['examples_per_second']:,.0f} examples/s; index recall@10 vs exact {result.metrics['index']['recall@10_vs_exact']:.3f}")
    lines.append(f"  run: {result.run_dir}" + (f"; model {result.tag}" if result.tag else ""))
    return "\n".join(lines)


def load_metrics(run_dir: Path) -> dict:
    return json.loads((run_dir / "metrics.json").read_text())
