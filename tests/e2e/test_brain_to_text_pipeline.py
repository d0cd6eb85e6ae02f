"""The Brain-to-Text DAG, whole, in a real Airflow (scheduler, triggerer, tasks in parallel) against the local SageMaker.

The first run (no champion yet): a training job that streams its sessions from S3, the gate, the
challenger scored on held-out trials, registered as version 1 and approved, and the approved version's
batch decode of a held-out session, read back; a run report in S3; no endpoint anywhere. A second run
trained too weakly to learn is rejected, and version 1, still the latest Approved one, decodes again."""
from __future__ import annotations

import io
import json
import tarfile

import pytest

from include.pipelines.config import load_workload
from tests.e2e.promotion_checks import (
    PROMOTION_TASKS,
    SETUP_TASKS,
    assert_first_promotion,
    assert_rejected_at_the_gate,
    assert_report,
    assert_tasks,
    final_metrics,
    s3_bytes,
    training_job,
    versions,
)

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

DAG_ID = "brain_to_text_pipeline"
WORKLOAD = load_workload("brain_to_text", "local")
GROUP = WORKLOAD.registry.model_package_group
HELD_OUT = "t15.2025.01.20"
DECODE_TASKS = ("approved_champion", "batch_decode", "check_decode")
# the quick-test preset (100 batches) at a peak rate far too small to move the weights: it learns nothing
TOO_WEAK = {"preset": "quick-test", "hyperparameters": {"lr-max": 1e-7, "lr-min": 1e-8}}


@pytest.fixture(scope="module")
def run(airflow):
    """The first run, default settings: it finds no champion. Shared by the tests below."""
    return airflow.run(DAG_ID, timeout=1500)


@pytest.fixture(scope="module")
def weak(run, airflow):
    """A second run, after the first, with a challenger too weak to learn."""
    return airflow.run(DAG_ID, conf=TOO_WEAK, timeout=1500)


def _decode(run, sagemaker_client, s3_client) -> tuple[dict, list[dict]]:
    """The run's batch decode as SageMaker describes it, and the trials it wrote, one per line."""
    name = run.xcom("batch_decode")["Transform"]["TransformJobName"]
    transform = sagemaker_client.describe_transform_job(TransformJobName=name)
    assert transform["TransformJobStatus"] == "Completed", transform.get("FailureReason")
    output = transform["TransformOutput"]["S3OutputPath"].rstrip("/") + "/data_test.hdf5.out"
    return transform, [json.loads(line) for line in s3_bytes(s3_client, output).decode().splitlines()]


def _decoded_version(sagemaker_client, transform: dict) -> str:
    """The model package the batch decode's model ran."""
    model = sagemaker_client.describe_model(ModelName=transform["ModelName"])
    return model["PrimaryContainer"]["ModelPackageName"]


def test_every_task_succeeds(run):
    assert run.succeeded, run.report()
    assert_tasks(run, {"success": (*SETUP_TASKS, *PROMOTION_TASKS, "approve_version", *DECODE_TASKS, "run_report"),
                       "skipped": ("await_approval", "reject_version")})


def test_training_streamed_its_sessions_and_learnt(run, sagemaker_client, s3_client):
    job = training_job(run, sagemaker_client)
    assert job["TrainingJobStatus"] == "Completed"
    assert "InputDataConfig" not in job and job["HyperParameters"]["data-s3-uri"].endswith("/brain-to-text/data")
    metrics = final_metrics(job)
    assert metrics["validation:best_der"] <= WORKLOAD.evaluation.threshold, metrics  # the gate; untrained scores 1.0
    with tarfile.open(fileobj=io.BytesIO(s3_bytes(s3_client, job["ModelArtifacts"]["S3ModelArtifacts"]))) as tar:
        names = set(tar.getnames())
    assert {"checkpoint/best_checkpoint", "checkpoint/args.yaml", "checkpoint/val_metrics.json", "training_log",
            "code/inference.py"} <= names, names


def test_a_first_promotion_approves_version_1(run, sagemaker_client, s3_client):
    package = assert_first_promotion(run, sagemaker_client, s3_client, GROUP)
    decision = run.xcom("decide")
    assert decision["metric"] == "diphone_error_rate" and decision["direction"] == "minimize", decision
    assert decision["challenger"] <= WORKLOAD.promotion.threshold, decision
    assert float(package["CustomerMetadataProperties"]["evaluation-diphone_error_rate"]) == pytest.approx(
        decision["challenger"], abs=1e-6)
    report = assert_report(run, s3_client, "promoted")
    assert report["endpoint"] is None, report  # this workload serves in batch only


def test_the_approved_version_batch_decoded_the_held_out_session(run, sagemaker_client, s3_client):
    champion = run.xcom("approved_champion")
    version_1 = run.xcom("register_version")["model_package_arn"]
    assert champion["version"] == 1 and champion["model_package_arn"] == version_1, champion
    transform, trials = _decode(run, sagemaker_client, s3_client)
    assert _decoded_version(sagemaker_client, transform) == version_1
    source = transform["TransformInput"]["DataSource"]["S3DataSource"]["S3Uri"]
    assert source.endswith(f"/{HELD_OUT}/data_test.hdf5")
    assert [t["trial"] for t in trials] == [f"trial_{i:04d}" for i in range(8)]
    assert all(t["session"] == HELD_OUT and t["diphone_ids"] and len(t["phonemes"]) == len(t["diphone_ids"]) for t in trials)
    der = sum(t["edit_distance"] for t in trials) / sum(t["label_length"] for t in trials)
    assert der < 0.6, trials[:2]  # real decoding of trials the model never saw
    log = run.log("check_decode")
    assert "Batch decode" in log and f"DER {der:.4f}" in log
    assert run.xcom("check_decode")


def test_no_endpoint_anywhere(run, sagemaker_client):
    assert [e for e in sagemaker_client.list_endpoints()["Endpoints"] if "brain-to-text" in e["EndpointName"]] == []


def test_a_challenger_too_weak_to_learn_is_rejected_and_version_1_decodes_again(weak, run, sagemaker_client, s3_client):
    assert weak.succeeded, weak.report()  # a rejection is a normal outcome, not a failure
    job = training_job(weak, sagemaker_client)
    assert job["HyperParameters"]["num-training-batches"] == "100"  # the quick-test preset
    assert float(job["HyperParameters"]["lr-max"]) == 1e-7
    assert final_metrics(job)["validation:best_der"] > WORKLOAD.evaluation.threshold, final_metrics(job)
    # it is stopped at the gate, on the job's own validation DER: never evaluated, never registered
    assert_rejected_at_the_gate(weak, sagemaker_client, s3_client, GROUP, versions_before=1)
    assert versions(sagemaker_client, GROUP)[1]["ModelApprovalStatus"] == "Approved"

    # the decode runs after the decision either way: the champion, still version 1, decoded the session
    assert_tasks(weak, {"success": DECODE_TASKS})
    version_1 = run.xcom("register_version")["model_package_arn"]
    assert weak.xcom("approved_champion")["model_package_arn"] == version_1
    transform, trials = _decode(weak, sagemaker_client, s3_client)
    assert transform["TransformJobName"] != run.xcom("batch_decode")["Transform"]["TransformJobName"]
    assert _decoded_version(sagemaker_client, transform) == version_1
    assert sum(t["edit_distance"] for t in trials) / sum(t["label_length"] for t in trials) < 0.6
