"""Brain-to-Text check of the batch decode: the transform's output read back, one decoded trial per line.

No endpoint here: the registered model version decodes a held-out session in a batch transform job,
and this check is what a smoke test is to an endpoint. It raises SmokeTestFailed when the output is
missing, empty or not the documented JSON Lines.
"""
from __future__ import annotations

import json
import logging
import posixpath

from . import SmokeTestFailed

log = logging.getLogger(__name__)

TRIAL_FIELDS = ("session", "trial", "block_num", "trial_num", "n_time_steps", "diphone_ids", "phonemes")


def output_uri(transform_description: dict) -> str:
    """Where the transform wrote its output for a single-object input: <S3OutputPath>/<input file name>.out."""
    source = transform_description["TransformInput"]["DataSource"]["S3DataSource"]["S3Uri"]
    output = transform_description["TransformOutput"]["S3OutputPath"].rstrip("/")
    return f"{output}/{posixpath.basename(source.rstrip('/'))}.out"


def decoded_trials(body: bytes, where: str) -> list[dict]:
    """The JSON Lines of a decode output, each checked for the documented fields."""
    trials = []
    for number, line in enumerate(body.decode().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            trial = json.loads(line)
        except json.JSONDecodeError as error:
            raise SmokeTestFailed(f"{where}: line {number} is not JSON ({error}): {line[:200]!r}") from None
        missing = [field for field in TRIAL_FIELDS if field not in trial]
        if missing:
            raise SmokeTestFailed(f"{where}: line {number} lacks {', '.join(missing)}: {line[:200]!r}")
        trials.append(trial)
    if not trials:
        raise SmokeTestFailed(f"{where} holds no decoded trials")
    return trials


def check_batch_decode(transform_description: dict, *, aws_conn_id: str = "aws_default") -> dict:
    """Read the decode of the held-out session; returns its trial count and, when the file was labelled, its DER."""
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook
    from botocore.exceptions import ClientError

    uri = output_uri(transform_description)
    bucket, key = uri.removeprefix("s3://").split("/", 1)
    try:
        body = S3Hook(aws_conn_id=aws_conn_id).get_conn().get_object(Bucket=bucket, Key=key)["Body"].read()
    except ClientError as error:
        raise SmokeTestFailed(f"{transform_description['TransformJobName']} left no output at {uri}: {error}") from None
    trials = decoded_trials(body, uri)
    scored = [t for t in trials if "edit_distance" in t]
    der = sum(t["edit_distance"] for t in scored) / sum(t["label_length"] for t in scored) if scored else None
    for trial in trials[:3]:
        log.info("%s %s: %s%s", trial["session"], trial["trial"], " ".join(trial["phonemes"]),
                 f" (label: {trial['sentence_label']})" if "sentence_label" in trial else "")
    log.info("Batch decode %s: %d trials%s", uri, len(trials), f", DER {der:.4f}" if der is not None else " (unlabelled)")
    return {"output": uri, "trials": len(trials), "scored_trials": len(scored), "der": der,
            "sessions": sorted({t["session"] for t in trials})}
