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
INFERENCE_REPOSITORIES = {"pytorch-inference", "huggingface-pytorch-inference"}


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


def check_inference_image(uri: str) -> None:
    repository = _repository(uri)
    if repository not in INFERENCE_REPOSITORIES:
        raise UnsupportedImage(
            f"Image '{uri}' cannot serve on the local SageMaker: only the framework inference images "
            f"({', '.join(sorted(INFERENCE_REPOSITORIES))}) map to this machine's Python environment."
        )


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
