"""The training and export stage: one folder per model kind over a small shared core.

Every kind goes dataset -> fit -> evaluate -> export, and ends in the BentoML model store with a
`model.json` the regional service reads:

* `recommend/`: two-tower retrieval (TFRS), the ranking stage, and the recommendation baselines;
* `forecast/`: weekly demand per product and country (or store), a global quantile model beside
  seasonal-naive, moving-average and LightGBM baselines, judged on a rolling-origin backtest;
* the core: `store.py` (the BentoML model store, written once for every kind) and `plots.py`.
"""
