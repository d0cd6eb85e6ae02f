"""MetricDefinitions applied to a job's log, as SageMaker scrapes metrics from the algorithm's output."""
from __future__ import annotations

import datetime as dt
import math
import re
import threading
from dataclasses import dataclass


@dataclass(frozen=True)
class MetricPoint:
    value: float
    timestamp: dt.datetime


def compile_metric_definitions(definitions: list[dict] | None) -> list[tuple[str, re.Pattern]]:
    """(name, compiled regex) pairs; a regex Python cannot compile raises ValueError naming the metric."""
    compiled = []
    for definition in definitions or []:
        try:
            compiled.append((definition["Name"], re.compile(definition["Regex"])))
        except re.error as exc:
            name = definition["Name"]
            raise ValueError(f"MetricDefinitions regex for metric '{name}' is not a valid regular expression: {exc}") from exc
    return compiled


class MetricRecorder:
    """Every value each metric took, in log order; thread-safe."""

    def __init__(self, definitions: list[dict] | None):
        self._definitions = compile_metric_definitions(definitions)
        self._series: dict[str, list[MetricPoint]] = {name: [] for name, _ in self._definitions}
        self._lock = threading.Lock()

    def observe(self, line: str, timestamp: dt.datetime) -> None:
        for name, regex in self._definitions:
            match = regex.search(line)
            if not match:
                continue
            text = match.group(1) if regex.groups else match.group(0)
            try:
                value = float(text)
            except (TypeError, ValueError):
                continue
            if math.isfinite(value):  # NaN/inf cannot travel in the JSON answer
                with self._lock:
                    self._series[name].append(MetricPoint(value, timestamp))

    def series(self) -> dict[str, list[MetricPoint]]:
        with self._lock:
            return {name: list(points) for name, points in self._series.items()}

    def final_metric_data_list(self) -> list[dict]:
        """FinalMetricDataList: the last value of each metric that appeared, in definition order."""
        with self._lock:
            return [
                {"MetricName": name, "Value": points[-1].value, "Timestamp": points[-1].timestamp}
                for name, points in self._series.items()
                if points
            ]
