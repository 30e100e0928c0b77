"""What the towers read, derived from the feature services, and one conversion for training and serving.

A `FeatureSpec` says how a feature enters a tower: categorical (embedded), numeric (normalized,
log-scaled when heavy-tailed), timestamp (turned into "days before the query time" inside the
model) or bag (a list of ids, e.g. recently viewed products: embedded and averaged). The kind comes from the Feast dtype of the feature service's schema, so an attribute
column added by `atelier data import` is used without code changes.

`to_inputs` is the only place raw values become tensors, for training rows and for online
reads alike: what was trained is what serves.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
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
    """Vocabularies and normalization statistics from training inputs held in memory."""
    fitter = SpecFitter(specs, max_vocabulary)
    fitter.add(inputs)
    return fitter.specs()


class SpecFitter:
    """Vocabularies and normalization statistics gathered a chunk of training inputs at a time,
    so that a training set streamed from disk is fitted without being held whole.

    Counts and moments combine exactly across chunks (Chan's parallel variance); whether a numeric
    feature is log-scaled is decided on a sample of at most `SAMPLE` of its values, thinned
    evenly as chunks come (every value while there are fewer: the in-memory fit exactly)."""

    SAMPLE = 200_000

    def __init__(self, specs: list[FeatureSpec], max_vocabulary: int = 10_000):
        self.input_specs, self.max_vocabulary = specs, max_vocabulary
        self.counts: dict[str, dict[str, int]] = {s.name: {} for s in specs if s.kind in (CATEGORICAL, BAG)}
        # numeric: per transform ("raw", "log") the running (n, mean, M2); the sample and minimum decide which
        self.moments: dict[str, dict[str, tuple[int, float, float]]] = {s.name: {} for s in specs if s.kind not in (CATEGORICAL, BAG)}
        self.sample: dict[str, list[np.ndarray]] = {s.name: [] for s in specs if s.kind == NUMERIC}
        self.stride: dict[str, int] = {s.name: 1 for s in specs if s.kind == NUMERIC}
        self.minimum: dict[str, float] = {s.name: 0.0 for s in specs if s.kind == NUMERIC}

    def add(self, inputs: dict[str, np.ndarray]) -> None:
        for spec in self.input_specs:
            x = inputs[spec.name]
            if spec.kind in (CATEGORICAL, BAG):
                counts = pd.Series(x[x != ""].ravel(), dtype=object).value_counts(sort=False)  # hashed: np.unique sorted strings, 4x slower
                seen = self.counts[spec.name]
                for v, c in zip(counts.index.tolist(), counts.tolist()):
                    seen[v] = seen.get(v, 0) + c
            elif spec.kind == TIMESTAMP:
                self._moments(spec.name, "log", transform_numeric(spec, x, inputs.get("as_of")))
            else:
                v = transform_numeric(replace(spec, log=False), x, None)
                finite = v[np.isfinite(v)]
                self.minimum[spec.name] = min(self.minimum[spec.name], float(finite.min(initial=0)))
                self._keep(spec.name, finite)
                self._moments(spec.name, "raw", v)
                self._moments(spec.name, "log", transform_numeric(replace(spec, log=True), x, None))

    def _moments(self, name: str, how: str, v: np.ndarray) -> None:
        if not len(v):
            return
        n_b, mean_b, m2_b = len(v), float(np.mean(v)), float(np.var(v)) * len(v)
        n_a, mean_a, m2_a = self.moments[name].get(how, (0, 0.0, 0.0))
        n = n_a + n_b
        delta = mean_b - mean_a
        self.moments[name][how] = (n, mean_a + delta * n_b / n, m2_a + m2_b + delta * delta * n_a * n_b / n)

    def _keep(self, name: str, finite: np.ndarray) -> None:
        # Copies, not views: a strided view keeps its whole chunk resident. Kept as views, every
        # chunk's values stayed alive through a build (8 bytes an example for each numeric feature:
        # RSS climbed by some 1.2 GiB over the parts of a build of eu of the 52M-event world).
        parts = self.sample[name]
        parts.append(finite[:: self.stride[name]].copy())
        while sum(len(p) for p in parts) > self.SAMPLE:  # thin what is kept, and what comes, by half
            self.stride[name] *= 2
            parts[:] = [p[::2].copy() for p in parts]

    def specs(self) -> list[FeatureSpec]:
        fitted = []
        for spec in self.input_specs:
            s = FeatureSpec(**{**spec.to_json()})
            if spec.kind in (CATEGORICAL, BAG):
                cap = self.max_vocabulary if spec.kind == CATEGORICAL else 1_000_000
                ranked = sorted(self.counts[spec.name].items(), key=lambda kv: (-kv[1], kv[0]))
                s.vocabulary = [str(v) for v, _ in ranked[:cap]]
            else:
                how = "log"
                if spec.kind == NUMERIC:
                    sample = np.concatenate(self.sample[spec.name]) if self.sample[spec.name] else np.zeros(0)
                    p50, p99 = (np.percentile(sample, 50), np.percentile(sample, 99)) if len(sample) else (0, 0)
                    s.log = bool(self.minimum[spec.name] >= 0 and p99 > 10 * max(p50, 1.0))
                    how = "log" if s.log else "raw"
                n, mean, m2 = self.moments[spec.name].get(how, (0, float("nan"), float("nan")))
                s.mean, s.variance = float(mean), float(max(m2 / n if n else float("nan"), 1e-6))
            fitted.append(s)
        return fitted


def transform_numeric(spec: FeatureSpec, x: np.ndarray, as_of: np.ndarray | None) -> np.ndarray:
    """The numpy twin of the model's numeric preprocessing, used to fit its statistics
    (`SpecFitter` decides `spec.log`)."""
    if spec.kind == TIMESTAMP:
        days = (as_of - x) / 86400.0
        v = np.where(np.isnan(days), 3650.0, np.clip(days, 0, None))
        return np.log1p(v)
    v = np.nan_to_num(x.astype(np.float64), nan=0.0)
    return np.log1p(np.clip(v, 0, None)) if spec.log else v
