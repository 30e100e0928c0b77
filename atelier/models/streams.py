"""Datasets that TensorFlow streams from Python without keeping what they stream.

`tf.data.Dataset.from_generator` registers its function with TensorFlow, which keeps it, and
everything it refers to, until the process ends: a dataset made once for one fit held that fit's
data under every later step. On eu of the 52M-event world that was two training sets' examples
(28 bytes an example: some 0.5 GiB for 19M) and every window's padded ranking lists (up to
0.38 GiB a window) under the refit's build. The function here reaches the data through a weak
reference, so it lives exactly as long as its owner does: the `RegionData` that holds the examples,
the fit that holds its lists.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterator
from typing import TypeVar

import tensorflow as tf

T = TypeVar("T")


def weakly_streamed(owner: T, produce: Callable[[T], Iterator], signature) -> tf.data.Dataset:
    """`from_generator` over `produce(owner)`, holding `owner` only weakly.

    The caller keeps `owner` alive while the dataset is read; `produce` must not refer to it
    itself (pass what it needs through its argument). Reading the dataset after `owner` is gone
    is a bug in the caller, and says so."""
    ref = weakref.ref(owner)
    name = type(owner).__name__

    def generate():
        live = ref()
        if live is None:
            raise RuntimeError(f"the {name} this dataset streams was released before it was read")
        yield from produce(live)

    return tf.data.Dataset.from_generator(generate, output_signature=signature)
