"""Thin BentoML services, one per region from the same code."""
