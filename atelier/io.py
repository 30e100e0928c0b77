"""Atomic writes: a stage either leaves its new output complete or leaves the old one untouched.

Files are written next to their destination under a temporary name and renamed into place;
directories are built in a sibling staging directory and swapped in with two renames, so a crash
at any point leaves either the previous version or the new one, never a mix.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path


def write_bytes_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_json_atomic(path: Path, obj) -> None:
    write_bytes_atomic(path, (json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n").encode())


@contextlib.contextmanager
def staged_dir(target: Path) -> Iterator[Path]:
    """Yield an empty staging directory; on success it replaces `target` whole.

    If the body raises, the staging directory is removed and `target` is as it was.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    stage = target.with_name(f".{target.name}.staging-{uuid.uuid4().hex[:8]}")
    stage.mkdir()
    try:
        yield stage
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    swap_in(stage, target)


def swap_in(stage: Path, target: Path) -> None:
    old = target.with_name(f".{target.name}.old-{uuid.uuid4().hex[:8]}")
    if target.exists():
        os.replace(target, old)
    os.replace(stage, target)
    shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def staged_dirs(targets: list[Path]) -> Iterator[list[Path]]:
    """Like `staged_dir` for several directories that must change together (all or none).

    All staging directories are complete before the first swap, so a failure while producing
    them changes nothing. The swaps themselves are renames.
    """
    stages: list[Path] = []
    try:
        for t in targets:
            t.parent.mkdir(parents=True, exist_ok=True)
            s = t.with_name(f".{t.name}.staging-{uuid.uuid4().hex[:8]}")
            s.mkdir()
            stages.append(s)
        yield stages
    except BaseException:
        for s in stages:
            shutil.rmtree(s, ignore_errors=True)
        raise
    for s, t in zip(stages, targets):
        swap_in(s, t)
