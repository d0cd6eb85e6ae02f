"""A job is told its instance type's CPUs and GPUs (SM_NUM_CPUS, SM_NUM_GPUS), not this machine's, and
its log warns when the image names a framework version other than the one that runs here."""
from __future__ import annotations

import io
import json
import tarfile
import textwrap

import pytest

from include.emulator import images
from include.emulator.instance_types import INSTANCE_TYPES, job_figures, machine_gpus
from tests.conftest import TEST_BUCKET

FIGURES_PY = textwrap.dedent(
    """
    import json, os
    print("figures=" + json.dumps({key: os.environ.get(key) for key in ("SM_NUM_CPUS", "SM_NUM_GPUS", "SM_CURRENT_INSTANCE_TYPE")}), flush=True)
    with open(os.path.join(os.environ["SM_MODEL_DIR"], "figures.json"), "w") as f:
        json.dump({"cpus": os.environ["SM_NUM_CPUS"], "gpus": os.environ["SM_NUM_GPUS"],
                   "resourceconfig": json.load(open(os.path.join(os.environ["SM_INPUT_CONFIG_DIR"], "resourceconfig.json")))}, f)
    """
)


def test_the_table_holds_every_instance_type_the_workloads_use():
    from pathlib import Path
    import re

    root = Path(__file__).resolve().parents[2]
    used = set()
    for path in [*root.glob("include/workloads/*.yaml"), *root.glob("include/pipelines/*.py"), *root.glob("dags/*.py")]:
        used |= set(re.findall(r"\bml\.[a-z0-9]+\.[a-z0-9]+\b", path.read_text()))
    assert used and used <= set(INSTANCE_TYPES), used - set(INSTANCE_TYPES)


def test_job_figures_are_the_instance_types_with_gpus_capped_by_this_machine():
    env, line = job_figures("ml.g5.12xlarge")
    assert env == {"EMULATOR_INSTANCE_NUM_CPUS": "48", "EMULATOR_INSTANCE_NUM_GPUS": str(min(4, machine_gpus()))}
    assert "ml.g5.12xlarge: 48 vCPUs, 192 GiB memory, 4 GPUs" in line and "this machine's" in line
    env, line = job_figures("ml.x9.unknown")
    assert env == {} and "not in the local SageMaker's table" in line


def test_version_warnings_name_the_images_version_and_the_installed_one():
    from importlib import metadata

    torch_version = metadata.version("torch")
    major, minor = torch_version.split(".")[:2]
    same = f"763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-training:{major}.{minor}.0-cpu-py311-ubuntu22.04-sagemaker"
    assert images.image_versions(same) == {"torch": f"{major}.{minor}.0", "python": "3.11"}
    assert images.version_warnings(same) == []
    hf = ("763104351884.dkr.ecr.us-east-1.amazonaws.com/"
          "huggingface-pytorch-training:1.13.1-transformers4.26.0-gpu-py39-cu117-ubuntu20.04")
    warnings = images.version_warnings(hf)
    assert len(warnings) == 3, warnings
    assert f"names PyTorch 1.13.1, but the local SageMaker runs PyTorch {torch_version}" in warnings[0]
    assert f"transformers 4.26.0, but the local SageMaker runs transformers {metadata.version('transformers')}" in warnings[1]
    assert "Python 3.9" in warnings[2]


@pytest.mark.slow
def test_a_job_sees_its_instance_types_figures_and_a_version_warning(sagemaker_client, s3_client, logs_client):
    from tests.emulator.hosting_fixtures import unique
    from tests.emulator.test_training_jobs import job_log, read_tarball, training_request, wait_until_done

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        data = FIGURES_PY.encode()
        info = tarfile.TarInfo("train.py")
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data))
    s3_client.put_object(Bucket=TEST_BUCKET, Key="figures-tests/sourcedir.tar.gz", Body=buffer.getvalue())
    s3_client.put_object(Bucket=TEST_BUCKET, Key="figures-tests/train/a.txt", Body=b"x")
    image = "763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-training:1.13.1-cpu-py39-ubuntu20.04-sagemaker"
    name = unique("figures")
    request = training_request(name, f"s3://{TEST_BUCKET}/figures-tests/sourcedir.tar.gz",
                               f"s3://{TEST_BUCKET}/figures-tests/train", image=image)
    request["ResourceConfig"]["InstanceType"] = "ml.g4dn.xlarge"
    sagemaker_client.create_training_job(**request)
    job = wait_until_done(sagemaker_client, name, timeout=300)
    assert job["TrainingJobStatus"] == "Completed", job.get("FailureReason")

    figures = json.loads(read_tarball(s3_client, job["ModelArtifacts"]["S3ModelArtifacts"])["figures.json"])
    assert figures["cpus"] == "4"  # the instance type's, whatever this machine has
    assert figures["gpus"] == str(min(1, machine_gpus()))
    assert figures["resourceconfig"]["current_instance_type"] == "ml.g4dn.xlarge"
    log = "\n".join(job_log(logs_client, name))
    assert "[local-sagemaker] Instance type ml.g4dn.xlarge: 4 vCPUs, 16 GiB memory, 1 GPUs" in log
    assert "[local-sagemaker] WARNING: the image pytorch-training:1.13.1-cpu-py39-ubuntu20.04-sagemaker names PyTorch 1.13.1" in log
