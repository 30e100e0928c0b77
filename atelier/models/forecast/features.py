"""What a forecast may know at an origin: the series' past, its location's and product's past, the calendar.

An example is (series, origin, horizon): standing at the start of week `origin` (a panel column),
forecast the units of week `origin + horizon - 1`. Every history feature reads columns before
`origin` only; the calendar (week of year, public holidays of the location's country, from the
`holidays` package) and the catalog (maison, category, price, launch week) are known in advance.
`tests/models/test_forecast.py` poisons every week from the origin on and checks that no
feature moves.

Series differ in size by orders of magnitude, so one global model learns on a common scale: each
series' mean weekly units over the year before the origin (since its first sale, when younger).
History features and the target are divided by it (history features then log1p'd: weekly sales
are heavy-tailed, and a network's normalization is not invariant to that as trees are); the loss
is weighted by it, so the model's error counts in units, as WAPE does. The history enters twice:
as summaries (means over 4 to 26 weeks, the share of weeks with sales, the weeks since the last
sale) and as the raw last `HISTORY` weeks, so a model can read a shape the summaries flatten.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np

from atelier.features import series as S
from atelier.models.forecast.panel import Panel

HORIZON = 12  # weeks ahead: 1 .. HORIZON
YEAR = 52
MIN_SCALE = 1e-3
HISTORY = 26  # the last weeks before the origin, one input each (on the series' scale)
NUMERIC = (
    "horizon", "log_scale", "mean_4", "mean_8", "mean_13", "mean_26",
    "seasonal", "seasonal_known", "nonzero_13", "weeks_since_sale", "age", "location_level", "location_trend",
    "location_clients", "location_new_share", "location_seasonal", "product_level", "product_trend", "product_share",
    "week_sin", "week_cos", "holidays", "holidays_next", "log_price", "weeks_since_launch",
) + tuple(f"week_minus_{k}" for k in range(1, HISTORY + 1))
CATEGORICAL = ("location", "maison", "category")


@dataclass
class Examples:
    """Feature rows with their scale; `target` is NaN where the target week lies beyond the panel."""

    series: np.ndarray  # (N,) row of the panel
    origin: np.ndarray  # (N,) panel column of the origin
    horizon: np.ndarray  # (N,) 1 .. HORIZON
    numeric: np.ndarray  # (N, len(NUMERIC)) float32
    categorical: np.ndarray  # (N, len(CATEGORICAL)) int32 codes (see `Vocabulary`)
    scale: np.ndarray  # (N,) units per week the series is measured in
    target: np.ndarray  # (N,) units of the target week (NaN beyond the panel)

    def __len__(self) -> int:
        return len(self.series)

    @staticmethod
    def concat(parts: list["Examples"]) -> "Examples":
        return Examples(*(np.concatenate([getattr(p, f) for p in parts]) for f in Examples.__dataclass_fields__))

    def take(self, rows: np.ndarray) -> "Examples":
        return Examples(*(getattr(self, f)[rows] for f in Examples.__dataclass_fields__))


@dataclass
class Vocabulary:
    """Codes of the categorical features; 0 is "unseen"."""

    values: dict[str, list[str]]

    @staticmethod
    def of(panel: Panel) -> "Vocabulary":
        return Vocabulary({
            "location": sorted(map(str, panel.locations)),
            "maison": sorted(set(panel.series["maison"])),
            "category": sorted(set(panel.series["category"])),
        })

    def codes(self, name: str, values: np.ndarray) -> np.ndarray:
        index = {v: i + 1 for i, v in enumerate(self.values[name])}
        return np.array([index.get(str(v), 0) for v in values], np.int32)

    def sizes(self) -> list[int]:
        return [len(self.values[n]) + 1 for n in CATEGORICAL]


def active(panel: Panel, origin: int) -> np.ndarray:
    """Series with a sale in the year before `origin`: the ones a forecast at `origin` is made for."""
    c = panel.cum("units")
    lo = max(0, origin - YEAR)
    return np.flatnonzero(c[:, origin] - c[:, lo] > 0)


def unsold(panel: Panel, origin: int, rows=slice(None)) -> np.ndarray:
    """Whether each series (of `rows`) has sold nothing before `origin`: a launch, forecast from
    its attributes, where one is forecast at all."""
    return panel.cum("units")[rows, origin] == 0


def launching(panel: Panel, origin: int, horizons: int = HORIZON) -> np.ndarray:
    """Series with no sale before `origin` whose product the catalog launches inside the next
    `horizons` weeks: forecast from their attributes (maison, category, price, location, weeks
    since launch), with no history of their own."""
    launch = panel.series["launch_column"].to_numpy(float)
    return np.flatnonzero(unsold(panel, origin) & (launch >= origin) & (launch < origin + horizons))


def _launch_horizons(panel: Panel, rows: np.ndarray, origin: int, top: int) -> np.ndarray:
    """The first horizon whose target week is at or after each row's launch week (1 .. top + 1)."""
    return (panel.series["launch_column"].to_numpy(float)[rows] - origin + 1).astype(np.int64).clip(1, top + 1)


def _prior_scale(panel: Panel, origin: int, loc: np.ndarray) -> np.ndarray:
    """The scale of a series without history: its location's mean weekly units per active series
    over the 13 weeks before `origin`."""
    per_location = np.bincount(panel.location_of[active(panel, origin)], minlength=len(panel.locations))
    return _mean(panel.cum("location_units"), loc, origin, 13) / np.maximum(per_location[loc], 1)


def _mean(c: np.ndarray, rows: np.ndarray, origin: int, weeks: int) -> np.ndarray:
    lo = max(0, origin - weeks)
    return (c[rows, origin] - c[rows, lo]) / weeks


@cache
def _holiday_counts(country: str, years: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """(weeks, number of public-holiday days in each) for `country`, from the `holidays` package."""
    import holidays

    try:
        days = holidays.country_holidays(country, years=list(years))
    except NotImplementedError:  # a country the package does not cover: no holidays known
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    seconds = np.array([np.datetime64(d, "s").astype(np.int64) for d in days], np.int64)
    return np.unique(S.week_of(seconds), return_counts=True)


def _holidays(panel: Panel, locations: np.ndarray, week: np.ndarray) -> np.ndarray:
    """The number of public-holiday days in each (location's country, absolute week)."""
    out = np.zeros(len(week), np.float32)
    first, last = S.week_timestamp(np.array([week.min(), week.max()]))
    years = tuple(range(first.year - 1, last.year + 2))
    countries = panel.location_country[locations].astype(str)
    for country in np.unique(countries):
        weeks, counts = _holiday_counts(country, years)
        if not len(weeks):
            continue
        sel = countries == country
        pos = np.clip(np.searchsorted(weeks, week[sel]), 0, len(weeks) - 1)
        out[sel] = np.where(weeks[pos] == week[sel], counts[pos], 0)
    return out


def at(panel: Panel, origin: int, rows: np.ndarray, horizon: np.ndarray, vocabulary: Vocabulary) -> Examples:
    """Examples for series `rows` at `origin`, each with its own `horizon` (1 .. HORIZON)."""
    rows, horizon = np.asarray(rows), np.asarray(horizon)
    target_col = origin + horizon - 1
    c = panel.cum("units")
    first = panel.first_sale()[rows]
    age = np.maximum(origin - first, 1)
    since = np.maximum(origin - np.maximum(first, origin - YEAR), 1)
    scale = (c[rows, origin] - c[rows, origin - since]) / since
    loc = panel.location_of[rows]
    new = unsold(panel, origin, rows)  # no history yet (a launch): the location's typical series sets the scale
    if new.any():
        scale[new] = _prior_scale(panel, origin, loc[new])
    scale = np.maximum(scale, MIN_SCALE)
    u = panel.units
    back = origin - np.arange(1, HISTORY + 1)
    history = np.where(back[None, :] >= 0, u[rows[:, None], np.clip(back, 0, None)[None, :]], 0.0) / scale[:, None]
    scaled = lambda x: np.log1p(np.maximum(x, 0) / scale)  # noqa: E731
    # The same week a year before the target, where it is before the origin and the series existed then.
    seasonal_col = target_col - YEAR
    known = (seasonal_col >= 0) & (seasonal_col >= first)
    sc = np.clip(seasonal_col, 0, None)
    seasonal = np.where(known, u[rows, sc], 0.0)
    nonzero = (u[rows, max(0, origin - 13):origin] > 0).sum(1) / 13
    weeks_since = _weeks_since_sale(u, rows, origin)

    lc = panel.cum("location_units")
    loc4, loc13 = _mean(lc, loc, origin, 4), _mean(lc, loc, origin, 13)
    loc52 = _mean(lc, loc, origin, YEAR) + 1e-6
    cc, nc = panel.cum("location_clients"), panel.cum("location_new_clients")
    clients4 = _mean(cc, loc, origin, 4)
    new_share = (nc[loc, origin] - nc[loc, max(0, origin - 13)]) / np.maximum(cc[loc, origin] - cc[loc, max(0, origin - 13)], 1)
    loc_seasonal = np.where(seasonal_col >= 0, panel.location_units[loc, sc] / loc52, 0.0)
    prod = panel.product_of[rows]
    pc = panel.cum("product_units")
    p4, p13 = _mean(pc, prod, origin, 4), _mean(pc, prod, origin, 13)
    share = _mean(c, rows, origin, 13) / np.maximum(loc13, 1e-6)

    week = panel.weeks[0] + target_col
    woy = S.week_timestamp(week).isocalendar().week.to_numpy().astype(float)
    angle = 2 * np.pi * woy / 52.18
    holidays_now = _holidays(panel, loc, week)
    holidays_next = _holidays(panel, loc, week + 1)
    price = panel.series["price"].to_numpy(float)[rows]
    launch = panel.series["launch_column"].to_numpy(float)[rows]
    since_launch = np.where(np.isnan(launch), age + horizon - 1, target_col - launch)

    numeric = np.stack([
        horizon, np.log1p(scale),
        scaled(_mean(c, rows, origin, 4)), scaled(_mean(c, rows, origin, 8)), scaled(_mean(c, rows, origin, 13)), scaled(_mean(c, rows, origin, 26)),
        scaled(seasonal), known, nonzero, weeks_since, np.minimum(age, 2 * YEAR), np.log1p(loc13), loc4 / np.maximum(loc13, 1e-6),
        np.log1p(clients4), new_share, np.log1p(loc_seasonal), np.log1p(p13), p4 / np.maximum(p13, 1e-6), share,
        np.sin(angle), np.cos(angle), holidays_now, holidays_next, np.log(np.nan_to_num(price, nan=1.0).clip(1e-3)),
        np.minimum(since_launch, 2 * YEAR),
    ], axis=1)
    numeric = np.concatenate([numeric, np.log1p(history)], axis=1).astype(np.float32)
    categorical = np.stack([
        vocabulary.codes("location", panel.locations[loc]),
        vocabulary.codes("maison", panel.series["maison"].to_numpy()[rows]),
        vocabulary.codes("category", panel.series["category"].to_numpy()[rows]),
    ], axis=1)
    inside = target_col < u.shape[1]
    target = np.where(inside, u[rows, np.minimum(target_col, u.shape[1] - 1)], np.nan).astype(np.float32)
    return Examples(rows, np.full(len(rows), origin), horizon, numeric, categorical, scale.astype(np.float32), target)


def _weeks_since_sale(u: np.ndarray, rows: np.ndarray, origin: int) -> np.ndarray:
    window = u[rows, max(0, origin - YEAR):origin] > 0
    if window.shape[1] == 0:
        return np.full(len(rows), YEAR, float)
    found = window.any(1)
    back = np.argmax(window[:, ::-1], 1)
    return np.where(found, back, YEAR).astype(float)


def forecast_rows(panel: Panel, origin: int, vocabulary: Vocabulary, horizons: int = HORIZON) -> Examples:
    """What a backtest origin scores: every active series at `origin` at every horizon 1 .. `horizons`,
    and every series launching inside them from its launch week on."""
    rows = active(panel, origin)
    new = launching(panel, origin, horizons)
    series = np.concatenate([np.repeat(rows, horizons), np.repeat(new, horizons)])
    horizon = np.tile(np.arange(1, horizons + 1), len(rows) + len(new))
    keep = horizon >= np.concatenate([np.ones(len(rows) * horizons, np.int64), np.repeat(_launch_horizons(panel, new, origin, horizons), horizons)])
    return at(panel, origin, series[keep], horizon[keep], vocabulary)


def training_rows(panel: Panel, before: int, vocabulary: Vocabulary, *, origins: int = 40, max_examples: int = 300_000,
                  seed: int = 0, first_origin: int = 13) -> Examples:
    """Examples whose target weeks all lie before column `before`, from the `origins` weeks before it.

    Each (series, origin) gets one horizon drawn among those whose target is before `before`, so
    every horizon is learnt from every origin without multiplying the rows by twelve; a launching
    series (see `launching`), one drawn among its weeks from launch on.
    """
    rng = np.random.default_rng(seed)
    parts = []
    for origin in range(max(first_origin, before - origins), before):
        rows = active(panel, origin)
        if not len(rows):
            continue
        top = min(HORIZON, before - origin)
        horizon = rng.integers(1, top + 1, len(rows))
        new = launching(panel, origin, top)
        if len(new):
            rows, horizon = np.concatenate([rows, new]), np.concatenate([horizon, rng.integers(_launch_horizons(panel, new, origin, top), top + 1)])
        parts.append(at(panel, origin, rows, horizon, vocabulary))
    if not parts:
        raise ValueError("no history to learn from before this origin")
    ex = Examples.concat(parts)
    if len(ex) > max_examples:
        ex = ex.take(np.sort(rng.choice(len(ex), max_examples, replace=False)))
    return ex
