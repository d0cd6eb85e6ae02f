"""What each SageMaker instance type has (vCPUs, memory, GPUs), for what a job is told about its host.

On SageMaker, sagemaker-training reads the container's CPUs and GPUs into SM_NUM_CPUS and
SM_NUM_GPUS. Here the container is a process on this machine, so the toolkit would report this
machine's figures; the local SageMaker tells it the instance type's instead (see
jobs/job_site/_emulator_job_process.py), so a script that sizes its DataLoader workers or batch by
them behaves as on the instance. The process still runs on this machine's cores and memory.

GPUs are the one figure capped by what this machine has: a script or the PyTorch toolkit's
launchers that trust SM_NUM_GPUS (torchrun's processes per host, a "cuda" device) would otherwise
reach for GPUs that are not there. An instance type not in the table gets this machine's figures.
"""
from __future__ import annotations

import functools
import os
import shutil
import subprocess
from dataclasses import dataclass


@dataclass(frozen=True)
class InstanceType:
    name: str
    vcpus: int
    memory_gib: float
    gpus: int = 0


_TABLE = [
    # general purpose and compute
    ("ml.t3.medium", 2, 4), ("ml.t3.large", 2, 8), ("ml.t3.xlarge", 4, 16),
    ("ml.m4.xlarge", 4, 16), ("ml.m5.large", 2, 8), ("ml.m5.xlarge", 4, 16), ("ml.m5.2xlarge", 8, 32),
    ("ml.m5.4xlarge", 16, 64), ("ml.m5.12xlarge", 48, 192), ("ml.m5.24xlarge", 96, 384),
    ("ml.c5.large", 2, 4), ("ml.c5.xlarge", 4, 8), ("ml.c5.2xlarge", 8, 16), ("ml.c5.4xlarge", 16, 32),
    ("ml.c5.9xlarge", 36, 72), ("ml.c5.18xlarge", 72, 144),
    ("ml.r5.large", 2, 16), ("ml.r5.xlarge", 4, 32),
    # GPU
    ("ml.g4dn.xlarge", 4, 16, 1), ("ml.g4dn.2xlarge", 8, 32, 1), ("ml.g4dn.4xlarge", 16, 64, 1),
    ("ml.g4dn.8xlarge", 32, 128, 1), ("ml.g4dn.12xlarge", 48, 192, 4), ("ml.g4dn.16xlarge", 64, 256, 1),
    ("ml.g5.xlarge", 4, 16, 1), ("ml.g5.2xlarge", 8, 32, 1), ("ml.g5.4xlarge", 16, 64, 1),
    ("ml.g5.8xlarge", 32, 128, 1), ("ml.g5.12xlarge", 48, 192, 4), ("ml.g5.16xlarge", 64, 256, 1),
    ("ml.g5.24xlarge", 96, 384, 4), ("ml.g5.48xlarge", 192, 768, 8),
    ("ml.p3.2xlarge", 8, 61, 1), ("ml.p3.8xlarge", 32, 244, 4), ("ml.p3.16xlarge", 64, 488, 8),
    ("ml.p4d.24xlarge", 96, 1152, 8), ("ml.p5.48xlarge", 192, 2048, 8),
]
INSTANCE_TYPES = {row[0]: InstanceType(*row) for row in _TABLE}


def instance_type(name: str | None) -> InstanceType | None:
    return INSTANCE_TYPES.get(name or "")


@functools.lru_cache(maxsize=1)
def machine_gpus() -> int:
    """GPUs on this machine, as sagemaker-training counts them (nvidia-smi --list-gpus)."""
    if not shutil.which("nvidia-smi"):
        return 0
    try:
        output = subprocess.run(["nvidia-smi", "--list-gpus"], capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.SubprocessError):
        return 0
    return sum(1 for line in output.splitlines() if line.startswith("GPU "))


def job_figures(name: str | None) -> tuple[dict[str, str], str]:
    """(environment for the job's processes, the line that says so in the job's log)."""
    cores = os.cpu_count() or 1
    known = instance_type(name)
    if known is None:
        return {}, (f"Instance type {name} is not in the local SageMaker's table: SM_NUM_CPUS and SM_NUM_GPUS "
                    f"are this machine's ({cores} CPUs, {machine_gpus()} GPUs)")
    gpus = min(known.gpus, machine_gpus())
    line = (f"Instance type {known.name}: {known.vcpus} vCPUs, {known.memory_gib:g} GiB memory, {known.gpus} GPUs; "
            f"the job is told SM_NUM_CPUS={known.vcpus} SM_NUM_GPUS={gpus}")
    if gpus < known.gpus:
        line += f" (this machine has {machine_gpus()} GPUs)"
    line += f". Its processes run on this machine's {cores} CPU cores and memory."
    return {"EMULATOR_INSTANCE_NUM_CPUS": str(known.vcpus), "EMULATOR_INSTANCE_NUM_GPUS": str(gpus)}, line
