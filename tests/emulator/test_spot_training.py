"""Managed spot training with checkpoints: an injected interruption restarts the job, which resumes
from the checkpoint SageMaker synced to S3; billing shows the spot saving; MaxWait is enforced."""
from __future__ import annotations

import io
import json
import tarfile
import textwrap

import pytest
from botocore.exceptions import ClientError

from tests.conftest import TEST_BUCKET, TEST_REGION, TEST_ROLE_ARN
from tests.emulator.test_training_jobs import IMAGE, LOG_GROUP, read_tarball, wait_for_log_line, wait_until_done

PREFIX = "spot-tests"

# Resumes from <base dir>/checkpoints/state.json (/opt/ml/checkpoints on SageMaker), saves it after
# every epoch, and records in the model the epoch this run started from.
SPOT_TRAIN_PY = textwrap.dedent(
    """
    import argparse, json, os, time

    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--epoch-seconds", type=float, default=0.5)
    args, _ = parser.parse_known_args()

    checkpoint_dir = os.path.join(os.environ.get("SAGEMAKER_BASE_DIR", "/opt/ml"), "checkpoints")
    state_path = os.path.join(checkpoint_dir, "state.json")
    start = 1
    if os.path.exists(state_path):
        with open(state_path) as f:
            start = json.load(f)["epoch"] + 1
    print(f"resuming_from_epoch={start}", flush=True)
    for epoch in range(start, args.epochs + 1):
        time.sleep(args.epoch_seconds)
        with open(state_path + ".partial", "w") as f:
            json.dump({"epoch": epoch}, f)
        os.replace(state_path + ".partial", state_path)  # atomic: an interruption never leaves half a file
        print(f"epoch={epoch} loss={1 / epoch:.4f}", flush=True)
    with open(os.path.join(os.environ["SM_MODEL_DIR"], "model.json"), "w") as f:
        json.dump({"started_at_epoch": start, "last_epoch": args.epochs}, f)
    """
)


@pytest.fixture(scope="module")
def spot_source_uri(s3_client):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        data = SPOT_TRAIN_PY.encode()
        info = tarfile.TarInfo("train.py")
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data))
    s3_client.put_object(Bucket=TEST_BUCKET, Key=f"{PREFIX}/source/sourcedir.tar.gz", Body=buffer.getvalue())
    s3_client.put_object(Bucket=TEST_BUCKET, Key=f"{PREFIX}/data/train/a.csv", Body=b"1,2\n")
    return f"s3://{TEST_BUCKET}/{PREFIX}/source/sourcedir.tar.gz"


def spot_request(name: str, source_uri: str, *, max_runtime: int = 300, max_wait: int = 600, tags: list | None = None, **hyperparameters) -> dict:
    return {
        "TrainingJobName": name,
        "AlgorithmSpecification": {
            "TrainingImage": IMAGE,
            "TrainingInputMode": "File",
            "MetricDefinitions": [{"Name": "train:loss", "Regex": r"loss=([0-9.]+)"}],
        },
        "RoleArn": TEST_ROLE_ARN,
        "HyperParameters": {
            **{key.replace("_", "-"): str(value) for key, value in hyperparameters.items()},
            "sagemaker_program": json.dumps("train.py"),
            "sagemaker_submit_directory": json.dumps(source_uri),
            "sagemaker_region": json.dumps(TEST_REGION),
        },
        "InputDataConfig": [
            {
                "ChannelName": "train",
                "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": f"s3://{TEST_BUCKET}/{PREFIX}/data/train"}},
            }
        ],
        "OutputDataConfig": {"S3OutputPath": f"s3://{TEST_BUCKET}/{PREFIX}/output"},
        "ResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 5},
        "StoppingCondition": {"MaxRuntimeInSeconds": max_runtime, "MaxWaitTimeInSeconds": max_wait},
        "EnableManagedSpotTraining": True,
        "CheckpointConfig": {"S3Uri": f"s3://{TEST_BUCKET}/{PREFIX}/checkpoints/{name}"},
        "Tags": tags or [],
    }


def stream_logs(logs_client, job_name: str) -> list[list[str]]:
    """The job's log streams in the order they were started, each as its lines."""
    streams = logs_client.describe_log_streams(logGroupName=LOG_GROUP, logStreamNamePrefix=f"{job_name}/")["logStreams"]
    ordered = sorted(streams, key=lambda stream: (int(stream["logStreamName"].rsplit("-", 1)[1]), stream["creationTime"]))
    return [
        [event["message"] for event in logs_client.get_log_events(
            logGroupName=LOG_GROUP, logStreamName=stream["logStreamName"], startFromHead=True)["events"]]
        for stream in ordered
    ]


@pytest.fixture(scope="module")
def interrupted_job(sagemaker_client, logs_client, spot_source_uri):
    name = "unit-spot-interrupted"
    job_arn = sagemaker_client.create_training_job(**spot_request(name, spot_source_uri, epochs=12, epoch_seconds=0.5))["TrainingJobArn"]
    # the fault tag is read while the job trains: switched on once two epochs are checkpointed, the
    # interruption strikes at once (a tag given at creation would count seconds from the start)
    wait_for_log_line(logs_client, name, "epoch=2 ")
    sagemaker_client.add_tags(ResourceArn=job_arn, Tags=[{"Key": "emulator:fault", "Value": "spot-interruption:0"}])
    return wait_until_done(sagemaker_client, name, timeout=300)


@pytest.mark.slow
def test_interrupted_spot_job_restarts_and_completes(interrupted_job):
    job = interrupted_job
    assert job["TrainingJobStatus"] == "Completed", job.get("FailureReason")
    assert [t["Status"] for t in job["SecondaryStatusTransitions"]] == [
        "Starting", "Downloading", "Training", "Interrupted", "Starting", "Downloading", "Training", "Uploading", "Completed",
    ]
    assert job["CheckpointConfig"] == {"S3Uri": f"s3://{TEST_BUCKET}/{PREFIX}/checkpoints/unit-spot-interrupted", "LocalPath": "/opt/ml/checkpoints"}


@pytest.mark.slow
def test_restarted_job_resumes_from_its_last_checkpoint(interrupted_job, logs_client, s3_client):
    first_run, second_run = stream_logs(logs_client, "unit-spot-interrupted")
    assert "resuming_from_epoch=1" in first_run and "epoch=2 loss=0.5000" in first_run
    last_epoch_before = max(int(line.split()[0].split("=")[1]) for line in first_run if line.startswith("epoch="))
    assert f"resuming_from_epoch={last_epoch_before + 1}" in second_run
    assert not any(line.startswith(f"epoch={last_epoch_before} ") for line in second_run)  # no epoch is done twice
    model = json.loads(read_tarball(s3_client, interrupted_job["ModelArtifacts"]["S3ModelArtifacts"])["model.json"])
    assert model == {"started_at_epoch": last_epoch_before + 1, "last_epoch": 12}
    # the checkpoint folder was synced to CheckpointConfig.S3Uri while the job ran
    state = s3_client.get_object(Bucket=TEST_BUCKET, Key=f"{PREFIX}/checkpoints/unit-spot-interrupted/state.json")
    assert json.loads(state["Body"].read()) == {"epoch": 12}


@pytest.mark.slow
def test_spot_job_bills_less_than_it_trained(interrupted_job):
    training, billable = interrupted_job["TrainingTimeInSeconds"], interrupted_job["BillableTimeInSeconds"]
    assert 0 < billable < training
    savings = (1 - billable / training) * 100  # the formula SageMaker documents
    assert 50 < savings < 90


@pytest.mark.slow
def test_spot_job_out_of_max_wait_is_stopped(sagemaker_client, spot_source_uri):
    name = "unit-spot-max-wait"
    # MaxWait counts from creation, MaxRuntime only while the job runs: MaxWait strikes first
    sagemaker_client.create_training_job(**spot_request(name, spot_source_uri, max_runtime=6, max_wait=6, epochs=200, epoch_seconds=0.5))
    job = wait_until_done(sagemaker_client, name, timeout=60)
    assert (job["TrainingJobStatus"], job["SecondaryStatus"]) == ("Stopped", "MaxWaitTimeExceeded")
    statuses = [t["Status"] for t in job["SecondaryStatusTransitions"]]
    assert statuses[-2:] == ["Stopping", "MaxWaitTimeExceeded"]
    assert "MaxWaitTimeInSeconds (6 s)" in job["SecondaryStatusTransitions"][-1]["StatusMessage"]


def test_unreadable_fault_tag_is_refused(sagemaker_client, spot_source_uri):
    request = spot_request("unit-spot-bad-tag", spot_source_uri, tags=[{"Key": "emulator:fault", "Value": "spot-interruption:soon"}])
    with pytest.raises(ClientError) as error:
        sagemaker_client.create_training_job(**request)
    assert error.value.response["Error"]["Code"] == "ValidationException"
    assert "spot-interruption:soon" in error.value.response["Error"]["Message"]


def test_spot_job_needs_max_wait(sagemaker_client, spot_source_uri):
    request = spot_request("unit-spot-no-wait", spot_source_uri)
    del request["StoppingCondition"]["MaxWaitTimeInSeconds"]
    with pytest.raises(ClientError) as error:
        sagemaker_client.create_training_job(**request)
    assert "MaxWaitTimeInSeconds is required" in error.value.response["Error"]["Message"]
