"""The Brain-to-Text DAG, whole, in a real Airflow (scheduler, triggerer, tasks in parallel) against the local SageMaker: a training job that
streams its sessions from S3, the gate, a registered model version, and that version's batch decode of a
held-out session, read back; no endpoint anywhere."""
from __future__ import annotations

import io
import json
import tarfile

import pytest


pytestmark = [pytest.mark.e2e, pytest.mark.slow]

DAG_ID = "brain_to_text_pipeline"
GROUP = "brain-to-text-diphone-decoder"
HELD_OUT = "t15.2025.01.20"




def _s3_object(s3_client, uri: str) -> bytes:
    bucket, key = uri.removeprefix("s3://").split("/", 1)
    return s3_client.get_object(Bucket=bucket, Key=key)["Body"].read()


def test_pipeline_streams_trains_gates_registers_and_batch_decodes(airflow, sagemaker_client, s3_client):
    run = airflow.run(DAG_ID, timeout=900)
    assert run.succeeded, run.report()
    states = run.states
    # register_model is mapped (expand_kwargs over one version): its one instance is register_model[0]
    for task_id in ("upload_data", "train", "evaluate", "model_version", "register_model[0]", "batch_decode",
                    "check_decode"):
        assert states.get(task_id) == "success", f"{task_id}: {states.get(task_id)} (all: {states})"

    # training: streamed (no channel downloaded), and it learnt
    (summary,) = sagemaker_client.list_training_jobs(NameContains="brain-to-text")["TrainingJobSummaries"]
    job = sagemaker_client.describe_training_job(TrainingJobName=summary["TrainingJobName"])
    assert job["TrainingJobStatus"] == "Completed"
    assert "InputDataConfig" not in job and job["HyperParameters"]["data-s3-uri"].endswith("/brain-to-text/data")
    metrics = {m["MetricName"]: m["Value"] for m in job["FinalMetricDataList"]}
    assert metrics["validation:best_der"] <= 0.6, metrics  # the gate; untrained scores 1.0
    model_data = job["ModelArtifacts"]["S3ModelArtifacts"]
    with tarfile.open(fileobj=io.BytesIO(_s3_object(s3_client, model_data))) as tar:
        names = set(tar.getnames())
    assert {"checkpoint/best_checkpoint", "checkpoint/args.yaml", "checkpoint/val_metrics.json", "training_log",
            "code/inference.py"} <= names, names

    # registration: one approved version of the trained artifact, its DER as metadata
    (listed,) = sagemaker_client.list_model_packages(ModelPackageGroupName=GROUP)["ModelPackageSummaryList"]
    package = sagemaker_client.describe_model_package(ModelPackageName=listed["ModelPackageArn"])
    assert package["ModelApprovalStatus"] == "Approved"
    assert package["InferenceSpecification"]["Containers"][0]["ModelDataUrl"] == model_data
    assert float(package["CustomerMetadataProperties"]["validation:best_der"]) == pytest.approx(metrics["validation:best_der"], abs=1e-4)
    assert package["CustomerMetadataProperties"]["training-job"] == job["TrainingJobName"]

    # the batch decode ran the registered version over the held-out session
    (transform_summary,) = sagemaker_client.list_transform_jobs(NameContains="brain-to-text")["TransformJobSummaries"]
    transform = sagemaker_client.describe_transform_job(TransformJobName=transform_summary["TransformJobName"])
    assert transform["TransformJobStatus"] == "Completed", transform.get("FailureReason")
    model = sagemaker_client.describe_model(ModelName=transform["ModelName"])
    containers = [model.get("PrimaryContainer", {})] + model.get("Containers", [])
    assert any(c.get("ModelPackageName") == listed["ModelPackageArn"] for c in containers), model
    source = transform["TransformInput"]["DataSource"]["S3DataSource"]["S3Uri"]
    assert source.endswith(f"/{HELD_OUT}/data_test.hdf5")
    output = transform["TransformOutput"]["S3OutputPath"].rstrip("/") + "/data_test.hdf5.out"
    trials = [json.loads(line) for line in _s3_object(s3_client, output).decode().splitlines()]
    assert [t["trial"] for t in trials] == [f"trial_{i:04d}" for i in range(8)]
    assert all(t["session"] == HELD_OUT and t["diphone_ids"] and len(t["phonemes"]) == len(t["diphone_ids"]) for t in trials)
    der = sum(t["edit_distance"] for t in trials) / sum(t["label_length"] for t in trials)
    assert der < 0.6, trials[:2]  # real decoding of trials the model never saw
    logs = run.logs()
    assert "Batch decode" in logs and f"DER {der:.4f}" in logs

    # no endpoint: this workload serves in batch only
    assert [e for e in sagemaker_client.list_endpoints()["Endpoints"] if "brain-to-text" in e["EndpointName"]] == []
