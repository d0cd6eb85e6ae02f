"""The CIFAR-10 DAG, whole, in a real Airflow (scheduler, triggerer, tasks in parallel) against the
local SageMaker: real tuning and training, the first promotion creating the standing endpoint (with
autoscaling) that answers real images while the batch transform runs beside it on a model of its own,
nothing of the run left behind but that endpoint, and a run stopped from the API stops its job.
The promotion's later cases (rejection, canary rollback, approvals, rollback) are in
test_promotion_lifecycle.py."""
from __future__ import annotations

import io
import sys
import tarfile
import time
from pathlib import Path

import pytest


pytestmark = [pytest.mark.e2e, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
DAG_ID = "cifar10_pipeline"


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


def _leftovers(sagemaker_client, autoscaling_client, names: list[str]) -> dict[str, list[str]]:
    """What of this run still exists in the local SageMaker: endpoints, configs, models, scalable targets."""
    def ours(name: str) -> bool:
        return name in names

    return {
        "endpoints": [e["EndpointName"] for e in sagemaker_client.list_endpoints()["Endpoints"] if ours(e["EndpointName"])],
        "endpoint_configs": [c["EndpointConfigName"] for c in sagemaker_client.list_endpoint_configs()["EndpointConfigs"]
                             if ours(c["EndpointConfigName"])],
        "models": [m["ModelName"] for m in sagemaker_client.list_models()["Models"] if ours(m["ModelName"])],
        "scalable_targets": [t["ResourceId"] for t in autoscaling_client.describe_scalable_targets(
            ServiceNamespace="sagemaker")["ScalableTargets"] if any(f"endpoint/{n}/" in t["ResourceId"] for n in names)],
    }


@pytest.fixture(scope="module")
def autoscaling_client(emulator):
    import boto3

    return boto3.client("application-autoscaling", endpoint_url=emulator.endpoint_url, region_name="us-east-1",
                        aws_access_key_id="testing", aws_secret_access_key="testing")


def test_pipeline_tunes_trains_promotes_smoke_tests_and_leaves_only_the_standing_endpoint(
        airflow, sagemaker_client, s3_client, autoscaling_client):
    run = airflow.run(DAG_ID, timeout=1500)
    assert run.succeeded, run.report()
    for task_id in ("tune", "train", "evaluate", "evaluate_models", "decide", "register_version", "approve_version",
                    "create_standing_model", "deploy_standing_endpoint", "enable_autoscaling", "smoke_test",
                    "batch_model_request", "batch_transform", "check_batch_output", "delete_batch_model", "run_report"):
        assert run.states.get(task_id) == "success", f"{task_id}: {run.states.get(task_id)} (all: {run.states})"

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

    # the batch transform ran on a model of its own beside the rollout
    transform = sagemaker_client.describe_transform_job(TransformJobName=run.xcom("batch_transform")["Transform"][
        "TransformJobName"])
    assert transform["TransformJobStatus"] == "Completed", transform.get("FailureReason")
    endpoint_model = run.xcom("create_standing_model")["Model"]["ModelName"]
    assert transform["ModelName"] != endpoint_model
    # ... and scored every test image (160 in the local data set)
    scores = run.xcom("check_batch_output")
    assert scores["records"] == 160 and 0.0 <= scores["accuracy"] <= 1.0, scores
    smoke = run.xcom("smoke_test")
    assert smoke["requests"] == len(smoke["predictions"]) > 0

    # no champion yet: the tuned model was scored on the held-out test batch, registered and promoted
    decision = run.xcom("decide")
    assert decision["promote"] and decision["champion"] is None and decision["metric"] == "accuracy", decision
    assert decision["challenger"] >= 0.5 and decision["challenger_report"]["samples"] == 160, decision
    version = sagemaker_client.describe_model_package(ModelPackageName=run.xcom("register_version")["model_package_arn"])
    assert version["ModelApprovalStatus"] == "Approved" and version["CustomerMetadataProperties"]["training-job"] == job[
        "TrainingJobName"]
    report = run.xcom("run_report")
    assert report["outcome"] == "promoted" and report["cost_usd"] > 0, report
    bucket, key = report["report"].removeprefix("s3://").split("/", 1)
    page = s3_client.get_object(Bucket=bucket, Key=key)["Body"].read().decode()
    assert "promoted" in page.lower() and job["TrainingJobName"] in page

    # what the run leaves is the standing endpoint, with autoscaling; the batch model went with its teardown
    endpoint = smoke["endpoint"]
    assert endpoint == "cifar10-classifier" and run.xcom("deploy_standing_endpoint")["action"] == "created"
    assert sagemaker_client.describe_endpoint(EndpointName=endpoint)["EndpointConfigName"] == "cifar10-classifier-v1"
    assert _leftovers(sagemaker_client, autoscaling_client, [endpoint, "cifar10-classifier-v1", transform["ModelName"]]) == {
        "endpoints": [endpoint], "endpoint_configs": ["cifar10-classifier-v1"], "models": ["cifar10-classifier-v1"],
        "scalable_targets": [f"endpoint/{endpoint}/variant/AllTraffic"]}


def test_failing_training_script_surfaces_its_own_error(airflow, sagemaker_client):
    run = airflow.run(DAG_ID, conf={"hyperparameters": {"learning-rate": -1}, "epochs": 1, "tune": False}, timeout=900)
    assert run.state == "failed", run.report()
    assert run.states.get("train") == "failed", run.states
    assert run.states.get("deploy_standing_endpoint") != "success"
    assert run.states.get("tune") == "skipped", run.states
    job = sagemaker_client.describe_training_job(TrainingJobName=_jobs(sagemaker_client)[0]["TrainingJobName"])
    assert job["TrainingJobStatus"] == "Failed"
    assert "learning-rate" in job["FailureReason"] or "learning_rate" in job["FailureReason"], job["FailureReason"]
    # the script's own message reaches the Airflow task log of every try
    log = run.log("train")
    assert job["FailureReason"].splitlines()[0][:80] in log, log[-3000:]


def test_marking_a_deferred_training_task_failed_stops_its_job(airflow, sagemaker_client):
    """A person stops a run from the UI: the job it pays for stops too, though the task waits in the triggerer."""
    run = airflow.trigger(DAG_ID, conf={"tune": False, "epochs": 50})
    deadline = time.monotonic() + 600
    # deferred, and its trigger running in the triggerer: a task marked failed in the moment before a
    # triggerer picks its trigger up has no trigger to stop its job (a limit the README names)
    while not ((ti := airflow.task_instance(run, "train"))["state"] == "deferred"
               and (ti.get("trigger") or {}).get("triggerer_id")):
        assert time.monotonic() < deadline, airflow.refresh(run).states
        time.sleep(1)
    time.sleep(3)  # the trigger polls its job once: it is then surely running, not only assigned
    job_name = run.xcom("final_training_request")["TrainingJobName"]
    assert sagemaker_client.describe_training_job(TrainingJobName=job_name)["TrainingJobStatus"] == "InProgress"

    airflow.set_task_state(run, "train", "failed")
    deadline = time.monotonic() + 120
    while (status := sagemaker_client.describe_training_job(TrainingJobName=job_name)["TrainingJobStatus"]) != "Stopped":
        assert status in ("InProgress", "Stopping") and time.monotonic() < deadline, status
        time.sleep(2)
    airflow.wait(run, timeout=600)
    assert run.state == "failed" and run.states["train"] == "failed", run.states
    assert run.states["deploy_standing_endpoint"] != "success"
