"""The ranking stage as exported into the model store and loaded by the service: the scorer as a
SavedModel, the product snapshot (`Context`) beside it, and the feature list it was trained on,
so that a stage exported before `FEATURES` grew keeps serving as it was evaluated."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from atelier.models.recommend.copurchase import CoPurchase
from atelier.models.recommend.ranking.context import POPULARITY, Context
from atelier.models.recommend.ranking.learn import Scorer
from atelier.models.recommend.ranking.pairs import FEATURES, FEATURES_V1
from atelier.models.signatures import Signature


class ScorerModule(tf.Module):
    """The exported scorer: features [n, width] -> score [n]."""

    def __init__(self, scorer: Scorer, width: int = len(FEATURES)):
        super().__init__()
        self.scorer = scorer
        self.score = tf.function(lambda features: {"score": self.scorer(features)},
                                 input_signature=[tf.TensorSpec([None, width], tf.float32, name="features")])


def save(scorer: Scorer, path, width: int = len(FEATURES)) -> None:
    module = ScorerModule(scorer, width)
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.score.get_concrete_function()})


def load(path) -> Signature:
    return Signature(tf.saved_model.load(str(path)).signatures["serving_default"])


@dataclass
class Stage:
    """The exported ranking stage, as the service loads it."""

    scorer: object  # the SavedModel signature (models.signatures.Signature)
    context: Context
    features: tuple[str, ...] = FEATURES  # what the scorer was trained on

    @property
    def reads_recent(self) -> bool:
        """Whether the stage was trained with the client's last products seen (as features and as
        candidates): a stage exported before them is served exactly as it was evaluated."""
        return "recently_seen" in self.features


def save_stage(scorer: Scorer, context: Context, path, names: tuple[str, ...] = FEATURES) -> None:
    """Write the scorer (SavedModel, over the features `names`) and the context snapshot into `path`."""
    from pathlib import Path

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    save(scorer, path / "scorer", len(names))
    context.copurchase.save(path / "copurchase.npz")
    context.similar.save(path / "similar.npz")
    countries = sorted(context.country_share)
    shares = np.stack([context.country_share[c] for c in countries]) if countries else np.zeros((0, len(context.days_on_sale)), np.float32)
    extra = {k: v for k, v in (("maison", context.maison), ("log_price", context.log_price)) if v is not None}
    np.savez(path / "context.npz", features=np.array(names, dtype=str), countries=np.array(countries, dtype=str), shares=shares, days_on_sale=context.days_on_sale,
             **extra, **{f"popularity_{name}": context.popularity[name] for name in POPULARITY})


def load_stage(path) -> Stage:
    from pathlib import Path

    path = Path(path)
    z = np.load(path / "context.npz")
    context = Context(
        copurchase=CoPurchase.load(path / "copurchase.npz"),
        similar=CoPurchase.load(path / "similar.npz"),
        popularity={name: z[f"popularity_{name}"] for name in POPULARITY},
        country_share={str(c): z["shares"][i] for i, c in enumerate(z["countries"])},
        days_on_sale=z["days_on_sale"],
        maison=z["maison"] if "maison" in z else None,
        log_price=z["log_price"] if "log_price" in z else None,
    )
    names = tuple(str(n) for n in z["features"]) if "features" in z else FEATURES_V1
    scorer = load(path / "scorer")
    return Stage(scorer if names == FEATURES else _Columns(scorer, [FEATURES.index(n) for n in names]), context, names)


@dataclass
class _Columns:
    """A scorer exported with an earlier feature list: it is given the columns it was trained on,
    so a model in the store keeps serving after FEATURES grows."""

    scorer: object
    columns: list[int]

    def __call__(self, inputs: dict) -> dict:
        return self.scorer({"features": np.ascontiguousarray(inputs["features"][:, self.columns])})
