"""Stopping weak child jobs early, from the intermediate objective values in their logs.

Every value the objective's MetricDefinition matches in a job's log is one step (an epoch, as
SageMaker counts resources), so a job's series of values is its learning curve.

- ``MedianRule`` is TrainingJobEarlyStoppingType Auto as SageMaker documents it: after each epoch
  of a job, take the running average of the objective up to that epoch of every other job that got
  that far, and stop the job when its value is worse than the median of those averages.
- ``HyperbandRule`` is the Hyperband strategy's own stopping (successive halving, asynchronous as
  the jobs run in parallel): at rungs MinResource, MinResource*eta, ... below MaxResource, a job
  goes on only if its value there ranks in the top 1/eta of every job's value at that rung; a job
  never stops before MinResource, and one that runs past MaxResource steps is stopped.
"""
from __future__ import annotations

import math
import statistics

HYPERBAND_ETA = 3


class MedianRule:
    # a single other curve is no median: wait for two jobs to compare with
    min_reference_jobs = 2

    def __init__(self, maximize: bool):
        self.maximize = maximize
        self._checked: dict[str, int] = {}  # job -> epochs already judged

    def should_stop(self, job: str, series: list[float], others: list[list[float]]) -> str | None:
        """Why ``job`` should stop now, or None."""
        for epoch in range(self._checked.get(job, 0) + 1, len(series) + 1):
            self._checked[job] = epoch
            averages = [statistics.fmean(other[:epoch]) for other in others if len(other) >= epoch]
            if len(averages) < self.min_reference_jobs:
                continue
            median = statistics.median(averages)
            value = series[epoch - 1]
            if (value < median) if self.maximize else (value > median):
                return (
                    f"its objective {value:g} at epoch {epoch} is worse than the median {median:g} of the "
                    f"running averages of {len(averages)} other training jobs"
                )
        return None


class HyperbandRule:
    def __init__(self, min_resource: int, max_resource: int, maximize: bool, eta: int = HYPERBAND_ETA):
        self.maximize = maximize
        self.max_resource = max_resource
        self.eta = eta
        self.rungs = []
        rung = min_resource
        while rung < max_resource:
            self.rungs.append(rung)
            rung *= eta
        self._values_at: dict[int, list[float]] = {rung: [] for rung in self.rungs}
        self._checked: dict[str, set[int]] = {}

    def should_stop(self, job: str, series: list[float], others: list[list[float]] | None = None) -> str | None:
        """Why ``job`` should stop now, or None (``others`` is unused: the rungs remember every job)."""
        checked = self._checked.setdefault(job, set())
        for rung in self.rungs:
            if rung > len(series) or rung in checked:
                continue
            checked.add(rung)
            value = series[rung - 1]
            peers = self._values_at[rung]
            peers.append(value)
            kept = max(1, math.ceil(len(peers) / self.eta))
            better = sum(1 for other in peers if (other > value if self.maximize else other < value))
            if better >= kept:
                return (
                    f"Hyperband: its objective {value:g} after {rung} epochs is not in the top {kept} "
                    f"of the {len(peers)} training jobs that reached {rung} epochs"
                )
        if len(series) > self.max_resource:
            return f"Hyperband: it reached MaxResource ({self.max_resource} epochs)"
        return None
