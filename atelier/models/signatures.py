"""Calling an exported SavedModel signature on a request's tensors, without the keyword binding.

Why: a signature called with keywords (`signature(**tensors)`) binds, casts and shape-checks each
input against its spec in Python before TensorFlow runs. For the query tower's 21 named inputs
that is about 0.3 ms per call, as long as running the tower itself, and /recommend calls two
signatures per batch. The structured call ends in `ConcreteFunction._call_flat(tensors,
captured_inputs)` with the inputs in their flattened order (keywords sorted by name); calling it
directly skips only the binding. The tensors come from the model's own feature specs, so what the
binding checks is already true. If a TensorFlow release drops `_call_flat`, the keyword call is
used instead (same answers, slower); `tests/models/test_signatures.py` compares the two.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf


class Signature:
    """`Signature(saved.signatures["serving_default"])(inputs)` -> the signature's output dict."""

    def __init__(self, signature, fast: bool = True):
        self.signature = signature
        specs = signature.structured_input_signature[1]
        self.names = sorted(specs)  # tf.nest flattens a dict by sorted key
        self.dtypes = [specs[n].dtype for n in self.names]
        flat = getattr(signature, "_call_flat", None)
        self._flat = flat if fast and callable(flat) and not signature.structured_input_signature[0] else None

    @property
    def fast(self) -> bool:
        return self._flat is not None

    def __call__(self, inputs: dict[str, np.ndarray]) -> dict[str, tf.Tensor]:
        missing = [n for n in self.names if n not in inputs]
        if missing:
            raise KeyError(f"signature inputs missing: {missing}")
        tensors = [tf.constant(inputs[n], dtype=d) for n, d in zip(self.names, self.dtypes)]
        if self._flat is None:
            return self.signature(**dict(zip(self.names, tensors)))
        return self._flat(tensors, self.signature.captured_inputs)
