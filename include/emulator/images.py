"""Which SageMaker container images this machine can stand in for, and how.

The framework images (PyTorch, and Hugging Face on PyTorch) map to the local Python environment,
which carries the same toolkits the images run. Any other image cannot run here; the job or
endpoint fails with a reason that says so, as SageMaker fails on an image it cannot pull.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

# <account>.dkr.ecr.<region>.amazonaws.com/<repository>:<tag>
_ECR = re.compile(r"^(?:[0-9]{12}\.dkr\.ecr\.[a-z0-9-]+\.amazonaws\.com(?:\.cn)?/)?(?P<repo>[a-z0-9._/-]+)(?::(?P<tag>[\w.-]+))?$")

TRAINING_REPOSITORIES = {
    "pytorch-training": "sagemaker_pytorch_container.training:main",
    "huggingface-pytorch-training": "sagemaker_pytorch_container.training:main",
}
# the handler service each inference image's model server runs (include.emulator.serving): the
# PyTorch image's sagemaker-inference defaults, or the Hugging Face image's
# sagemaker-huggingface-inference-toolkit (a transformers pipeline from HF_TASK or config.json)
INFERENCE_REPOSITORIES = {"pytorch-inference": "pytorch", "huggingface-pytorch-inference": "huggingface"}


class UnsupportedImage(ValueError):
    pass


@dataclass(frozen=True)
class TrainingImage:
    uri: str
    repository: str
    training_module: str  # what the image's SAGEMAKER_TRAINING_MODULE names


def _repository(uri: str) -> str:
    match = _ECR.match(uri or "")
    if not match:
        raise UnsupportedImage(f"Image '{uri}' is not a valid container image URI.")
    return match["repo"].rsplit("/", 1)[-1]


def training_image(uri: str) -> TrainingImage:
    repository = _repository(uri)
    if repository not in TRAINING_REPOSITORIES:
        raise UnsupportedImage(
            f"Image '{uri}' cannot run on the local SageMaker: only the framework training images "
            f"({', '.join(sorted(TRAINING_REPOSITORIES))}) map to this machine's Python environment."
        )
    return TrainingImage(uri, repository, TRAINING_REPOSITORIES[repository])


def check_inference_image(uri: str) -> str:
    """Raises UnsupportedImage for an image that cannot serve here; else its handler service's name."""
    repository = _repository(uri)
    if repository not in INFERENCE_REPOSITORIES:
        raise UnsupportedImage(
            f"Image '{uri}' cannot serve on the local SageMaker: only the framework inference images "
            f"({', '.join(sorted(INFERENCE_REPOSITORIES))}) map to this machine's Python environment."
        )
    return INFERENCE_REPOSITORIES[repository]


def inference_handler_service(uri: str) -> str:
    """'huggingface' or 'pytorch': which image's handler defaults the model server runs."""
    try:
        return check_inference_image(uri)
    except UnsupportedImage:
        return "pytorch"


# processing jobs run the job's own ContainerEntrypoint; these images' Python environments are ours
# (scikit-learn processing, and the PyTorch / Hugging Face images that PyTorchProcessor and
# HuggingFaceProcessor use)
PROCESSING_REPOSITORIES = {"sagemaker-scikit-learn", "pytorch-training", "huggingface-pytorch-training"}


def check_processing_image(uri: str) -> None:
    repository = _repository(uri)
    if repository not in PROCESSING_REPOSITORIES:
        raise UnsupportedImage(
            f"Image '{uri}' cannot run a processing job on the local SageMaker: only the processing images "
            f"({', '.join(sorted(PROCESSING_REPOSITORIES))}) map to this machine's Python environment."
        )


# --- the framework versions an image names, against what this environment runs -------------------
# pytorch-training:2.5.1-cpu-py311-ubuntu22.04-sagemaker names torch 2.5.1 and Python 3.11;
# huggingface-pytorch-training:2.3.0-transformers4.48.0-gpu-py311-cu121-ubuntu20.04 adds transformers.
_TORCH_TAG = re.compile(r"^(?P<torch>\d+\.\d+(?:\.\d+)?)-")
_TRANSFORMERS_TAG = re.compile(r"-transformers(?P<transformers>\d+\.\d+(?:\.\d+)?)")
_PYTHON_TAG = re.compile(r"-py(?P<major>\d)(?P<minor>\d+)(?:-|$)")


def image_versions(uri: str) -> dict[str, str]:
    """{'torch': ..., 'transformers': ..., 'python': ...}: what the image's tag names (what it names)."""
    match = _ECR.match(uri or "")
    tag = (match["tag"] if match else None) or ""
    versions = {}
    if found := _TORCH_TAG.match(tag):
        versions["torch"] = found["torch"]
    if found := _TRANSFORMERS_TAG.search(tag):
        versions["transformers"] = found["transformers"]
    if found := _PYTHON_TAG.search(tag):
        versions["python"] = f"{found['major']}.{found['minor']}"
    return versions


def _installed(package: str) -> str | None:
    if package == "python":
        import sys

        return f"{sys.version_info.major}.{sys.version_info.minor}"
    from importlib import metadata

    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _minor(version: str) -> tuple[str, ...]:
    return tuple(version.split("+")[0].split(".")[:2])


def version_warnings(uri: str) -> list[str]:
    """A warning per framework whose version the image names but this environment does not run.

    A warning, not a failure: the job still runs, on the installed version, which is what the local
    SageMaker can offer; the line says both so a difference in results can be traced to it. Versions
    that agree to the minor release (2.5.0 and 2.5.1) pass without a word."""
    names = {"torch": "PyTorch", "transformers": "transformers", "python": "Python"}
    warnings = []
    for package, wanted in image_versions(uri).items():
        installed = _installed(package)
        if installed is None or _minor(installed) != _minor(wanted):
            warnings.append(
                f"WARNING: the image {uri.rsplit('/', 1)[-1]} names {names[package]} {wanted}, but the local "
                f"SageMaker runs {names[package]} {installed or '(not installed)'}: the job runs on that version, "
                "not the image's."
            )
    return warnings
