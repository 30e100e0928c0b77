"""Client segments: the typologies a merchandiser reads beside an assortment.

Clients are grouped by what the feature store knows of them at a date: how much and how often
they buy (purchases, spend and spend per purchase over a year), how they browse (views and
wishlist adds), how recently they bought, and their favourite maison. k-means (scipy, k-means++
seeding under a fixed seed, so the same data gives the same segments) runs on those features,
log-scaled and standardised. Each segment is described by the features that set it apart most
from the region's average (in standard deviations), and named after the first two.

A location's mix is the share of its clients (the clients of that country, or the clients who
bought in that store) in each segment; a product's audience is the share of its buyers in each.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

NUMERIC = ("purchases_365d", "spend_365d", "spend_per_purchase", "views_90d", "wishlist_90d", "days_since_purchase")
LABELS = {  # how a feature reads in a segment's name, when the segment is above (+) or below (-) the average
    "purchases_365d": ("frequent buyers", "rare buyers"), "spend_365d": ("big spenders", "small spenders"),
    "spend_per_purchase": ("high basket", "low basket"), "views_90d": ("browsers", "few visits"),
    "wishlist_90d": ("wishlisters", "no wishlist"), "days_since_purchase": ("lapsing", "recent buyers"),
}
MAX_MAISONS = 8  # favourite maisons kept as features (the most common); the others share one column


@dataclass
class Segments:
    labels: pd.Series  # client_id -> segment id
    profiles: list[dict]  # [{id, name, size, share, top_features: [{feature, direction, segment_mean, region_mean}]}]

    def mix(self, client_location: pd.Series) -> pd.DataFrame:
        """Share of each location's clients per segment: rows locations, columns segment ids."""
        seg = self.labels.reindex(client_location.index)
        known = seg.notna()
        table = pd.crosstab(client_location[known], seg[known].astype(int), normalize="index")
        return table.reindex(columns=range(len(self.profiles)), fill_value=0.0)

    def audience(self, purchases: pd.DataFrame) -> pd.DataFrame:
        """Share of each product's buyers per segment, from (client_id, product_id) rows."""
        seg = purchases["client_id"].map(self.labels)
        rows = purchases.assign(segment=seg).dropna(subset=["segment"]).drop_duplicates(["client_id", "product_id"])
        table = pd.crosstab(rows["product_id"], rows["segment"].astype(int), normalize="index")
        return table.reindex(columns=range(len(self.profiles)), fill_value=0.0)


def latest(activity: pd.DataFrame, as_of: pd.Timestamp) -> pd.DataFrame:
    """Each client's latest client_activity row up to `as_of`."""
    rows = activity[pd.to_datetime(activity["event_timestamp"], utc=True) <= as_of]
    return rows.sort_values("event_timestamp").drop_duplicates("client_id", keep="last")


def client_features(rows: pd.DataFrame, as_of: pd.Timestamp) -> pd.DataFrame:
    """One row per client, from its latest client_activity row (`latest`), as segment features."""
    rows = rows.set_index("client_id")
    out = pd.DataFrame(index=rows.index)
    for name in ("purchases_365d", "spend_365d", "views_90d", "wishlist_90d"):
        out[name] = rows[name].astype(float) if name in rows else 0.0
    out["spend_per_purchase"] = out["spend_365d"] / out["purchases_365d"].clip(lower=1)
    last = pd.to_datetime(rows["last_purchase_at"], utc=True)
    out["days_since_purchase"] = ((as_of - last).dt.days.clip(lower=0)).fillna(3650).astype(float)
    out["favourite_maison"] = rows["favourite_maison"].fillna("none")
    return out


def fit(features: pd.DataFrame, k: int = 6, seed: int = 7) -> Segments:
    """k-means over the clients' features; `k` is lowered to the number of distinct clients if needed."""
    from scipy.cluster.vq import kmeans2

    numeric = np.log1p(features[list(NUMERIC)].to_numpy(float).clip(min=0))
    top = features["favourite_maison"].value_counts().index[:MAX_MAISONS]
    maison = pd.get_dummies(features["favourite_maison"].where(features["favourite_maison"].isin(top), "other")).astype(float)
    x = np.concatenate([numeric, maison.to_numpy()], axis=1)
    mean, std = x.mean(0), x.std(0)
    z = (x - mean) / np.where(std > 0, std, 1)
    k = max(1, min(k, len(np.unique(z, axis=0))))
    _, labels = kmeans2(z, k, minit="++", seed=np.random.default_rng(seed))
    names = list(NUMERIC) + [f"favourite maison: {m}" for m in maison.columns]
    profiles = []
    for s in range(k):
        inside = labels == s
        if not inside.any():
            profiles.append({"id": s, "name": "empty", "size": 0, "share": 0.0, "top_features": []})
            continue
        gap = z[inside].mean(0)
        # A favourite maison describes a segment when the segment favours it; "favours maison X
        # less than average" says nothing a merchandiser can use.
        telling = [i for i in np.argsort(-np.abs(gap)) if i < len(NUMERIC) or gap[i] > 0]
        order = telling[:3]
        top_features = [{"feature": names[i], "direction": "above" if gap[i] > 0 else "below", "z": round(float(gap[i]), 2),
                         "segment_mean": round(float(_raw(x[inside, i], i)), 2), "region_mean": round(float(_raw(x[:, i], i)), 2)} for i in order]
        profiles.append({"id": s, "name": _name(names, gap), "size": int(inside.sum()), "share": float(inside.mean()), "top_features": top_features})
    return Segments(pd.Series(labels, index=features.index), profiles)


def _raw(column: np.ndarray, i: int) -> float:
    """A feature's mean in its own units (numeric features were log1p'd)."""
    return float(np.expm1(column).mean()) if i < len(NUMERIC) else float(column.mean())


def _name(names: list[str], gap: np.ndarray) -> str:
    words = []
    for i in np.argsort(-np.abs(gap)):
        if len(words) == 2:
            break
        if i < len(NUMERIC):
            words.append(LABELS[names[i]][0 if gap[i] > 0 else 1])
        elif gap[i] > 0:
            words.append(names[i].replace("favourite maison: ", "") + " loyal")
    return ", ".join(words) or "average clients"
