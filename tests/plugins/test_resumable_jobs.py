"""Retried tuning, batch transform and registration tasks against the local SageMaker: a retry
rejoins or returns what its earlier try started, and resubmits only a job that ended badly."""
from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from sagemaker_pipelines_plugin.transform import SageMakerResumableTransformOperator
from sagemaker_pipelines_plugin.tuning import SageMakerResumableTuningOperator
from tests.conftest import TEST_BUCKET, TEST_ROLE_ARN
from tests.emulator.hosting_fixtures import IMAGE, model_archive, unique, upload
from tests.emulator.test_transform_jobs import SUMMER_PY, _summer_model, _transform_request, _wait
from tests.emulator.test_tuning_jobs import tune_source_uri, tuning_request  # noqa: F401 (a fixture)

pytestmark = pytest.mark.slow
RANGES = {"CategoricalParameterRanges": [{"Name": "optimizer", "Values": ["sgd", "adam"]}]}


def _context(try_number: int) -> dict:
    return {"ti": SimpleNamespace(try_number=try_number)}


def _tuning_operator(config: dict) -> SageMakerResumableTuningOperator:
    return SageMakerResumableTuningOperator(task_id="tune", config=config, deferrable=False, check_interval=1)


def _tuning_jobs(sagemaker_client, prefix: str) -> list[str]:
    summaries = sagemaker_client.list_hyper_parameter_tuning_jobs(NameContains=prefix)["HyperParameterTuningJobSummaries"]
    return sorted(summary["HyperParameterTuningJobName"] for summary in summaries)


def test_a_retried_tuning_task_rejoins_the_running_job_then_returns_it(sagemaker_client, tune_source_uri):
    name = unique("rj-tune")
    # the first try submitted the job, then its worker died
    sagemaker_client.create_hyper_parameter_tuning_job(
        **tuning_request(name, tune_source_uri, "Grid", RANGES, max_jobs=None, parallel=2, epoch_seconds=0.5))

    second = _tuning_operator(tuning_request(name, tune_source_uri, "Grid", RANGES, max_jobs=None, parallel=2)).execute(_context(2))
    assert second["Tuning"]["HyperParameterTuningJobName"] == name
    assert second["Tuning"]["HyperParameterTuningJobStatus"] == "Completed"
    assert second["Tuning"]["BestTrainingJob"]["TunedHyperParameters"] == {"optimizer": "adam"}

    third = _tuning_operator(tuning_request(name, tune_source_uri, "Grid", RANGES, max_jobs=None, parallel=2)).execute(_context(3))
    assert third["Tuning"]["HyperParameterTuningJobArn"] == second["Tuning"]["HyperParameterTuningJobArn"]
    assert _tuning_jobs(sagemaker_client, name) == [name], "a retry started a second tuning job"


def test_a_retried_tuning_task_resubmits_a_stopped_job_under_a_retry_name(sagemaker_client, tune_source_uri):
    name = unique("rs-tune")
    sagemaker_client.create_hyper_parameter_tuning_job(
        **tuning_request(name, tune_source_uri, "Grid", RANGES, max_jobs=None, parallel=1, epoch_seconds=10))
    sagemaker_client.stop_hyper_parameter_tuning_job(HyperParameterTuningJobName=name)

    result = _tuning_operator(tuning_request(name, tune_source_uri, "Grid", RANGES, max_jobs=None, parallel=2)).execute(_context(2))
    assert result["Tuning"]["HyperParameterTuningJobName"] == f"{name}-retry1"
    assert result["Tuning"]["HyperParameterTuningJobStatus"] == "Completed"
    assert _tuning_jobs(sagemaker_client, name) == [name, f"{name}-retry1"]


@pytest.fixture
def transform_input(s3_client) -> str:
    prefix = unique("rj-tf-in")
    upload(s3_client, f"{prefix}/test.csv", b"1\n2\n3\n")
    return f"s3://{TEST_BUCKET}/hosting-tests/{prefix}/"


def _transform_jobs(sagemaker_client, prefix: str) -> list[str]:
    summaries = sagemaker_client.list_transform_jobs(NameContains=prefix)["TransformJobSummaries"]
    return sorted(summary["TransformJobName"] for summary in summaries)


def test_a_retried_transform_task_returns_the_completed_job_instead_of_transforming_again(
        sagemaker_client, s3_client, transform_input):
    model = _summer_model(sagemaker_client, s3_client, scale=2)
    job, output = unique("rj-tf"), f"s3://{TEST_BUCKET}/{unique('rj-tf-out')}"

    def operator() -> SageMakerResumableTransformOperator:
        return SageMakerResumableTransformOperator(
            task_id="batch_transform", check_interval=1, check_if_model_exists=False,
            config={"Transform": _transform_request(job, model, transform_input, output)})

    first = operator().execute(_context(1))
    assert first["Transform"]["TransformJobName"] == job and first["Transform"]["TransformJobStatus"] == "Completed"
    second = operator().execute(_context(2))
    assert second["Transform"]["TransformJobArn"] == first["Transform"]["TransformJobArn"]
    assert _transform_jobs(sagemaker_client, job) == [job], "the retry transformed the data set again"


def test_a_retried_transform_task_resubmits_a_stopped_job_and_keeps_its_model(sagemaker_client, s3_client, transform_input):
    model_name, job = unique("rs-tf-model"), unique("rs-tf")
    output = f"s3://{TEST_BUCKET}/{unique('rs-tf-out')}"
    model_uri = upload(s3_client, f"{model_name}/model.tar.gz",
                       model_archive({"model.json": json.dumps({"scale": 3}), "code/inference.py": SUMMER_PY}))
    # the config creates the model alongside the job, as the brain-to-text DAG's batch decode does
    model_config = {"ModelName": model_name, "ExecutionRoleArn": TEST_ROLE_ARN,
                    "PrimaryContainer": {"Image": IMAGE, "ModelDataUrl": model_uri,
                                         "Environment": {"SAGEMAKER_PROGRAM": "inference.py"}}}

    # the first try created the model and a job that was then stopped (a slow model keeps it running)
    sagemaker_client.create_model(**model_config)
    slow_model = _summer_model(sagemaker_client, s3_client, scale=3, model_fn_sleep=30)
    sagemaker_client.create_transform_job(**_transform_request(job, slow_model, transform_input, output))
    sagemaker_client.stop_transform_job(TransformJobName=job)
    assert _wait(sagemaker_client, job)["TransformJobStatus"] == "Stopped"

    result = SageMakerResumableTransformOperator(
        task_id="batch_decode", check_interval=1,
        config={"Model": model_config, "Transform": _transform_request(job, model_name, transform_input, output)},
    ).execute(_context(2))
    assert result["Transform"]["TransformJobName"] == f"{job}-retry1"
    assert result["Transform"]["TransformJobStatus"] == "Completed"
    assert result["Model"]["ModelName"] == model_name
    assert [m["ModelName"] for m in sagemaker_client.list_models(NameContains=model_name)["Models"]] == [model_name], \
        "the retry made a timestamped copy of the model"
    scored = s3_client.get_object(Bucket=TEST_BUCKET, Key=f"{output.split('/', 3)[3]}/test.csv.out")["Body"].read().decode()
    assert [line.split(",")[0] for line in scored.splitlines()] == ["3", "6", "9"]
