"""What a training host runs: the framework image's ``train`` or the request's ContainerEntrypoint.

A framework image (pytorch-training, ...) starts AWS's sagemaker-training toolkit, which reads
/opt/ml through SAGEMAKER_BASE_DIR and so needs nothing rewritten. A ContainerEntrypoint (what the
SageMaker Python SDK v3's ModelTrainer sends: bash running its sm_train.sh driver) names container
paths literally; with no container to mount /opt/ml in, the local SageMaker maps them to the host
folder in the entrypoint, its arguments and the text files of the SDK's driver channel.
"""
from __future__ import annotations

from pathlib import Path

from .hosts import HostFolder

TOOLKIT_MODULE = ["-m", "sagemaker_training.cli.train"]  # what the framework images run as `train`
SDK_DRIVER_CHANNELS = ("sm_drivers",)  # sagemaker.train's drivers: scripts and JSON naming /opt/ml paths


def uses_container_entrypoint(request: dict) -> bool:
    return bool(request["AlgorithmSpecification"].get("ContainerEntrypoint"))


def host_command(request: dict, host: HostFolder, python: str) -> list[str]:
    spec = request["AlgorithmSpecification"]
    if not uses_container_entrypoint(request):
        return [python, *TOOLKIT_MODULE]
    command = [*spec["ContainerEntrypoint"], *(spec.get("ContainerArguments") or [])]
    return [host.rewrite_container_paths(part) for part in command]


def localize_driver_channels(request: dict, host: HostFolder) -> None:
    """Map /opt/ml to the host folder inside the SDK driver channel's text files (entrypoint jobs only)."""
    if not uses_container_entrypoint(request):
        return
    for channel in request.get("InputDataConfig") or []:
        if channel["ChannelName"] in SDK_DRIVER_CHANNELS:
            for path in sorted(host.channel_dir(channel["ChannelName"]).rglob("*")):
                if path.is_file():
                    _rewrite_text_file(path, host)


def _rewrite_text_file(path: Path, host: HostFolder) -> None:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        return  # not text: nothing that names a path to map
    rewritten = host.rewrite_container_paths(text)
    if rewritten != text:
        path.write_text(rewritten, encoding="utf-8")
