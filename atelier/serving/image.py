"""The runtime image of a regional bento: CPU, or CUDA with TensorFlow's CUDA build (--gpu).

`atelier build` writes a fully pinned requirements file (the platform's tested versions) and the
atelier wheel into the build context and names them through environment variables; serving
from source needs no image, so this returns None there.
"""

from __future__ import annotations

import os

import bentoml

GPU_BASE_IMAGE = "nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04"


def bento_image(gpu: bool) -> bentoml.images.Image | None:
    requirements = os.environ.get("ATELIER_BENTO_REQUIREMENTS")
    if not requirements:
        return None
    if gpu:
        image = bentoml.images.Image(base_image=GPU_BASE_IMAGE, distro="debian", python_version="3.11", lock_python_packages=False)
    else:
        image = bentoml.images.Image(python_version="3.11", lock_python_packages=False)
    return image.build_include("wheels").requirements_file(requirements)


def resources(gpu: bool) -> dict:
    return {"gpu": 1, "gpu_type": "nvidia-l4"} if gpu else {"cpu": "2"}


def service_envs(region: str, model_tag: str, gpu: bool, *, forecast_tag: str | None = None, assortment_tag: str | None = None) -> list[dict]:
    """Baked into the image: which region and model. Connection settings and secrets
    (ATELIER_REDIS__<REGION>__*, ATELIER_API_TOKENS, ATELIER_HOME or the registry) are given at
    deploy time, never stored in a bento."""
    return [
        {"name": "ATELIER_REGION", "value": region},
        {"name": "ATELIER_MODEL_TAG", "value": model_tag},
        {"name": "ATELIER_BENTO_GPU", "value": "1" if gpu else "0"},
    ] + [{"name": name, "value": tag} for name, tag in (("ATELIER_FORECAST_TAG", forecast_tag), ("ATELIER_ASSORTMENT_TAG", assortment_tag)) if tag]
