"""The pipeline steps the room detection DAG adds, against the local SageMaker's S3: the data sync with
counts per split, and publishing best.pt to a stable "latest" location."""
from __future__ import annotations

import hashlib
import io
import json
import tarfile

import pytest

from include.datasets.room_detection import check_splits, split_counts
from include.pipelines.config import load_workload
from include.pipelines.data import upload_training_data
from include.pipelines.steps import data_files, publish_model_files, run_config
from tests.conftest import TEST_BUCKET, TEST_REGION, TEST_ROLE_ARN

SETTINGS = {"workload": "room_detection", "profile": "local", "region": TEST_REGION, "bucket": TEST_BUCKET,
            "prefix": "sagemaker-pipelines/room-detection", "role_arn": TEST_ROLE_ARN}
PREFIX = "sagemaker-pipelines/room-detection"


@pytest.fixture(autouse=True)
def aws_default(emulator, monkeypatch):
    connection = {"conn_type": "aws", "login": "testing", "password": "testing",
                  "extra": {"region_name": TEST_REGION, "endpoint_url": emulator.endpoint_url}}
    monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", json.dumps(connection))


@pytest.mark.slow
def test_data_sync_skips_unchanged_files_and_counts_every_split(s3_client, tmp_path):
    cfg = run_config(SETTINGS)
    first = upload_training_data(s3_client, cfg, tmp_path / "first")
    second = upload_training_data(s3_client, cfg, tmp_path / "second")  # same seed: the same bytes again
    assert first["uploaded"] == 64 * 2 + 16 * 2 + 8 * 2 + 1  # images and labels per split, plus dataset.yaml
    assert (second["uploaded"], second["skipped"]) == (0, first["uploaded"])
    assert first["channels"] == {"train": f"s3://{TEST_BUCKET}/{PREFIX}/data"}

    files = data_files(SETTINGS)
    assert "dataset.yaml" in files and "images/train/plan_00000.png" in files and "labels/test/plan_00007.txt" in files
    counts = split_counts(files)
    assert counts == {"train": {"images": 64, "labels": 64}, "val": {"images": 16, "labels": 16},
                      "test": {"images": 8, "labels": 8}}
    check_splits(counts)


def _model_archive(**members: bytes) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _finished_job(s3_client, job: str, best: bytes, map50: float) -> dict:
    key = f"{PREFIX}/training-output/{job}/output/model.tar.gz"
    s3_client.put_object(Bucket=TEST_BUCKET, Key=key, Body=_model_archive(**{
        "best.pt": best, "last.pt": b"last", "model.pth": b"weights", "code/inference.py": b"# serving code"}))
    return {"TrainingJobName": job, "ModelArtifacts": {"S3ModelArtifacts": f"s3://{TEST_BUCKET}/{key}"},
            "FinalMetricDataList": [{"MetricName": "best:validation:mAP50", "Value": map50},
                                    {"MetricName": "test:mAP50", "Value": 0.5}]}


def test_publishing_puts_best_pt_at_a_stable_latest_location(s3_client):
    first = _finished_job(s3_client, "room-detection-train-aaa", b"first best weights", 0.81)
    published = publish_model_files(SETTINGS, first, ("best.pt",))
    latest_key = f"{PREFIX}/models/latest/best.pt"
    assert published["latest"] == {"best.pt": f"s3://{TEST_BUCKET}/{latest_key}"}
    assert published["versioned"] == {"best.pt": f"s3://{TEST_BUCKET}/{PREFIX}/models/room-detection-train-aaa/best.pt"}
    latest = s3_client.get_object(Bucket=TEST_BUCKET, Key=latest_key)
    assert latest["Body"].read() == b"first best weights"
    assert latest["Metadata"]["training-job"] == "room-detection-train-aaa"
    assert latest["Metadata"]["best-validation-map50"] == "0.810000"

    second = _finished_job(s3_client, "room-detection-train-bbb", b"second best weights", 0.9)
    publish_model_files(SETTINGS, second, ("best.pt",))
    assert s3_client.get_object(Bucket=TEST_BUCKET, Key=latest_key)["Body"].read() == b"second best weights"
    # the earlier model stays addressable under its own job
    earlier = s3_client.get_object(Bucket=TEST_BUCKET, Key=f"{PREFIX}/models/room-detection-train-aaa/best.pt")
    assert earlier["Body"].read() == b"first best weights"
    manifest = json.loads(s3_client.get_object(Bucket=TEST_BUCKET, Key=f"{PREFIX}/models/latest/manifest.json")["Body"].read())
    assert manifest["training_job"] == "room-detection-train-bbb"
    assert manifest["metric"] == {"best:validation:mAP50": 0.9}
    assert manifest["files"]["best.pt"]["sha256"] == hashlib.sha256(b"second best weights").hexdigest()
    assert manifest["model_data"] == second["ModelArtifacts"]["S3ModelArtifacts"]


def test_publishing_a_file_the_archive_lacks_names_what_it_has(s3_client):
    job = _finished_job(s3_client, "room-detection-train-ccc", b"w", 0.7)
    with pytest.raises(FileNotFoundError, match=r"holds no weights.onnx; it has best.pt, code/inference.py, last.pt"):
        publish_model_files(SETTINGS, job, ("weights.onnx",))
    with pytest.raises(ValueError, match="at least one file"):
        publish_model_files(SETTINGS, job, ())


def test_local_data_location_is_under_the_workload_prefix():
    cfg = load_workload("room_detection", "local").with_overrides(bucket=TEST_BUCKET)
    assert cfg.data_uri == f"s3://{TEST_BUCKET}/{PREFIX}/data"
