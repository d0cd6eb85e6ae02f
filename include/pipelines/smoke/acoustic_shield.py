"""Acoustic shield smoke test: generated WAV clips of every class (mixed sample rates, mono and stereo),
each answer checked against inference.py's documented JSON; then bodies that are not usable WAV
files must be refused with a client error (4xx) while the endpoint goes on serving."""
from __future__ import annotations

import json
import logging

from . import SmokeTestFailed

log = logging.getLogger(__name__)

# (sample rate, channels) of the clips sent, one per class in turn: the endpoint must resample and fold to mono
CLIP_FORMATS = ((44100, 2), (8000, 1), (48000, 1), (22050, 2))
BAD_BODIES = ("not_wav", "empty", "truncated_wav")


def check_answer(answer, labels) -> list[str]:
    """What is wrong with one answer, against {"label", "confidence", "probs": {label: p}} ([] when nothing is)."""
    if not isinstance(answer, dict) or set(answer) != {"label", "confidence", "probs"}:
        return [f"expected an object with exactly label, confidence and probs, got {answer!r}"]
    probs = answer["probs"]
    if not isinstance(probs, dict) or set(probs) != set(labels):
        return [f"probs should have one entry per class ({', '.join(labels)}), got {probs!r}"]
    problems = []
    if abs(sum(probs.values()) - 1) > 1e-3 or min(probs.values()) < 0:
        problems.append(f"probs sum to {sum(probs.values()):.4f}, not 1")
    if answer["label"] != max(probs, key=probs.get):
        problems.append(f"label {answer['label']!r} is not the most probable class")
    elif abs(answer["confidence"] - probs[answer["label"]]) > 1e-6:
        problems.append(f"confidence {answer['confidence']} is not probs[{answer['label']!r}]")
    return problems


def bad_body(kind: str) -> bytes:
    """A request body the endpoint must refuse with a 4xx: text, nothing, or a WAV cut inside its header."""
    from include.datasets.acoustic_shield import sample_clip

    if kind == "not_wav":
        return b"This is a text file, not a WAV recording.\n"
    if kind == "empty":
        return b""
    if kind == "truncated_wav":
        return sample_clip("Normal", seconds=0.5)[:30]  # RIFF/WAVE header, then nothing where the chunks should be
    raise ValueError(f"unknown bad body {kind!r}; known: {', '.join(BAD_BODIES)}")


def _classify(endpoint_name: str, body: bytes, aws_conn_id: str) -> tuple[dict, str]:
    from include.pipelines.smoke import invoke_endpoint

    answer_type, answer, variant = invoke_endpoint(endpoint_name, body, content_type="audio/wav",
                                                   accept="application/json", aws_conn_id=aws_conn_id)
    if not answer_type.startswith("application/json"):
        raise SmokeTestFailed(f"{endpoint_name} answered {answer_type}, expected application/json")
    return json.loads(answer), variant


def _refusal(endpoint_name: str, kind: str, aws_conn_id: str) -> dict:
    """Send one bad body; it must come back as a client error, not a 5xx or an answer."""
    from botocore.exceptions import ClientError

    try:
        answer, _ = _classify(endpoint_name, bad_body(kind), aws_conn_id)
    except ClientError as error:
        code = error.response.get("Error", {}).get("Code", "")
        if code == "ModelError":  # the container's own answer, passed on by SageMaker
            status = error.response.get("OriginalStatusCode")
        else:  # refused before the container, e.g. SageMaker's front end on an empty body
            status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        message = error.response.get("OriginalMessage") or error.response.get("Error", {}).get("Message", "")
        try:  # the container's answer is JSON with the handler's own message
            message = json.loads(message)["message"]
        except (ValueError, TypeError, KeyError):
            pass
        if not (isinstance(status, int) and 400 <= status < 500):
            raise SmokeTestFailed(f"{endpoint_name}: a {kind} body got {code} with status {status}, expected a 4xx "
                                  f"client error: {message}") from error
        log.info("%s refused the %s body as expected: %s %s: %s", endpoint_name, kind, code, status, message)
        return {"body": kind, "error": code, "status": status, "message": message[:300]}
    raise SmokeTestFailed(f"{endpoint_name} answered a {kind} body with {answer!r}; it should have refused it with a 4xx")


def smoke_test(endpoint_name: str, *, aws_conn_id: str = "aws_default") -> dict:
    """Classify a clip of each class, check every answer, then check bad bodies get a 4xx and the endpoint still answers."""
    from include.datasets.acoustic_shield import LABELS, sample_clip

    clips = []
    for i, label in enumerate(LABELS):
        rate, channels = CLIP_FORMATS[i % len(CLIP_FORMATS)]
        clips.append((label, rate, channels, sample_clip(label, seconds=1.0, sample_rate=rate, channels=channels, seed=500 + i)))
    predictions = []
    for label, rate, channels, body in clips:
        answer, variant = _classify(endpoint_name, body, aws_conn_id)
        problems = check_answer(answer, LABELS)
        if problems:
            raise SmokeTestFailed(f"{endpoint_name} answered {answer!r}: " + "; ".join(problems))
        log.info("%s: a %s clip (%d Hz, %d channel(s)) -> %s (p=%.3f) from variant %s", endpoint_name, label, rate,
                 channels, answer["label"], answer["confidence"], variant)
        predictions.append({"true_label": label, "label": answer["label"], "confidence": answer["confidence"],
                            "sample_rate": rate, "channels": channels})

    refusals = [_refusal(endpoint_name, kind, aws_conn_id) for kind in BAD_BODIES]

    # the bad requests must not have broken the server: the first clip again, the same answer
    label, _, _, body = clips[0]
    again, _ = _classify(endpoint_name, body, aws_conn_id)
    if check_answer(again, LABELS) or again["label"] != predictions[0]["label"]:
        raise SmokeTestFailed(f"{endpoint_name} answered {again!r} after the bad requests, "
                              f"but {predictions[0]['label']!r} for the same clip before")
    correct = sum(p["true_label"] == p["label"] for p in predictions)
    return {"endpoint": endpoint_name, "requests": len(predictions) + len(refusals) + 1, "correct": correct,
            "predictions": predictions, "refused": refusals, "serving_after_bad_requests": True}
