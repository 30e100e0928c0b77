"""The BentoML model store, shared by every model kind: where it is, and how a model gets into it.

Every kind (recommend, forecast, ...) ends the same way: a work folder of artifacts and a
`model.json`, copied into a new BentoML model with labels (`region`, `task`) and metadata the
regional service reads. This module is that last step, written once: the store follows the data
home, and a model arrives whole or not at all (a crash mid-export leaves the store as it was).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import atelier
from atelier import crash
from atelier.io import leftovers, write_bytes_atomic

# BentoML's providers that remember the home: its store folders and the stores opened on them.
_HOME_PROVIDERS = ("bentoml_home", "result_store_file", "tmp_bento_store_dir", "bento_store_dir", "model_store_dir",
                   "env_store_dir", "bento_store", "tmp_bento_store", "model_store")


def use_bentoml_home(settings) -> None:
    """Point BentoML's model and bento stores at the data home's.

    BentoML reads BENTOML_HOME once, the first time a store is used, and keeps it for the life of
    the process (simple_di singletons). A process that works on two data homes (the tests, a
    benchmark) would otherwise export a model into the first home and look it up there, while a
    `bentoml` subprocess given the second home cannot find it. So when the home changes, those
    cached providers are cleared: a private API, used here alone and pinned by a test
    (tests/models/test_bentoml_home.py).
    """
    home = str(settings.paths.bentoml_home)
    os.environ["BENTOML_HOME"] = home
    containers = sys.modules.get("bentoml._internal.configuration.containers")
    if containers is None:
        return  # not imported yet: BentoML will read the variable
    import simple_di

    container = containers.BentoMLContainer
    if container.bentoml_home.get() == home:
        return
    for name in _HOME_PROVIDERS:
        getattr(container, name)._cache = simple_di.sentinel


def code_version() -> str:
    try:
        sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=Path(__file__).parent, capture_output=True, text=True, timeout=5).stdout.strip()
    except OSError:
        sha = ""
    return f"{atelier.__version__}+{sha}" if sha else atelier.__version__



def save_model(workdir: Path, name: str, *, labels: dict, metadata: dict, skip: tuple[str, ...] = ()) -> str:
    """Copy a work folder's artifacts (less `skip`) into a new BentoML model; returns its tag.

    The model is created in a staging store beside the real one and arrives by one rename
    (`publish`), so a kill at any point leaves the store with the old models or the new one whole.
    """
    import bentoml
    from bentoml._internal.models import ModelStore

    store = _store_path()
    for left in leftovers(store.parent, ".models-staging-"):  # a crashed export's, never part of the store
        shutil.rmtree(left, ignore_errors=True)
    staging = store.parent / f".models-staging-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    staging.mkdir(parents=True)
    try:
        with contextlib.ExitStack() as stack:
            # BentoML builds the model in a `tempfile.mkdtemp` folder, copies it into the store and
            # leaves it there: a plain copy of the model (its query tower holds the region's client
            # ids) in the system's temporary folder, outside the home, after every export. Made
            # inside the staging folder instead, it goes with it: on success (`publish`), on
            # failure (below), or, after a kill, at the next export (`leftovers`).
            with _temporary_files_in(staging):
                model = stack.enter_context(bentoml.models.create(name, labels=labels, metadata=metadata, _model_store=ModelStore(str(staging))))
            for item in workdir.iterdir():
                if item.name in skip:
                    continue
                dest = Path(model.path) / item.name
                shutil.copytree(item, dest) if item.is_dir() else shutil.copy2(item, dest)
                crash.point("export.copy")
        publish(staging, store, model.tag.name, model.tag.version)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return str(model.tag)


@contextlib.contextmanager
def _temporary_files_in(folder: Path) -> Iterator[None]:
    """`tempfile`'s default folder set to `folder` for the duration (its documented `tempdir`)."""
    before = tempfile.tempdir
    tempfile.tempdir = str(folder)
    try:
        yield
    finally:
        tempfile.tempdir = before


def _store_path() -> Path:
    from bentoml._internal.configuration.containers import BentoMLContainer

    return Path(BentoMLContainer.model_store_dir.get())


def publish(staging: Path, store: Path, name: str, version: str) -> None:
    """Move a complete model from a staging store into the real one, then point `latest` at it.

    BentoML's own save copies the files into the store in place and rewrites `latest` by
    truncating it: a kill half-way leaves a model without its model.yaml (which breaks
    `bentoml models list`) or an empty `latest` (which breaks every `:latest`). Here the version
    folder arrives with one rename, and `latest` is replaced atomically after it, so a crash
    leaves the store as it was, or with the new model complete (and `latest` on the old one, which
    is still a whole model).
    """
    target = store / name / version
    target.parent.mkdir(parents=True, exist_ok=True)
    os.replace(staging / name / version, target)
    crash.point("export.published")
    write_bytes_atomic(store / name / "latest", version.encode())
    shutil.rmtree(staging, ignore_errors=True)
