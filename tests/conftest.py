"""Shared fixtures: a local SageMaker on a free port of 127.0.0.1, and boto3 clients pointed at it."""
from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
for path in (ROOT, ROOT / "dags", ROOT / "plugins"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

TEST_REGION = "us-east-1"
TEST_BUCKET = "test-sagemaker-bucket"
TEST_ROLE_ARN = "arn:aws:iam::123456789012:role/SageMakerExecutionRole"

# no test may reach real AWS, whatever the developer's shell holds
for _var in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL"):
    os.environ.pop(_var, None)
os.environ.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION=TEST_REGION)
# Airflow reads its home at import: a throwaway one, never the developer's ~/airflow
os.environ["AIRFLOW_HOME"] = tempfile.mkdtemp(prefix="airflow-home-")
os.environ.update(
    AIRFLOW__CORE__LOAD_EXAMPLES="False",
    AIRFLOW__CORE__DAGS_FOLDER=str(ROOT / "dags"),
    AIRFLOW__CORE__PLUGINS_FOLDER=str(ROOT / "plugins"),
)


@pytest.fixture(scope="session")
def emulator(tmp_path_factory):
    """The local SageMaker, started once per test session."""
    from include.emulator.app import Settings
    from include.emulator.gateway import EmulatorServer

    server = EmulatorServer(Settings(port=0, state_dir=tmp_path_factory.mktemp("emulator-state"))).start()
    yield server
    server.stop()


def _client(emulator, service):
    import boto3

    return boto3.client(
        service,
        endpoint_url=emulator.endpoint_url,
        region_name=TEST_REGION,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


@pytest.fixture(scope="session")
def sagemaker_client(emulator):
    return _client(emulator, "sagemaker")


@pytest.fixture(scope="session")
def runtime_client(emulator):
    return _client(emulator, "sagemaker-runtime")


@pytest.fixture(scope="session")
def s3_client(emulator):
    client = _client(emulator, "s3")
    client.create_bucket(Bucket=TEST_BUCKET)
    return client


@pytest.fixture(scope="session")
def logs_client(emulator):
    return _client(emulator, "logs")
