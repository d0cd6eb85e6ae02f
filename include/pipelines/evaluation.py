"""The evaluation gate: read a finished job's final metric and compare it with the workload's threshold."""
from __future__ import annotations

import math

from .config import EvaluationConfig


class MetricNotFound(LookupError):
    pass


def final_metric(training_description: dict, metric_name: str) -> float:
    """The value of `metric_name` in DescribeTrainingJob's FinalMetricDataList."""
    metrics = training_description.get("FinalMetricDataList") or []
    for entry in metrics:
        if entry.get("MetricName") == metric_name:
            return float(entry["Value"])
    job = training_description.get("TrainingJobName", "the training job")
    present = ", ".join(sorted(e.get("MetricName", "?") for e in metrics)) or "none"
    raise MetricNotFound(
        f"{job} reported no final value for metric {metric_name!r} (metrics reported: {present}); "
        "check that the training script prints it in the form its MetricDefinitions regex expects"
    )


def passes_gate(value: float, gate: EvaluationConfig) -> bool:
    """maximize: value >= threshold; minimize: value <= threshold. NaN never passes."""
    if math.isnan(value):
        return False
    if gate.direction == "maximize":
        return value >= gate.threshold
    return value <= gate.threshold
