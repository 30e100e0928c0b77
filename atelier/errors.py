"""One error type for problems a user can fix: what was wrong, where, and what to do next.

The CLI prints these as a single line (plus the fix); anything else is a bug and keeps its
traceback. Set ATELIER_DEBUG=1 to see the traceback of an AtelierError too.
"""

from __future__ import annotations


class AtelierError(Exception):
    def __init__(self, what: str, *, where: str | None = None, fix: str | None = None, details: list[str] | None = None):
        self.what = what
        self.where = where
        self.fix = fix
        self.details = list(details or [])
        super().__init__(self.render())

    def render(self) -> str:
        head = f"{self.where}: {self.what}" if self.where else self.what
        lines = [head]
        lines += [f"  - {d}" for d in self.details]
        if self.fix:
            lines.append(f"  fix: {self.fix}")
        return "\n".join(lines)
