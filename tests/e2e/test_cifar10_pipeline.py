"""The CIFAR-10 DAG, whole, with `airflow dags test` against the local SageMaker: real training,
a real endpoint answering real images, and nothing left running afterwards."""
from __future__ import annotations

import io
import sys
import tarfile
from pathlib import Path

import pytest

from include.local_airflow import dags_test, task_states, xcom

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
DAG_ID = "cifar10_pipeline"


def _output(result) -> str:
    return (result.stdout or "") + (result.stderr or "")


def _jobs(sagemaker_client) -> list[dict]:
    return sagemaker_client.list_training_jobs(NameContains="cifar10", SortBy="CreationTime", SortOrder="Descending")[
        "TrainingJobSummaries"
    ]


def _model_weights(s3_client, model_uri: str) -> dict:
    import torch

    bucket, key = model_uri.removeprefix("s3://").split("/", 1)
    archive = s3_client.get_object(Bucket=bucket, Key=key)["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        names = tar.getnames()
        assert "code/inference.py" in names, f"model.tar.gz lacks code/inference.py: {names}"
        weights = tar.extractfile("model.pth").read()
    return torch.load(io.BytesIO(weights), weights_only=True)


def _fresh_model_weights() -> dict:
    sys.path.insert(0, str(ROOT / "training_src" / "cifar10"))
    try:
        from model import build_model  # training_src/cifar10/model.py
    finally:
        sys.path.pop(0)
    return build_model().state_dict()


def test_pipeline_trains_deploys_smoke_tests_and_tears_down(airflow_env, sagemaker_client, s3_client):
    result = dags_test(DAG_ID, airflow_env, timeout=1500)
    assert result.returncode == 0, _output(result)[-6000:]
    states = task_states(airflow_env, DAG_ID)
    for task_id in ("tune", "train", "evaluate", "create_model", "deploy_endpoint", "enable_autoscaling",
                    "smoke_test", "batch_transform", "check_batch_output", "delete_endpoint"):
        assert states.get(task_id) == "success", f"{task_id}: {states.get(task_id)} (all: {states})"

    # Bayesian tuning ran real children; the final job trained with the best one's hyperparameters
    tuning_name = sagemaker_client.list_hyper_parameter_tuning_jobs(NameContains="cifar10")[
        "HyperParameterTuningJobSummaries"][0]["HyperParameterTuningJobName"]
    tuning = sagemaker_client.describe_hyper_parameter_tuning_job(HyperParameterTuningJobName=tuning_name)
    assert tuning["HyperParameterTuningJobConfig"]["Strategy"] == "Bayesian"
    assert tuning["TrainingJobStatusCounters"]["Completed"] == 2
    best = tuning["BestTrainingJob"]
    final = [j for j in _jobs(sagemaker_client) if "-train-" in j["TrainingJobName"]][0]
    job = sagemaker_client.describe_training_job(TrainingJobName=final["TrainingJobName"])
    assert job["TrainingJobStatus"] == "Completed"
    for name, value in best["TunedHyperParameters"].items():
        assert job["HyperParameters"][name] == value, name
    # ... across two hosts (DDP), on spot with checkpoints
    assert job["ResourceConfig"]["InstanceCount"] == 2
    assert job["EnableManagedSpotTraining"] and job["CheckpointConfig"]["S3Uri"].startswith("s3://")
    metrics = {m["MetricName"]: m["Value"] for m in job["FinalMetricDataList"]}
    assert 0.0 <= metrics["validation:accuracy"] <= 1.0, metrics

    trained = _model_weights(s3_client, job["ModelArtifacts"]["S3ModelArtifacts"])
    fresh = _fresh_model_weights()
    changed = [name for name, tensor in fresh.items() if tensor.is_floating_point() and not tensor.equal(trained[name])]
    assert len(changed) > len(fresh) // 2, "training left most weights at their initial values"

    # the batch transform scored every test image (160 in the local data set)
    scores = xcom(airflow_env, DAG_ID, "check_batch_output")
    assert scores["records"] == 160 and 0.0 <= scores["accuracy"] <= 1.0, scores
    smoke = xcom(airflow_env, DAG_ID, "smoke_test")
    assert smoke["requests"] == len(smoke["predictions"]) > 0
    # the teardown deregistered autoscaling and left no endpoint behind
    assert [e["EndpointName"] for e in sagemaker_client.list_endpoints()["Endpoints"] if "cifar10" in e["EndpointName"]] == []


def test_failing_training_script_surfaces_its_own_error(airflow_env, sagemaker_client):
    result = dags_test(
        DAG_ID, airflow_env, conf={"hyperparameters": {"learning-rate": -1}, "epochs": 1, "tune": False}, timeout=900
    )
    output = _output(result)
    states = task_states(airflow_env, DAG_ID)
    assert states.get("train") == "failed", states
    assert states.get("deploy_endpoint") != "success"
    assert states.get("tune") == "skipped", states
    job = sagemaker_client.describe_training_job(TrainingJobName=_jobs(sagemaker_client)[0]["TrainingJobName"])
    assert job["TrainingJobStatus"] == "Failed"
    assert "learning-rate" in job["FailureReason"] or "learning_rate" in job["FailureReason"], job["FailureReason"]
    # the script's own message reaches the Airflow task log
    assert job["FailureReason"].splitlines()[0][:80] in output or "learning" in output
