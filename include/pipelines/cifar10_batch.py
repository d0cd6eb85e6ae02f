"""CIFAR-10 batch transform: the test set as JSON lines in, predictions checked against labels out.

The input is written from the data set's own test_batch, read with train.py's own reader
(training_src/cifar10/cifar_batches.py: numpy only, and it refuses any pickle global beyond numpy
arrays), one 32x32x3 image per line, so a transform with SplitType=Line sends one request per image.
The labels go to a separate prefix: the transform reads every object under its input.
"""
from __future__ import annotations

import importlib.util
import json
import logging
import tempfile
from pathlib import Path

log = logging.getLogger(__name__)

INPUT_NAME = "test_batch.jsonl"


def _batch_reader(cfg):
    """training_src/cifar10/cifar_batches.py, the reader train.py uses: numpy only, so it runs in Airflow."""
    spec = importlib.util.spec_from_file_location("cifar10_cifar_batches", cfg.source_path / "cifar_batches.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _split(uri: str) -> tuple[str, str]:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    return bucket, key


def _labels_key(cfg) -> str:
    return _split(f"{cfg.data_uri}/batch-labels/{INPUT_NAME}.labels.json")[1]


def write_batch_input(cfg, s3, *, limit: int | None = None) -> dict:
    """Write <data>/<transform.input>/test_batch.jsonl (and its labels) from the train channel's test_batch."""
    bucket, key = _split(f"{cfg.channel_uris()['train']}/test_batch")
    with tempfile.TemporaryDirectory(prefix="cifar10-batch-") as tmp:
        path = Path(tmp) / "test_batch"
        s3.download_file(bucket, key, str(path))
        images, labels = _batch_reader(cfg).read_batch_arrays(path)
    if limit:
        images, labels = images[:limit], labels[:limit]
    lines = [json.dumps(image.transpose(1, 2, 0).tolist(), separators=(",", ":")) for image in images]
    input_uri = f"{cfg.data_uri}/{cfg.transform.input}/{INPUT_NAME}"
    s3.put_object(Bucket=bucket, Key=_split(input_uri)[1], Body=("\n".join(lines) + "\n").encode())
    s3.put_object(Bucket=bucket, Key=_labels_key(cfg), Body=json.dumps(labels.tolist()).encode())
    log.info("Wrote %d test images to %s", len(lines), input_uri)
    return {"input": input_uri, "records": len(lines)}


def check_batch_output(cfg, s3, transform_description: dict) -> dict:
    """One prediction per input line, each a CIFAR-10 class; returns the records and their accuracy."""
    output_uri = transform_description["TransformOutput"]["S3OutputPath"].rstrip("/")
    bucket, key = _split(f"{output_uri}/{INPUT_NAME}.out")
    answers = [json.loads(line) for line in s3.get_object(Bucket=bucket, Key=key)["Body"].read().decode().splitlines()
               if line.strip()]
    labels = json.loads(s3.get_object(Bucket=bucket, Key=_labels_key(cfg))["Body"].read())
    if len(answers) != len(labels):
        raise AssertionError(f"batch transform wrote {len(answers)} predictions for {len(labels)} images")
    predicted = [answer["predicted_index"] for answer in answers]
    accuracy = sum(p == t for p, t in zip(predicted, labels)) / len(labels)
    log.info("Batch transform %s: %d predictions, accuracy %.4f", transform_description["TransformJobName"],
             len(answers), accuracy)
    return {"records": len(answers), "accuracy": accuracy, "output": f"s3://{bucket}/{key}"}
