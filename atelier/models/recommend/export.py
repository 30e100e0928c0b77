"""Export: what a regional service needs, saved to the BentoML model store.

* `query_tower/`: a SavedModel whose `serving_default` takes raw feature values (strings, numbers
  with NaN for missing, times as epoch seconds, and the query time `as_of`) and returns the
  client's embedding. All preprocessing is inside, so serving cannot drift from training.
* `candidate_tower/`: the same for a product, to embed products launched after training.
* `candidates.npy`: every product's embedding; `index.faiss`: the approximate index over them.
* `products.parquet`: id, maison, category and where each product is sold (for filters).
* `popularity.npy`: the region's most-popular scores, the fallback when the store is out of reach.
* `country_popularity.npz`: each country's purchases per product over the last 30 days: the
  fallback for a client the store does not hold, when the request names the client's country.
* `model.json`: feature specs and the exact feature list, training window, metrics, index tuning.

Saved with `bentoml.models.create` (the `bentoml.tensorflow` module is deprecated); served with
`bentoml.models.BentoModel`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import tensorflow as tf

from atelier.models.recommend.index import AnnIndex, ExactIndex
from atelier.models.recommend.inputs import BAG, BAG_LENGTH, CATEGORICAL, NUMERIC, FeatureSpec
from atelier.models.recommend.towers import Tower
from atelier.models.signatures import Signature
from atelier.models.store import code_version, save_model

_DTYPES = {CATEGORICAL: tf.string, NUMERIC: tf.float32}


def model_name(region: str) -> str:
    return f"atelier-retrieval-{region}"


class TowerModule(tf.Module):
    """A tower as a SavedModel signature over raw feature values."""

    def __init__(self, tower: Tower, specs: list[FeatureSpec]):
        super().__init__()
        self.tower = tower
        signature = {tower.id_name: tf.TensorSpec([None], tf.string, name=tower.id_name)}
        for s in specs:
            if s.kind == BAG:
                signature[s.name] = tf.TensorSpec([None, BAG_LENGTH], tf.string, name=s.name)
            else:
                signature[s.name] = tf.TensorSpec([None], _DTYPES.get(s.kind, tf.float64), name=s.name)
        if any(s.kind == "timestamp" for s in specs):
            signature["as_of"] = tf.TensorSpec([None], tf.float64, name="as_of")
        self.embed = tf.function(lambda inputs: {"embedding": self.tower(inputs)}, input_signature=[signature])


def export(
    workdir: Path,
    *,
    region: str,
    query: Tower,
    candidate: Tower,
    candidates: np.ndarray,
    ann: AnnIndex,
    products: pd.DataFrame,
    popularity: np.ndarray,
    info: dict,
    country_popularity: dict[str, np.ndarray] | None = None,
    ranking_stage: tuple | None = None,
    serve: str = "two-tower",
) -> str:
    """Write the artifacts, then copy them into a new BentoML model. Returns the model tag."""

    workdir.mkdir(parents=True, exist_ok=True)
    query_specs, candidate_specs = query.specs, candidate.specs
    for name, tower in (("query_tower", query), ("candidate_tower", candidate)):
        module = TowerModule(tower, tower.specs)
        tf.saved_model.save(module, str(workdir / name), signatures={"serving_default": module.embed.get_concrete_function()})
    np.save(workdir / "candidates.npy", candidates.astype(np.float32))
    ann.save(workdir / "index.faiss")
    np.save(workdir / "popularity.npy", popularity.astype(np.float64))
    countries = sorted(country_popularity or {})
    np.savez(workdir / "country_popularity.npz", countries=np.array(countries, dtype=str),
             counts=np.stack([country_popularity[c] for c in countries]) if countries else np.zeros((0, len(popularity)), np.float32))
    pq.write_table(pa.Table.from_pandas(products[["product_id", "maison", "category", "countries"]], preserve_index=False), workdir / "products.parquet")
    if ranking_stage is not None:
        from atelier.models.recommend import ranking

        ranking.save_stage(*ranking_stage, workdir / "ranking")
    description = {
        "region": region,
        # what /recommend runs: the ranking stage is exported either way, and serves when chosen
        "stages": ["retrieval", "ranking", "filters"] if ranking_stage is not None and serve == "ranked" else ["retrieval", "filters"],
        "query_specs": [s.to_json() for s in query_specs],
        "candidate_specs": [s.to_json() for s in candidate_specs],
        "index_probe": ann.probe,
        **info,
    }
    (workdir / "model.json").write_text(json.dumps(description, indent=2, default=str))
    metadata = {
        "region": region,
        "feature_services": info["feature_services"],
        "feature_refs": [s.ref for s in query_specs],
        "training_window": info["window"],
        "recall@100": info["metrics"]["model"].get("recall@100"),
        "baseline_recall@100": info["metrics"]["popularity"].get("recall@100"),
        "index": info["index"],
        "code_version": code_version(),
    }
    labels = {"region": region, "task": "retrieval", "framework": "tensorflow-recommenders"}
    # client-level training data stays in the run directory, never in a model
    return save_model(workdir, model_name(region), labels=labels, metadata=metadata, skip=("training_set",))


@dataclass
class LoadedModel:
    """A retrieval model loaded from its directory (the BentoML model's path)."""

    path: Path
    region: str
    query_specs: list[FeatureSpec]
    description: dict
    embed_fn: object
    candidates: np.ndarray
    exact: ExactIndex
    ann: AnnIndex
    products: pd.DataFrame
    popularity: np.ndarray
    country_popularity: dict[str, np.ndarray] = field(default_factory=dict)  # none in models exported before it: the region's list for everyone
    device: str = "/CPU:0"
    use_approximate: bool = True
    ranking: object = None  # models.ranking.Stage, when the model has a ranking stage

    @staticmethod
    def load(path: Path | str) -> "LoadedModel":
        path = Path(path)
        description = json.loads((path / "model.json").read_text())
        saved = tf.saved_model.load(str(path / "query_tower"))
        candidates = np.load(path / "candidates.npy")
        return LoadedModel(
            path=path,
            region=description["region"],
            query_specs=[FeatureSpec.from_json(s) for s in description["query_specs"]],
            description=description,
            embed_fn=Signature(saved.signatures["serving_default"]),
            candidates=candidates,
            exact=ExactIndex(candidates),
            ann=AnnIndex.load(path / "index.faiss", description["index_probe"]),
            products=pq.read_table(path / "products.parquet").to_pandas(),
            popularity=np.load(path / "popularity.npy"),
            country_popularity=_country_popularity(path / "country_popularity.npz"),
            # The tower runs on a GPU when the machine has one (the --gpu bento), on CPU otherwise.
            device="/GPU:0" if tf.config.list_physical_devices("GPU") else "/CPU:0",
            use_approximate=description.get("index", {}).get("use", "approximate") == "approximate",
            ranking=_load_ranking(path / "ranking") if "ranking" in description.get("stages", []) else None,
        )

    def top(self, vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The k best products for each vector, from the index chosen at export."""
        return (self.ann if self.use_approximate else self.exact).search(vectors, k)

    @property
    def feature_refs(self) -> list[str]:
        return [s.ref for s in self.query_specs]

    def embed(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        return call_tower(self.embed_fn, inputs, self.device)

    def candidate_tower(self):
        """(signature, specs) of the exported candidate tower, loaded on demand."""
        saved = tf.saved_model.load(str(self.path / "candidate_tower"))
        return Signature(saved.signatures["serving_default"]), [FeatureSpec.from_json(s) for s in self.description["candidate_specs"]]


def call_tower(signature: Signature, inputs: dict[str, np.ndarray], device: str = "/CPU:0") -> np.ndarray:
    with tf.device(device):
        return signature(inputs)["embedding"].numpy()


def _load_ranking(path: Path):
    if not path.exists():
        return None
    from atelier.models.recommend import ranking

    return ranking.load_stage(path)


def _country_popularity(path: Path) -> dict[str, np.ndarray]:
    if not path.exists():
        return {}
    z = np.load(path)
    return {str(c): z["counts"][i] for i, c in enumerate(z["countries"])}
