"""Deterministic SageMaker resource names, so a retried task finds the job its first try started.

A name is a readable prefix (workload and kind) plus a short hash of (workload, kind, run_id,
attempt_key): the same run always maps to the same name, two runs or two kinds never collide.
"""
from __future__ import annotations

import hashlib
import re

# SageMaker's pattern for job, model, endpoint and endpoint-config names
NAME_PATTERN = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")
MAX_LENGTH = 63
# HyperParameterTuningJobName is capped at 32: SageMaker appends "-NNN-xxxxxxxx" for child jobs
MAX_LENGTH_BY_KIND = {"tune": 32, "tuning": 32}
HASH_LENGTH = 10


def _slug(text: str) -> str:
    """Letters, digits and single hyphens: 'acoustic_shield' -> 'acoustic-shield'."""
    return re.sub(r"[^a-zA-Z0-9]+", "-", text).strip("-")


def resource_name(workload: str, kind: str, run_id: str, *, attempt_key: str = "", max_length: int | None = None) -> str:
    """'<workload>-<kind>-<hash>', e.g. 'cifar10-train-3f9a1c2b7d': valid for SageMaker, stable per run.

    `attempt_key` separates deliberate resubmissions (a failed job's replacement) from retries,
    which must reuse the name. `max_length` defaults to SageMaker's limit for the kind (63, or 32
    for tuning jobs); the readable prefix is shortened to fit, never the hash.
    """
    if not run_id:
        raise ValueError("run_id is required: names derive from the Airflow run so retries are idempotent")
    limit = max_length or MAX_LENGTH_BY_KIND.get(kind, MAX_LENGTH)
    if not HASH_LENGTH + 2 <= limit <= MAX_LENGTH:
        raise ValueError(f"max_length must be between {HASH_LENGTH + 2} and {MAX_LENGTH}, got {limit}")
    digest = hashlib.sha256("\0".join((workload, kind, run_id, attempt_key)).encode()).hexdigest()[:HASH_LENGTH]
    prefix = "-".join(part for part in (_slug(workload), _slug(kind)) if part)
    prefix = prefix[: limit - HASH_LENGTH - 1].rstrip("-")
    name = f"{prefix}-{digest}" if prefix else digest
    assert NAME_PATTERN.match(name), name  # by construction; a failure here is a bug in this module
    return name


def idempotency_token(*parts: str) -> str:
    """A ClientToken for a Create* call that a retry repeats: the same parts give the same token.

    SageMaker answers a repeated call carrying a token it has seen with what the first call
    created, so a retried task does not create the resource twice (botocore would otherwise fill
    in a fresh random token on every call).
    """
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:32]
