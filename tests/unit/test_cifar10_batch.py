"""The CIFAR-10 batch transform's input and its check, against the local SageMaker's S3."""
from __future__ import annotations

import json

import pytest

from include.datasets.cifar10 import generate
from include.pipelines.cifar10_batch import INPUT_NAME, check_batch_output, write_batch_input
from include.pipelines.config import load_workload
from include.pipelines.packaging import sync_directory
from tests.conftest import TEST_BUCKET, TEST_ROLE_ARN


@pytest.fixture
def cfg(s3_client, tmp_path):
    cfg = load_workload("cifar10", "local").with_overrides(role_arn=TEST_ROLE_ARN, bucket=TEST_BUCKET)
    generate(tmp_path, train_per_class=2, test_per_class=3)
    sync_directory(s3_client, tmp_path, TEST_BUCKET, cfg.data_uri.removeprefix(f"s3://{TEST_BUCKET}/"))
    return cfg


def test_batch_input_has_one_image_a_line_and_the_check_scores_the_output(cfg, s3_client):
    written = write_batch_input(cfg, s3_client)
    assert written["records"] == 30
    key = written["input"].removeprefix(f"s3://{TEST_BUCKET}/")
    lines = s3_client.get_object(Bucket=TEST_BUCKET, Key=key)["Body"].read().decode().splitlines()
    assert len(lines) == 30 and all(len(json.loads(line)) == 32 and len(json.loads(line)[0][0]) == 3 for line in lines)

    labels = json.loads(s3_client.get_object(
        Bucket=TEST_BUCKET, Key=cfg.data_uri.removeprefix(f"s3://{TEST_BUCKET}/") + f"/batch-labels/{INPUT_NAME}.labels.json"
    )["Body"].read())
    # a model that gets the first 15 right and the rest wrong
    answers = [{"predicted_index": label if i < 15 else (label + 1) % 10} for i, label in enumerate(labels)]
    output = f"s3://{TEST_BUCKET}/transform-out"
    s3_client.put_object(Bucket=TEST_BUCKET, Key=f"transform-out/{INPUT_NAME}.out",
                         Body="\n".join(json.dumps(a) for a in answers).encode())
    scores = check_batch_output(cfg, s3_client, {"TransformJobName": "t", "TransformOutput": {"S3OutputPath": output}})
    assert scores == {"records": 30, "accuracy": 0.5, "output": f"{output}/{INPUT_NAME}.out"}


def test_a_short_output_is_refused(cfg, s3_client):
    write_batch_input(cfg, s3_client)
    s3_client.put_object(Bucket=TEST_BUCKET, Key=f"short-out/{INPUT_NAME}.out", Body=b'{"predicted_index": 1}\n')
    with pytest.raises(AssertionError, match="wrote 1 predictions for 30 images"):
        check_batch_output(cfg, s3_client, {"TransformJobName": "t",
                                            "TransformOutput": {"S3OutputPath": f"s3://{TEST_BUCKET}/short-out"}})
