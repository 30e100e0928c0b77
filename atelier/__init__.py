"""atelier: one feature store and model-serving base for every maison of the group.

Data flows one way: data (`atelier.data`) -> features (`feature_repo/`, `atelier.features`)
-> training and export (`atelier/models/`, a folder per model kind) -> serving (`atelier/bentos/`).
Each region runs the same code on its own clients only.
"""

import os
import sys

# TensorFlow Recommenders is written for Keras 2. The switch must be set before TensorFlow is first
# imported anywhere in the process, so it lives here, at the top of the package.
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# On a machine without an NVIDIA device, stop TensorFlow's CUDA build from probing for one (and
# logging the failure); on a GPU machine this does nothing and the tower runs on the GPU.
if not os.path.exists("/dev/nvidiactl"):
    os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

__version__ = "0.1.0"


def _skip_feast_typechecks() -> None:
    """Feast decorates its classes with typeguard's `@typechecked`, which re-parses and recompiles
    their source when `feast` is imported: 6 to 7 of the 8 seconds that `import feast` took here,
    paid by every CLI command, every bento worker and every test process. The checks only verify
    argument types at run time (Python's `-O` turns them off the same way); atelier's own inputs
    are validated before they reach Feast. Set ATELIER_FEAST_TYPECHECKS=1 to keep them."""
    if os.environ.get("ATELIER_FEAST_TYPECHECKS") == "1" or "feast" in sys.modules:
        return
    try:
        import typeguard
    except ImportError:
        return

    def typechecked(target=None, **_options):
        return (lambda t: t) if target is None else target

    typeguard.typechecked = typechecked


_skip_feast_typechecks()
