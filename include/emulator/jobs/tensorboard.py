"""TensorBoardOutputConfig: what the script writes to LocalPath goes up to S3 while the job runs.

SageMaker maps LocalPath (default /opt/ml/output/tensorboard) into each host and uploads it to
``<S3OutputPath>/<job>/tensorboard-output/``, the folder the SageMaker Python SDK's
``Estimator.latest_job_tensorboard_artifacts_path()`` names, periodically and once more when the
hosts stop (see ``folder_sync``). It also writes ``input/config/tensorboardoutputconfig.json``
({"LocalPath": ...}), which smdebug's hooks read; here it holds the host folder's path, as every
/opt/ml path does on this machine.
"""
from __future__ import annotations

import json

from .folder_sync import FolderSync
from .hosts import HostFolder

DEFAULT_TENSORBOARD_PATH = "/opt/ml/output/tensorboard"
CONFIG_FILE = "tensorboardoutputconfig.json"


def tensorboard_uri(config: dict, job_name: str) -> str:
    """Where a job's TensorBoard files land: <S3OutputPath>/<job>/tensorboard-output/."""
    return f"{config['S3OutputPath'].rstrip('/')}/{job_name}/tensorboard-output/"


def tensorboard_sync(s3, config: dict, job_name: str, hosts: list[HostFolder]) -> FolderSync:
    """Create each host's LocalPath folder and its config file; returns the (not yet started) upload."""
    folders = [host.local(config.get("LocalPath", DEFAULT_TENSORBOARD_PATH)) for host in hosts]
    for host, folder in zip(hosts, folders):
        folder.mkdir(parents=True, exist_ok=True)
        (host.config_dir / CONFIG_FILE).write_text(json.dumps({"LocalPath": str(folder)}))
    return FolderSync(s3, tensorboard_uri(config, job_name), folders, what="TensorBoard file")
