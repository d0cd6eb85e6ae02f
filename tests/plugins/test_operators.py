"""Our operators against the local SageMaker: retries never duplicate a job or a resource, and
teardown leaves nothing behind."""
from __future__ import annotations

import io
import tarfile
from types import SimpleNamespace

import pytest
from airflow.sdk.exceptions import AirflowFailException

from sagemaker_pipelines_plugin.endpoints import SageMakerDeleteEndpointOperator
from sagemaker_pipelines_plugin.resources import SageMakerCreateModelOnceOperator
from sagemaker_pipelines_plugin.training import SageMakerResumableTrainingOperator, attempt_job_name
from tests.conftest import TEST_BUCKET
from tests.emulator.test_training_jobs import TRAIN_PY, training_request, wait_until_done

pytestmark = pytest.mark.slow
PREFIX = "plugin-tests"
INFERENCE_IMAGE = "763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-inference:2.5.1-cpu-py311-ubuntu22.04-sagemaker"


@pytest.fixture(scope="module")
def source_uri(s3_client):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        info = tarfile.TarInfo("train.py")
        info.size = len(TRAIN_PY.encode())
        archive.addfile(info, io.BytesIO(TRAIN_PY.encode()))
    s3_client.put_object(Bucket=TEST_BUCKET, Key=f"{PREFIX}/sourcedir.tar.gz", Body=buffer.getvalue())
    s3_client.put_object(Bucket=TEST_BUCKET, Key=f"{PREFIX}/train/a.csv", Body=b"1,2\n")
    return f"s3://{TEST_BUCKET}/{PREFIX}/sourcedir.tar.gz"


def _context(try_number: int) -> dict:
    return {"ti": SimpleNamespace(try_number=try_number)}


def _operator(config: dict) -> SageMakerResumableTrainingOperator:
    return SageMakerResumableTrainingOperator(
        task_id="train", config=config, deferrable=False, check_interval=1, print_log=False
    )


def _request(name: str, source_uri: str, **hyperparameters) -> dict:
    return training_request(name, source_uri, f"s3://{TEST_BUCKET}/{PREFIX}/train", **hyperparameters)


def test_retry_returns_the_job_an_earlier_try_completed(sagemaker_client, source_uri):
    first = _operator(_request("plugin-done", source_uri)).execute(_context(1))
    assert first["Training"]["TrainingJobStatus"] == "Completed"

    second = _operator(_request("plugin-done", source_uri)).execute(_context(2))
    assert second["Training"]["TrainingJobName"] == "plugin-done"
    names = [j["TrainingJobName"] for j in sagemaker_client.list_training_jobs(NameContains="plugin-done")["TrainingJobSummaries"]]
    assert names == ["plugin-done"], "the retry started a second job"


def test_retry_rejoins_a_job_that_is_still_running(sagemaker_client, source_uri):
    sagemaker_client.create_training_job(**_request("plugin-running", source_uri, sleep=3))
    result = _operator(_request("plugin-running", source_uri, sleep=3)).execute(_context(2))
    assert result["Training"]["TrainingJobName"] == "plugin-running"
    assert result["Training"]["TrainingJobStatus"] == "Completed"
    assert len(sagemaker_client.list_training_jobs(NameContains="plugin-running")["TrainingJobSummaries"]) == 1


def test_retry_after_an_infrastructure_failure_submits_a_new_job(sagemaker_client, source_uri):
    sagemaker_client.create_training_job(**_request("plugin-stopped", source_uri, sleep=30))
    sagemaker_client.stop_training_job(TrainingJobName="plugin-stopped")
    wait_until_done(sagemaker_client, "plugin-stopped")

    result = _operator(_request("plugin-stopped", source_uri)).execute(_context(2))
    assert result["Training"]["TrainingJobName"] == attempt_job_name("plugin-stopped", 2) == "plugin-stopped-retry1"
    assert result["Training"]["TrainingJobStatus"] == "Completed"


def test_a_failure_in_the_training_code_is_not_retried_and_shows_its_message(source_uri):
    with pytest.raises(AirflowFailException, match="bad lr 5.0"):
        _operator(_request("plugin-bad-lr", source_uri, learning_rate=5)).execute(_context(1))


def test_attempt_names_stay_within_sagemakers_limit_and_keep_the_run_hash():
    assert attempt_job_name("a" * 63, 3) == "a" * 45 + "-" + "a" * 10 + "-retry2"
    assert len(attempt_job_name("a" * 63, 12)) == 63
    # two runs' names differ only in their hash: their retries must too
    first, second = "acoustic-shield-tune-3f9a1c2b7d", "acoustic-shield-tune-0c4e8d1a95"
    assert attempt_job_name(first, 2, 32) == "acoustic-shiel-3f9a1c2b7d-retry1"  # 32 characters
    assert attempt_job_name(first, 2, 32) != attempt_job_name(second, 2, 32)


def test_create_model_once_keeps_the_model_of_an_earlier_try(sagemaker_client, s3_client):
    s3_client.put_object(Bucket=TEST_BUCKET, Key=f"{PREFIX}/model.tar.gz", Body=b"")
    config = {
        "ModelName": "plugin-model-once",
        "ExecutionRoleArn": "arn:aws:iam::123456789012:role/SageMakerExecutionRole",
        "PrimaryContainer": {"Image": INFERENCE_IMAGE, "ModelDataUrl": f"s3://{TEST_BUCKET}/{PREFIX}/model.tar.gz"},
    }
    first = SageMakerCreateModelOnceOperator(task_id="m", config=dict(config)).execute(_context(1))
    again = SageMakerCreateModelOnceOperator(task_id="m", config=dict(config)).execute(_context(2))
    assert first["Model"]["ModelArn"] == again["Model"]["ModelArn"]


def test_delete_endpoint_of_a_missing_endpoint_is_a_no_op():
    result = SageMakerDeleteEndpointOperator(task_id="d", endpoint_name="plugin-never-created").execute(_context(1))
    assert result == {"endpoint": None, "endpoint_config": None, "models": []}
