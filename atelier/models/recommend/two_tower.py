"""The retrieval model: two towers trained with TFRS's retrieval task.

In-batch softmax: every other positive of a batch is a negative for a query. Two corrections
make that sampled softmax honest, and together they are what lets a two-tower beat a
most-popular list at all:

* log-Q (sampling-bias) correction: popular products are over-represented as in-batch negatives,
  so each logit is lowered by the log of its product's sampling probability;
* removal of accidental hits: a batch may hold the same product twice; it must not be its own
  negative.

`fit` trains on a region's examples and returns the model with its per-epoch loss.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Literal

import numpy as np
import tensorflow as tf
import tensorflow_recommenders as tfrs
import tf_keras as keras
from pydantic import BaseModel, Field

from atelier.models.recommend.dataset import RegionData
from atelier.models.recommend.inputs import fit_specs
from atelier.models.recommend.towers import Tower
from atelier.models.streams import weakly_streamed


class TrainConfig(BaseModel):
    """How a region's model is trained. Every field can be set from `atelier train`."""

    embedding_dim: int = Field(64, ge=8)
    id_dim: int = Field(32, ge=4)
    feature_dim: int = Field(16, ge=2)
    query_hidden: list[int] = [128]
    candidate_hidden: list[int] = [128]
    epochs: int = Field(6, ge=1)  # at most: training stops early when validation recall stops rising
    patience: int = Field(2, ge=1)
    batch_size: int = Field(1024, ge=16)
    learning_rate: float = Field(0.004, gt=0)
    temperature: float = Field(0.1, gt=0)
    logq: bool = True
    event_weights: dict[str, float] = {"purchase": 1.0, "wishlist": 0.5, "view": 0.25}
    eval_weeks: int = Field(4, ge=1)  # the validation window, and the test window after it
    refit: bool = True  # retrain on train + validation with the chosen epochs before the test and export
    ranking: bool = True  # the ranking stage over several candidate sources (models/recommend/ranking/)
    serve: Literal["auto", "ranked", "two-tower"] = "auto"  # auto: whichever does best on validation
    ranking_windows: int = Field(3, ge=1)  # label windows (of eval_weeks each) the ranker learns from
    ranking_epochs: int = Field(12, ge=1)  # at most; the best on the validation weeks is kept
    ranking_lists: int = Field(8192, ge=1)  # at most this many buyers' lists per label window, drawn at random
    exclude_purchased: bool = True
    max_examples: int | None = None
    seed: int = 7


class TwoTower(tfrs.Model):
    def __init__(self, query: Tower, candidate: Tower, temperature: float, logq: bool):
        super().__init__()
        self.query_tower = query
        self.candidate_tower = candidate
        self.logq = logq
        self.task = tfrs.tasks.Retrieval(temperature=temperature, remove_accidental_hits=True)

    def compute_loss(self, features, training=False):
        q = self.query_tower(features["query"], training=training)
        c = self.candidate_tower(features["candidate"], training=training)
        return self.task(
            q,
            c,
            sample_weight=features["weight"],
            candidate_sampling_probability=features["sampling_probability"] if self.logq else None,
            candidate_ids=features["candidate"]["product_id"],
            compute_metrics=False,
            compute_batch_metrics=False,
        )


def _dataset(data: RegionData, config: TrainConfig) -> tuple[tf.data.Dataset, int]:
    """Batches of examples streamed from the training set's parts (`ExampleParts.batches`: a new
    order every epoch), the candidate tower's inputs gathered per batch from one copy per product.

    The parts are read back as Arrow record batches a few at a time, so a region's training holds
    a bounded number of examples whatever its events. (Held whole as tensors, the query inputs and
    the arrays they were built from were the peak of a region's training.)"""
    ex = data.train
    counts = np.bincount(ex.product_index, minlength=len(data.products)).astype(np.float64)
    sampling = tf.constant((counts / counts.sum()).astype(np.float32))
    products = {k: tf.constant(v) for k, v in data.candidate.items()}
    epochs = itertools.count()
    # The parts are held weakly (see `atelier.models.streams`): they go with the examples
    # (`RegionData.train = None`), as does their scratch directory.
    ds = weakly_streamed(ex.parts, lambda parts: parts.batches(config.batch_size, config.seed, next(epochs)),
                         ex.parts.signature(tf))

    def gather(batch):
        product = batch["product"]
        return {
            "query": batch["query"],
            "candidate": {k: tf.gather(v, product) for k, v in products.items()},
            "weight": batch["weight"],
            "sampling_probability": tf.gather(sampling, product),
        }

    return ds.map(gather, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).prefetch(2), len(ex.product_index)


class _EarlyStop(keras.callbacks.Callback):
    """After each epoch, score the validation window; keep the best epoch's weights, stop when it stalls."""

    def __init__(self, score: Callable[[TwoTower], float], patience: int):
        super().__init__()
        self.score, self.patience = score, patience
        self.scores: list[float] = []
        self.best_weights = None

    def on_epoch_end(self, epoch, logs=None):
        self.scores.append(float(self.score(self.model)))
        if self.scores[-1] >= max(self.scores):
            self.best_weights = self.model.get_weights()
        elif len(self.scores) - 1 - int(np.argmax(self.scores)) >= self.patience:
            self.model.stop_training = True

    @property
    def best_epochs(self) -> int:
        return int(np.argmax(self.scores)) + 1


class _Progress(keras.callbacks.Callback):
    def __init__(self, report: Callable[[int], None]):
        super().__init__()
        self.report = report

    def on_train_batch_end(self, batch, logs=None):
        self.report(1)


def fit(
    data: RegionData, config: TrainConfig, progress: Callable[[int], None] | None = None,
    validation: Callable[[TwoTower], float] | None = None,
) -> tuple[TwoTower, dict]:
    """Train for `config.epochs`, or, given a `validation` score, until it stops rising (best weights kept)."""
    keras.utils.set_random_seed(config.seed)
    query_specs = data.train.query_specs  # fitted while the examples were written
    candidate_specs = fit_specs(data.candidate_specs, data.candidate)
    client_vocabulary = sorted(set(data.train.client_ids.tolist()))
    product_vocabulary = data.products["product_id"].tolist()
    query = Tower("client_id", client_vocabulary, query_specs, id_dim=config.id_dim, feature_dim=config.feature_dim,
                  hidden=tuple(config.query_hidden), output_dim=config.embedding_dim, seed=config.seed)
    candidate = Tower("product_id", product_vocabulary, candidate_specs, id_dim=config.id_dim, feature_dim=config.feature_dim,
                      hidden=tuple(config.candidate_hidden), output_dim=config.embedding_dim, seed=config.seed + 1)
    model = TwoTower(query, candidate, config.temperature, config.logq)
    model.compile(optimizer=keras.optimizers.Adam(config.learning_rate))
    ds, n = _dataset(data, config)
    callbacks = [_Progress(progress)] if progress else []
    stop = _EarlyStop(validation, config.patience) if validation else None
    callbacks += [stop] if stop else []
    import time

    t0 = time.perf_counter()
    history = model.fit(ds, epochs=config.epochs, verbose=0, callbacks=callbacks)
    seconds = time.perf_counter() - t0
    epochs_run = len(history.history["loss"])
    out = {
        "loss": [float(x) for x in history.history["loss"]],
        "examples": n,
        "seconds": seconds,
        "examples_per_second": n * epochs_run / seconds,
        "client_vocabulary": len(client_vocabulary),
        "epochs": epochs_run,
    }
    if stop:
        model.set_weights(stop.best_weights)
        out |= {"validation": stop.scores, "best_epochs": stop.best_epochs}
    return model, out


def embed(tower: Tower, inputs: dict[str, np.ndarray], batch: int = 8192) -> np.ndarray:
    n = len(next(iter(inputs.values())))
    out = [tower({k: v[i : i + batch] for k, v in inputs.items()}).numpy() for i in range(0, n, batch)]
    return np.concatenate(out) if out else np.zeros((0, tower.dense.layers[-1].units), np.float32)
