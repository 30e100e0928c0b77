"""Quiet by default: library logs and warnings go to a file, the terminal shows what a person reads.

TensorFlow, absl, Feast and BentoML log (and warn) a great deal that a user cannot act on. The
CLI sends all of it to `<home>/logs/atelier.log`; `-v` or `ATELIER_DEBUG=1` brings it back to the
terminal. Feast prints its materialization report with `print`: `to_log` redirects that too.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path

_FILE: Path | None = None


def verbose() -> bool:
    return bool(os.environ.get("ATELIER_DEBUG")) or os.environ.get("ATELIER_VERBOSE") == "1"


def setup(home: Path, loud: bool = False) -> Path | None:
    """Route library logs and warnings to `<home>/logs/atelier.log` (or the terminal when `loud`)."""
    global _FILE
    if loud or verbose():
        os.environ["ATELIER_VERBOSE"] = "1"
        logging.basicConfig(level=logging.INFO, stream=sys.stderr, force=True)
        return None
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"  # TensorFlow's C++ side: errors only, and only if not yet loaded
    path = Path(home) / "logs" / "atelier.log"
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=logging.INFO, handlers=[handler], force=True)
    logging.captureWarnings(True)
    warnings.simplefilter("default")  # every warning once, into the log
    warnings.simplefilter("ignore", ResourceWarning)  # reported at exit, after logging has shut down
    for name in ("tensorflow", "absl", "feast", "bentoml", "h5py", "matplotlib"):
        lg = logging.getLogger(name)
        lg.handlers.clear()
        lg.propagate = True
    with contextlib.suppress(ImportError):
        import absl.logging

        absl.logging.use_python_logging(quiet=True)
    _FILE = path
    return path


def native_stderr_to_log(home: Path) -> None:
    """Send what native code writes to file descriptor 2 (TensorFlow's and absl's C++ logs, which
    no Python setting fully silences) to the log file; Python's own stderr, where Rich draws
    progress and errors, keeps the terminal. For the command line only: it changes the process."""
    path = Path(home) / "logs" / "atelier.log"
    path.parent.mkdir(parents=True, exist_ok=True)
    sys.stderr.flush()
    terminal = os.dup(2)
    log = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.dup2(log, 2)
    os.close(log)
    sys.stderr = os.fdopen(terminal, "w", buffering=1, encoding=sys.stderr.encoding or "utf-8", errors="backslashreplace")


@contextlib.contextmanager
def to_log() -> Iterator[None]:
    """Send what libraries print to stdout into the log file (nothing changes when verbose)."""
    if _FILE is None:
        yield
        return
    with open(_FILE, "a") as f, contextlib.redirect_stdout(f):
        yield
