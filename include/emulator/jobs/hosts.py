"""One folder per training host, standing in for the container's /opt/ml (SAGEMAKER_BASE_DIR).

    <state_dir>/training-jobs/<job>/algo-N/
        input/config/{hyperparameters,resourceconfig,inputdataconfig}.json
        input/data/<channel>/      model/      output/data/      code/      checkpoints/

A path the job names inside the container (CheckpointConfig.LocalPath, a ContainerEntrypoint's
arguments) is mapped into the host's folder with ``HostFolder.local``: /opt/ml/x -> <folder>/x.
"""
from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

INSTANCE_GROUP = "homogeneousCluster"
CONTAINER_ROOT = "/opt/ml"
DEFAULT_CHECKPOINT_PATH = "/opt/ml/checkpoints"
_CONTAINER_ROOT_IN_TEXT = re.compile(r"/opt/ml(?![\w.-])")  # /opt/ml and /opt/ml/..., not /opt/mlflow


def is_container_path(path: str) -> bool:
    """Whether ``path`` lies under the container's /opt/ml (the only tree a host folder stands in for)."""
    normalized = PurePosixPath(path)
    return normalized.is_absolute() and ".." not in normalized.parts and (
        normalized == PurePosixPath(CONTAINER_ROOT) or PurePosixPath(CONTAINER_ROOT) in normalized.parents
    )


def host_names(instance_count: int) -> list[str]:
    return [f"algo-{index}" for index in range(1, instance_count + 1)]


@dataclass(frozen=True)
class HostFolder:
    base: Path
    host: str

    @property
    def config_dir(self) -> Path:
        return self.base / "input" / "config"

    @property
    def data_dir(self) -> Path:
        return self.base / "input" / "data"

    @property
    def model_dir(self) -> Path:
        return self.base / "model"

    @property
    def output_dir(self) -> Path:
        return self.base / "output"

    @property
    def output_data_dir(self) -> Path:
        return self.output_dir / "data"

    @property
    def code_dir(self) -> Path:
        return self.base / "code"

    @property
    def failure_file(self) -> Path:
        return self.output_dir / "failure"

    @property
    def exceptions_dir(self) -> Path:
        """Where the job's processes record the exception they die of (job_site/sitecustomize.py)."""
        return self.base / "emulator" / "exceptions"

    @property
    def tmp_dir(self) -> Path:
        """The job's TMPDIR: a container's /tmp is its own and goes with it (torchrun's rendezvous
        folders, a script's temporary files), so here it is this host's, removed when the job ends."""
        return self.base / "emulator" / "tmp"

    def channel_dir(self, channel: str) -> Path:
        return self.data_dir / channel

    def local(self, container_path: str) -> Path:
        """Where a path under /opt/ml lives on this machine (see ``is_container_path``)."""
        if not is_container_path(container_path):
            raise ValueError(f"{container_path} is not under {CONTAINER_ROOT}")
        relative = PurePosixPath(container_path).relative_to(CONTAINER_ROOT)
        return self.base.joinpath(*relative.parts)

    def rewrite_container_paths(self, text: str) -> str:
        """``text`` with every /opt/ml replaced by this host's folder (a container command or script)."""
        return _CONTAINER_ROOT_IN_TEXT.sub(lambda _: str(self.base), text)

    def prepare(self, *, hyperparameters: dict, resource_config: dict, input_data_config: dict) -> None:
        """Start from an empty folder (a job name can be reused after a restart) and write the config."""
        if self.base.exists():
            shutil.rmtree(self.base)
        for folder in (self.config_dir, self.data_dir, self.model_dir, self.output_data_dir, self.code_dir):
            folder.mkdir(parents=True)
        self._write("hyperparameters.json", hyperparameters)
        self._write("resourceconfig.json", resource_config)
        self._write("inputdataconfig.json", input_data_config)

    def _write(self, name: str, content: dict) -> None:
        (self.config_dir / name).write_text(json.dumps(content, indent=2))


def resource_config(current_host: str, hosts: list[str], instance_type: str) -> dict:
    """resourceconfig.json as SageMaker writes it for a homogeneous cluster."""
    return {
        "current_host": current_host,
        "current_instance_type": instance_type,
        "current_group_name": INSTANCE_GROUP,
        "hosts": hosts,
        "instance_groups": [{"instance_group_name": INSTANCE_GROUP, "instance_type": instance_type, "hosts": hosts}],
        # the local hosts reach each other over loopback (SageMaker's containers use eth0)
        "network_interface_name": "lo",
    }


def input_data_config(channels: list[dict], default_input_mode: str) -> dict:
    """inputdataconfig.json: per channel its content type, input mode and distribution."""
    config = {}
    for channel in channels:
        s3_source = channel.get("DataSource", {}).get("S3DataSource", {})
        entry = {
            "TrainingInputMode": channel.get("InputMode", default_input_mode),
            "S3DistributionType": s3_source.get("S3DataDistributionType", "FullyReplicated"),
            "RecordWrapperType": channel.get("RecordWrapperType", "None"),
        }
        if "ContentType" in channel:
            entry["ContentType"] = channel["ContentType"]
        config[channel["ChannelName"]] = entry
    return config
