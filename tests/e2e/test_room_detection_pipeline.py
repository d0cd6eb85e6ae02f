"""The room detection DAG, whole, in a real Airflow (scheduler, triggerer, tasks in parallel) against the local SageMaker.

The first run (no champion yet): real YOLOv8 training on synthetic floor plans, the challenger scored on
the held-out test plans, registered as version 1 and approved, the standing serverless endpoint
`room-detection` created on it and answering real images (refusing broken ones with client errors while
it keeps serving), best.pt published, a run report in S3. A second run trained too weakly to learn is
rejected: the champion serves on and the published best.pt stays the champion's."""
from __future__ import annotations

import io
import json
import tarfile

import pytest

from include.pipelines.config import load_workload
from tests.e2e.promotion_checks import (
    PROMOTION_TASKS,
    ROLLOUT_TASKS,
    SETUP_TASKS,
    assert_first_promotion,
    assert_rejected_at_the_gate,
    assert_report,
    assert_standing_endpoint_created,
    assert_tasks,
    final_metrics,
    serving_config,
    training_job,
)

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

DAG_ID = "room_detection_pipeline"
WORKLOAD = load_workload("room_detection", "local")
BUCKET = WORKLOAD.bucket
PREFIX = WORKLOAD.s3_prefix
ENDPOINT = WORKLOAD.promotion.endpoint_name
GROUP = WORKLOAD.registry.model_package_group
# one epoch at a rate far too small to move the weights (an untrained YOLOv8n scores mAP50 0): seconds of training
TOO_WEAK = {"epochs": 1, "hyperparameters": {"lr0": 1e-7}}


@pytest.fixture(scope="module")
def run(airflow):
    """The first run, default settings: it finds no champion. Shared by the tests below."""
    return airflow.run(DAG_ID, timeout=1500)


@pytest.fixture(scope="module")
def weak(run, airflow):
    """A second run, after the first, with a challenger too weak to learn."""
    return airflow.run(DAG_ID, conf=TOO_WEAK, timeout=1500)


def _model_archive(s3_client, model_uri: str) -> dict[str, bytes]:
    bucket, key = model_uri.removeprefix("s3://").split("/", 1)
    archive = s3_client.get_object(Bucket=bucket, Key=key)["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        return {m.name.removeprefix("./"): tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}


def test_every_task_succeeds(run):
    assert run.succeeded, run.report()
    assert_tasks(run, {"success": (*SETUP_TASKS, *PROMOTION_TASKS, "approve_version", *ROLLOUT_TASKS,
                                   "publish_model", "run_report"),
                       "skipped": ("await_approval", "reject_version", "reject_failed_rollout")})


def test_the_data_sync_reports_counts_per_split(run):
    assert "per split: train: 64 images, 64 labels; val: 16 images, 16 labels; test: 8 images, 8 labels" in run.log("upload_data")


def test_yolo_really_trained_and_cleared_the_gate(run, sagemaker_client, s3_client):
    job = training_job(run, sagemaker_client)
    assert job["TrainingJobStatus"] == "Completed"
    metrics = final_metrics(job)
    assert metrics["best:validation:mAP50"] >= WORKLOAD.evaluation.threshold, metrics  # an untrained YOLOv8n scores 0
    assert 0 <= metrics["test:mAP50"] <= 1

    files = _model_archive(s3_client, job["ModelArtifacts"]["S3ModelArtifacts"])
    for name in ("best.pt", "last.pt", "model.pth", "yolov8n.yaml", "model_info.json", "training_metrics.json",
                 "code/inference.py", "code/requirements.txt"):
        assert name in files, f"model.tar.gz lacks {name}: {sorted(files)}"
    training = json.loads(files["training_metrics.json"])
    assert training["best"]["mAP50"] == pytest.approx(metrics["best:validation:mAP50"], abs=1e-4)
    assert len(training["history"]) == int(job["HyperParameters"]["epochs"])


def test_a_first_promotion_approves_version_1_and_creates_the_standing_endpoint(run, sagemaker_client, s3_client):
    assert_first_promotion(run, sagemaker_client, s3_client, GROUP)
    decision = run.xcom("decide")
    assert decision["metric"] == "map50" and decision["challenger"] >= WORKLOAD.promotion.threshold, decision
    assert_standing_endpoint_created(run, sagemaker_client, ENDPOINT)
    report = assert_report(run, s3_client, "promoted")
    assert report["endpoint"]["name"] == ENDPOINT and report["endpoint"]["config"] == f"{ENDPOINT}-v1", report
    # no endpoint or endpoint config of the run's own: only the standing endpoint's, one per version
    assert [e["EndpointName"] for e in sagemaker_client.list_endpoints()["Endpoints"]
            if "room-detection" in e["EndpointName"]] == [ENDPOINT]
    assert [c["EndpointConfigName"] for c in sagemaker_client.list_endpoint_configs()["EndpointConfigs"]
            if "room-detection" in c["EndpointConfigName"]] == [f"{ENDPOINT}-v1"]


def test_serverless_endpoint_answered_floor_plans_and_refused_broken_bodies(run, sagemaker_client):
    endpoint_config = run.xcom("create_standing_endpoint_config")["EndpointConfig"]
    assert endpoint_config["EndpointConfigName"] == f"{ENDPOINT}-v1"
    assert "ServerlessConfig" in endpoint_config["ProductionVariants"][0]
    assert "ServerlessConfig" in sagemaker_client.describe_endpoint_config(
        EndpointConfigName=f"{ENDPOINT}-v1")["ProductionVariants"][0]

    smoke = run.xcom("smoke_test")
    assert [image["content_type"] for image in smoke["images"]] == ["image/png", "image/jpeg"]
    assert smoke["matched"] >= 1, smoke  # the trained model finds real rooms, at IoU >= 0.5
    top = smoke["images"][0]["top_box"]
    assert top["class"] == "room" and 0 < top["confidence"] <= 1 and len(top["xyxy"]) == 4
    assert set(smoke["bad_inputs"]) == {"truncated_png", "empty_body", "not_an_image"}
    for name, refusal in smoke["bad_inputs"].items():
        assert refusal["error"] == "ModelError" and refusal["status"] == 400, (name, refusal)
    assert "not a readable image/png image" in smoke["bad_inputs"]["truncated_png"]["message"]
    assert "The body is empty" in smoke["bad_inputs"]["empty_body"]["message"]
    assert smoke["served_after_bad_inputs"] is True


def _assert_published(s3_client, job: dict) -> None:
    best = _model_archive(s3_client, job["ModelArtifacts"]["S3ModelArtifacts"])["best.pt"]
    latest = s3_client.get_object(Bucket=BUCKET, Key=f"{PREFIX}/models/latest/best.pt")
    assert latest["Body"].read() == best
    assert latest["Metadata"]["training-job"] == job["TrainingJobName"]
    manifest = json.loads(s3_client.get_object(Bucket=BUCKET, Key=f"{PREFIX}/models/latest/manifest.json")["Body"].read())
    assert manifest["training_job"] == job["TrainingJobName"]


def test_best_pt_is_published_to_the_latest_location(run, sagemaker_client, s3_client):
    _assert_published(s3_client, training_job(run, sagemaker_client))


def test_a_challenger_too_weak_to_learn_is_rejected_and_the_champion_serves_on(
        weak, run, sagemaker_client, s3_client):
    assert weak.succeeded, weak.report()  # a rejection is a normal outcome, not a failure
    job = training_job(weak, sagemaker_client)
    assert job["HyperParameters"]["epochs"] == "1" and float(job["HyperParameters"]["lr0"]) == 1e-7
    assert final_metrics(job)["best:validation:mAP50"] < WORKLOAD.evaluation.threshold, final_metrics(job)
    # it is stopped at the gate, on the job's own validation metric: never evaluated, never registered
    assert_rejected_at_the_gate(weak, sagemaker_client, s3_client, GROUP, versions_before=1)
    assert_tasks(weak, {"skipped": (*ROLLOUT_TASKS, "publish_model")})
    assert serving_config(sagemaker_client, ENDPOINT) == f"{ENDPOINT}-v1"
    from include.pipelines.promotion import latest_approved_version

    assert latest_approved_version(sagemaker_client, GROUP)["version"] == 1
    _assert_published(s3_client, training_job(run, sagemaker_client))  # models/latest/ is still the champion's
