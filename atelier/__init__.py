"""atelier: one feature store and model-serving base for every maison of the group.

Data flows one way: data (`atelier.data`) -> features (`feature_repo/`, `atelier.features`)
-> training and export (`atelier/models/`, a folder per model kind) -> serving (`atelier/bentos/`).
Each region runs the same code on its own clients only.
"""

import os

# TensorFlow Recommenders is written for Keras 2. The switch must be set before TensorFlow is first
# imported anywhere in the process, so it lives here, at the top of the package.
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# On a machine without an NVIDIA device, stop TensorFlow's CUDA build from probing for one (and
# logging the failure); on a GPU machine this does nothing and the tower runs on the GPU.
if not os.path.exists("/dev/nvidiactl"):
    os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

__version__ = "0.1.0"
