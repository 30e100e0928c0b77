"""Atomic writes: a stage either leaves its new output complete or leaves the old one untouched.

Files are written next to their destination under a temporary name, fsynced and renamed into
place. Directories are built in a sibling staging directory and swapped in by one atomic
exchange of the two names (Linux renameat2 RENAME_EXCHANGE), so a crash at any point, SIGKILL
included, leaves either the previous version or the new one, never a mix and never neither.
Where the file system cannot exchange, two renames do it, and the next writer puts back a
previous version that a crash between them left aside. What a crash leaves behind (a staging
directory, the old tree of a finished swap) is hidden, never read, and removed by the next write.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

from atelier import crash

_AT_FDCWD, _RENAME_EXCHANGE = -100, 2
_libc = ctypes.CDLL(None, use_errno=True)
_renameat2 = getattr(_libc, "renameat2", None)


def write_bytes_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        crash.point(f"replace:{path.name}")  # the new bytes are on disk, not yet in place
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def json_text(obj) -> str:
    """atelier's JSON files: indented, keys sorted, a final newline (diffs read well)."""
    return json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n"


def write_json_atomic(path: Path, obj) -> None:
    write_bytes_atomic(path, json_text(obj).encode())


def _exchange(a: Path, b: Path) -> bool:
    """Swap two existing paths in one atomic step; False where the system cannot."""
    if _renameat2 is None:
        return False
    if _renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EXDEV):
        return False
    raise OSError(code, os.strerror(code), str(a))


def _stage_name(target: Path, kind: str) -> Path:
    # the pid tells a crashed writer's leftovers (process gone) from a live writer's
    return target.with_name(f".{target.name}.{kind}-{os.getpid()}-{uuid.uuid4().hex[:8]}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def leftovers(parent: Path, prefix: str, *, keep_own: bool = False) -> list[Path]:
    """Entries of `parent` named `<prefix><pid>-…` whose writer (that pid) is gone: what a crash
    left. This process's own entries count as leftovers unless `keep_own` (they are in use)."""
    found = []
    if parent.is_dir():
        for p in parent.iterdir():
            if p.name.startswith(prefix):
                pid = p.name[len(prefix):].split("-")[0]
                own = pid.isdigit() and int(pid) == os.getpid()
                if own and keep_own:
                    continue
                if not (pid.isdigit() and not own and _alive(int(pid))):
                    found.append(p)
    return found


def recover(target: Path) -> None:
    """Undo what a crash left around `target`: put back a version set aside by an interrupted
    two-rename swap, and remove the leftovers of writers that are gone."""
    olds = sorted(leftovers(target.parent, f".{target.name}.old-"), key=lambda p: p.stat().st_mtime)
    if not target.exists() and olds:
        os.replace(olds.pop(), target)
    for p in olds + leftovers(target.parent, f".{target.name}.staging-"):
        shutil.rmtree(p, ignore_errors=True)


@contextlib.contextmanager
def staged_dir(target: Path) -> Iterator[Path]:
    """Yield an empty staging directory; on success it replaces `target` whole.

    If the body raises, the staging directory is removed and `target` is as it was.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    recover(target)
    stage = _stage_name(target, "staging")
    stage.mkdir()
    try:
        yield stage
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    swap_in(stage, target)


def swap_in(stage: Path, target: Path) -> None:
    """Put the complete directory `stage` in the place of `target` (which may not exist yet)."""
    crash.point(f"swap.before:{target.name}")  # the stage is complete, the target still the old one
    if not target.exists():
        os.replace(stage, target)
        return
    if _exchange(stage, target):
        crash.point(f"swap.after:{target.name}")  # the new tree is in place; the old one waits under the stage's name
        shutil.rmtree(stage, ignore_errors=True)
        return
    old = _stage_name(target, "old")
    os.replace(target, old)
    crash.point(f"swap.between:{target.name}")  # only without an atomic exchange: `recover` puts `old` back
    os.replace(stage, target)
    shutil.rmtree(old, ignore_errors=True)
