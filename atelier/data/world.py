"""A fictional luxury group to learn from: maisons, catalog, stores and clients with hidden tastes.

The world is generated from a seed and is the same on every machine. What a model can learn is
put there on purpose and kept hidden from the output tables:

* every product has a style vector (a mix of a few archetypes); its colour and material depend
  on that style, so catalog attributes carry part of the signal;
* every client has a taste vector over the same archetypes (leaning with age band) and a
  concentrated loyalty to two or three maisons (leaning to the maisons of the home country and
  to the client's price level);
* products have a base appeal, a launch date and a novelty that fades.

A most-popular list captures appeal and novelty only; personal taste and loyalty are what a
two-tower model can add. `events.py` turns this world into two years of behaviour.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
from pydantic import BaseModel, Field

from atelier.errors import AtelierError
from atelier.regions import all_regions, country_to_region

DIM = 16
ARCHETYPES = ("classic", "avant-garde", "sporty", "minimalist", "romantic", "bold", "heritage", "street")

# slug, display name, sector, home country, median price (EUR)
MAISONS = (
    ("maison-aurele", "Maison Aurèle", "fashion_leather", "FR", 2200),
    ("valmont-fils", "Valmont & Fils", "fashion_leather", "FR", 1500),
    ("casa-verbena", "Casa Verbena", "fashion_leather", "IT", 1800),
    ("hartwell-london", "Hartwell London", "fashion_leather", "GB", 900),
    ("kessler-atelier", "Kessler Atelier", "fashion_leather", "DE", 1100),
    ("lumiere-de-grasse", "Lumière de Grasse", "perfumes_cosmetics", "FR", 160),
    ("orris-ambre", "Orris & Ambre", "perfumes_cosmetics", "FR", 220),
    ("nacre-beaute", "Nacré Beauté", "perfumes_cosmetics", "JP", 90),
    ("horlogerie-vauclair", "Horlogerie Vauclair", "watches_jewellery", "CH", 12000),
    ("bellacqua-gioielli", "Bellacqua Gioielli", "watches_jewellery", "IT", 6500),
    ("sterling-rye", "Sterling & Rye", "watches_jewellery", "US", 4200),
    ("domaine-saint-clair", "Domaine Saint-Clair", "wines_spirits", "FR", 90),
    ("cognac-marceau", "Cognac Marceau", "wines_spirits", "FR", 180),
    ("glen-arrow", "Glen Arrow Distillery", "wines_spirits", "GB", 140),
    ("galerie-serene", "Galerie Sérène", "selective_retail", "FR", 400),
    ("rivage-beauty", "Rivage Beauty", "selective_retail", "US", 70),
)

# category -> (price multiplier, materials)
CATEGORIES = {
    "handbags": (1.0, ("calfskin", "canvas", "exotic leather", "suede")),
    "small_leather_goods": (0.3, ("calfskin", "canvas", "grained leather")),
    "ready_to_wear": (0.8, ("silk", "cashmere", "wool", "cotton", "denim")),
    "shoes": (0.55, ("calfskin", "suede", "canvas", "patent leather")),
    "accessories": (0.3, ("silk", "calfskin", "metal", "cashmere")),
    "fragrance": (1.0, ("floral", "woody", "oriental", "fresh", "chypre")),
    "skincare": (0.8, ("serum", "cream", "oil", "mask")),
    "makeup": (0.45, ("matte", "satin", "shimmer")),
    "watches": (1.4, ("steel", "yellow gold", "titanium", "ceramic")),
    "rings": (0.5, ("yellow gold", "white gold", "platinum", "silver")),
    "necklaces": (0.7, ("yellow gold", "white gold", "platinum", "silver")),
    "bracelets": (0.6, ("yellow gold", "white gold", "steel", "silver")),
    "champagne": (1.0, ("brut", "rosé", "blanc de blancs", "vintage")),
    "wine": (1.3, ("red", "white", "sweet")),
    "cognac": (1.0, ("VS", "VSOP", "XO")),
    "whisky": (1.0, ("single malt", "blended", "cask strength")),
}
COLOURS = ("black", "ivory", "camel", "navy", "burgundy", "forest", "blush", "gold", "silver", "multicolour")

MAISON_CATEGORIES = {
    "fashion_leather": ("handbags", "small_leather_goods", "ready_to_wear", "shoes", "accessories"),
    "perfumes_cosmetics": ("fragrance", "skincare", "makeup"),
    "watches_jewellery": ("watches", "rings", "necklaces", "bracelets"),
    "domaine-saint-clair": ("champagne", "wine"),
    "cognac-marceau": ("cognac",),
    "glen-arrow": ("whisky",),
    "galerie-serene": ("ready_to_wear", "accessories", "handbags", "shoes"),
    "rivage-beauty": ("fragrance", "skincare", "makeup"),
}

# Relative size of each country's client base.
COUNTRY_WEIGHTS = {
    "FR": 9, "IT": 5, "DE": 6, "ES": 4, "GB": 7, "CH": 3, "NL": 2, "BE": 2, "AT": 1.5, "PT": 1,
    "SE": 1, "DK": 1, "MC": 0.5, "IE": 1, "US": 18, "CA": 3, "MX": 2, "BR": 3, "JP": 9, "CN": 14,
    "HK": 4, "SG": 3, "KR": 5, "AU": 3, "TW": 2, "TH": 1.5,
}
TIERS = ("VIC", "VIP", "Premium", "Standard")
AGE_BANDS = ("18-24", "25-34", "35-44", "45-54", "55-64", "65+")
CHANNELS = ("store", "online", "omni")


class WorldSpec(BaseModel):
    """How big a world to make, and from which seed. Presets in `SIZES`."""

    clients: int = Field(5_000, ge=10)
    products: int = Field(800, ge=2 * len(MAISONS))  # every maison has a few products
    events_per_client: float = Field(40.0, gt=0)
    seed: int = 7
    start: dt.date = dt.date(2024, 11, 1)
    days: int = Field(730, ge=60)
    chunk_clients: int = Field(50_000, ge=10)

    @property
    def end(self) -> dt.date:
        return self.start + dt.timedelta(days=self.days)


SIZES = {
    "tiny": WorldSpec(clients=300, products=120, events_per_client=30),
    "small": WorldSpec(clients=5_000, products=800, events_per_client=40),
    "medium": WorldSpec(clients=100_000, products=5_000, events_per_client=40),
    "large": WorldSpec(clients=1_000_000, products=20_000, events_per_client=50),
}


def preset(size: str) -> WorldSpec:
    """The world spec of a size preset; an unknown name is a user error naming the known ones."""
    if size not in SIZES:
        raise AtelierError(f"unknown size {size!r}", fix=f"use one of: {', '.join(SIZES)}")
    return SIZES[size]


@dataclass
class Catalog:
    """Global tables plus the hidden product traits that drive behaviour."""

    maisons: pa.Table
    products: pa.Table
    stores: pa.Table
    style: np.ndarray  # (products, DIM) hidden
    appeal: np.ndarray  # (products,) hidden log-appeal
    launch_day: np.ndarray  # (products,) days since spec.start (negative: launched before)
    price: np.ndarray
    maison_idx: np.ndarray
    centers: np.ndarray  # (archetypes, DIM)
    by_maison: list[np.ndarray] = field(default_factory=list)  # product indices per maison, by launch
    store_countries: np.ndarray = field(default_factory=lambda: np.array(sorted(COUNTRY_WEIGHTS)))
    store_lookup: np.ndarray | None = None  # (maisons, store_countries) -> row in stores, or -1


def _archetype_centers(rng: np.random.Generator) -> np.ndarray:
    q, _ = np.linalg.qr(rng.normal(size=(DIM, DIM)))
    return q[: len(ARCHETYPES)] * 1.0


def make_catalog(spec: WorldSpec) -> Catalog:
    rng = np.random.default_rng([spec.seed, 1])
    centers = _archetype_centers(rng)
    n_m = len(MAISONS)
    maison_weight = rng.lognormal(0, 0.5, n_m)
    maison_weight /= maison_weight.sum()

    # Products: maison, category, style, then attributes that depend on style.
    n = spec.products
    maison_idx = rng.choice(n_m, size=n, p=maison_weight)
    # every maison gets at least a few products
    maison_idx[: n_m * 2] = np.repeat(np.arange(n_m), 2)
    style_k = rng.integers(0, len(ARCHETYPES), n)
    style = centers[style_k] + 0.45 * rng.normal(size=(n, DIM)) / np.sqrt(DIM)
    colour_pref = rng.dirichlet(np.full(len(COLOURS), 0.4), size=len(ARCHETYPES))
    colour = np.array([rng.choice(len(COLOURS), p=colour_pref[k]) for k in style_k])

    categories, materials, price = [], [], np.empty(n)
    cat_names = list(CATEGORIES)
    material_pref = {c: rng.dirichlet(np.full(len(CATEGORIES[c][1]), 0.5), size=len(ARCHETYPES)) for c in cat_names}
    for i in range(n):
        slug, _, sector, _, median = MAISONS[maison_idx[i]]
        cats = MAISON_CATEGORIES.get(slug, MAISON_CATEGORIES.get(sector))
        cat = cats[rng.integers(len(cats))]
        mult, mats = CATEGORIES[cat]
        categories.append(cat)
        materials.append(mats[rng.choice(len(mats), p=material_pref[cat][style_k[i]])])
        price[i] = round(median * mult * rng.lognormal(0, 0.45), -1 if median * mult > 200 else 0)
    price = np.maximum(price, 10.0)

    # Launches: a third are permanent lines from before the window; fashion drops in Feb and Sep.
    launch_day = rng.integers(-3 * 365, spec.days - 14, n)
    permanent = rng.random(n) < 0.33
    launch_day[permanent] = rng.integers(-6 * 365, -30, permanent.sum())
    launch_dates = [spec.start + dt.timedelta(days=int(d)) for d in launch_day]
    fashion = np.array([MAISONS[m][2] in ("fashion_leather", "selective_retail") for m in maison_idx])
    for i in np.flatnonzero(fashion & ~permanent):
        d = launch_dates[i]
        drop = dt.date(d.year, 2, 1) if d.month < 8 else dt.date(d.year, 9, 1)
        drop = min(drop, spec.end - dt.timedelta(days=14))
        launch_day[i] = (drop - spec.start).days
        launch_dates[i] = drop
    collection = [
        "Permanent" if permanent[i]
        else (("SS" if d.month < 8 else "FW") + f"{d.year % 100:02d}") if fashion[i]
        else f"Edition {d.year}"
        for i, d in enumerate(launch_dates)
    ]
    appeal = rng.normal(0, 0.4, n)

    # Where products are sold: mostly everywhere, some exclusive to a region or a country.
    regions = all_regions()
    countries_col = []
    r = rng.random(n)
    for i in range(n):
        if r[i] < 0.9:
            countries_col.append(None)
        elif r[i] < 0.97:
            home = regions[rng.integers(len(regions))].code
            countries_col.append([c for c in COUNTRY_WEIGHTS if country_to_region()[c] == home])
        else:
            countries_col.append([list(COUNTRY_WEIGHTS)[rng.integers(len(COUNTRY_WEIGHTS))]])

    product_ids = [f"P{i:07d}" for i in range(n)]
    products = pa.table(
        {
            "product_id": product_ids,
            "maison": [MAISONS[m][0] for m in maison_idx],
            "category": categories,
            "collection": collection,
            "price": price,
            "material": materials,
            "colour": [COLOURS[c] for c in colour],
            "launch_date": pa.array(
                [dt.datetime.combine(d, dt.time(9), dt.timezone.utc) for d in launch_dates], pa.timestamp("us", "UTC")
            ),
            "countries": pa.array(countries_col, pa.list_(pa.string())),
        }
    )
    maisons = pa.table(
        {
            "maison": [m[0] for m in MAISONS],
            "name": [m[1] for m in MAISONS],
            "sector": [m[2] for m in MAISONS],
            "home_country": [m[3] for m in MAISONS],
            "median_price": [float(m[4]) for m in MAISONS],
        }
    )
    stores = _make_stores(rng)
    order = np.lexsort((launch_day, maison_idx))
    by_maison = [order[maison_idx[order] == m] for m in range(n_m)]
    catalog = Catalog(maisons, products, stores, style, appeal, launch_day, price, maison_idx, centers, by_maison)
    slugs = {m[0]: i for i, m in enumerate(MAISONS)}
    lookup = np.full((len(MAISONS), len(catalog.store_countries)), -1, np.int64)
    for row, (m, c) in enumerate(zip(stores.column("maison").to_pylist(), stores.column("country").to_pylist())):
        lookup[slugs[m], np.searchsorted(catalog.store_countries, c)] = row
    catalog.store_lookup = lookup
    return catalog


def _make_stores(rng: np.random.Generator) -> pa.Table:
    countries = list(COUNTRY_WEIGHTS)
    w = np.array([COUNTRY_WEIGHTS[c] for c in countries], float)
    rows = {"store_id": [], "maison": [], "country": []}
    sid = 0
    for slug, _, sector, home, _ in MAISONS:
        k = 4 if sector == "wines_spirits" else 10
        chosen = set(rng.choice(len(countries), size=k, replace=False, p=w / w.sum()).tolist())
        chosen.add(countries.index(home))
        for c in sorted(chosen):
            rows["store_id"].append(f"S{sid:04d}")
            rows["maison"].append(slug)
            rows["country"].append(countries[c])
            sid += 1
    return pa.table(rows)


@dataclass
class ClientChunk:
    """A chunk of clients: the output table plus hidden traits for the event simulation."""

    table: pa.Table
    taste: np.ndarray  # (n, DIM)
    loyalty: np.ndarray  # (n, maisons) probabilities
    wealth: np.ndarray  # (n,) budget scale in EUR
    activity: np.ndarray  # (n,) relative session rate
    join_day: np.ndarray  # (n,) days since spec.start (negative: joined before the window)
    region: np.ndarray  # (n,) region codes
    country: np.ndarray


def _dirichlet(rng: np.random.Generator, alpha: np.ndarray) -> np.ndarray:
    """One Dirichlet draw per row of `alpha`."""
    g = rng.gamma(alpha)
    g += 1e-12
    return g / g.sum(axis=1, keepdims=True)


def make_clients(spec: WorldSpec, catalog: Catalog, first: int, count: int) -> ClientChunk:
    """Clients `first` .. `first+count-1`, drawn from a stream seeded by (seed, first).

    The chunk size is part of the spec: the same spec always gives the same world.
    """
    rng = np.random.default_rng([spec.seed, 2, first])
    countries = np.array(list(COUNTRY_WEIGHTS))
    w = np.array([COUNTRY_WEIGHTS[c] for c in countries], float)
    country = countries[rng.choice(len(countries), size=count, p=w / w.sum())]
    c2r = country_to_region()
    region = np.array([c2r[c] for c in country])
    prefix = {"eu": "EU", "us": "US", "apac": "AP"}  # readable ids only: nothing reads a region from them

    age = rng.choice(len(AGE_BANDS), size=count, p=[0.08, 0.24, 0.25, 0.2, 0.14, 0.09])
    # Taste: a concentrated mix of archetypes, leaning with age band.
    age_lean = np.random.default_rng([spec.seed, 3]).dirichlet(np.full(len(ARCHETYPES), 0.7), size=len(AGE_BANDS))
    mix = _dirichlet(rng, 0.25 + 2.0 * age_lean[age])
    taste = mix @ catalog.centers + 0.25 * rng.normal(size=(count, DIM)) / np.sqrt(DIM)

    wealth = rng.lognormal(np.log(900), 1.1, count)
    q = np.quantile(wealth, [0.98, 0.90, 0.65]) if count >= 50 else np.array([np.inf, np.inf, np.inf])
    tier = np.where(wealth >= q[0], 0, np.where(wealth >= q[1], 1, np.where(wealth >= q[2], 2, 3)))
    activity = rng.gamma(1.5, 1 / 1.5, count) * np.array([2.5, 1.8, 1.2, 1.0])[tier]

    # Loyalty: a few maisons, leaning to home-country maisons and to the client's price level.
    homes = np.array([m[3] for m in MAISONS])
    medians = np.array([m[4] for m in MAISONS], float)
    base = np.random.default_rng([spec.seed, 4]).lognormal(0, 0.6, len(MAISONS))
    regional = {r.code: np.random.default_rng([spec.seed, 5, i]).lognormal(0, 0.5, len(MAISONS)) for i, r in enumerate(all_regions())}
    fit = np.exp(-0.5 * ((np.log(medians)[None, :] - np.log(wealth * 1.5)[:, None]) / 1.8) ** 2)
    regional_w = np.stack([regional[r] for r in region])
    alpha = base * regional_w * fit * np.where(homes[None, :] == country[:, None], 2.5, 1.0)
    loyalty = _dirichlet(rng, alpha / alpha.sum(axis=1, keepdims=True) * 1.2 + 1e-3)

    join_day = rng.integers(-5 * 365, spec.days - 30, count)
    join_day = np.where(rng.random(count) < 0.6, np.minimum(join_day, 0), join_day)
    join_ts = np.datetime64(spec.start.isoformat(), "us") + (join_day * 86400 * 10**6).astype("timedelta64[us]")
    ids = [f"{prefix[r]}{first + i:08d}" for i, r in enumerate(region)]
    table = pa.table(
        {
            "client_id": ids,
            "country": country,
            "tier": np.array(TIERS)[tier],
            "age_band": np.array(AGE_BANDS)[age],
            "preferred_channel": np.array(CHANNELS)[rng.choice(3, size=count, p=[0.45, 0.3, 0.25])],
            "join_date": pa.array(join_ts, pa.timestamp("us", "UTC")),
        }
    )
    return ClientChunk(table, taste, loyalty, wealth, activity, join_day, region, country)
