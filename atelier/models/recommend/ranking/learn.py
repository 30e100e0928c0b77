"""The network that scores pairs, and how it learns: a small `Scorer` trained listwise (a softmax
over each client's candidates, the products bought in the label weeks as targets, with
`tfrs.tasks.Ranking`), on lists built and scored a block of clients at a time."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import tensorflow as tf
import tensorflow_recommenders as tfrs
import tf_keras as keras

from atelier.memory import give_back
from atelier.models.recommend.ranking.context import Clients, Context
from atelier.models.recommend.ranking.pairs import FEATURES, features
from atelier.models.recommend.ranking.sources import candidates, prepare
from atelier.models.recommend.ranking.tower import Retrieved
from atelier.models.streams import weakly_streamed


class Scorer(keras.Model):
    """Features of one (client, candidate) pair -> a score; normalization is part of the model."""

    def __init__(self, hidden: tuple[int, ...] = (64, 32), seed: int = 7):
        super().__init__()
        init = lambda i: keras.initializers.GlorotUniform(seed=seed + i)  # noqa: E731
        self.norm = keras.layers.Normalization(axis=-1)
        self.dense = [keras.layers.Dense(h, activation="relu", kernel_initializer=init(i)) for i, h in enumerate(hidden)]
        self.out = keras.layers.Dense(1, kernel_initializer=init(len(hidden)))

    def call(self, x):
        x = self.norm(x)
        for layer in self.dense:
            x = layer(x)
        return tf.squeeze(self.out(x), -1)


class ListwiseRanker(tfrs.Model):
    """Softmax over each client's padded candidate list; padding never wins."""

    def __init__(self, scorer: Scorer):
        super().__init__()
        self.scorer = scorer
        self.task = tfrs.tasks.Ranking(loss=keras.losses.CategoricalCrossentropy(from_logits=True))

    def compute_loss(self, inputs, training=False):
        scores = self.scorer(inputs["features"], training=training)
        scores = tf.where(inputs["mask"], scores, -1e9)
        return self.task(labels=inputs["labels"], predictions=scores)


@dataclass
class Lists:
    """Training lists of one window: features, labels and validity, padded per client."""

    features: np.ndarray  # [clients, length, FEATURES]
    labels: np.ndarray  # [clients, length], each row sums to 1
    mask: np.ndarray  # [clients, length]

    @staticmethod
    def of(f: np.ndarray, cands: list[np.ndarray], truth: list[np.ndarray]) -> Lists:
        """Only the lists with a purchase are padded (one without teaches nothing): padding every
        client's list first held the features of lists that were then dropped."""
        hits = [np.isin(c, t) for c, t in zip(cands, truth)]
        keep = [u for u, h in enumerate(hits) if h.any()]
        starts = np.concatenate([[0], np.cumsum([len(c) for c in cands])])
        length = max((len(cands[u]) for u in keep), default=1)
        feats = np.zeros((len(keep), length, f.shape[1]), np.float32)
        labels = np.zeros((len(keep), length), np.float32)
        mask = np.zeros((len(keep), length), bool)
        for row, u in enumerate(keep):
            n = len(cands[u])
            feats[row, :n] = f[starts[u] : starts[u] + n]
            labels[row, :n] = hits[u]
            mask[row, :n] = True
        return Lists(feats, labels / np.maximum(labels.sum(1, keepdims=True), 1.0), mask)

    @staticmethod
    def concat(parts: list[Lists]) -> Lists:
        """The lists of several blocks of clients, in order, padded to the longest."""
        length = max((p.labels.shape[1] for p in parts if len(p.labels)), default=1)
        width = next((p.features.shape[2] for p in parts), len(FEATURES))
        pad = lambda x: np.pad(x, [(0, 0), (0, length - x.shape[1])] + [(0, 0)] * (x.ndim - 2))  # noqa: E731
        kept = [p for p in parts if len(p.labels)]
        if not kept:
            return Lists(np.zeros((0, 1, width), np.float32), np.zeros((0, 1), np.float32), np.zeros((0, 1), bool))
        return Lists(np.concatenate([pad(p.features) for p in kept]), np.concatenate([pad(p.labels) for p in kept]),
                     np.concatenate([pad(p.mask) for p in kept]))


# Clients whose candidate pairs are built and scored at once, in the training lists and in
# `ranked_scores`. A pair's features are some forty float arrays of one value per pair before they
# are stacked: for 2,048 clients of 5,000 products (a million pairs) numpy held 588 MiB at once,
# 244 MiB by 512 clients and 142 MiB by 256, which also took half the time (6.9 s against
# 13-15 s: the arrays stay in cache). A client's pairs depend on that client only.
LIST_BLOCK = 256


def _pair_blocks(ctx: Context, clients: Clients, exclude: list[np.ndarray] | None, tower: Retrieved | None,
                 block: int) -> Iterator[tuple[int, list[np.ndarray], np.ndarray]]:
    """(first client, each client's candidates, their pairs' features), `block` clients at a time:
    a client's candidates and features depend on that client only (see `LIST_BLOCK`)."""
    n = len(clients.history)
    for first in range(0, n, block):
        rows = np.arange(first, min(n, first + block))
        ex = exclude[first : first + block] if exclude is not None else None
        t = tower.take(rows) if tower is not None else None
        prep = prepare(ctx, clients.take(rows))
        cands = candidates(ctx, prep, ex, t)
        yield first, cands, features(ctx, prep, cands, t)


def training_lists(ctx: Context, clients: Clients, truth: list[np.ndarray], exclude: list[np.ndarray] | None,
                   tower: Retrieved | None, block: int = LIST_BLOCK) -> Lists:
    """One window's training lists, built `block` clients at a time: a whole window's pairs at once
    (eu of the 52M-event world: tens of thousands of clients with some 400 candidates each, 23
    features per pair) were gigabytes beside the lists kept."""
    return Lists.concat([Lists.of(f, cands, truth[first : first + len(cands)])
                         for first, cands, f in _pair_blocks(ctx, clients, exclude, tower, block)])


def fit(
    windows: list[Lists], epochs: int, *, seed: int = 7, batch: int = 64, learning_rate: float = 2e-3,
    validation: Callable[[Scorer], float] | None = None, progress: Callable[[int], None] | None = None,
) -> tuple[Scorer, dict]:
    """Train on the windows' lists; with `validation`, keep the epoch that scores best there."""
    keras.utils.set_random_seed(seed)
    scorer = Scorer(seed=seed)
    windows = _Windows(windows)  # held weakly by the normalization's pass (see `_pairs`)
    scorer.norm.adapt(_pairs(windows))
    model = ListwiseRanker(scorer)
    model.compile(optimizer=keras.optimizers.Adam(learning_rate))
    scores, best, best_weights = [], -1.0, None
    for epoch in range(epochs):
        for i, w in enumerate(windows):
            # a copy of the window as tensors, let go before the next window's and before the validation's scoring
            model.fit(tf.data.Dataset.from_tensor_slices({"features": w.features, "labels": w.labels, "mask": w.mask})
                      .shuffle(len(w.labels), seed=seed + epoch * 31 + i).batch(batch), epochs=1, verbose=0)
        if progress:
            progress(1)
        if validation:
            give_back()  # what the fit freed (Keras's data handlers sit in cycles), under the validation's scoring: 0.57 -> 0.43 GiB over the lists of 0.17
            scores.append(float(validation(scorer)))
            if scores[-1] > best:
                best, best_weights = scores[-1], scorer.get_weights()
    if best_weights is not None:
        scorer.set_weights(best_weights)
    return scorer, {"validation": scores, "best_epochs": (int(np.argmax(scores)) + 1) if scores else epochs,
                    "lists": int(sum(len(w.labels) for w in windows))}


class _Windows(list):
    """A fit's windows, as `_pairs` streams them: a list TensorFlow can hold weakly."""


def _pairs(windows: _Windows, clients: int = 4096) -> tf.data.Dataset:
    """Every real (unpadded) pair of the windows, in order, in batches of 32, as the normalization
    adapts to them: the batches `adapt` makes of one array of them all, without that array (a copy
    of every window's features at once). The windows are held weakly (`atelier.models.streams`):
    strongly, every window's padded lists stayed under every later step (up to 8,192 lists a
    window, each padded to some 500 pairs of 23 features: up to 0.38 GiB a window at eu of the
    52M-event world's size). The caller holds `windows` while the dataset is read."""
    width = windows[0].features.shape[2] if windows else len(FEATURES)

    def chunks(windows: list[Lists]) -> Iterator[np.ndarray]:
        if not any(len(w.labels) for w in windows):
            yield np.zeros((1, width), np.float32)
        for w in windows:
            for s in range(0, len(w.labels), clients):
                yield w.features[s : s + clients][w.mask[s : s + clients]]

    return weakly_streamed(windows, chunks, tf.TensorSpec([None, width], tf.float32)).unbatch().batch(32)


SCORE_ROWS = 65_536  # pairs scored at once


def score(scorer, f: np.ndarray) -> np.ndarray:
    """Scores of feature rows, with an in-memory Scorer or an exported signature, `SCORE_ROWS` at
    a time: each layer's output for every pair of a block of 2,048 clients at once (a million
    pairs, 64 floats each) held 0.3-0.8 GiB beside the pairs, in each epoch's validation."""
    if not len(f):
        return np.zeros(0, np.float32)
    run = (lambda x: scorer(x).numpy()) if isinstance(scorer, Scorer) else (lambda x: scorer({"features": x})["score"].numpy())
    return np.concatenate([run(f[i : i + SCORE_ROWS]) for i in range(0, len(f), SCORE_ROWS)])


def ranked_scores(ctx: Context, clients: Clients, scorer, exclude: list[np.ndarray] | None, tower: Retrieved | None, fill: np.ndarray,
                  block: int = LIST_BLOCK) -> np.ndarray:
    """Clients x products scores: the ranker's order over each client's candidates, `fill`'s order
    after. The pairs are built and scored `block` clients at a time (see `LIST_BLOCK`)."""
    out = np.broadcast_to((fill - fill.max() - 1e6).astype(np.float32), (len(clients.history), len(fill))).copy()
    for first, cands, f in _pair_blocks(ctx, clients, exclude, tower, block):
        s = score(scorer, f)
        start = 0
        for u, c in enumerate(cands):
            out[first + u, c] = s[start : start + len(c)]
            start += len(c)
    return out
