"""The acoustic shield DAG, whole, in a real Airflow (scheduler, triggerer, tasks in parallel) against the local SageMaker: real training
on synthetic clips, a real endpoint answering WAV files (and refusing bad bodies with a 4xx while it
keeps serving), the endpoint's details published, and nothing left running afterwards."""
from __future__ import annotations

import io
import json
import sqlite3
import tarfile
from pathlib import Path

import pytest

from include.datasets.acoustic_shield import LABELS

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

DAG_ID = "acoustic_shield_pipeline"
TASKS = ("resolve_settings", "upload_data", "package_source", "plan", "train", "evaluate", "create_model",
         "create_endpoint_config", "deploy_endpoint", "smoke_test", "publish_endpoint", "delete_endpoint")


@pytest.fixture(scope="module")
def run(airflow):
    """One DAG run, shared by the tests below."""
    return airflow.run(DAG_ID, timeout=900)




def _database(airflow_home: Path) -> sqlite3.Connection:
    return sqlite3.connect(airflow_home / "airflow.db")




def _asset_events(airflow_home: Path, asset_name: str) -> list[dict]:
    with _database(airflow_home) as db:
        rows = db.execute(
            "SELECT e.extra FROM asset_event e JOIN asset a ON a.id = e.asset_id WHERE a.name = ? ORDER BY e.id",
            (asset_name,)).fetchall()
    return [json.loads(extra) if isinstance(extra, str) else extra for (extra,) in rows]


def _latest_job(sagemaker_client) -> dict:
    summaries = sagemaker_client.list_training_jobs(NameContains="acoustic-shield", SortBy="CreationTime",
                                                    SortOrder="Descending")["TrainingJobSummaries"]
    return sagemaker_client.describe_training_job(TrainingJobName=summaries[0]["TrainingJobName"])


def test_every_task_succeeds(run):
    assert run.succeeded, run.report()
    for task_id in TASKS:
        assert run.states.get(task_id) == "success", f"{task_id}: {run.states.get(task_id)} (all: {run.states})"


def test_training_really_ran_and_cleared_the_gate(run, sagemaker_client, s3_client):
    job = _latest_job(sagemaker_client)
    assert job["TrainingJobStatus"] == "Completed"
    assert job["AlgorithmSpecification"]["TrainingImage"].split("/")[-1].startswith("huggingface-pytorch-training:")
    metrics = {m["MetricName"]: m["Value"] for m in job["FinalMetricDataList"]}
    assert metrics["epoch"] == 4, metrics
    assert metrics["best:validation:macro_f1"] >= 0.5, metrics  # the local gate; chance is 0.25

    bucket, key = job["ModelArtifacts"]["S3ModelArtifacts"].removeprefix("s3://").split("/", 1)
    archive = s3_client.get_object(Bucket=bucket, Key=key)["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        names = set(tar.getnames())
        label_info = json.load(tar.extractfile("label_info.json"))
    assert {"model.safetensors", "config.json", "preprocessor_config.json", "label_info.json",
            "code/inference.py", "code/audio.py", "code/requirements.txt"} <= names, names
    assert label_info["labels"] == sorted(LABELS)
    assert label_info["best_metric"]["value"] == pytest.approx(metrics["best:validation:macro_f1"], abs=1e-4)


def test_endpoint_classified_clips_and_refused_bad_bodies(run):
    smoke = run.xcom("smoke_test")
    assert [p["true_label"] for p in smoke["predictions"]] == list(LABELS)
    assert all(p["label"] in LABELS and 0 < p["confidence"] <= 1 for p in smoke["predictions"])
    assert {r["body"] for r in smoke["refused"]} == {"not_wav", "empty", "truncated_wav"}
    for refusal in smoke["refused"]:
        assert refusal["error"] == "ModelError" and refusal["status"] == 400, refusal
        assert "WAV" in refusal["message"], refusal
    assert smoke["serving_after_bad_requests"] is True


def test_the_model_server_logged_the_refusals_and_went_on_serving(run, logs_client):
    endpoint_name = run.xcom("smoke_test")["endpoint"]
    group = f"/aws/sagemaker/Endpoints/{endpoint_name}"
    events = logs_client.filter_log_events(logGroupName=group)["events"]
    requests = [e["message"] for e in events if "POST /invocations" in e["message"]]
    statuses = [int(line.split("POST /invocations ")[1].split()[0]) for line in requests]
    assert statuses.count(400) == 3, requests
    assert statuses[-1] == 200 and statuses.index(400) < len(statuses) - 1, statuses


def test_endpoint_details_published_as_xcom_and_asset_event(run, airflow, sagemaker_client):
    details = run.xcom("publish_endpoint")
    job = _latest_job(sagemaker_client)
    assert details["endpoint_name"] == run.xcom("smoke_test")["endpoint"]
    assert details["variant"] == "AllTraffic"
    assert details["model_data"] == job["ModelArtifacts"]["S3ModelArtifacts"]
    assert details["content_type"] == "audio/wav" and details["kept_after_run"] is False
    events = _asset_events(airflow.home, "acoustic_shield_endpoint")
    assert events and events[-1]["endpoint_name"] == details["endpoint_name"], events


def test_teardown_left_no_endpoint(run, sagemaker_client):
    endpoints = [e["EndpointName"] for e in sagemaker_client.list_endpoints()["Endpoints"]]
    assert [name for name in endpoints if name.startswith("acoustic-shield")] == []
