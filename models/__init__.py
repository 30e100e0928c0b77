"""The training and export stage: TFRS two-tower models, evaluation, indexes (importable as atelier.models)."""
