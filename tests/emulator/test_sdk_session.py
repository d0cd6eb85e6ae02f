"""A notebook's first cell, unchanged but for the session, against the local SageMaker (no network).

SDK v3's STS calls name the real regional STS endpoint explicitly; include.emulator.sdk_session's
session sends them, and every other client, to the local SageMaker."""
from __future__ import annotations

import socket

import pytest

from tests.conftest import TEST_REGION


@pytest.fixture
def no_network(monkeypatch):
    """Any connection to somewhere other than this machine fails, as offline."""
    real_connect = socket.socket.connect

    def connect(self, address):
        host = address[0] if isinstance(address, tuple) else address
        if isinstance(host, str) and host not in ("127.0.0.1", "localhost", "::1") and self.family != socket.AF_UNIX:
            raise OSError(f"offline: no connection to {address}")
        return real_connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    for var in ("AWS_ENDPOINT_URL", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(var, raising=False)


def test_a_notebooks_first_cell_works_against_the_local_sagemaker(emulator, no_network, monkeypatch):
    from sagemaker.core.helper.session_helper import get_execution_role

    from include.emulator.sdk_session import local_session

    # the first cell of AWS's example notebooks, with local_session() for sagemaker.Session()
    session = local_session(emulator.endpoint_url, region=TEST_REGION)
    bucket = session.default_bucket()
    account = session.account_id()
    role = get_execution_role(session)
    region = session.boto_region_name

    assert account == "123456789012"
    assert bucket == f"sagemaker-{TEST_REGION}-{account}"
    assert role == f"arn:aws:iam::{account}:role/SageMakerExecutionRole"
    assert region == TEST_REGION
    # the bucket exists on the local S3, and the SDK's clients speak to the local SageMaker
    session.boto_session.client("s3").head_bucket(Bucket=bucket)
    assert session.sagemaker_client.meta.endpoint_url == emulator.endpoint_url
    assert session.sagemaker_runtime_client.meta.endpoint_url == emulator.endpoint_url
    assert session.sagemaker_client.list_training_jobs()["TrainingJobSummaries"] is not None
    # the SDK's own STS client names the real endpoint; it goes to the local one all the same
    sts = session.boto_session.client("sts", region_name=TEST_REGION, endpoint_url="https://sts.us-east-1.amazonaws.com")
    assert sts.meta.endpoint_url == emulator.endpoint_url
    assert ":assumed-role/SageMakerExecutionRole/" in sts.get_caller_identity()["Arn"]
    # what builds a default boto3 session of its own (the SDK's log tailer, the notebook's boto3 calls)
    import os

    assert os.environ["AWS_ENDPOINT_URL"] == emulator.endpoint_url
    # upload_data, as the examples do next
    key = session.upload_data(__file__, bucket=bucket, key_prefix="notebook")
    assert key == f"s3://{bucket}/notebook/{os.path.basename(__file__)}"


def test_without_the_helper_the_sdk_goes_to_the_real_sts(emulator, no_network, monkeypatch):
    """Why the helper exists: AWS_ENDPOINT_URL alone does not reach the SDK's STS calls."""
    import boto3
    from sagemaker.core.helper.session_helper import Session

    monkeypatch.setenv("AWS_ENDPOINT_URL", emulator.endpoint_url)
    session = Session(boto_session=boto3.Session(region_name=TEST_REGION))
    with pytest.raises(Exception) as caught:
        session.account_id()
    assert "offline" in repr(caught.value) or "Could not connect" in str(caught.value) or "sts." in str(caught.value)
