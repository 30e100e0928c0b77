"""`atelier train --region R`: data -> model -> evaluation beside baselines -> index -> export.

Three windows: train, validation (the last-but-one `eval_weeks`: every choice is made there) and
test (the last `eval_weeks`: read once, for the report). A run lives in
`<home>/runs/<region>/<run id>/`: metrics.json (validation and test tables, the choices made),
loss.png, recall.png, the exported artifacts, and the training set (encrypted with the region's
key). It reads only the region's clients, and checks before exporting that the model holds no
client the region does not hold.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
from feast.permissions.user import User

from atelier.context import RegionContext
from atelier.io import write_json_atomic
from atelier.memory import give_back
from atelier.models.plots import loss_plot, recall_plot
from atelier.models.progress import Steps
from atelier.models.recommend import baselines as bl
from atelier.models.recommend import compare, ranking
from atelier.models.recommend.ranking.window import RankingWindow, ranking_window
from atelier.models.recommend import dataset as ds
from atelier.models.recommend.evaluate import RowScores
from atelier.models.recommend.export import export
from atelier.models.recommend.index import AnnIndex, ExactIndex
from atelier.models.recommend.two_tower import TrainConfig, embed, fit
from atelier.models.store import use_bentoml_home
from atelier.protect.residency import assert_region_clients
from atelier.settings import Settings


@dataclass
class RunResult:
    region: str
    run_dir: Path
    tag: str | None
    metrics: dict
    model: object = None  # the in-memory TwoTower, for callers that compare it with the export
    data: object = None
    catalog: dict | None = None  # the candidate-tower inputs the export embedded (as of the last day)
    ranking_tower: object = None  # the tower the ranking stage learned from (fitted before its label windows)


def train_region(
    settings: Settings,
    region: str,
    config: TrainConfig | None = None,
    *,
    user: User | None = None,
    export_model: bool = True,
    steps: Steps | None = None,
) -> RunResult:
    """Choose on the validation weeks, refit on train + validation, report the test weeks once, export.

    1. Train on events before the validation cut-off; after each epoch score the validation weeks
       and keep the best epoch (early stopping). EASE's λ is chosen on the same weeks. The ranking
       stage learns from label windows before the cut-off, with the scores of a second tower
       fitted before the first of them (`_RankerTower`), and its epochs are chosen there too.
    2. Refit on everything before the test cut-off with those choices (`config.refit`), so the
       exported model has seen the most recent weeks, as it will when serving.
    3. Score the test weeks once: the model and every baseline, for warm, cold and all clients.
    """
    config = config or TrainConfig()
    steps = steps or Steps()
    ctx = RegionContext.of(settings, region, user)  # built once, passed down
    region = ctx.region
    run_id = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    run_dir = settings.paths.runs(region) / run_id

    steps.step("reading the events")(1)
    events = ds.read_events(ctx)
    windows = ds.windows(events, config.eval_weeks)  # checked before anything is written
    run_dir.mkdir(parents=True, exist_ok=True)
    common = dict(event_weights=config.event_weights, events=events, max_examples=config.max_examples, seed=config.seed)
    # 1. Choices, on the validation weeks only. The selection's data is not read again: it is freed
    #    before the refit builds the full set (together they were the peak at 100k clients).
    chosen = _choose(ctx, config, windows, common, steps)
    # With a refit, the selection's tower (its client table and the optimizer's slots) is not held
    # through the refit's build: the refit trains a tower of its own.
    model, history, lam, rank_history, starts, ranker_tower = (
        None if config.refit else chosen.model, chosen.history, chosen.lam, chosen.rank_history, chosen.starts, chosen.ranker_tower)
    validation, lambdas = chosen.validation, chosen.lambdas
    choice = compare.choose_served(validation, config.serve)
    del chosen
    give_back()  # what still refers to the selection's data may sit in reference cycles (Keras models, callbacks): freed now, before the next build

    # 2. Refit on train + validation with the chosen epochs. The build is a step of its own: it
    #    reads the point-in-time features again, for minutes at scale, and its memory is its own.
    data = ds.build(ctx, cutoff=windows.test_cutoff, end=windows.end, **common,
                    progress=lambda reads: steps.step("reading point-in-time features (train + validation weeks)", reads))
    ds.save_training_set(ctx, data, run_dir)
    refit_history = None
    if config.refit:
        final = config.model_copy(update={"epochs": history["best_epochs"]})
        batches = int(np.ceil(len(data.train.product_index) / final.batch_size)) * final.epochs
        model, refit_history = fit(data, final, progress=steps.step("refitting on train + validation", batches))
    data.train = None  # saved with the run; nothing reads the examples after the fit
    give_back()

    context = None
    if config.ranking:
        lists = _ranking_lists(ctx, data, windows.test_cutoff, config, lam, ranker_tower, steps)
        scorer, _ = ranking.fit(lists, rank_history["best_epochs"], seed=config.seed, progress=steps.step("refitting the ranking stage", rank_history["best_epochs"]))
        del lists  # padded per client: not kept through the test scoring
        give_back()
        # What serves: the co-purchase table, popularity and country shares as of the last day.
        context = ranking_window(ctx, data, windows.end, windows.end, lam, client_ids=np.zeros(0, object)).context

    # 3. The test weeks, read once.
    advance = steps.step("scoring the test weeks (once)")
    test_contenders = compare.Contenders(data, config.exclude_purchased)
    test = compare.table(test_contenders, _scores(model, data), lam)
    test_contenders.release()
    if config.ranking:
        window = ranking_window(ctx, data, windows.test_cutoff, windows.end, lam, client_ids=data.eval.client_ids)
        test[compare.RANKED] = test_contenders.measure(_served(window, scorer, _retrieval(model, data), test_contenders, config.exclude_purchased))
    queries = embed(model.query_tower, data.eval.query)
    # What serves: product features as of the last day, not the test cut-off.
    products, candidate_inputs = ds.catalog_as_of(ctx, data.candidate_specs, windows.end)
    candidates = embed(model.candidate_tower, candidate_inputs)
    metrics = {
        "windows": windows.to_json(),
        "validation": validation,
        "test": test,
        "choices": {"ease_lambda": lam, "ease_lambda_validation": lambdas, "epochs": history["best_epochs"],
                    "validation_by_epoch": history["validation"], "selected_on": compare.SELECT_ON, "refit": config.refit,
                    "ranking_epochs": rank_history["best_epochs"] if rank_history else None,
                    "ranking_lists": rank_history["lists"] if rank_history else None,  # lists learned from, at most config.ranking_lists a window
                    "ranking_windows": [str(s) for s in sorted(set(starts))] if config.ranking else None,
                    "ranking_tower_before": str(min(starts)) if config.ranking and starts else None,
                    "ranking_validation_by_epoch": rank_history["validation"] if rank_history else None},
        "served": choice,
        # headline figures (all clients, test weeks), kept flat for the model's metadata and the benchmarks
        "model": test[choice]["all"],
        "two_tower": test[compare.MODEL]["all"],
        "popularity": test["recent popularity"]["all"],
        "training": refit_history or history,
        "selection_training": history,
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
    loss_plot(metrics["training"]["loss"], run_dir / "loss.png", f"{region}: training loss")
    recall_plot(test, run_dir / "recall.png", f"{region}: test weeks ({config.eval_weeks}), recall@10")

    vocabulary = model.query_tower.id_lookup.get_vocabulary()[1:]
    assert_region_clients(settings, region, pa.array(vocabulary, pa.string()), where=f"model vocabulary of {region}")

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
            products=products,
            popularity=data.popularity,
            country_popularity=bl.country_counts(bl.History.before(data.purchases, pd.Timestamp(windows.end), len(data.products))),
            info=info,
            ranking_stage=(scorer, context) if config.ranking else None,
            serve=choice,
        )
        metrics["bentoml_tag"] = tag
        write_json_atomic(run_dir / "metrics.json", metrics)
        advance(1)
    return RunResult(region, run_dir, tag, metrics, model=model, data=data, catalog=candidate_inputs,
                     ranking_tower=ranker_tower if config.ranking else None)


@dataclass
class _Choices:
    """What the validation weeks chose, and the tower the ranking stage learns from."""

    model: object  # the two-tower trained before the validation cut-off (its best epoch)
    history: dict
    validation: dict  # every contender's figures on the validation weeks
    lam: float | None
    lambdas: dict
    rank_history: dict | None
    starts: list  # the ranking stage's label windows, before either cut-off
    ranker_tower: _RankerTower | None


def _choose(ctx: RegionContext, config: TrainConfig, windows: ds.Windows, common: dict, steps: Steps) -> _Choices:
    """Train on the events before the validation cut-off and make every choice on the weeks after it."""
    selection = ds.build(ctx, cutoff=windows.validation_cutoff, end=windows.test_cutoff, **common,
                         progress=lambda reads: steps.step("reading point-in-time features (validation weeks held out)", reads))
    val = compare.Contenders(selection, config.exclude_purchased)
    lam, lambdas = compare.choose_lambda(val)
    batches = int(np.ceil(len(selection.train.product_index) / config.batch_size)) * config.epochs
    model, history = fit(selection, config, progress=steps.step("training (validation weeks held out)", batches),
                         validation=lambda m: _validation_score(m, selection, val))
    selection.train = None  # its examples (0.5 GiB in memory for eu of the 52M-event world, more on disk) served this fit only
    advance = steps.step("scoring the validation weeks")
    validation = compare.table(val, _scores(model, selection), lam)
    val.release()  # the baselines are scored; what follows measures the ranking stage only
    give_back()  # what the fit and the scoring freed, before the ranking stage's tower reads its parts
    advance(1)
    rank_history, starts, ranker_tower = None, [], None
    if config.ranking:
        # The ranking stage learns from the weeks before the validation cut-off; its epochs are chosen there.
        first = selection.purchases["event_timestamp"].min()
        starts = _window_starts(first, windows.validation_cutoff, config) + _window_starts(first, windows.test_cutoff, config)
        ranker_tower = _RankerTower.fit(ctx, min(starts), config, history["best_epochs"], common, steps) if starts else None
        lists = _ranking_lists(ctx, selection, windows.validation_cutoff, config, lam, ranker_tower, steps)
        window = ranking_window(ctx, selection, windows.validation_cutoff, windows.test_cutoff, lam, client_ids=selection.eval.client_ids)
        retrieval = _retrieval(model, selection)
        served = lambda scorer: _served(window, scorer, retrieval, val, config.exclude_purchased)  # noqa: E731
        scorer, rank_history = ranking.fit(lists, config.ranking_epochs, seed=config.seed, progress=steps.step("training the ranking stage", config.ranking_epochs),
                                           validation=lambda s: val.measure(served(s))["all"].get(compare.SELECT_ON, 0.0))
        validation[compare.RANKED] = val.measure(served(scorer))
    return _Choices(model, history, validation, lam, lambdas, rank_history, starts, ranker_tower)


def _window_starts(first: pd.Timestamp, cutoff: pd.Timestamp, config: TrainConfig) -> list[pd.Timestamp]:
    """Where the ranker's label windows (of `eval_weeks` each) start, stepping back from `cutoff`;
    a window needs a window's worth of history before it to learn from."""
    weeks = pd.Timedelta(weeks=config.eval_weeks)
    starts = [cutoff - k * weeks for k in range(1, config.ranking_windows + 1)]
    return [s for s in starts if s > first + weeks]


@dataclass
class _RankerTower:
    """A two-tower fitted on the events before the ranker's first label window.

    The ranker learns how far to trust the tower from windows the tower has not seen: the served
    tower was trained on those weeks, and its scores there would be too good to learn from. At
    validation, test and serving the served tower scores, on weeks it has not seen either.
    """

    ctx: RegionContext
    model: object
    query_specs: list
    candidate_specs: list

    @staticmethod
    def fit(ctx: RegionContext, before: pd.Timestamp, config: TrainConfig, epochs: int, common: dict, steps: Steps) -> _RankerTower:
        data = ds.build(ctx, cutoff=before, end=before + pd.Timedelta(weeks=config.eval_weeks), **common,
                        progress=lambda reads: steps.step("reading point-in-time features (before the ranking stage's label weeks)", reads))
        final = config.model_copy(update={"epochs": epochs})
        batches = int(np.ceil(len(data.train.product_index) / final.batch_size)) * final.epochs
        model, _ = fit(data, final, progress=steps.step("training the ranking stage's tower (before its label weeks)", batches))
        tower = _RankerTower(ctx, model, data.query_specs, data.candidate_specs)
        del data
        give_back()
        return tower

    def retrieved(self, at: pd.Timestamp, client_ids: np.ndarray, exclude: list[np.ndarray] | None) -> ranking.Retrieved:
        """The tower's view of `client_ids` as of `at`: query vectors, catalog, nearest products."""
        queries = embed(self.model.query_tower, ds.query_inputs(self.ctx, self.query_specs, client_ids, at))
        catalog = embed(self.model.candidate_tower, ds.catalog_as_of(self.ctx, self.candidate_specs, at)[1])
        scores = RowScores((len(queries), len(catalog)), lambda a, b: queries[a:b] @ catalog.T)  # ranked a block at a time
        return ranking.Retrieved.of(ranking.TowerView.of(catalog), queries, ranking.tower_lists(scores, exclude), exclude)


def _ranking_lists(ctx: RegionContext, data: ds.RegionData, cutoff, config: TrainConfig, lam, tower: _RankerTower | None, steps: Steps) -> list:
    """The ranker's training lists: one window of `eval_weeks` per step back from `cutoff`, with
    candidates and tower features from `tower`, which has seen none of these windows.

    Each window's buyers are sampled to `config.ranking_lists` (seeded): 8,192 lists of a window
    teach a scorer of 23 features what tens of thousands do, in a fixed amount of memory. Eu of
    the 52M-event world held 11.5 GiB with all of them; Online Retail's windows (some 1,500
    buyers) and the 100,000-client world's (some 3,600) are kept whole."""
    weeks = pd.Timedelta(weeks=config.eval_weeks)
    starts = _window_starts(data.purchases["event_timestamp"].min(), cutoff, config)
    advance = steps.step("building the ranking stage's training lists", max(len(starts), 1))
    out = []
    for start in starts:
        window = ranking_window(ctx, data, start, start + weeks, lam, most=config.ranking_lists, seed=config.seed)
        clients, truth, bought = window.warm_only()
        if clients.history:
            exclude = bought if config.exclude_purchased else None
            retrieved = tower.retrieved(start, window.client_ids[window.warm], exclude)
            lists = ranking.training_lists(window.context, clients, truth, exclude, retrieved)
            if len(lists.labels):
                out.append(lists)
        advance(1)
    return out


@dataclass
class _Retrieval:
    """The served tower's query vectors for a window's clients and its catalog."""

    queries: np.ndarray
    view: ranking.TowerView


def _retrieval(model, data: ds.RegionData) -> _Retrieval:
    return _Retrieval(embed(model.query_tower, data.eval.query), ranking.TowerView.of(embed(model.candidate_tower, data.candidate)))


def _served(window: RankingWindow, scorer, retrieval: _Retrieval, contenders: compare.Contenders, exclude_purchased: bool) -> RowScores:
    """What /recommend answers for the window's clients (those of `contenders.data.eval`): ranked
    candidates for the clients the store holds; for the others, the service's fallback
    (`contenders.fallback`), their country's recent best-sellers (the app names the country the
    client shops in) blended with the store's popularity. Computed a block of clients at a time,
    as `top_k` asks: a client's answer depends on that client only."""
    data, fallback = contenders.data, contenders.fallback
    popularity = data.popularity
    assert len(window.client_ids) == len(data.eval.country), "the window's clients are data.eval's, in order"

    def block(start: int, stop: int) -> np.ndarray:
        out = np.stack([fallback.scores(c) for c in data.eval.country[start:stop]]) if stop > start else np.zeros((0, len(popularity)), np.float32)
        warm = np.flatnonzero(window.warm[start:stop])
        if len(warm):
            rows = start + warm
            exclude = [window.bought_before[r] for r in rows] if exclude_purchased else None
            queries = retrieval.queries[rows]
            retrieved = ranking.Retrieved.of(retrieval.view, queries, ranking.tower_lists(queries @ retrieval.view.catalog.T, exclude), exclude)
            out[warm] = ranking.ranked_scores(window.context, window.clients.take(rows), scorer, exclude, retrieved, fill=popularity)
        return out

    return RowScores((len(window.client_ids), len(popularity)), block)


def _scores(model, data: ds.RegionData) -> RowScores:
    """The two-tower's scores for the window's clients over the whole catalog, a block at a time."""
    r = _retrieval(model, data)
    return RowScores((len(r.queries), len(r.view.catalog)), lambda a, b: r.queries[a:b] @ r.view.catalog.T)


def _validation_score(model, data: ds.RegionData, contenders: compare.Contenders) -> float:
    return contenders.measure(_scores(model, data))["all"].get(compare.SELECT_ON, 0.0)


def _headline(m: dict) -> dict:
    return {k: v for k, v in m.items() if k != "per_maison"}


def summary(result: RunResult):
    """The test weeks' table (model beside every baseline, per client group) and the run's facts."""
    from rich.console import Group
    from rich.table import Table

    m = result.metrics
    test = m["test"]
    groups = {g: next(iter(test.values()))[g].get("clients", 0) for g in ("all", "warm", "cold")}
    table = Table(
        title=f"{result.region}: test weeks from {m['windows']['test_cutoff'][:10]} "
        f"({groups['all']:,} clients: {groups['warm']:,} warm, {groups['cold']:,} cold)",
        title_justify="left",
    )
    table.add_column("recommender", no_wrap=True)
    columns = [("all", "recall@10"), ("all", "recall@100"), ("all", "ndcg@10"), ("warm", "recall@10"), ("cold", "recall@10"), ("all", "coverage@10")]
    short = {"recall@10": "r@10", "recall@100": "r@100", "ndcg@10": "ndcg@10", "coverage@10": "cov@10"}
    for group, metric in columns:
        table.add_column(f"{short[metric]}\n{group}", justify="right", no_wrap=True)
    for name, res in test.items():
        style = "bold" if name == m["served"] else None
        table.add_row(name + (" (served)" if name == m["served"] else ""), *(f"{res[g].get(k, 0):.3f}" if res[g].get("clients") else "-" for g, k in columns), style=style)
    t, c = m["training"], m["choices"]
    lam = f"EASE λ {c['ease_lambda']:g}, " if c["ease_lambda"] is not None else ""
    facts = [
        f"chosen on the validation weeks: {m['served']} serves; {lam}{c['epochs']} epoch(s){'; refit on train + validation' if c['refit'] else ''}",
        f"training: {t['examples']:,} examples, {t['examples_per_second']:,.0f} examples/s; index recall@10 vs exact {m['index']['recall@10_vs_exact']:.3f}",
        f"run: {result.run_dir}" + (f"; model {result.tag}" if result.tag else ""),
    ]
    return Group(table, *facts)


def load_metrics(run_dir: Path) -> dict:
    return json.loads((run_dir / "metrics.json").read_text())
