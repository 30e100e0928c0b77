"""Named crash points, for the crash-safety tests: `ATELIER_CRASH_AT=<point>` kills the process there.

A stage that writes state (import, compute, materialize, export, key rotation) calls
`crash.point("name")` at the moments a power cut would hurt most: half-way through its output,
just before and just after the swap that publishes it. The tests run the real command line with
the variable set, see it die by SIGKILL (no cleanup, no `finally`, exactly as a kill -9 or an
out-of-memory kill), then check that the previous state or the new one is there, never a mix.
Unset (always, outside the tests) a point costs one dictionary lookup.
"""

from __future__ import annotations

import os
import signal

VARIABLE = "ATELIER_CRASH_AT"


def point(name: str) -> None:
    """Die here, by SIGKILL, if this is the point the environment names (`name` or `name#N` for the Nth pass)."""
    wanted = os.environ.get(VARIABLE)
    if not wanted:
        return
    target, _, nth = wanted.partition("#")
    if target != name:
        return
    if nth:
        passes = _PASSES[name] = _PASSES.get(name, 0) + 1
        if passes != int(nth):
            return
    os.kill(os.getpid(), signal.SIGKILL)


_PASSES: dict[str, int] = {}
