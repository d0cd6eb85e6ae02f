"""Runs one tuning job: launches real child training jobs, learns from their results, stops weak ones.

A background thread loops every ``poll_seconds``, and at once when a child ends:
1. reports each newly finished child's final objective to its definition's strategy;
2. applies early stopping (Auto's median rule, or Hyperband's rungs) to running children from the
   objective values logged so far (``TrainingJobStore.metric_series``);
3. launches children while fewer than MaxParallelTrainingJobs run and fewer than
   MaxNumberOfTrainingJobs were launched (definitions take turns);
4. ends the job: Completed when every launched child has finished and nothing is left to launch
   (or a TuningJobCompletionCriteria is met, or ResourceLimits.MaxRuntimeInSeconds is spent, which
   stops the running children), Stopped after StopHyperParameterTuningJob, Failed when no child
   succeeded after several attempts. A failed child is counted, not fatal.
"""
from __future__ import annotations

import logging
import threading
import time

from ..errors import AwsError
from ..jobs.runner import SHUTDOWN, JobRunner

log = logging.getLogger(__name__)

# SageMaker gives up on a tuning job when its first attempts all fail ("No training job succeeded
# after 5 attempts"), rather than spending the whole budget on a broken script
FAILED_ATTEMPTS_BEFORE_GIVING_UP = 5
RUNNING = ("InProgress", "Stopping")


class TuningRunner(JobRunner):
    kind = "tuning"
    poll_seconds = 0.5

    def __init__(self, emulator, job):
        super().__init__(emulator, job)
        self.training = job.training  # the TrainingJobStore the children run in
        self._started = time.monotonic()

    def crashed(self, exc: Exception) -> None:
        if self.stop_reason == SHUTDOWN or self.training.closed:
            self.job.finish("Stopped")  # the emulator shut down under it
            return
        log.exception("tuning job %s failed inside the local SageMaker", self.job.name)
        self._stop_running_children("Stopped: its hyperparameter tuning job failed")
        self.job.fail(f"InternalServerError: {exc}")

    def run(self) -> None:
        job = self.job
        while True:
            job.wakeup.clear()  # before looking: a stop or a child that ends from here on cuts the wait short
            if self.stop_reason == SHUTDOWN:
                job.finish("Stopped")  # the training store stops the children itself
                return
            self._report_finished()
            self._apply_early_stopping()
            if self.stop_reason:  # StopHyperParameterTuningJob
                self._stop_running_children("Stopped by StopHyperParameterTuningJob")
                if not self._running():
                    job.finish("Stopped")
                    return
            elif self._gave_up():
                attempts = len(job.children)
                self._stop_running_children("Stopped: its hyperparameter tuning job failed")
                job.finish(
                    "Failed",
                    failure_reason=f"No training job succeeded after {attempts} attempts. Please take a look at the "
                    "training job failures to get more details.",
                )
                return
            else:
                reason = self._reason_to_end_early()
                if reason:
                    self._stop_running_children(f"Stopped: {reason}")
                    job.finish_launching(reason)
                if not job.launching_finished:
                    self._launch()
                # done when nothing runs and every child's result is in (a failure may still make it Failed)
                if job.launching_finished and not self._running() and all(c.reported for c in job.children):
                    job.finish("Completed")
                    return
            job.wakeup.wait(self.poll_seconds)

    # --- children ---------------------------------------------------------------------------------

    def _training_job(self, child):
        return self.training.get(child.name, self.job.region)

    def _running(self) -> list:
        return [child for child in self.job.children if self._training_job(child).status in RUNNING]

    def _report_finished(self) -> None:
        for child in self.job.children:
            if child.reported:
                continue
            outcome = self.job.outcome(child, self._training_job(child))
            if outcome.objective_status == "Pending":
                continue
            child.reported = True
            child.definition.strategy.report(child.proposal, outcome.value)
            self.job.record_result(child, outcome.value)

    def _apply_early_stopping(self) -> None:
        by_definition: dict[int, list] = {}
        for child in self.job.children:
            by_definition.setdefault(id(child.definition), []).append(child)
        for children in by_definition.values():
            rule = children[0].definition.stopping
            if rule is None:
                continue
            metric = children[0].definition.metric
            curves = {child.name: self._curve(child, metric) for child in children}
            for child in children:
                training_job = self._training_job(child)
                if training_job.status != "InProgress":
                    continue
                others = [curve for name, curve in curves.items() if name != child.name
                          and self._training_job_status(name) != "Failed"]
                reason = rule.should_stop(child.name, curves[child.name], others)
                if reason:
                    self._stop_child(child, f"Stopped early by the hyperparameter tuning job: {reason}")
                    child.early_stopped = True

    def _training_job_status(self, name: str) -> str:
        return self.training.get(name, self.job.region).status

    def _curve(self, child, metric: str) -> list[float]:
        return [point.value for point in self.training.metric_series(child.name, self.job.region).get(metric, [])]

    def _stop_child(self, child, message: str) -> None:
        try:
            self.training.stop(child.name, self.job.region, message=message)
        except AwsError:
            pass  # it ended on its own meanwhile

    def _stop_running_children(self, message: str) -> None:
        for child in self._running():
            if self._training_job(child).status == "InProgress":
                self._stop_child(child, message)

    def _launch(self) -> None:
        job = self.job
        limits = job.request["HyperParameterTuningJobConfig"]["ResourceLimits"]
        while len(self._running()) < limits["MaxParallelTrainingJobs"]:
            if len(job.children) >= limits["MaxNumberOfTrainingJobs"]:
                job.finish_launching("MaxNumberOfTrainingJobs reached")
                return
            definition = job.next_definition()
            if definition is None:
                job.finish_launching("every combination was tried")
                return
            proposal = definition.strategy.propose()
            if proposal is None:
                definition.exhausted = True
                continue
            child = job.launch_child(definition, proposal)
            self._wake_when_done(child)

    def _wake_when_done(self, child) -> None:
        """A child that ends wakes the loop at once (its result reported, the next child launched),
        rather than at the next poll: sequential children run back to back."""
        done, wakeup = self._training_job(child).done, self.job.wakeup

        def wait_and_wake() -> None:
            done.wait()
            wakeup.set()

        threading.Thread(target=wait_and_wake, name=f"tuning-child:{child.name}", daemon=True).start()

    # --- ending -----------------------------------------------------------------------------------

    def _gave_up(self) -> bool:
        job = self.job
        if job.succeeded_count:
            return False
        max_jobs = job.request["HyperParameterTuningJobConfig"]["ResourceLimits"]["MaxNumberOfTrainingJobs"]
        limit = min(FAILED_ATTEMPTS_BEFORE_GIVING_UP, max_jobs)
        return job.failed_objective_count >= limit

    def _reason_to_end_early(self) -> str | None:
        config = self.job.request["HyperParameterTuningJobConfig"]
        if self.job.launching_finished:
            return None
        max_runtime = config["ResourceLimits"].get("MaxRuntimeInSeconds")
        if max_runtime is not None and time.monotonic() - self._started > max_runtime:
            return f"ResourceLimits.MaxRuntimeInSeconds ({max_runtime} s) was reached"
        criteria = config.get("TuningJobCompletionCriteria") or {}
        best = self.job.best_value
        target = criteria.get("TargetObjectiveMetricValue")
        if target is not None and best is not None and (best >= target if self.job.maximize else best <= target):
            return f"the objective reached TargetObjectiveMetricValue ({target:g})"
        not_improving = (criteria.get("BestObjectiveNotImproving") or {}).get("MaxNumberOfTrainingJobsNotImproving")
        if not_improving is not None and self.job.jobs_not_improving >= not_improving:
            return f"the best objective did not improve in {not_improving} training jobs"
        return None
