"""The SageMaker Python SDK v3 (sagemaker.train.ModelTrainer) runs a training job on the local SageMaker.

The SDK takes a boto3 session (``Session(boto_session=...)``) and builds every client from it with
``boto_session.client(service, region, config=...)``, never passing an endpoint; its log tailer
even builds a default session of its own. So the endpoint comes from boto3's own configuration:
AWS_ENDPOINT_URL (or a profile's ``endpoint_url``), as a user points any boto3 code at the local
SageMaker. ModelTrainer sends a ContainerEntrypoint (bash running its sm_train.sh driver) rather
than the toolkit's sagemaker_program.
"""
from __future__ import annotations

import io
import json
import tarfile
import textwrap

import pytest

from tests.conftest import TEST_BUCKET, TEST_REGION, TEST_ROLE_ARN
from tests.emulator.test_training_jobs import IMAGE, LOG_GROUP

SDK_TRAIN_PY = textwrap.dedent(
    """
    import argparse, json, os

    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--learning-rate", type=float, default=0.1)
    args = parser.parse_args()
    files = sorted(os.listdir(os.environ["SM_CHANNEL_TRAIN"]))
    for epoch in range(1, args.epochs + 1):
        print(f"epoch={epoch} loss={1 / epoch:.4f}", flush=True)
    with open(os.path.join(os.environ["SM_MODEL_DIR"], "model.json"), "w") as f:
        json.dump({"epochs": args.epochs, "lr": args.learning_rate, "files": files,
                   "host": os.environ["SM_CURRENT_HOST"]}, f)
    """
)


@pytest.fixture
def sdk_env(emulator, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", emulator.endpoint_url)
    # the SDK checks the role with iam:SimulatePrincipalPolicy, which the local IAM (moto) lacks;
    # this is the SDK's own switch for skipping that client-side check
    monkeypatch.setenv("SAGEMAKER_VALIDATE_ROLE", "false")


@pytest.mark.slow
def test_model_trainer_runs_a_training_job_locally(sdk_env, tmp_path, s3_client, logs_client):
    import boto3
    from sagemaker.core.helper.session_helper import Session
    from sagemaker.core.shapes import OutputDataConfig
    from sagemaker.train import ModelTrainer
    from sagemaker.train.configs import Compute, InputData, MetricDefinition, SourceCode

    source_dir = tmp_path / "src"
    source_dir.mkdir()
    (source_dir / "train.py").write_text(SDK_TRAIN_PY)
    s3_client.put_object(Bucket=TEST_BUCKET, Key="sdk-tests/data/train/a.csv", Body=b"1,2\n")

    session = Session(boto_session=boto3.Session(region_name=TEST_REGION), default_bucket=TEST_BUCKET)
    trainer = ModelTrainer(
        sagemaker_session=session,
        role=TEST_ROLE_ARN,
        training_image=IMAGE,
        source_code=SourceCode(source_dir=str(source_dir), entry_script="train.py"),
        compute=Compute(instance_type="ml.m5.large", instance_count=1),
        hyperparameters={"epochs": 3, "learning-rate": 0.05},
        base_job_name="sdk-v3",
        output_data_config=OutputDataConfig(s3_output_path=f"s3://{TEST_BUCKET}/sdk-tests/output"),
    ).with_metric_definitions([MetricDefinition(name="train:loss", regex=r"loss=([0-9.]+)")])

    trainer.train(input_data_config=[InputData(channel_name="train", data_source=f"s3://{TEST_BUCKET}/sdk-tests/data/train")],
                  wait=True, logs=True)

    job = trainer._latest_training_job  # the SDK's documented handle on the job it ran
    job.refresh()
    assert job.training_job_status == "Completed", job.failure_reason
    assert {metric.metric_name: metric.value for metric in job.final_metric_data_list} == {"train:loss": pytest.approx(0.3333)}

    bucket, key = job.model_artifacts.s3_model_artifacts[len("s3://"):].split("/", 1)
    with tarfile.open(fileobj=io.BytesIO(s3_client.get_object(Bucket=bucket, Key=key)["Body"].read()), mode="r:gz") as archive:
        saved = json.loads(archive.extractfile("model.json").read())
    # hyperparameters reached the script as flags through the SDK's driver; the channel sits where it said
    assert saved == {"epochs": 3, "lr": 0.05, "files": ["a.csv"], "host": "algo-1"}

    streams = logs_client.describe_log_streams(logGroupName=LOG_GROUP, logStreamNamePrefix=f"{job.training_job_name}/")["logStreams"]
    events = logs_client.get_log_events(logGroupName=LOG_GROUP, logStreamName=streams[0]["logStreamName"], startFromHead=True)["events"]
    lines = [event["message"] for event in events]
    assert "epoch=3 loss=0.3333" in lines
    assert "Training Container Execution Completed" in lines  # the SDK's sm_train.sh ran to its end
