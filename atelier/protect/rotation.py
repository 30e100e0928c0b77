"""Key rotation: a new master key version, every encrypted dataset of the region re-wrapped.

Order matters for safety: the new version becomes primary first, then each part's key material
is re-wrapped (pyarrow's `rotate_master_keys`, which swaps the small key-material file), and
only when every dataset is done are older versions retired. A crash anywhere leaves all data
readable: parts not yet re-wrapped still unwrap with the old version, which is still enabled.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from atelier import crash
from atelier.protect.keys import key_store
from atelier.protect.parquet import MARKER, dataset_info, rotate_dataset
from atelier.settings import Settings


def region_datasets(settings: Settings, region: str) -> list[Path]:
    """Every encrypted dataset that belongs to the region."""
    roots = [settings.paths.lake, settings.paths.features(region), settings.paths.stream(region), settings.paths.runs(region)]
    found = []
    for root in roots:
        if root.exists():
            for marker in root.rglob(MARKER):
                info = dataset_info(marker.parent)
                if info["encrypted"] and info["region"] == region and not any(p.name.startswith(".") for p in marker.parents):
                    found.append(marker.parent)
    return sorted(found)


def rotate_region(settings: Settings, region: str, progress: Callable[[int], None] = lambda n: None) -> dict:
    keys = key_store(settings, region)
    version = keys.rotate()
    files = 0
    for dataset in region_datasets(settings, region):
        files += rotate_dataset(dataset, keys)
        progress(1)
        crash.point("rotate.dataset")
    retired = keys.retire_old_versions()
    return {"version": version, "files": files, "retired": retired}
