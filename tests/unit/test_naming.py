"""Resource names: deterministic per run, valid for SageMaker, distinct per run, kind and attempt."""
from __future__ import annotations

import pytest

from include.aws_shapes import request_problems
from include.pipelines.naming import NAME_PATTERN, resource_name

RUN_IDS = [
    "manual__2025-01-01T00:00:00+00:00",
    "scheduled__2025-01-08T00:00:00+00:00",
    "backfill__2024-12-01T00:00:00+00:00",
    "a",
]


def test_same_inputs_same_name():
    first = resource_name("cifar10", "train", RUN_IDS[0])
    assert first == resource_name("cifar10", "train", RUN_IDS[0])
    assert first.startswith("cifar10-train-") and len(first) == len("cifar10-train-") + 10


def test_names_differ_per_run_kind_and_attempt():
    names = {resource_name(w, k, r) for w in ("cifar10", "meld_sentiment") for k in ("train", "model", "endpoint") for r in RUN_IDS}
    assert len(names) == 2 * 3 * len(RUN_IDS)
    assert resource_name("cifar10", "train", RUN_IDS[0], attempt_key="2") != resource_name("cifar10", "train", RUN_IDS[0])


@pytest.mark.parametrize("workload", ["cifar10", "acoustic_shield", "brain_to_text", "x" * 80, "__weird__name__"])
@pytest.mark.parametrize("kind", ["train", "endpoint-config", "tune", "transform_job"])
def test_names_fit_sagemaker_pattern_and_length(workload, kind):
    for run_id in RUN_IDS:
        name = resource_name(workload, kind, run_id)
        assert NAME_PATTERN.match(name), name
        assert len(name) <= (32 if kind == "tune" else 63), name


def test_names_pass_botocore_validation_for_each_resource():
    checks = {
        ("CreateTrainingJob", "TrainingJobName"): "train",
        ("CreateModel", "ModelName"): "model",
        ("CreateEndpointConfig", "EndpointConfigName"): "endpoint-config",
        ("CreateEndpoint", "EndpointName"): "endpoint",
        ("CreateTransformJob", "TransformJobName"): "transform",
        ("CreateHyperParameterTuningJob", "HyperParameterTuningJobName"): "tune",
    }
    for (operation, member), kind in checks.items():
        name = resource_name("acoustic_shield", kind, RUN_IDS[1])
        problems = [p for p in request_problems("sagemaker", operation, {member: name}) if member[0].lower() + member[1:] in p
                    and "must not be null" not in p]
        assert problems == [], (operation, name, problems)


def test_underscores_become_hyphens_and_prefix_is_trimmed_not_the_hash():
    name = resource_name("acoustic_shield", "train", RUN_IDS[0])
    assert name.startswith("acoustic-shield-train-")
    long_a = resource_name("w" * 100 + "a", "train", RUN_IDS[0])
    long_b = resource_name("w" * 100 + "b", "train", RUN_IDS[0])
    assert len(long_a) == 63 and long_a[:52] == long_b[:52]  # same readable prefix, cut short
    assert long_a != long_b  # the hash still tells them apart


def test_run_id_is_required():
    with pytest.raises(ValueError, match="run_id"):
        resource_name("cifar10", "train", "")
