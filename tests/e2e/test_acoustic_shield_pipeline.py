"""The acoustic shield DAG, whole, in a real Airflow (scheduler, triggerer, tasks in parallel) against the local SageMaker.

The first run (no champion yet): real training on synthetic clips, the challenger scored on the held-out
clips, registered as version 1 and approved, the standing endpoint `acoustic-shield` created on it and
answering WAV files (refusing bad bodies with a 4xx while it keeps serving), the endpoint's details
published, a run report in S3. A second run trained too weakly to learn is rejected, and the champion
serves on untouched."""
from __future__ import annotations

import io
import json
import sqlite3
import tarfile
from pathlib import Path

import pytest

from include.datasets.acoustic_shield import LABELS
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

DAG_ID = "acoustic_shield_pipeline"
WORKLOAD = load_workload("acoustic_shield", "local")
ENDPOINT = WORKLOAD.promotion.endpoint_name
GROUP = WORKLOAD.registry.model_package_group
# one epoch at a rate far too small to move the weights: training takes seconds and learns nothing
TOO_WEAK = {"epochs": 1, "hyperparameters": {"learning-rate": 1e-7}}


@pytest.fixture(scope="module")
def run(airflow):
    """The first run, default settings: it finds no champion. Shared by the tests below."""
    return airflow.run(DAG_ID, timeout=1500)


@pytest.fixture(scope="module")
def weak(run, airflow):
    """A second run, after the first, with a challenger too weak to learn."""
    return airflow.run(DAG_ID, conf=TOO_WEAK, timeout=1500)


def _database(airflow_home: Path) -> sqlite3.Connection:
    return sqlite3.connect(airflow_home / "airflow.db")


def _asset_events(airflow_home: Path, asset_name: str) -> list[dict]:
    with _database(airflow_home) as db:
        rows = db.execute(
            "SELECT e.extra FROM asset_event e JOIN asset a ON a.id = e.asset_id WHERE a.name = ? ORDER BY e.id",
            (asset_name,)).fetchall()
    return [json.loads(extra) if isinstance(extra, str) else extra for (extra,) in rows]


def test_every_task_succeeds(run):
    assert run.succeeded, run.report()
    assert_tasks(run, {"success": (*SETUP_TASKS, *PROMOTION_TASKS, "approve_version", *ROLLOUT_TASKS,
                                   "publish_endpoint", "run_report"),
                       "skipped": ("await_approval", "reject_version", "reject_failed_rollout")})


def test_training_really_ran_and_cleared_the_gate(run, sagemaker_client, s3_client):
    job = training_job(run, sagemaker_client)
    assert job["TrainingJobStatus"] == "Completed"
    assert job["AlgorithmSpecification"]["TrainingImage"].split("/")[-1].startswith("huggingface-pytorch-training:")
    metrics = final_metrics(job)
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


def test_a_first_promotion_approves_version_1_and_creates_the_standing_endpoint(run, sagemaker_client, s3_client):
    assert_first_promotion(run, sagemaker_client, s3_client, GROUP)
    decision = run.xcom("decide")
    assert decision["metric"] == "macro_f1" and decision["challenger"] >= WORKLOAD.promotion.threshold, decision
    assert_standing_endpoint_created(run, sagemaker_client, ENDPOINT)
    report = assert_report(run, s3_client, "promoted")
    assert report["endpoint"]["name"] == ENDPOINT and report["endpoint"]["config"] == f"{ENDPOINT}-v1", report
    # no endpoint of the run's own: the standing one is the workload's only endpoint
    endpoints = [e["EndpointName"] for e in sagemaker_client.list_endpoints()["Endpoints"]]
    assert [name for name in endpoints if name.startswith("acoustic-shield")] == [ENDPOINT], endpoints


def test_endpoint_classified_clips_and_refused_bad_bodies(run):
    smoke = run.xcom("smoke_test")
    assert smoke["endpoint"] == ENDPOINT
    assert [p["true_label"] for p in smoke["predictions"]] == list(LABELS)
    assert all(p["label"] in LABELS and 0 < p["confidence"] <= 1 for p in smoke["predictions"])
    assert {r["body"] for r in smoke["refused"]} == {"not_wav", "empty", "truncated_wav"}
    for refusal in smoke["refused"]:
        assert refusal["error"] == "ModelError" and refusal["status"] == 400, refusal
        assert "WAV" in refusal["message"], refusal
    assert smoke["serving_after_bad_requests"] is True


def test_the_model_server_logged_the_refusals_and_went_on_serving(run, logs_client):
    group = f"/aws/sagemaker/Endpoints/{run.xcom('smoke_test')['endpoint']}"
    events = logs_client.filter_log_events(logGroupName=group)["events"]
    requests = [e["message"] for e in events if "POST /invocations" in e["message"]]
    statuses = [int(line.split("POST /invocations ")[1].split()[0]) for line in requests]
    assert statuses.count(400) == 3, requests
    assert statuses[-1] == 200 and statuses.index(400) < len(statuses) - 1, statuses


def test_endpoint_details_published_as_xcom_and_asset_event(run, airflow, sagemaker_client):
    details = run.xcom("publish_endpoint")
    assert details["endpoint_name"] == ENDPOINT and details["status"] == "InService"
    assert details["endpoint_config_name"] == details["model_name"] == f"{ENDPOINT}-v1", details
    assert details["variant"] == "AllTraffic"
    assert details["model_data"] == training_job(run, sagemaker_client)["ModelArtifacts"]["S3ModelArtifacts"], details
    assert details["content_type"] == "audio/wav"
    events = _asset_events(airflow.home, "acoustic_shield_endpoint")
    assert events and events[-1]["endpoint_name"] == ENDPOINT, events
    assert events[-1]["endpoint_config_name"] == f"{ENDPOINT}-v1", events


def test_a_challenger_too_weak_to_learn_is_rejected_and_the_champion_serves_on(
        weak, airflow, sagemaker_client, runtime_client, s3_client):
    assert weak.succeeded, weak.report()  # a rejection is a normal outcome, not a failure
    job = training_job(weak, sagemaker_client)
    assert job["HyperParameters"]["epochs"] == "1" and float(job["HyperParameters"]["learning-rate"]) == 1e-7
    assert final_metrics(job)["best:validation:macro_f1"] < WORKLOAD.evaluation.threshold, final_metrics(job)
    # it is stopped at the gate, on the job's own validation metric: never evaluated, never registered
    assert_rejected_at_the_gate(weak, sagemaker_client, s3_client, GROUP, versions_before=1)
    assert_tasks(weak, {"skipped": (*ROLLOUT_TASKS, "publish_endpoint")})

    assert serving_config(sagemaker_client, ENDPOINT) == f"{ENDPOINT}-v1"
    from include.pipelines.promotion import latest_approved_version

    assert latest_approved_version(sagemaker_client, GROUP)["version"] == 1
    events = _asset_events(airflow.home, "acoustic_shield_endpoint")
    assert len(events) == 1, events  # nothing new published for consumers
    from include.datasets.acoustic_shield import sample_clip

    answer = runtime_client.invoke_endpoint(EndpointName=ENDPOINT, ContentType="audio/wav", Accept="application/json",
                                            Body=sample_clip("Normal", seconds=1.0))
    assert json.loads(answer["Body"].read())["label"] in LABELS


@pytest.fixture(scope="module")
def shorter(weak, airflow):
    """One epoch at the configured rate: it clears the gate (macro-F1 about 0.75 locally) but the champion's
    four epochs score 1.0 on the same held-out clips, which no challenger can beat."""
    return airflow.run(DAG_ID, conf={"epochs": 1}, timeout=1500)


def test_a_challenger_that_clears_the_gate_but_loses_to_the_champion_is_rejected(shorter, sagemaker_client, s3_client):
    assert shorter.succeeded, shorter.report()
    decision = shorter.xcom("decide")
    assert not decision["promote"] and decision["champion_version"] == 1, decision
    assert decision["challenger"] <= decision["champion"] and "does not beat champion" in decision["reason"], decision
    # both figures from the same evaluation job on the same clips, and in the task log
    assert decision["challenger_report"]["samples"] == decision["champion_report"]["samples"]
    log = shorter.log("decide")
    assert f"{decision['challenger']:.4f}" in log and f"{decision['champion']:.4f}" in log
    assert_tasks(shorter, {"success": ("evaluate_models", "register_version", "reject_version"),
                           "skipped": ("approve_version", "await_approval", *ROLLOUT_TASKS, "publish_endpoint")})
    version = sagemaker_client.describe_model_package(ModelPackageName=shorter.xcom("register_version")["model_package_arn"])
    assert version["ModelApprovalStatus"] == "Rejected" and decision["reason"] in version["ApprovalDescription"]
    assert version["CustomerMetadataProperties"]["decision"] == "rejected"
    assert_report(shorter, s3_client, "rejected")
    assert serving_config(sagemaker_client, ENDPOINT) == f"{ENDPOINT}-v1"
