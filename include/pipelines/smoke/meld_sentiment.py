"""MELD sentiment smoke test: utterances with their mp4 clips (base64, and one from S3), each answer
checked against the documented JSON; then a clip that is not an mp4 must be refused with a client
error while the endpoint goes on serving."""
from __future__ import annotations

import base64
import json
import logging

from . import SmokeTestFailed, encoder_library

log = logging.getLogger(__name__)


def check_answer(answer, emotions, sentiments) -> list[str]:
    """What is wrong with one answer, against inference.py's documented JSON ([] when nothing is)."""
    if not isinstance(answer, dict):
        return [f"the answer is {answer!r}, expected an object"]
    problems = []
    for head, names in (("emotion", emotions), ("sentiment", sentiments)):
        part = answer.get(head)
        probabilities = part.get("probabilities") if isinstance(part, dict) else None
        if not isinstance(probabilities, dict) or set(probabilities) != set(names):
            problems.append(f"{head} is {part!r}: expected a label and probabilities for {', '.join(names)}")
            continue
        if part.get("label") != max(probabilities, key=probabilities.get):
            problems.append(f"{head}.label {part.get('label')!r} is not the most probable class")
        if abs(sum(probabilities.values()) - 1) > 1e-3 or min(probabilities.values()) < 0:
            problems.append(f"{head} probabilities sum to {sum(probabilities.values()):.4f}, not 1")
    if not isinstance(answer.get("warnings"), list):
        problems.append(f"warnings is {answer.get('warnings')!r}, expected a list")
    return problems


def _invoke(endpoint_name: str, request: dict, aws_conn_id: str) -> tuple[dict, str]:
    from include.pipelines.smoke import invoke_endpoint

    answer_type, answer, variant = invoke_endpoint(endpoint_name, json.dumps(request).encode(), content_type="application/json",
                                                   accept="application/json", aws_conn_id=aws_conn_id)
    if not answer_type.startswith("application/json"):
        raise SmokeTestFailed(f"{endpoint_name} answered {answer_type}, expected application/json")
    return json.loads(answer), variant


def _upload_clip(clip: bytes, s3_prefix_uri: str, aws_conn_id: str) -> str:
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook

    bucket, _, prefix = s3_prefix_uri.removeprefix("s3://").partition("/")
    key = f"{prefix.strip('/')}/smoke-clip.mp4".lstrip("/")
    S3Hook(aws_conn_id=aws_conn_id).load_bytes(clip, key=key, bucket_name=bucket, replace=True)
    return f"s3://{bucket}/{key}"


def smoke_test(endpoint_name: str, *, utterances: int = 3, clip_s3_prefix: str | None = None,
               aws_conn_id: str = "aws_default") -> dict:
    """Send utterances of known emotions (clips as base64, and one by S3 URI when `clip_s3_prefix` is
    given); check each answer; then check a clip that is not an mp4 gets a 4xx and the endpoint still answers."""
    from botocore.exceptions import ClientError

    from include.datasets.meld_sentiment import EMOTIONS, SENTIMENTS, sample_clips

    encoder_library("imageio_ffmpeg", "imageio-ffmpeg", "The meld_sentiment smoke test (its mp4 clips)")
    samples = sample_clips(utterances + 1, seed=11)
    requests = [(s, {"text": s["text"], "video_base64": base64.b64encode(s["clip"]).decode()}) for s in samples[:-1]]
    if clip_s3_prefix:
        last = samples[-1]
        requests.append((last, {"text": last["text"], "video_s3_uri": _upload_clip(last["clip"], clip_s3_prefix, aws_conn_id)}))
    results = []
    for sample, request in requests:
        answer, variant = _invoke(endpoint_name, request, aws_conn_id)
        problems = check_answer(answer, EMOTIONS, SENTIMENTS)
        if problems:
            raise SmokeTestFailed(f"{endpoint_name} answered {answer!r}: " + "; ".join(problems))
        via = "s3" if "video_s3_uri" in request else "base64"
        log.info("%s: %r (%s, %s, clip by %s) -> %s (p=%.3f), %s (p=%.3f) from variant %s", endpoint_name, sample["text"],
                 sample["emotion"], sample["sentiment"], via, answer["emotion"]["label"],
                 answer["emotion"]["probabilities"][answer["emotion"]["label"]], answer["sentiment"]["label"],
                 answer["sentiment"]["probabilities"][answer["sentiment"]["label"]], variant)
        results.append({"true_emotion": sample["emotion"], "emotion": answer["emotion"]["label"],
                        "true_sentiment": sample["sentiment"], "sentiment": answer["sentiment"]["label"], "clip_by": via})

    # a client's broken upload must be its error (4xx), and must not take the endpoint down
    broken = {"text": samples[0]["text"], "video_base64": base64.b64encode(b"this is not an mp4 clip").decode()}
    try:
        _invoke(endpoint_name, broken, aws_conn_id)
    except ClientError as error:
        status = error.response.get("OriginalStatusCode")
        code = error.response.get("Error", {}).get("Code")
        if code != "ModelError" or not (isinstance(status, int) and 400 <= status < 500):
            raise SmokeTestFailed(f"{endpoint_name} answered a clip that is not an mp4 with {code} {status}, expected "
                                  f"ModelError with a 4xx OriginalStatusCode: {error}") from error
        bad_input = {"error": code, "status": status, "message": error.response.get("OriginalMessage", "")}
    else:
        raise SmokeTestFailed(f"{endpoint_name} accepted a clip that is not an mp4; it must refuse it with a 400")
    log.info("%s refused a clip that is not an mp4: %s %s %s", endpoint_name, bad_input["error"], bad_input["status"],
             bad_input["message"])
    answer, _ = _invoke(endpoint_name, requests[0][1], aws_conn_id)
    problems = check_answer(answer, EMOTIONS, SENTIMENTS)
    if problems:
        raise SmokeTestFailed(f"{endpoint_name} stopped answering properly after a bad request: " + "; ".join(problems))

    correct = sum(r["emotion"] == r["true_emotion"] for r in results)
    return {"endpoint": endpoint_name, "requests": len(results) + 2, "utterances": results, "correct_emotions": correct,
            "bad_input": bad_input, "served_after_bad_input": True}
