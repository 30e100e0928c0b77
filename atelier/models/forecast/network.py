"""The forecast model: one global network per region, quantiles P10, P50 and P90 under a pinball loss.

One model for every series (not one per series) so that a young or sparse series borrows from
the others: its history enters on its own scale (see atelier.models.forecast.features), its
location, maison and category as embeddings, and the calendar beside them. The three quantiles
come out ordered by construction (P50, then P10 and P90 a non-negative distance below and above
it), so a planner never reads a P10 above a P90. Loss: the pinball loss of each quantile on the
scaled target, weighted by the series' scale, which makes it a loss in units, the way WAPE and the
weighted quantile loss count errors.

Normalization is a layer of the model, so the exported SavedModel takes the raw features.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import tensorflow as tf
import tf_keras as keras

from atelier.models.forecast.features import CATEGORICAL, NUMERIC, Examples
from atelier.models.forecast.metrics import QUANTILES

CLIP = 8.0  # normalized inputs beyond this many standard deviations are held there


class QuantileNet(keras.Model):
    """Raw features -> (P10, P50, P90) on the series' scale."""

    def __init__(self, vocabulary_sizes: list[int], hidden: tuple[int, ...] = (128, 64), embedding_dim: int = 8, seed: int = 7,
                 numeric_features: int = len(NUMERIC)):
        super().__init__()
        init = lambda i: keras.initializers.GlorotUniform(seed=seed + i)  # noqa: E731
        self.norm = keras.layers.Normalization(axis=-1)
        # Features that never varied in the training set (a seasonal lag in a data set of one year)
        # carry nothing learnt: they are masked out rather than divided by a zero spread.
        self.varied = tf.Variable(tf.ones([numeric_features]), trainable=False, name="varied")
        self.embeddings = [keras.layers.Embedding(n, min(embedding_dim, n), embeddings_initializer=keras.initializers.RandomNormal(0, 0.05, seed=seed + 50 + i))
                           for i, n in enumerate(vocabulary_sizes)]
        self.dense = [keras.layers.Dense(h, activation="relu", kernel_initializer=init(i)) for i, h in enumerate(hidden)]
        self.out = keras.layers.Dense(3, kernel_initializer=init(len(hidden)))

    def call(self, inputs, training=False):
        numeric, categorical = inputs
        numeric = tf.clip_by_value(self.norm(numeric), -CLIP, CLIP) * self.varied
        parts = [numeric] + [e(categorical[:, i]) for i, e in enumerate(self.embeddings)]
        x = tf.concat(parts, axis=-1)
        for layer in self.dense:
            x = layer(x)
        raw = self.out(x)
        mid = raw[:, 1]
        return tf.stack([mid - tf.nn.softplus(raw[:, 0]), mid, mid + tf.nn.softplus(raw[:, 2])], axis=-1)


def pinball_loss(y: tf.Tensor, q: tf.Tensor) -> tf.Tensor:
    """Mean over the batch of the summed pinball losses of the three quantiles. `y`: [n, 1]."""
    levels = tf.constant(QUANTILES, tf.float32)[None, :]
    diff = y - q
    return tf.reduce_sum(tf.maximum(levels * diff, (levels - 1) * diff), axis=-1)


class Ensemble(keras.Model):
    """The median of several QuantileNets' quantiles, taken per quantile. Networks trained from
    different seeds err differently, and their median forecasts better than any one of them: on
    Online Retail's validation origin, three networks brought WAPE from 0.785-0.793 to 0.776. A
    median rather than a mean keeps the band's calibration (where one member's P10 is above zero
    and the others' are at it, the mean's is not, and a week without sales falls outside the
    band). Each member's quantiles are ordered and a median preserves order, so its are too."""

    def __init__(self, members: list[QuantileNet]):
        super().__init__()
        self.members = members

    def call(self, inputs, training=False):
        if len(self.members) == 1:
            return self.members[0](inputs, training=training)
        ranked = tf.sort(tf.stack([m(inputs, training=training) for m in self.members]), axis=0)
        k = len(self.members)
        return (ranked[(k - 1) // 2] + ranked[k // 2]) / 2


def fit(train: Examples, vocabulary_sizes: list[int], *, epochs: int, validation: Examples | None = None, members: int = 1,
        batch: int = 2048, learning_rate: float = 1e-3, seed: int = 7, hidden: tuple[int, ...] = (128, 64), decay: bool = False,
        progress: Callable[[int], None] | None = None) -> tuple[Ensemble, dict]:
    """Train `members` networks (seeds `seed`, `seed` + 1, ...) side by side for `epochs`; with
    `validation`, keep the epoch whose validation loss (in units) of their median is lowest."""
    keras.utils.set_random_seed(seed)
    nets = []
    weight = (train.scale / train.scale.mean()).astype(np.float32)
    target = (train.target / train.scale)[:, None].astype(np.float32)
    varied = (train.numeric.std(0) > 1e-6).astype(np.float32)
    rate = learning_rate
    if decay:  # cosine decay to a tenth over the run: the late epochs move less, so the epoch chosen is less a matter of luck
        rate = keras.optimizers.schedules.CosineDecay(learning_rate, decay_steps=int(np.ceil(len(train) / batch)) * epochs, alpha=0.1)
    streams = []
    for k in range(members):
        net = QuantileNet(vocabulary_sizes, hidden=tuple(hidden), seed=seed + k, numeric_features=train.numeric.shape[1])
        net.norm.adapt(train.numeric)
        net.varied.assign(varied)
        net.compile(optimizer=keras.optimizers.Adam(rate), loss=pinball_loss)
        data = tf.data.Dataset.from_tensor_slices(((train.numeric, train.categorical), target, weight))
        streams.append(data.shuffle(len(train), seed=seed + k, reshuffle_each_iteration=True).batch(batch).prefetch(2))
        nets.append(net)
    model = Ensemble(nets)
    losses, best, best_weights = [], np.inf, None
    for _ in range(epochs):
        for net, data in zip(nets, streams):
            net.fit(data, epochs=1, verbose=0)
        if progress:
            progress(1)
        if validation is not None:
            q = predict(model, validation)
            losses.append(float(np.sum(pinball_units(validation.target, q))))
            if losses[-1] < best:
                best, best_weights = losses[-1], [net.get_weights() for net in nets]
    if best_weights is not None:
        for net, weights in zip(nets, best_weights):
            net.set_weights(weights)
    return model, {"validation_loss": losses, "best_epochs": int(np.argmin(losses)) + 1 if losses else epochs}


def pinball_units(actual: np.ndarray, q: np.ndarray) -> np.ndarray:
    diff = actual[:, None] - q
    levels = np.array(QUANTILES)[None, :]
    return np.maximum(levels * diff, (levels - 1) * diff).sum(1)


def predict(net, ex: Examples, batch: int = 65_536) -> np.ndarray:
    """(N, 3) P10, P50, P90 in units (never below zero), from a QuantileNet or its exported signature."""
    out = []
    for lo in range(0, len(ex), batch):
        numeric, categorical = ex.numeric[lo:lo + batch], ex.categorical[lo:lo + batch]
        if isinstance(net, keras.Model):
            q = net((numeric, categorical), training=False).numpy()
        else:
            q = net(numeric=tf.constant(numeric), categorical=tf.constant(categorical))["quantiles"].numpy()
        out.append(q)
    q = np.concatenate(out) if out else np.zeros((0, 3), np.float32)
    return np.clip(q, 0, None) * ex.scale[:, None]


OFFSETS = (0.3, 0.4, 0.5, 0.6, 0.7)  # the roundings of P50 to whole units tried on the validation origin


def whole_units(q: np.ndarray, offset: float | None, follow: bool = False) -> np.ndarray:
    """P50 as a whole number of units, floor(P50 + `offset`); where that falls below P10, P50 is
    held at P10, or, with `follow`, P10 comes down to it. P90 is raised to P50 where it passes.
    `offset` None leaves the forecast as it is.

    Why: units sold are counts, and every quantile of a count is a whole number; a network's
    output is smooth and does not land on one. Where demand is intermittent its P50 sits a little
    above zero in cells whose median is zero, and pays for it in every week without a sale. Held
    at P10, the band keeps its coverage: pulling P10 down to a P50 rounded to zero widened Online
    Retail's band from 0.867 to 0.909 coverage (before the band was chosen on validation). But
    where nearly every cell sells nothing (the generated world), a P50 held at a P10 a hair above
    zero is what kept the network above the zero forecast. Which way, and the offset (0.5 is plain
    rounding), are chosen on the validation origin, like the epochs (`choose_offset`).
    """
    if offset is None:
        return q
    out = q.copy()
    p50 = np.floor(q[:, 1] + offset)
    if follow:
        out[:, 0] = np.minimum(q[:, 0], p50)
        out[:, 1] = p50
    else:
        out[:, 1] = np.maximum(p50, q[:, 0])
    out[:, 2] = np.maximum(q[:, 2], out[:, 1])
    return out


def mean_units(q: np.ndarray) -> np.ndarray:
    """The mean of a forecast from its (N, 3) P10, P50, P90 (Swanson's rule). Taken before P50 is
    rounded (`whole_units`): a median in whole units is what WAPE asks of a point forecast, but
    what a week sells on average, what an assortment ranks by, is a mean, and a P50 rounded to zero
    for a product that sells one week in three would hide it."""
    return q @ np.array([0.3, 0.4, 0.3])


def choose_offset(actual: np.ndarray, q: np.ndarray, history: np.ndarray) -> tuple[float | None, bool, dict[str, float]]:
    """The rounding of P50 (`whole_units`: its offset, and whether P10 follows it down) with the
    lowest WAPE on the validation origin's cells, or None when none beats the forecast as it is,
    or when the series' `history` is not in whole units (a quantity sold by weight). Returns it
    with every candidate's validation WAPE ("0.3", "0.3 P10 follows", ...). On a tie, the forecast
    as it is, then P10 held."""
    from atelier.models.forecast.metrics import wape

    scores = {"none": wape(actual, q[:, 1])}
    if not np.array_equal(history, np.round(history)):
        return None, False, scores
    candidates = {"none": (None, False)}
    for offset in OFFSETS:
        for follow in (False, True):
            name = f"{offset} P10 follows" if follow else str(offset)
            candidates[name] = (offset, follow)
            scores[name] = wape(actual, whole_units(q, offset, follow)[:, 1])
    best = min(scores, key=lambda k: (scores[k], k != "none", candidates[k][1]))
    return (*candidates[best], scores)


MISS = (0.07, 0.13)  # each side of the P10-P90 band may miss this share of cells (0.1 when calibrated)
SCALES = np.round(np.arange(0.0, 4.0001, 0.02), 2)  # a side's distances from P50 are tried at these multiples


def banded(q: np.ndarray, offset: float | None, scales: Sequence[float] | None, follow: bool = False) -> np.ndarray:
    """The forecast as served: P50 in whole units (`whole_units`), and each side of the band at
    `scales` times its distance from the network's P50 (lower, upper), never past P50 nor below zero.

    P50 is the same with or without `scales`: the band moves, the point forecast does not."""
    out = whole_units(q, offset, follow)
    if scales is None:
        return out
    out = out.copy() if out is q else out
    out[:, 0] = _lower(q, out[:, 1], scales[0])
    out[:, 2] = _upper(q, out[:, 1], scales[1])
    return out


def _lower(q: np.ndarray, p50: np.ndarray, scale: float) -> np.ndarray:
    return np.clip(q[:, 1] - scale * (q[:, 1] - q[:, 0]), 0.0, p50)


def _upper(q: np.ndarray, p50: np.ndarray, scale: float) -> np.ndarray:
    return np.maximum(q[:, 1] + scale * (q[:, 2] - q[:, 1]), p50)


def choose_band(actual: np.ndarray, q: np.ndarray, offset: float | None, follow: bool = False) -> tuple[tuple[float, float] | None, dict]:
    """The scale of each side of the band (`banded`), chosen on the validation origin's cells.

    Why only as far as `MISS`: the issue asks a P10-P90 coverage between 0.72 and 0.88, and the
    validation origin is one origin, one season. A band calibrated to exactly 0.8 there overshot
    on Online Retail's test origins (0.688), whose cells it covered less than the validation
    origin's. So a side is left as the network made it while it misses between 7% and 13% of the
    validation cells, and otherwise moved just inside that range (the scale nearest 1 that does):
    the network's own band where it is plausible, a correction where it is clearly too wide or too
    narrow. A side that no scale brings inside stays as it is: where nearly every cell sells
    nothing (the generated world), a band whose P50 is zero covers those cells at any width, and
    shrinking it bought a tenth of a point of misses for a band a third as wide."""
    if not len(actual):
        return None, {}
    p50 = whole_units(q, offset, follow)[:, 1]
    below = lambda s: float(np.mean(actual < _lower(q, p50, s)))  # noqa: E731
    above = lambda s: float(np.mean(actual > _upper(q, p50, s)))  # noqa: E731
    chosen = []
    for miss in (below, above):
        inside = [float(s) for s in SCALES if MISS[0] <= miss(s) <= MISS[1]]  # 1.0 among them when the side is plausible
        chosen.append(min(inside, key=lambda s: abs(s - 1.0)) if inside else 1.0)  # none lands inside: left as it is
    scales = (chosen[0], chosen[1])
    info = {"miss_below": below(1.0), "miss_above": above(1.0), "scales": list(scales),
            "miss_below_after": below(scales[0]), "miss_above_after": above(scales[1])}
    return (None if scales == (1.0, 1.0) else scales), info


class NetModule(tf.Module):
    """The exported network: raw features -> quantiles on the series' scale."""

    def __init__(self, net: keras.Model):
        super().__init__()
        self.net = net

    @tf.function(input_signature=[tf.TensorSpec([None, len(NUMERIC)], tf.float32, name="numeric"),
                                  tf.TensorSpec([None, len(CATEGORICAL)], tf.int32, name="categorical")])
    def quantiles(self, numeric, categorical):
        return {"quantiles": self.net((numeric, categorical), training=False)}


def save(net: keras.Model, path) -> None:
    module = NetModule(net)
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.quantiles.get_concrete_function()})


def load(path):
    return tf.saved_model.load(str(path)).signatures["serving_default"]
