"""The SageMaker Python SDK v3 (sagemaker.train.ModelTrainer) runs a training job on the local SageMaker.

The SDK takes a boto3 session (``Session(boto_session=...)``) and builds every client from it with
``boto_session.client(service, region, config=...)``, never passing an endpoint; its log tailer
even builds a default session of its own. So the endpoint comes from boto3's own configuration:
AWS_ENDPOINT_URL (or a profile's ``endpoint_url``), as a user points any boto3 code at the local
SageMaker. ModelTrainer sends a ContainerEntrypoint (bash running its sm_train.sh driver) rather
than the toolkit's sagemaker_program. Before that the SDK validates the execution role as it does on
AWS (iam:SimulatePrincipalPolicy, then the role's trust policy), so the role exists in the local IAM.
"""
from __future__ import annotations

import io
import json
import logging
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


SAGEMAKER_TRUST_POLICY = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Principal": {"Service": "sagemaker.amazonaws.com"}, "Action": "sts:AssumeRole"}],
}


@pytest.fixture
def sdk_env(emulator, monkeypatch):
    import boto3

    monkeypatch.setenv("AWS_ENDPOINT_URL", emulator.endpoint_url)
    # the execution role, as a user's account holds it: the SDK reads its trust policy before the job starts
    iam = boto3.client("iam", endpoint_url=emulator.endpoint_url, region_name=TEST_REGION)
    role_name = TEST_ROLE_ARN.rsplit("/", 1)[1]
    try:
        iam.create_role(RoleName=role_name, AssumeRolePolicyDocument=json.dumps(SAGEMAKER_TRUST_POLICY))
    except iam.exceptions.EntityAlreadyExistsException:
        pass


@pytest.mark.slow
def test_model_trainer_runs_a_training_job_locally(sdk_env, tmp_path, s3_client, logs_client, caplog):
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
    caplog.set_level(logging.DEBUG, logger="sagemaker.core.helper.iam_role_resolver")
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
    # the SDK's own role check ran and passed: permissions simulated, trust policy read
    assert f"Role '{TEST_ROLE_ARN}' validated for training" in caplog.text

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


def test_the_emulator_s_own_clients_ignore_a_profile_the_process_switches_to(emulator, s3_client, monkeypatch, tmp_path):
    """A test (or an Airflow task) may point AWS_PROFILE / AWS_CONFIG_FILE elsewhere after the emulator started;
    the emulator's own clients (job staging, log shipping) keep working."""
    config = tmp_path / "config"
    config.write_text("[profile elsewhere]\nregion = eu-west-1\n")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_PROFILE", "missing-from-that-config")
    s3_client.put_object(Bucket=TEST_BUCKET, Key="sdk-tests/isolation.txt", Body=b"still here")

    own = emulator.emulator.client("s3")  # a new client, built after the switch

    assert own.get_object(Bucket=TEST_BUCKET, Key="sdk-tests/isolation.txt")["Body"].read() == b"still here"
    assert own.meta.region_name == TEST_REGION
