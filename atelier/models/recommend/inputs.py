"""What the towers read, derived from the feature services, and one conversion for training and serving.

A `FeatureSpec` says how a feature enters a tower: categorical (embedded), numeric (normalized,
log-scaled when heavy-tailed), timestamp (turned into "days before the query time" inside the
model) or bag (a list of ids, e.g. recently viewed products: embedded and averaged). The kind comes from the Feast dtype of the feature service's schema, so an attribute
column added by `atelier data import` is used without code changes.

`to_inputs` is the only place raw values become tensors, for training rows and for online
reads alike: what was trained is what serves.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime

import numpy as np
import pandas as pd
from feast import FeatureService, FeatureStore
from feast.types import PrimitiveFeastType

CATEGORICAL, NUMERIC, TIMESTAMP, BAG = "categorical", "numeric", "timestamp", "bag"
BAG_LENGTH = 20  # a list feature enters a tower as its last BAG_LENGTH values


@dataclass
class FeatureSpec:
    ref: str  # "view:feature", exactly as read from the store
    name: str
    kind: str
    vocabulary: list[str] = field(default_factory=list)  # categorical and bag
    log: bool = False  # numeric: log1p before normalizing
    mean: float = 0.0
    variance: float = 1.0

    def to_json(self) -> dict:
        return asdict(self)

    @staticmethod
    def from_json(d: dict) -> "FeatureSpec":
        return FeatureSpec(**d)


def specs_from_service(store: FeatureStore, service: str | FeatureService) -> list[FeatureSpec]:
    fs = store.get_feature_service(service) if isinstance(service, str) else service
    out = []
    for projection in fs.feature_view_projections:
        for f in projection.features:
            dtype = f.dtype
            name = dtype.name if isinstance(dtype, PrimitiveFeastType) else str(dtype)
            if name == "UNIX_TIMESTAMP":
                kind = TIMESTAMP
            elif name == "Array(String)":
                kind = BAG
            elif name in ("STRING", "BOOL"):
                kind = CATEGORICAL
            elif name in ("INT32", "INT64", "FLOAT32", "FLOAT64"):
                kind = NUMERIC
            else:
                continue  # lists, maps, bytes: not used by the towers
            out.append(FeatureSpec(ref=f"{projection.name_to_use()}:{f.name}", name=f.name, kind=kind))
    return out


def _missing(v) -> bool:
    return v is None or v is pd.NaT or (isinstance(v, float) and v != v)


def _seconds(values) -> np.ndarray:
    if len(values) < 64 and all(_missing(v) or isinstance(v, datetime) for v in values):
        return np.array([np.nan if _missing(v) else v.timestamp() for v in values], np.float64)
    s = pd.to_datetime(pd.Series(values, dtype=object), utc=True, errors="coerce")
    out = (s.astype("int64") / 1e9).to_numpy(np.float64)
    out[s.isna().to_numpy()] = np.nan
    return out


def to_inputs(columns: dict, specs: list[FeatureSpec], id_name: str, ids, as_of=None) -> dict[str, np.ndarray]:
    """Tensors-to-be for a tower: `columns` maps feature names to sequences (lists, arrays or Series).

    Missing values: "" for categories, NaN for numbers and times; the model handles both.
    `as_of` (datetime(s) or epoch seconds) is the moment the query is made, for timestamp features.
    """
    n = len(ids)
    out = {id_name: np.asarray(["" if v is None else str(v) for v in ids], dtype=object)}
    for spec in specs:
        values = columns.get(spec.name)
        if values is None:
            values = [None] * n
        if spec.kind == CATEGORICAL:
            out[spec.name] = np.asarray(["" if _missing(v) else str(v) for v in values], dtype=object)
        elif spec.kind == BAG:
            bag = np.full((n, BAG_LENGTH), "", dtype=object)
            for i, v in enumerate(values):
                if not _missing(v) and len(v):
                    tail = list(v)[-BAG_LENGTH:]  # most recent last; pad on the left
                    bag[i, BAG_LENGTH - len(tail) :] = tail
            out[spec.name] = bag
        elif spec.kind == NUMERIC:
            if n < 64:  # a serving batch: plain Python beats pandas' per-call overhead
                out[spec.name] = np.array([np.nan if _missing(v) else float(v) for v in values], np.float32)
            else:
                out[spec.name] = pd.to_numeric(pd.Series(values, dtype=object), errors="coerce").to_numpy(np.float32)
        else:
            out[spec.name] = _seconds(values)
    if any(s.kind == TIMESTAMP for s in specs):
        if as_of is None:
            as_of = datetime.now().timestamp()
        if isinstance(as_of, (int, float, np.floating)):
            out["as_of"] = np.full(n, float(as_of), np.float64)
        elif isinstance(as_of, datetime):
            out["as_of"] = np.full(n, as_of.timestamp(), np.float64)
        else:
            out["as_of"] = _seconds(as_of)
    return out


def fit_specs(specs: list[FeatureSpec], inputs: dict[str, np.ndarray], max_vocabulary: int = 10_000) -> list[FeatureSpec]:
    """Vocabularies and normalization statistics from training inputs."""
    fitted = []
    for spec in specs:
        x = inputs[spec.name]
        s = FeatureSpec(**{**spec.to_json()})
        if spec.kind in (CATEGORICAL, BAG):
            values, counts = np.unique(x[x != ""], return_counts=True)
            cap = max_vocabulary if spec.kind == CATEGORICAL else 1_000_000
            s.vocabulary = [str(v) for v in values[np.argsort(-counts, kind="stable")][:cap]]
        else:
            v = transform_numeric(s, x, inputs.get("as_of"), fitting=True)
            s.mean, s.variance = float(np.mean(v)), float(max(np.var(v), 1e-6))
        fitted.append(s)
    return fitted


def transform_numeric(spec: FeatureSpec, x: np.ndarray, as_of: np.ndarray | None, fitting: bool = False) -> np.ndarray:
    """The numpy twin of the model's numeric preprocessing, used to fit its statistics."""
    if spec.kind == TIMESTAMP:
        days = (as_of - x) / 86400.0
        v = np.where(np.isnan(days), 3650.0, np.clip(days, 0, None))
        return np.log1p(v)
    v = np.nan_to_num(x.astype(np.float64), nan=0.0)
    if fitting:
        finite = v[np.isfinite(v)]
        p50, p99 = (np.percentile(finite, 50), np.percentile(finite, 99)) if len(finite) else (0, 0)
        spec.log = bool(finite.min(initial=0) >= 0 and p99 > 10 * max(p50, 1.0))
    return np.log1p(np.clip(v, 0, None)) if spec.log else v
