"""Serving logic that is not about HTTP: features -> query tower -> top-k -> filters."""
