"""What a regional service does for a request, without HTTP: features -> tower -> top-k -> filters.

`Recommender.recommend` takes a batch of requests (the service batches concurrent requests
with BentoML's adaptive dispatcher) and answers each:

1. refuse malformed filters (an unknown maison or country);
2. read the exact feature list the model was trained with, for the whole batch in one round
   trip to the region's online store, with the client's events received since the batch
   features (atelier.events.fresh.overlay: a purchase a second ago is left out, a view moves
   the client's recent products);
3. embed the clients that have features with the exported SavedModel, in one call;
4. retrieval: the two-tower's nearest products (one index call for the batch) and, when the
   model has a ranking stage, the co-purchase and popularity candidates (`atelier.models.recommend.ranking`);
5. ranking: the exported ranking model orders each client's candidates, from features built by
   the same functions as in training (the tower's score and place among them);
6. filters: what the client bought and what the maison/country filters exclude are left out; a
   client left with fewer than k is completed from the two-tower, fetching more from the
   approximate index, or searching the allowed products exactly when the filters leave few (so k
   items come back whenever k exist);
7. clients the store knows nothing about (new clients, and clients of other regions, whose data
   this region never holds), and every client while the store is unreachable, get the region's
   most popular products (`fallback: true`), never an error; when the request names the country
   the client shops in, that country's recent best-sellers first (`baselines.Fallback`).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from atelier.events import fresh
from atelier.features.online import OnlineFeatures
from atelier.models.recommend import ranking
from atelier.models.recommend.baselines import Fallback, fallback_popularity
from atelier.models.recommend.export import LoadedModel
from atelier.models.recommend.inputs import to_inputs
from atelier.regions import country_to_region, get_region

log = logging.getLogger(__name__)
PURCHASED = "client_activity:purchased_products"
EXACT_BELOW = 20_000  # allowed products: below this many, search them exactly
RANKING_INPUTS = {"purchased_products", "purchases_365d", "last_purchase_at", "country"}


class RequestError(Exception):
    """A request the service refuses: HTTP status, a short code, and what to do."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message

    def body(self) -> dict:
        return {"error": self.message, "code": self.code}


@dataclass
class Query:
    client_id: str
    k: int = 10
    maison: str | None = None
    country: str | None = None
    exclude_purchased: bool = True


@dataclass
class Answer:
    client_id: str
    items: list[dict]
    fallback: bool
    error: RequestError | None = None
    timings: dict = field(default_factory=dict)


class Catalog:
    """Product metadata and the masks filters need, built once at start."""

    def __init__(self, products: pd.DataFrame):
        self.ids = products["product_id"].to_numpy(dtype=object)
        self.index = {p: i for i, p in enumerate(self.ids)}
        self.maison = products["maison"].to_numpy(dtype=object)
        self.category = products["category"].to_numpy(dtype=object)
        self.maisons = sorted(set(self.maison))
        self.by_maison = {m: np.flatnonzero(self.maison == m) for m in self.maisons}
        lists = products["countries"].to_numpy(dtype=object)
        everywhere = np.array([c is None or (not isinstance(c, (list, np.ndarray)) and pd.isna(c)) for c in lists])
        # One pass over the products' country lists (not one per country): start-up stays short on big catalogs.
        self._sold = {country: everywhere.copy() for country in country_to_region()}
        for i in np.flatnonzero(~everywhere):
            for country in lists[i]:
                if country in self._sold:
                    self._sold[country][i] = True

    def allowed(self, maison: str | None, country: str | None) -> np.ndarray | None:
        """Indices of products passing the filters (None: every product)."""
        if maison is None and country is None:
            return None
        mask = np.ones(len(self.ids), bool)
        if maison is not None:
            mask &= self.maison == maison
        if country is not None:
            mask &= self._sold[country]
        return np.flatnonzero(mask)

    def item(self, i: int, score: float) -> dict:
        return {"product_id": self.ids[i], "maison": self.maison[i], "category": self.category[i], "score": round(float(score), 6)}


class Popularity:
    """The region's most-popular scores: from the online store, refreshed in the background;
    the snapshot exported with the model while the store has not answered. A request that names
    a country gets that country's recent best-sellers blended with them (`baselines.Fallback`,
    from the country counts exported with the model)."""

    def __init__(self, snapshot: np.ndarray, catalog: Catalog, reader: OnlineFeatures | None, refresh_s: float = 300,
                 country_counts: dict[str, np.ndarray] | None = None):
        self.scores = snapshot.astype(np.float64)
        self.country_counts = country_counts or {}
        self._fallback = Fallback(self.scores, self.country_counts)
        self.catalog, self.reader, self.refresh_s = catalog, reader, refresh_s
        self.source = "model snapshot"
        self._order = np.argsort(-self.scores, kind="stable")
        self._last = 0.0
        self._lock = threading.Lock()
        self.features: dict[str, np.ndarray] = {}  # ranking.POPULARITY, once read from the store
        self._context = None

    def refresh(self) -> bool:
        if self.reader is None:
            return False
        try:
            cols, found = self.reader.get(list(self.catalog.ids))
        except Exception as e:  # the store may be down: keep what we have
            log.warning("popularity refresh failed: %s", e)
            return False
        finally:
            self._last = time.monotonic()
        if not any(found):
            return False
        scores = fallback_popularity(cols)
        features = {name: np.array([v or 0 for v in values], np.float32) for name, values in cols.items() if name in ranking.POPULARITY}
        with self._lock:
            self.scores, self._order, self.source = scores, np.argsort(-scores, kind="stable"), "online store"
            self._fallback = Fallback(scores, self.country_counts)
            self.features = features if set(features) == set(ranking.POPULARITY) else {}
            self._context = None
        return True

    def context_for(self, snapshot: ranking.Context) -> ranking.Context:
        """The ranking context with this popularity (rebuilt once per refresh, not per request)."""
        with self._lock:
            if self._context is None or self._context[0] is not snapshot:
                self._context = (snapshot, snapshot.with_popularity(self.features))
            return self._context[1]

    def maybe_refresh(self) -> None:
        if self.reader is not None and time.monotonic() - self._last > self.refresh_s:
            threading.Thread(target=self.refresh, daemon=True).start()
            self._last = time.monotonic()

    def top_ids(self, n: int) -> np.ndarray:
        """The catalog positions of the `n` most popular products."""
        return self._order[:n]

    def top(self, k: int, allowed: np.ndarray | None, country: str | None = None) -> list[tuple[int, float]]:
        """The `k` best of the `allowed` products: by the region's popularity, or by `country`'s
        blend when the model knows that country's recent purchases."""
        with self._lock:
            scores, order, fallback = self.scores, self._order, self._fallback
        if country is not None and country in self.country_counts:
            scores, order = fallback.scores(country), fallback.order(country)
        if allowed is not None:
            order = allowed[np.argsort(-scores[allowed], kind="stable")]
        return [(int(i), float(scores[i])) for i in order[:k]]


class Recommender:
    def __init__(self, model: LoadedModel, features: OnlineFeatures | None, popularity: OnlineFeatures | None = None, tag: str = ""):
        self.model = model
        self.region = get_region(model.region)
        self.tag = tag
        self.features = features
        self.catalog = Catalog(model.products)
        self.popularity = Popularity(model.popularity, self.catalog, popularity, country_counts=model.country_popularity)
        self.popularity.refresh()
        self.countries = set(country_to_region())
        self._probe = (0.0, {"status": "ready", "online_store": "ok"})
        # The ranking stage needs the client's purchases, yearly count, last purchase and country.
        self.ranking = model.ranking if model.ranking is not None and RANKING_INPUTS <= {r.split(":")[1] for r in model.feature_refs} else None
        if model.ranking is not None and self.ranking is None:
            log.warning("model %s has a ranking stage but its feature list lacks %s: serving retrieval only", tag, sorted(RANKING_INPUTS))
        # The catalog's mean and covariance, for the ranker's tower z-scores (computed once).
        self.tower_view = ranking.TowerView.of(model.candidates) if self.ranking is not None else None

    # -- health ---------------------------------------------------------------------------------
    def readiness(self, every_s: float = 1.0) -> dict:
        """Whether the online store can answer: `degraded` while it is unreachable, or reachable
        but empty (a Redis restarted without its data), when every client gets the fallback.

        Probes the popularity of the best-selling products at most once every `every_s`; on the way
        back to `ok` the popularity is read again at once, so answers are personal and fresh again.
        """
        at, state = self._probe
        if time.monotonic() - at < every_s or self.popularity.reader is None:
            return state
        try:
            _, found = self.popularity.reader.get(list(self.catalog.ids[self.popularity.top_ids(20)]))
            store = "ok" if any(found) else "empty"
        except Exception as e:  # unreachable: the requests fall back on their own
            log.warning("online store probe failed: %s", e)
            store = "unreachable"
        if store == "ok" and state["online_store"] != "ok":
            self.popularity.refresh()
        fix = {"empty": f"atelier features materialize --full -r {self.region.code}",
               "unreachable": f"check the region's Redis (ATELIER_REDIS__{self.region.code.upper()}__HOST/PORT)"}.get(store)
        state = {"status": "ready" if store == "ok" else "degraded", "online_store": store, **({"fix": fix} if fix else {})}
        self._probe = (time.monotonic(), state)
        return state

    # -- validation -------------------------------------------------------------------------
    def check(self, q: Query) -> RequestError | None:
        if q.maison is not None and q.maison not in self.catalog.by_maison:
            return RequestError(422, "unknown_maison", f"unknown maison {q.maison!r}; known: {', '.join(self.catalog.maisons)}")
        if q.country is not None and q.country not in self.countries:
            return RequestError(422, "unknown_country", f"unknown country {q.country!r}; known: {', '.join(sorted(self.countries))}")
        return None

    # -- the batch ----------------------------------------------------------------------------
    def recommend(self, queries: list[Query]) -> list[Answer]:
        t0 = time.perf_counter()
        self.popularity.maybe_refresh()
        answers: list[Answer | None] = [None] * len(queries)
        valid = []
        for i, q in enumerate(queries):
            err = self.check(q)
            if err:
                answers[i] = Answer(q.client_id, [], False, err)
            else:
                valid.append(i)
        cols, found = {}, [False] * len(valid)
        if valid and self.features is not None:
            try:
                cols, found = self.features.get([queries[i].client_id for i in valid])
            except Exception as e:  # unreachable store: every client gets the fallback
                log.warning("online store unavailable, answering with popularity: %s", e)
            if "_ts:client_activity" in cols:  # the events received since the batch features
                found = fresh.overlay(cols, found, cols, cols["_ts:client_activity"])
        t1 = time.perf_counter()
        known = [j for j, f in enumerate(found) if f]
        vectors = {}
        if known:
            ids = [queries[valid[j]].client_id for j in known]
            subset = {name: [cols[name][j] for j in known] for name in cols}
            inputs = to_inputs(subset, self.model.query_specs, "client_id", ids, as_of=time.time())
            for j, v in zip(known, self.model.embed(inputs)):
                vectors[j] = v
        t2 = time.perf_counter()
        purchased = cols.get(PURCHASED.split(":")[1])
        exclude = {}
        for j in vectors:
            bought = purchased[j] if (queries[valid[j]].exclude_purchased and purchased) else None
            exclude[j] = {self.catalog.index[p] for p in (bought or []) if p in self.catalog.index}
        hits: dict[int, list[tuple[int, float]]] = {}
        stages = {}
        if self.ranking is not None and vectors:
            hits, stages = self._ranked(queries, valid, cols, vectors, exclude)
        # Clients without filters share one index call; filtered ones search on their own.
        plain = [j for j in vectors if j not in hits and queries[valid[j]].maison is None and queries[valid[j]].country is None]
        if plain:
            # A small over-fetch covers most exclusions; a client left short is searched again alone.
            fetch = min(len(self.catalog.ids), max(2 * queries[valid[j]].k + 10 for j in plain))
            scores, ids = self.model.top(np.stack([vectors[j] for j in plain]), fetch)
            for row, j in enumerate(plain):
                k = queries[valid[j]].k
                found = [(int(p), float(sc)) for p, sc in zip(ids[row], scores[row]) if p >= 0 and int(p) not in exclude[j]]
                if len(found) >= k or fetch >= len(self.catalog.ids):
                    hits[j] = found[:k]
        for j in vectors:
            if j not in hits:
                q = queries[valid[j]]
                hits[j] = self.search(vectors[j], q.k, self.catalog.allowed(q.maison, q.country), exclude[j])
        for j, i in enumerate(valid):
            q = queries[i]
            if j in hits:
                answers[i] = Answer(q.client_id, [self.catalog.item(p, sc) for p, sc in hits[j]], False)
            else:
                allowed = self.catalog.allowed(q.maison, q.country)
                answers[i] = Answer(q.client_id, [self.catalog.item(p, sc) for p, sc in self.popularity.top(q.k, allowed, q.country)], True)
        t3 = time.perf_counter()
        timing = {"features_ms": (t1 - t0) * 1e3, "tower_ms": (t2 - t1) * 1e3, "topk_ms": (t3 - t2) * 1e3, "batch": len(queries), **stages}
        for a in answers:
            a.timings = timing
        return answers  # type: ignore[return-value]

    def _ranked(self, queries, valid, cols, vectors, exclude) -> tuple[dict[int, list[tuple[int, float]]], dict]:
        """Retrieval, ranking and filters for the clients with features; returns hits and stage timings."""
        t0 = time.perf_counter()
        js = list(vectors)
        fetch = min(len(self.catalog.ids), ranking.FROM_TOWER + max(len(exclude[j]) for j in js))
        batch = np.stack([vectors[j] for j in js])
        _, ids = self.model.top(batch, fetch)
        inputs = RANKING_INPUTS | ({"recent_products"} if self.ranking.reads_recent and "recent_products" in cols else set())
        clients = ranking.Clients.from_features({name: [cols[name][j] for j in js] for name in inputs}, self.catalog.index, time.time())
        context = self.ranking.context
        if self.popularity.features:
            context = self.popularity.context_for(context)
        prep = ranking.prepare(context, clients)
        gone = [np.fromiter(exclude[j], np.int64) for j in js]
        tower = ranking.Retrieved.of(self.tower_view, batch, [ids[r][ids[r] >= 0] for r in range(len(js))], gone)
        cands = ranking.candidates(context, prep, gone, tower)
        t1 = time.perf_counter()
        scores = ranking.score(self.ranking.scorer, ranking.features(context, prep, cands, tower))
        t2 = time.perf_counter()
        hits, start = {}, 0
        for r, j in enumerate(js):
            c, s = cands[r], scores[start : start + len(cands[r])]
            start += len(c)
            q = queries[valid[j]]
            allowed = self.catalog.allowed(q.maison, q.country)
            keep = np.ones(len(c), bool) if allowed is None else np.isin(c, allowed)
            order = np.argsort(-s[keep], kind="stable")
            found = [(int(p), float(v)) for p, v in zip(c[keep][order], s[keep][order])][: q.k]
            if len(found) < q.k:  # the filters left too few candidates: complete from the two-tower
                taken = exclude[j] | {p for p, _ in found}
                found += self.search(vectors[j], q.k - len(found), allowed, taken)
            hits[j] = found
        t3 = time.perf_counter()
        return hits, {"retrieval_ms": (t1 - t0) * 1e3, "ranking_ms": (t2 - t1) * 1e3, "filters_ms": (t3 - t2) * 1e3}

    def search(self, vector: np.ndarray, k: int, allowed: np.ndarray | None, exclude: set[int]) -> list[tuple[int, float]]:
        """The k best products that pass the filters and are not excluded."""
        n_allowed = len(self.catalog.ids) if allowed is None else len(allowed)
        want = min(k, n_allowed)
        if want <= 0:
            return []
        if allowed is not None and len(allowed) <= EXACT_BELOW:
            return self._exact(vector, want, allowed, exclude)
        allowed_mask = None
        if allowed is not None:
            allowed_mask = np.zeros(len(self.catalog.ids), bool)
            allowed_mask[allowed] = True
        fetch = max(2 * want, int((want + len(exclude)) * len(self.catalog.ids) / n_allowed * 1.5))
        while True:
            scores, ids = self.model.top(vector, min(fetch, len(self.catalog.ids)))
            hits = [(int(p), float(s)) for p, s in zip(ids[0], scores[0]) if p >= 0 and int(p) not in exclude and (allowed_mask is None or allowed_mask[p])]
            if len(hits) >= want:
                return hits[:want]
            if fetch >= len(self.catalog.ids):
                # The approximate index did not surface enough: search the allowed set exactly.
                return self._exact(vector, want, allowed, exclude)
            fetch *= 4

    def _exact(self, vector: np.ndarray, want: int, allowed: np.ndarray | None, exclude: set[int]) -> list[tuple[int, float]]:
        scores, ids = self.model.exact.search(vector, want + len(exclude), subset=allowed)
        return [(int(p), float(s)) for p, s in zip(ids[0], scores[0]) if int(p) not in exclude][:want]

    def similar(self, product_id: str, k: int) -> list[dict]:
        i = self.catalog.index.get(product_id)
        if i is None:
            raise RequestError(404, "unknown_product", f"unknown product {product_id!r}")
        scores, ids = self.model.top(self.model.candidates[i], k + 1)
        hits = [(int(p), float(s)) for p, s in zip(ids[0], scores[0]) if p >= 0 and int(p) != i][:k]
        if len(hits) < min(k, len(self.catalog.ids) - 1):
            scores, ids = self.model.exact.search(self.model.candidates[i], k + 1)
            hits = [(int(p), float(s)) for p, s in zip(ids[0], scores[0]) if int(p) != i][:k]
        return [self.catalog.item(p, s) for p, s in hits]
