"""The room detection DAG, whole, in a real Airflow (scheduler, triggerer, tasks in parallel) against the local SageMaker: real YOLOv8
training on synthetic floor plans, a serverless endpoint answering real images (and refusing broken
ones with client errors while it keeps serving), best.pt published, and nothing left running."""
from __future__ import annotations

import io
import json
import tarfile

import pytest

from include.pipelines.config import load_workload

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

DAG_ID = "room_detection_pipeline"
BUCKET = load_workload("room_detection", "local").bucket
PREFIX = load_workload("room_detection", "local").s3_prefix
TASKS = ("upload_data", "package_source", "plan", "train", "evaluate", "create_model", "create_endpoint_config",
         "deploy_endpoint", "smoke_test", "publish_model", "delete_endpoint")


@pytest.fixture(scope="module")
def run(airflow):
    """One DAG run, shared by the tests below."""
    return airflow.run(DAG_ID, timeout=1500)






def _job(sagemaker_client) -> dict:
    [latest, *_] = sagemaker_client.list_training_jobs(
        NameContains="room-detection", SortBy="CreationTime", SortOrder="Descending")["TrainingJobSummaries"]
    return sagemaker_client.describe_training_job(TrainingJobName=latest["TrainingJobName"])


def _model_archive(s3_client, model_uri: str) -> dict[str, bytes]:
    bucket, key = model_uri.removeprefix("s3://").split("/", 1)
    archive = s3_client.get_object(Bucket=bucket, Key=key)["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        return {m.name.removeprefix("./"): tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}


def test_every_task_succeeds(run):
    assert run.succeeded, run.report()
    for task_id in TASKS:
        assert run.states.get(task_id) == "success", f"{task_id}: {run.states.get(task_id)} (all: {run.states})"


def test_the_data_sync_reports_counts_per_split(run):
    assert "per split: train: 64 images, 64 labels; val: 16 images, 16 labels; test: 8 images, 8 labels" in run.log("upload_data")


def test_yolo_really_trained_and_cleared_the_gate(run, sagemaker_client, s3_client):
    job = _job(sagemaker_client)
    assert job["TrainingJobStatus"] == "Completed"
    metrics = {m["MetricName"]: m["Value"] for m in job["FinalMetricDataList"]}
    gate = load_workload("room_detection", "local").evaluation
    assert metrics["best:validation:mAP50"] >= gate.threshold, metrics  # an untrained YOLOv8n scores 0
    assert 0 <= metrics["test:mAP50"] <= 1

    files = _model_archive(s3_client, job["ModelArtifacts"]["S3ModelArtifacts"])
    for name in ("best.pt", "last.pt", "model.pth", "yolov8n.yaml", "model_info.json", "training_metrics.json",
                 "code/inference.py", "code/requirements.txt"):
        assert name in files, f"model.tar.gz lacks {name}: {sorted(files)}"
    training = json.loads(files["training_metrics.json"])
    assert training["best"]["mAP50"] == pytest.approx(metrics["best:validation:mAP50"], abs=1e-4)
    assert len(training["history"]) == int(job["HyperParameters"]["epochs"])


def test_serverless_endpoint_answered_floor_plans_and_refused_broken_bodies(run):
    endpoint_config = run.xcom("create_endpoint_config")["EndpointConfig"]
    assert "ServerlessConfig" in endpoint_config["ProductionVariants"][0]

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


def test_best_pt_is_published_to_the_latest_location(run, sagemaker_client, s3_client):
    job = _job(sagemaker_client)
    best = _model_archive(s3_client, job["ModelArtifacts"]["S3ModelArtifacts"])["best.pt"]
    latest = s3_client.get_object(Bucket=BUCKET, Key=f"{PREFIX}/models/latest/best.pt")
    assert latest["Body"].read() == best
    assert latest["Metadata"]["training-job"] == job["TrainingJobName"]
    manifest = json.loads(s3_client.get_object(Bucket=BUCKET, Key=f"{PREFIX}/models/latest/manifest.json")["Body"].read())
    assert manifest["training_job"] == job["TrainingJobName"]


def test_the_endpoint_is_gone_afterwards(run, sagemaker_client):
    assert [e["EndpointName"] for e in sagemaker_client.list_endpoints()["Endpoints"] if "room-detection" in e["EndpointName"]] == []
    assert [c["EndpointConfigName"] for c in sagemaker_client.list_endpoint_configs()["EndpointConfigs"]
            if "room-detection" in c["EndpointConfigName"]] == []
