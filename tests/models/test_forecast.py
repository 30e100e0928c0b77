"""The forecast kind: weekly series, hand-checked baselines and metrics, the backtest's leak test, a run end to end."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from atelier.features import series as S
from atelier.models.forecast import baselines, metrics
from atelier.models.forecast import features as F
from atelier.models.forecast.panel import build

MONDAY = pd.Timestamp("2024-01-01", tz="UTC")  # a Monday


def _week(n: int) -> pd.Timestamp:
    return MONDAY + pd.Timedelta(weeks=n)


def _panel(units: np.ndarray, locations=("FR",), last_sale: pd.Timestamp | None = None, launches: dict[int, int] | None = None,
           countries: dict[int, list[str]] | None = None):
    """A country-level panel whose series i (product P{i}) sells units[i, w] in week w; `launches`:
    product index -> the week the catalog launches it; `countries`: where it is sold."""
    rows = []
    for i, row in enumerate(units):
        for w, u in enumerate(row):
            if u:
                rows.append({"level": "country", "location": locations[i % len(locations)], "product_id": f"P{i}",
                             "week_start": _week(w), "units": float(u), "revenue": 10.0 * u, "orders": 1})
    sales = pd.DataFrame(rows)
    weeks = units.shape[1]
    places = pd.DataFrame({"level": "country", "location": list(locations) * weeks,
                           "week_start": [_week(w) for w in range(weeks) for _ in locations], "units": 1.0, "clients": 1, "new_clients": 0,
                           "last_sale_at": last_sale or _week(weeks) - pd.Timedelta(seconds=1)})
    products = pd.DataFrame({"product_id": [f"P{i}" for i in range(len(units))], "maison": "m", "category": "c", "price": 10.0,
                             "catalog_timestamp": [_week((launches or {}).get(i, -10_000)) if i in (launches or {}) else pd.Timestamp(0, tz="UTC")
                                                   for i in range(len(units))],
                             "countries": [(countries or {}).get(i) for i in range(len(units))]})
    return build(sales, places, products, "country")


def test_weekly_sales_count_purchases_per_country_and_store_and_leave_returns_out():
    # Week 0 (Mon 2024-01-01): client A buys 2 of P1 in store S1 (France), an anonymous line buys 1
    # of P1 in Italy, A returns one; week 1: B (a French client, no line country) buys 3 of P1 online.
    ts = lambda d: int(pd.Timestamp(d, tz="UTC").timestamp())  # noqa: E731
    events = pd.DataFrame({
        "client_id": ["A", None, "A", "B"], "product_id": ["P1"] * 4, "event_type": ["purchase", "purchase", "return", "purchase"],
        "ts": [ts("2024-01-02"), ts("2024-01-03"), ts("2024-01-04"), ts("2024-01-09")],
        "amount": [200.0, 100.0, None, 300.0], "quantity": [2, 1, 1, 3], "country": ["FR", "IT", "FR", None], "store_id": ["S1", None, "S1", None],
    })
    lines = S.sales_lines(events, pd.Series({"A": "FR", "B": "FR"}))
    got = S.weekly_sales(lines).sort_values(["level", "location", "week"])
    week0 = S.week_of(np.array([ts("2024-01-01")]))[0]
    assert got[["level", "location", "week", "units", "revenue"]].values.tolist() == [
        ["country", "FR", week0, 2.0, 200.0], ["country", "FR", week0 + 1, 3.0, 300.0],
        ["country", "IT", week0, 1.0, 100.0], ["store", "S1", week0, 2.0, 200.0],
    ]
    clientele = S.weekly_clientele(lines).set_index(["level", "location", "week"])
    # France: A in week 0 (new), B in week 1 (new); Italy: only an anonymous line (no client).
    assert clientele.loc[("country", "FR", week0), ["clients", "new_clients"]].tolist() == [1, 1]
    assert clientele.loc[("country", "FR", week0 + 1), ["clients", "new_clients"]].tolist() == [1, 1]
    assert clientele.loc[("country", "IT", week0), ["clients", "units"]].tolist() == [0, 1.0]


def test_weeks_start_on_monday():
    monday, sunday_night = MONDAY.timestamp(), (MONDAY + pd.Timedelta(days=7) - pd.Timedelta(seconds=1)).timestamp()
    assert S.week_of(np.array([monday, sunday_night])).tolist() == [S.week_of(np.array([monday]))[0]] * 2
    assert S.week_timestamp(S.week_of(np.array([sunday_night])))[0] == MONDAY


def test_the_panel_drops_a_final_week_whose_data_stops_early():
    units = np.ones((1, 6))
    assert len(_panel(units).weeks) == 6
    friday = _week(5) + pd.Timedelta(days=4)  # the data stops on the Friday of the last week
    assert len(_panel(units, last_sale=friday).weeks) == 5


def test_seasonal_naive_moving_average_and_wape_by_hand():
    # 60 weeks: the series sells w+1 units in week w. Origin 55, horizons 1 and 3.
    units = np.arange(1, 61, dtype=float)[None, :]
    panel = _panel(units)
    ex = F.at(panel, 55, np.array([0, 0]), np.array([1, 3]), F.Vocabulary.of(panel))
    # Targets: weeks 55 and 57 (56 and 58 units). Seasonal naive: weeks 3 and 5 (4 and 6 units).
    assert ex.target.tolist() == [56.0, 58.0]
    assert baselines.seasonal_naive(panel, ex).tolist() == [4.0, 6.0]
    # The 8 weeks before the origin: weeks 47..54, 48..55 units, mean 51.5, for every horizon.
    assert baselines.moving_average(panel, ex).tolist() == [51.5, 51.5]
    # WAPE of the moving average: (|56 - 51.5| + |58 - 51.5|) / (56 + 58) = 11 / 114.
    assert metrics.wape(ex.target, np.array([51.5, 51.5])) == pytest.approx(11 / 114)


def test_seasonal_naive_falls_back_to_the_last_week_without_a_year_of_history():
    units = np.zeros((1, 30))
    units[0, 10:] = np.arange(1, 21)  # first sale in week 10; week 29 sells 20
    panel = _panel(units)
    ex = F.at(panel, 25, np.array([0]), np.array([2]), F.Vocabulary.of(panel))
    assert baselines.seasonal_naive(panel, ex).tolist() == [15.0]  # week 24 (the last before the origin) sold 15


def test_quantile_metrics_by_hand():
    actual = np.array([10.0, 0.0])
    q = np.array([[8.0, 10.0, 12.0], [1.0, 2.0, 3.0]])
    # Pinball: cell 1 is covered with P50 exact: 0.1*2 + 0 + 0.1*2 = 0.4; cell 2 (actual below all):
    # 0.9*1 + 0.5*2 + 0.1*3 = 2.2. Per quantile, doubled over the sum of actuals (10):
    # P10 (0.2 + 0.9) * 2 / 10 = 0.22, P50 (0 + 1.0) * 2 / 10 = 0.2, P90 (0.2 + 0.3) * 2 / 10 = 0.1.
    assert metrics.wql(actual, q) == pytest.approx((0.22 + 0.2 + 0.1) / 3)
    assert metrics.coverage(actual, q) == 0.5
    # MASE: one series, in-sample one-week naive error of history [1, 3, 2] is (2 + 1) / 2 = 1.5;
    # its absolute errors 0 and 2 average 1: MASE 1 / 1.5.
    scale = metrics.naive_scale(np.array([[1.0, 3.0, 2.0]]), np.array([0]))
    assert scale.tolist() == [1.5]
    assert metrics.mase(actual, q[:, 1], np.array([7, 7]), np.repeat(scale, 2)) == pytest.approx(1 / 1.5)


def test_nothing_after_an_origin_is_read_for_its_forecasts():
    """Poison every week from the origin on: features, scales and training rows must not move."""
    rng = np.random.default_rng(3)
    units = rng.poisson(3.0, (40, 80)).astype(float) * (rng.random((40, 1)) < 0.8)
    panel = _panel(units, locations=("FR", "DE", "IT"))
    vocabulary = F.Vocabulary.of(panel)
    origin = 60
    poisoned = panel.poisoned(origin, rng)
    clean_rows, dirty_rows = F.forecast_rows(panel, origin, vocabulary), F.forecast_rows(poisoned, origin, vocabulary)
    assert np.array_equal(clean_rows.series, dirty_rows.series)
    assert np.array_equal(clean_rows.numeric, dirty_rows.numeric) and np.array_equal(clean_rows.scale, dirty_rows.scale)
    assert not np.array_equal(clean_rows.target, dirty_rows.target)  # the poison did reach the targets
    for fn in (baselines.seasonal_naive, baselines.moving_average):
        assert np.array_equal(fn(panel, clean_rows), fn(poisoned, dirty_rows))
    clean_train, dirty_train = F.training_rows(panel, origin, vocabulary, seed=1), F.training_rows(poisoned, origin, vocabulary, seed=1)
    assert np.array_equal(clean_train.numeric, dirty_train.numeric) and np.array_equal(clean_train.target, dirty_train.target)
    assert (clean_train.origin + clean_train.horizon - 1 < origin).all()


def test_a_product_launched_inside_the_horizon_is_forecast_from_its_attributes():
    """A product the catalog launches in week 50 has rows at every location that may sell it before
    it sells anything; an origin before its launch forecasts it from its launch week on, on its
    location's typical scale, with no history; the backtest counts its cells apart."""
    rng = np.random.default_rng(5)
    units = rng.poisson(4.0, (7, 70)).astype(float)
    units[5, :50] = 0  # P5: launched in week 50, sold in FR, DE and IT from then on
    units[6, :] = 0  # P6: launched in week 52, sold only in Italy, where it never sold (yet)
    units[0, :] = 0  # P0: no sale, no known launch: no row anywhere
    panel = _panel(units, locations=("FR", "DE", "IT"), launches={5: 50, 6: 52}, countries={6: ["IT"]})
    rows = {(loc, p) for loc, p in zip(panel.series["location"], panel.series["product_id"])}
    assert {loc for loc, p in rows if p == "P5"} == {"FR", "DE", "IT"}  # it sells in IT only (series i sells at location i % 3)
    assert {loc for loc, p in rows if p == "P6"} == {"IT"}
    assert not any(p == "P0" for _, p in rows)

    vocabulary = F.Vocabulary.of(panel)
    origin = 45
    ex = F.forecast_rows(panel, origin, vocabulary)
    launched = panel.series["product_id"].to_numpy()[ex.series] == "P5"
    assert launched.any() and (ex.horizon[launched] >= 50 - origin + 1).all()  # from its launch week on
    assert set(ex.horizon[launched]) == set(range(6, F.HORIZON + 1))
    history = [F.NUMERIC.index(f"week_minus_{k}") for k in range(1, F.HISTORY + 1)]
    assert (ex.numeric[launched][:, history] == 0).all()
    # Its scale: the location's weekly units (1 in this panel) over its active series at the origin:
    # FR has P3, DE has P1 and P4, IT has P2 (P5 has not sold yet): not the floor of an empty history.
    where = panel.series["location"].to_numpy()[ex.series[launched]]
    assert ex.scale[launched].tolist() == pytest.approx([{"FR": 1.0, "DE": 0.5, "IT": 1.0}[w] for w in where])
    assert not set(ex.series[launched]) & set(F.active(panel, origin))
    # The leak test's rule holds for launches too: nothing from the origin on moves their features.
    dirty = F.forecast_rows(panel.poisoned(origin, rng), origin, vocabulary)
    assert np.array_equal(ex.series, dirty.series) and np.array_equal(ex.numeric, dirty.numeric) and np.array_equal(ex.scale, dirty.scale)
    # Training rows learn launches: a launch row's target is at or after its launch week, before the cut.
    train = F.training_rows(panel, 60, vocabulary, origins=30, first_origin=13, seed=0)
    new = panel.series["launch_column"].to_numpy()[train.series] >= train.origin
    assert new.any()
    assert (train.origin[new] + train.horizon[new] - 1 >= panel.series["launch_column"].to_numpy()[train.series[new]]).all()
    assert (train.origin + train.horizon - 1 < 60).all()


def test_the_network_is_the_median_of_its_members_and_exports_as_it_predicts(tmp_path):
    """Three networks from three seeds: the model's quantiles are, per cell and quantile, the median
    of the members' (ordered P10 <= P50 <= P90); the exported SavedModel gives the same numbers."""
    from atelier.models.forecast import network

    rng = np.random.default_rng(2)
    units = rng.poisson(3.0, (30, 70)).astype(float)
    panel = _panel(units, locations=("FR", "DE", "IT"))
    vocabulary = F.Vocabulary.of(panel)
    train, ex = F.training_rows(panel, 60, vocabulary, origins=20, seed=0), F.forecast_rows(panel, 60, vocabulary)
    model, history = network.fit(train, vocabulary.sizes(), epochs=2, validation=ex, members=3)
    assert len(model.members) == 3 and len(history["validation_loss"]) == 2
    q = network.predict(model, ex)
    each = np.stack([network.predict(m, ex) for m in model.members])
    assert not np.allclose(each[0], each[1])  # different seeds, different networks
    assert np.allclose(q, np.median(each, axis=0), atol=1e-4)
    assert (q[:, 0] <= q[:, 1] + 1e-6).all() and (q[:, 1] <= q[:, 2] + 1e-6).all()
    network.save(model, tmp_path / "net")
    assert np.allclose(network.predict(network.load(tmp_path / "net"), ex), q, atol=1e-4)


@pytest.mark.slow
def test_train_forecast_and_assortment_backtest_export_and_plot(home, settings):
    """On the tiny world: every method is scored per level, quantiles are ordered, both models reach the store."""
    from atelier.models.forecast import network
    from atelier.models.forecast.backtest import METHODS, ForecastConfig
    from atelier.models.forecast.train import model_name, train_forecast
    from atelier.models.store import use_bentoml_home

    result = train_forecast(settings, "eu", ForecastConfig(epochs=2, origins=2, max_examples=5_000, training_origins=12))
    assert set(result.metrics["levels"]) == {"country", "store"}  # the generated world has stores
    for level, m in result.metrics["levels"].items():
        assert set(m["test"]) == set(METHODS) and all(np.isfinite(m["test"][meth]["wape"]) for meth in METHODS)
        assert len(m["per_horizon"]["network"]) == 12 and len(m["test_origins"]) == 2
        assert (result.run_dir / f"forecast_{level}.png").stat().st_size > 0 and (result.run_dir / f"horizon_{level}.png").stat().st_size > 0
        launches = m["launches"]  # products launched inside the horizon, scored apart
        assert launches["cells"] == sum(int(sc.launch.sum()) for sc in result.backtests[level].scored)
        if launches["cells"]:
            zero = launches["methods"]["moving average"]["wape"]  # the baselines forecast a launch zero: WAPE 1 (undefined if it sold nothing)
            assert set(launches["methods"]) == set(METHODS) and (zero == pytest.approx(1.0) if launches["units"] else np.isnan(zero))
    from rich.console import Console

    from atelier.models.forecast.train import summary

    console = Console(record=True, width=200)
    console.print(summary(result))
    shown = console.export_text()
    for level, m in result.metrics["levels"].items():
        assert (f"{level} launches" in shown) == bool(m["launches"]["cells"])
    use_bentoml_home(settings)
    import bentoml

    model = bentoml.models.get(result.tag)
    assert model.tag.name == model_name("eu") and model.info.labels == {"region": "eu", "task": "forecast", "framework": "tensorflow"}
    forecasts = pd.read_parquet(model.path_of("forecasts.parquet"))
    assert set(forecasts["level"]) == {"country", "store"}
    description = json.loads(open(model.path_of("model.json")).read())
    for level, m in result.metrics["levels"].items():  # P50 in whole units (or held at P10) where the validation origin chose it
        offset, follows, f = m["choices"]["p50_offset"], m["choices"]["p10_follows"], forecasts[forecasts["level"] == level]
        whole = f["p50"] == f["p50"].round()
        assert offset is None or (offset in network.OFFSETS and (whole if follows else whole | (f["p50"] == f["p10"])).all())
        assert (description["p50_offset"][level], description["p10_follows"][level]) == (offset, follows)
    assert ((forecasts["p10"] <= forecasts["p50"]) & (forecasts["p50"] <= forecasts["p90"]) & (forecasts["p10"] >= 0)).all()
    assert forecasts.groupby(["level", "location", "product_id"]).size().eq(12).all()
    assert description["task"] == "forecast" and description["numeric_features"] == list(F.NUMERIC)
    # an eu forecast names only eu countries and eu stores
    from atelier.protect.parquet import read_dataset
    from atelier.regions import region_of_country

    countries = forecasts.loc[forecasts["level"] == "country", "location"].unique()
    assert countries.size and all(region_of_country(c) == "eu" for c in countries)
    stores = read_dataset(settings.paths.catalog("stores"), None).to_pandas().set_index("store_id")["country"]
    assert all(region_of_country(stores[s]) == "eu" for s in forecasts.loc[forecasts["level"] == "store", "location"].unique())

    # the assortment, on the same forecast
    from atelier.models.assortment.evaluate import METHODS as LISTS
    from atelier.models.assortment.train import train_assortment

    assortment = train_assortment(settings, result, n=20, k=3)
    for level, m in assortment.metrics["levels"].items():
        assert set(m["all"]) == set(LISTS) and all(0 <= m["all"][meth]["units"] <= 1 for meth in LISTS)
    assert (assortment.run_dir / "segments.png").stat().st_size > 0 and len(assortment.metrics["segments"]) == 3
    stored = bentoml.models.get(assortment.tag)
    assert stored.info.labels["task"] == "assortment"
    lists = pd.read_parquet(stored.path_of("assortments.parquet"))
    assert set(lists["level"]) == {"country", "store"} and (lists["expected_units"] > 0).all() and (lists["expected_revenue"] >= 0).all()
    assert lists.groupby("location")["expected_units"].apply(lambda u: u.is_monotonic_decreasing).all()
    assert "client_id" not in lists.columns and all(region_of_country(c) == "eu" for c in lists["country"].dropna().unique())
    segments_file = json.loads(open(stored.path_of("segments.json")).read())
    assert len(segments_file["profiles"]) == 3 and set(segments_file["mix"]) <= set(countries) | {c for c in stores}


def test_too_few_weeks_for_the_origins_is_a_clear_error():
    from atelier.errors import AtelierError
    from atelier.models.forecast.backtest import ForecastConfig, origins

    panel = _panel(np.ones((2, 40)))  # 40 weeks: 4 origins 3 weeks apart, 12 ahead, need about 50
    with pytest.raises(AtelierError) as e:
        origins(panel, ForecastConfig())
    assert "40 complete weeks of sales are too few for 4 origins 3 weeks apart and a 12-week horizon" in str(e.value)
    assert "fewer --origins" in e.value.render()
    validation, tests = origins(panel, ForecastConfig(origins=1, horizon=8))
    assert tests == [32] and validation == 24  # fewer origins and a shorter horizon fit


def test_forecasting_before_the_weekly_sales_exist_says_what_to_run(tmp_path):
    """A data home whose features were never computed: one line naming the command, and no run folder."""
    from atelier.errors import AtelierError
    from atelier.models.forecast.train import train_forecast
    from atelier.settings import Settings

    settings = Settings(home=tmp_path)
    with pytest.raises(AtelierError) as e:
        train_forecast(settings, "eu")
    assert "no weekly sales for region eu" in str(e.value) and "atelier features compute -r eu" in e.value.render()
    assert not list(settings.paths.runs("eu").glob("forecast-*"))


def test_a_backtest_asking_more_weeks_than_the_data_has_writes_no_run(settings):
    from atelier.errors import AtelierError
    from atelier.models.forecast.backtest import ForecastConfig
    from atelier.models.forecast.train import train_forecast

    with pytest.raises(AtelierError) as e:
        train_forecast(settings, "eu", ForecastConfig(origins=40, step=3))  # the tiny world has two years, not 40 x 3 + 24 weeks
    assert "too few for 40 origins" in str(e.value)
    assert not list(settings.paths.runs("eu").glob("forecast-*"))


def test_p50_in_whole_units_by_hand_and_its_rounding_chosen_on_validation():
    """Units are counts: P50 becomes floor(P50 + offset) but never below P10, and P90 rises to it; the
    offset is the validation origin's best, none when rounding does not help or the history is not
    in whole units."""
    from atelier.models.forecast import network

    q = np.array([[0.1, 0.2, 0.9], [0.5, 1.6, 3.0], [2.0, 2.4, 2.45]])
    out = network.whole_units(q, 0.5)
    assert out.tolist() == [[0.1, 0.1, 0.9], [0.5, 2.0, 3.0], [2.0, 2.0, 2.45]]  # never below P10, which stays
    assert network.whole_units(q, 0.7)[:, 1].tolist() == [0.1, 2.0, 3.0] and network.whole_units(q, 0.7)[2, 2] == 3.0  # P90 raised to it
    assert network.whole_units(q, None) is q
    assert network.mean_units(q)[0] == pytest.approx(0.3 * 0.1 + 0.4 * 0.2 + 0.3 * 0.9)  # Swanson's rule, on the quantiles before rounding

    whole = np.array([[0.0, 1.0, 3.0]])
    sparse = np.array([0.0] * 9 + [1.0])  # intermittent demand: the median week sells nothing
    smooth = np.column_stack([np.zeros(10), np.full(10, 0.2), np.full(10, 0.9)])
    offset, follow, scores = network.choose_offset(sparse, smooth, whole)
    assert offset == 0.3 and scores["0.3"] == pytest.approx(1.0) and scores["none"] == pytest.approx(2.6)  # (|1 - 0.2| + 9 x 0.2) / 1 unit
    assert not follow and scores["0.3 P10 follows"] == scores["0.3"]  # P10 at zero: the same forecast, P10 held on the tie
    exact = np.column_stack([np.zeros(3), [0.4, 1.4, 2.4], [1.0, 2.0, 3.0]])
    assert network.choose_offset(np.array([0.4, 1.4, 2.4]), exact, whole)[0] is None  # rounding only loses here
    assert network.choose_offset(sparse, smooth, whole + 0.25) == (None, False, {"none": pytest.approx(2.6)})  # sold by weight: left alone

    hair = smooth + [0.05, 0, 0]  # P10 a hair above zero: held there, P50 pays 0.05 in each week without a sale
    assert network.whole_units(hair, 0.3)[0].tolist() == pytest.approx([0.05, 0.05, 0.9])
    assert network.whole_units(hair, 0.3, follow=True)[0].tolist() == pytest.approx([0.0, 0.0, 0.9])  # P10 follows P50 down
    offset, follow, scores = network.choose_offset(sparse, hair, whole)
    assert (offset, follow) == (0.3, True) and scores["0.3"] == pytest.approx(1.4) and scores["0.3 P10 follows"] == pytest.approx(1.0)  # (0.95 + 9 x 0.05) / 1


def test_the_band_moves_only_where_validation_finds_it_too_wide_or_too_narrow_and_p50_stays():
    """Each side of the P10-P90 band keeps the network's width while it misses 7-13% of the
    validation cells; otherwise the scale nearest 1 that brings it inside. P50 never moves."""
    from atelier.models.forecast import metrics, network

    q = np.tile([1.0, 2.0, 3.0], (100, 1))
    spread = np.linspace(1.01, 2.99, 100)  # every actual inside the band: both sides too wide
    scales, info = network.choose_band(spread, q, None)
    assert scales == (0.86, 0.86) and info["miss_below"] == 0.0 and info["miss_above"] == 0.0  # by hand: 7 of 100 below 2 - 0.86
    banded = network.banded(q, None, scales)
    assert banded[0].tolist() == pytest.approx([1.14, 2.0, 2.86]) and metrics.coverage(spread, banded) == pytest.approx(0.86)

    calibrated = np.concatenate([np.full(10, 0.5), np.full(80, 2.0), np.full(10, 3.5)])  # 10% out on each side
    assert network.choose_band(calibrated, q, None)[0] is None and network.banded(q, None, None) is q
    tail = 0.02 + 0.05 * np.arange(20)  # 20% out on each side: widened
    narrow = np.concatenate([tail, np.full(60, 2.0), 4.0 - tail])
    assert network.choose_band(narrow, q, None)[0] == (1.34, 1.34)  # by hand: 13 of 100 below 2 - 1.34 = 0.66, 14 below 0.68
    lumpy = np.concatenate([np.full(20, 0.5), np.full(60, 2.0), np.full(20, 3.5)])  # no width misses 7-13%: left as it is
    assert network.choose_band(lumpy, q, None)[0] is None
    zeros = np.concatenate([np.zeros(97), [0.5, 5.0, 5.0]])  # 97% sell nothing and P50 is zero: no width reaches 7% misses
    assert network.choose_band(zeros, np.tile([0.0, 0.2, 1.0], (100, 1)), 0.5)[0] is None  # not a band a third as wide for 1 more miss

    smooth = np.array([[0.2, 0.6, 2.0], [1.5, 2.6, 4.0]])
    p50 = network.whole_units(smooth, 0.5)[:, 1]
    for scales in [(0.0, 0.0), (0.5, 2.0), (3.0, 0.1)]:
        out = network.banded(smooth, 0.5, scales)
        assert out[:, 1].tolist() == p50.tolist()  # the point forecast, and so WAPE, unchanged
        assert (out[:, 0] >= 0).all() and (out[:, 0] <= out[:, 1]).all() and (out[:, 2] >= out[:, 1]).all()
