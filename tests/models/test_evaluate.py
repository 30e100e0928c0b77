"""The one ranking every recommender is measured with (`top_k`), whatever block of rows it works on."""

from __future__ import annotations

import numpy as np

from atelier.models.recommend import evaluate


def test_top_k_in_blocks_ranks_each_row_best_first_without_its_exclusions(monkeypatch):
    rng = np.random.default_rng(3)
    scores = rng.standard_normal((11, 40)).astype(np.float32)
    exclude = [rng.choice(40, rng.integers(0, 6), replace=False) for _ in range(11)]
    expected = []
    for row, items in zip(scores, exclude):
        row = row.copy()
        row[items] = -np.inf
        expected.append(np.argsort(-row, kind="stable")[:5])
    monkeypatch.setattr(evaluate, "BLOCK_ROWS", 4)  # blocks of 4, 4 and 3 rows
    ranked = evaluate.top_k(scores, 5, exclude)
    assert ranked.shape == (11, 5) and np.array_equal(ranked, np.array(expected))
    assert all(not np.isin(items, r).any() for items, r in zip(exclude, ranked))
    assert np.array_equal(evaluate.top_k(scores, 100), np.argsort(-scores, axis=1, kind="stable"))  # k beyond the catalog: all of it
    assert evaluate.top_k(scores[:0], 5).shape == (0, 5)
