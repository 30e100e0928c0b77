"""Handing back to the system the memory that allocators keep once a phase of work is over.

A training runs phases one after another in one process: reads through Arrow and DuckDB, fits in
TensorFlow, scoring in NumPy. Each allocator keeps what it freed for its own next allocations,
so one phase's leftovers sit under the next phase's peak. Giving them back between phases costs
milliseconds.
"""

from __future__ import annotations

import ctypes
import functools
import gc

from atelier.protect.parquet import release_arrow_memory


@functools.cache
def _malloc_trim():
    """glibc's `malloc_trim`, or None where the C library has none (musl, macOS)."""
    try:
        return getattr(ctypes.CDLL(None), "malloc_trim", None)
    except OSError:
        return None


def give_back() -> None:
    """Free what sits in reference cycles (Keras models and data handlers), then return what
    Arrow's pool (`release_arrow_memory`) and glibc's heap keep to the system.

    glibc serves allocations under its mmap threshold from its heap, and that threshold rises to
    32 MiB after the first large free: a fit's batches and a scoring block's temporaries come from
    the heap, and stay resident once freed. Arrow's reads allocate from their own pool, so a
    part's read after a fit added its whole size on top of what the fit had left."""
    gc.collect()
    release_arrow_memory()
    trim = _malloc_trim()
    if trim is not None:
        trim(0)
