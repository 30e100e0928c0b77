"""The forecast on a slice of real data: Online Retail's 300 best-selling products, every line of theirs for the year.

The shared data set lives beside the repository (../shared/datasets/online_retail/); without it
these tests are skipped, with the reason.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from atelier.data.transactions import import_transactions
from atelier.features.pipeline import compute_features
from atelier.models.forecast import backtest
from atelier.models.forecast import features as F
from atelier.context import RegionContext
from atelier.models.forecast.panel import load

ROOT = Path(__file__).resolve().parents[2]
MAPPING = ROOT / "examples" / "online_retail" / "mapping.yaml"
SOURCE = ROOT.parent / "shared" / "datasets" / "online_retail" / "online_retail.parquet"
pytestmark = pytest.mark.slow


@pytest.fixture
def real_panel(settings, tmp_path):
    if not SOURCE.exists():
        pytest.skip(f"the shared data set is not at {SOURCE}")
    table = pq.read_table(SOURCE)
    sold = table.filter(pc.greater(table.column("quantity"), 0)).group_by("stock_code").aggregate([("quantity", "sum")])
    top = sold.sort_by([("quantity_sum", "descending")]).column("stock_code").slice(0, 300)
    path = tmp_path / "slice.parquet"
    pq.write_table(table.filter(pc.is_in(table.column("stock_code"), value_set=top)), path)
    import_transactions(settings, path, MAPPING)
    compute_features(settings, "eu")
    return load(RegionContext.of(settings, "eu"), "country")


def test_real_series_read_nothing_after_their_origin_and_beat_seasonal_naive(real_panel):
    panel = real_panel
    assert len(panel.weeks) == 53 and str(panel.week_starts[-1].date()) == "2011-11-28"  # the partial week of December 5th is dropped
    vocabulary = F.Vocabulary.of(panel)
    origin = 41
    clean = F.forecast_rows(panel, origin, vocabulary)
    dirty = F.forecast_rows(panel.poisoned(origin, np.random.default_rng(0)), origin, vocabulary)
    assert np.array_equal(clean.numeric, dirty.numeric) and not np.array_equal(clean.target, dirty.target)

    result = backtest.run(panel, backtest.ForecastConfig(epochs=4, origins=1, max_examples=30_000, training_origins=24))
    test = result.test()
    # Both global models beat a year-ago (or last-week) copy on the weeks they never saw.
    assert test["network"]["wape"] < test["seasonal naive"]["wape"] and test["lightgbm"]["wape"] < test["seasonal naive"]["wape"], test
    assert 0.5 <= test["network"]["coverage"] <= 0.97, test
