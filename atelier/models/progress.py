"""Named progress, shared by every model kind: the CLI shows a bar per step; tests pass nothing."""

from __future__ import annotations

from collections.abc import Callable


class Steps:
    def __init__(self, report: Callable[[str, int | None], Callable[[int], None]] | None = None):
        self.report = report

    def step(self, name: str, total: int | None = None) -> Callable[[int], None]:
        return self.report(name, total) if self.report else (lambda n=1: None)
