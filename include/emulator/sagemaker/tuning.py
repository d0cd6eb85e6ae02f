"""Hyperparameter tuning jobs: CreateHyperParameterTuningJob, DescribeHyperParameterTuningJob,
ListHyperParameterTuningJobs, StopHyperParameterTuningJob, ListTrainingJobsForHyperParameterTuningJob.

The store keeps each tuning job's state and answers as SageMaker does; ``include.emulator.tuning``
checks the request (``definitions``), proposes hyperparameters (``strategies``), stops weak
children early (``early_stopping``) and runs the job (``runner``). Children are real training jobs
of the TrainingJobStore, linked by TuningJobArn.
"""
from __future__ import annotations

import copy
import datetime as dt
import threading
from dataclasses import dataclass, field

from ..errors import ResourceInUse, ResourceNotFound, ValidationException
from ..faults import FaultTagError, faults_for
from ..tuning.definitions import TUNING_OBJECTIVE_HYPERPARAMETER, Definition, prepare
from ..tuning.runner import RUNNING, TuningRunner
from ..tuning.strategies import Proposal
from .registry import operation
from .tags import TagStore
from .training import TrainingJobStore, summaries_page, summary_matches

TERMINAL_STATUSES = {"Completed", "Failed", "Stopped"}
# BestObjectiveNotImproving counts a job as an improvement only when it beats the best by 1% or more
IMPROVEMENT = 0.01


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


@dataclass
class ChildJob:
    name: str
    arn: str
    definition: Definition = field(repr=False)
    proposal: Proposal = field(repr=False)
    reported: bool = False
    early_stopped: bool = False


@dataclass(frozen=True)
class Outcome:
    objective_status: str  # Pending | Succeeded | Failed
    value: float | None  # the final objective (the last value the objective metric took)


class TuningJob:
    """One tuning job's state. The runner thread and the API both go through ``_lock``."""

    def __init__(self, name: str, arn: str, region: str, request: dict, definitions: list[Definition], tags: list | None):
        self.name = name
        self.arn = arn
        self.region = region
        self.request = request
        self.definitions = definitions
        self.tags = tags
        self._lock = threading.RLock()
        self.children: list[ChildJob] = []
        self.status = "InProgress"
        self.creation_time = _now()
        self.last_modified_time = self.creation_time
        self.end_time: dt.datetime | None = None
        self.failure_reason: str | None = None
        self.launching_finished = False
        self.wakeup = threading.Event()
        self.done = threading.Event()
        self.best_value: float | None = None
        self.jobs_not_improving = 0
        self.succeeded_count = 0
        self.failed_objective_count = 0
        self._turn = 0
        self.runner: TuningRunner | None = None

    @property
    def maximize(self) -> bool:
        return self.definitions[0].maximize

    @property
    def stop_requested(self) -> bool:
        return self.status == "Stopping"

    # --- reported by the runner -------------------------------------------------------------------

    def next_definition(self) -> Definition | None:
        """The definitions take turns; one whose strategy has nothing left drops out."""
        live = [definition for definition in self.definitions if not definition.exhausted]
        if not live:
            return None
        self._turn += 1
        return live[(self._turn - 1) % len(live)]

    def launch_child(self, definition: Definition, proposal: Proposal, training: TrainingJobStore) -> ChildJob:
        index = len(self.children) + 1
        request = definition.child_request(self.name, index, proposal.hyperparameters, self.tags)
        job = training.create(training.emulator.context(self.region), request, tuning_job_arn=self.arn)
        child = ChildJob(job.name, job.arn, definition, proposal)
        with self._lock:
            self.children.append(child)
            self.last_modified_time = _now()
        return child

    def record_result(self, child: ChildJob, value: float | None) -> None:
        """A child's final objective, in the order children finish (for the completion criteria)."""
        with self._lock:
            if value is None:
                self.failed_objective_count += 1
                self.jobs_not_improving += 1
            else:
                self.succeeded_count += 1
                if self.best_value is None or self._improves(value, self.best_value):
                    self.jobs_not_improving = 0
                else:
                    self.jobs_not_improving += 1
                if self.best_value is None or self._better(value, self.best_value):
                    self.best_value = value
            self.last_modified_time = _now()

    def _better(self, value: float, than: float) -> bool:
        return value > than if self.maximize else value < than

    def _improves(self, value: float, best: float) -> bool:
        margin = abs(best) * IMPROVEMENT
        return value >= best + margin if self.maximize else value <= best - margin

    def finish_launching(self, reason: str) -> None:
        with self._lock:
            self.launching_finished = True

    def finish(self, status: str, failure_reason: str | None = None) -> None:
        with self._lock:
            if self.status in TERMINAL_STATUSES:
                return
            self.status = status
            self.failure_reason = failure_reason
            self.end_time = self.last_modified_time = _now()
        self.done.set()

    def request_stop(self) -> None:
        with self._lock:
            if self.status != "InProgress":
                raise ValidationException(
                    f"The request was rejected because the hyperparameter tuning job is in status {self.status}."
                )
            self.status = "Stopping"
            self.last_modified_time = _now()
        self.wakeup.set()

    # --- answers ----------------------------------------------------------------------------------

    def outcome(self, child: ChildJob, training_job, status: str | None = None) -> Outcome:
        """The child's objective status and final value (``status``: the one already read, if any)."""
        status = status or training_job.status
        series = training_job.metrics.series().get(child.definition.metric, [])
        value = series[-1].value if series else None
        if status in RUNNING:
            return Outcome("Pending", None)
        if status == "Failed" or value is None:
            return Outcome("Failed", None)
        return Outcome("Succeeded", value)

    def child_summary(self, child: ChildJob, training: TrainingJobStore) -> dict:
        training_job = training.get(child.name, self.region)
        timeline = training_job.timeline()
        outcome = self.outcome(child, training_job, timeline["TrainingJobStatus"])
        summary = {
            "TrainingJobDefinitionName": child.definition.name,
            "TrainingJobName": child.name,
            "TrainingJobArn": child.arn,
            "TuningJobName": self.name,
            **timeline,
            "TunedHyperParameters": dict(child.proposal.hyperparameters),
            "ObjectiveStatus": outcome.objective_status,
        }
        if outcome.value is not None:
            summary["FinalHyperParameterTuningJobObjectiveMetric"] = {
                "Type": child.definition.objective["Type"],
                "MetricName": child.definition.metric,
                "Value": outcome.value,
            }
        return summary

    def _counters(self, summaries: list[dict]) -> tuple[dict, dict]:
        jobs = {"Completed": 0, "InProgress": 0, "RetryableError": 0, "NonRetryableError": 0, "Stopped": 0}
        objectives = {"Succeeded": 0, "Pending": 0, "Failed": 0}
        for summary in summaries:
            status = summary["TrainingJobStatus"]
            if status in RUNNING:
                jobs["InProgress"] += 1
            elif status == "Failed":
                # a fault of the platform may succeed when retried; the script's own error will not
                retryable = (summary.get("FailureReason") or "").startswith("InternalServerError")
                jobs["RetryableError" if retryable else "NonRetryableError"] += 1
            else:
                jobs[status] += 1
            objectives[summary["ObjectiveStatus"]] += 1
        return jobs, objectives

    def _best(self, summaries: list[dict]) -> dict | None:
        best = None
        for summary in summaries:
            if summary["ObjectiveStatus"] != "Succeeded":
                continue
            value = summary["FinalHyperParameterTuningJobObjectiveMetric"]["Value"]
            if best is None or self._better(value, best["FinalHyperParameterTuningJobObjectiveMetric"]["Value"]):
                best = summary
        return best

    def describe(self, training: TrainingJobStore) -> dict:
        with self._lock:
            children = list(self.children)
            summaries = [self.child_summary(child, training) for child in children]
            jobs, objectives = self._counters(summaries)
            body = {
                "HyperParameterTuningJobName": self.name,
                "HyperParameterTuningJobArn": self.arn,
                "HyperParameterTuningJobConfig": copy.deepcopy(self.request["HyperParameterTuningJobConfig"]),
                "HyperParameterTuningJobStatus": self.status,
                "CreationTime": self.creation_time,
                "HyperParameterTuningEndTime": self.end_time,
                "LastModifiedTime": self.last_modified_time,
                "TrainingJobStatusCounters": jobs,
                "ObjectiveStatusCounters": objectives,
                "BestTrainingJob": self._best(summaries),
                "FailureReason": self.failure_reason,
                "TuningJobCompletionDetails": {"NumberOfTrainingJobsObjectiveNotImproving": self.jobs_not_improving},
                "ConsumedResources": {
                    "RuntimeInSeconds": int(((self.end_time or _now()) - self.creation_time).total_seconds())
                },
            }
            for member in ("TrainingJobDefinition", "TrainingJobDefinitions"):
                if member in self.request:
                    body[member] = _with_objective_hyperparameter(self.request[member], self.definitions)
            return body

    def summary(self, training: TrainingJobStore) -> dict:
        with self._lock:
            summaries = [self.child_summary(child, training) for child in self.children]
            jobs, objectives = self._counters(summaries)
            return {
                "HyperParameterTuningJobName": self.name,
                "HyperParameterTuningJobArn": self.arn,
                "HyperParameterTuningJobStatus": self.status,
                "Strategy": self.request["HyperParameterTuningJobConfig"]["Strategy"],
                "CreationTime": self.creation_time,
                "HyperParameterTuningEndTime": self.end_time,
                "LastModifiedTime": self.last_modified_time,
                "TrainingJobStatusCounters": jobs,
                "ObjectiveStatusCounters": objectives,
                "ResourceLimits": copy.deepcopy(self.request["HyperParameterTuningJobConfig"]["ResourceLimits"]),
            }


def _with_objective_hyperparameter(definitions: dict | list, parsed: list[Definition]):
    """The definition(s) as DescribeHyperParameterTuningJob shows them: SageMaker adds
    _tuning_objective_metric to the StaticHyperParameters it passes every child."""
    echoed = copy.deepcopy(definitions)
    for body, definition in zip(echoed if isinstance(echoed, list) else [echoed], parsed):
        body.setdefault("StaticHyperParameters", {})[TUNING_OBJECTIVE_HYPERPARAMETER] = definition.metric
    return echoed


class TuningJobStore:
    """All tuning jobs of the emulator, keyed by region and name."""

    def __init__(self, emulator):
        self.emulator = emulator
        self._lock = threading.RLock()
        self._jobs: dict[tuple[str, str], TuningJob] = {}
        self._closed = False

    @property
    def training(self) -> TrainingJobStore:
        return self.emulator.store(TrainingJobStore)

    def create(self, ctx, params: dict) -> TuningJob:
        tags = params.get("Tags")
        try:
            faults_for(tags)  # the children inherit the tags: a typo must show now
        except FaultTagError as exc:
            raise ValidationException(str(exc)) from exc
        request, definitions = prepare({key: value for key, value in params.items() if key != "Tags"})
        name = request["HyperParameterTuningJobName"]
        arn = ctx.arn("hyper-parameter-tuning-job", name)
        with self._lock:
            if self._closed:
                raise ValidationException("The local SageMaker is shutting down.")
            key = (ctx.region, name.lower())
            if key in self._jobs:
                raise ResourceInUse(
                    "Hyperparameter tuning job names must be unique within an AWS account and region, and a "
                    f"hyperparameter tuning job with this name already exists ({arn})"
                )
            job = TuningJob(name, arn, ctx.region, request, definitions, tags)
            self._jobs[key] = job
            ctx.emulator.store(TagStore).add(arn, tags)
            job.runner = TuningRunner(self.emulator, job, self.training).start()
        return job

    def get(self, name: str, region: str | None = None) -> TuningJob:
        with self._lock:
            job = self._jobs.get((region or self.emulator.settings.region, name.lower()))
        if job is None:
            raise ResourceNotFound(f"Amazon SageMaker can't find a tuning job with name {name}")
        return job

    def stop(self, name: str, region: str | None = None) -> None:
        self.get(name, region).request_stop()

    def wait(self, name: str, region: str | None = None, timeout: float | None = None) -> str:
        job = self.get(name, region)
        job.done.wait(timeout)
        return job.status

    def list(self, region: str, params: dict) -> dict:
        with self._lock:
            jobs = [job for (job_region, _), job in self._jobs.items() if job_region == region]
        summaries = [job.summary(self.training) for job in jobs]
        summaries = [s for s in summaries
                     if summary_matches(s, params, "HyperParameterTuningJobName", "HyperParameterTuningJobStatus")]
        sort_key = {
            "Name": lambda s: s["HyperParameterTuningJobName"],
            "Status": lambda s: s["HyperParameterTuningJobStatus"],
            "CreationTime": lambda s: s["CreationTime"],
        }[params.get("SortBy", "Name")]
        summaries.sort(key=sort_key, reverse=params.get("SortOrder", "Ascending") == "Descending")
        return summaries_page(summaries, params, "HyperParameterTuningJobSummaries")

    def list_children(self, name: str, region: str, params: dict) -> dict:
        job = self.get(name, region)
        with job._lock:
            children = list(job.children)
        summaries = [job.child_summary(child, self.training) for child in children]
        if "StatusEquals" in params:
            summaries = [s for s in summaries if s["TrainingJobStatus"] == params["StatusEquals"]]
        sort_by = params.get("SortBy", "Name")
        if sort_by == "FinalObjectiveMetricValue":
            # as documented: jobs that did not report an objective are left out of this order
            summaries = [s for s in summaries if "FinalHyperParameterTuningJobObjectiveMetric" in s]
        sort_key = {
            "Name": lambda s: s["TrainingJobName"],
            "CreationTime": lambda s: s["CreationTime"],
            "Status": lambda s: s["TrainingJobStatus"],
            "FinalObjectiveMetricValue": lambda s: s["FinalHyperParameterTuningJobObjectiveMetric"]["Value"],
        }[sort_by]
        summaries.sort(key=sort_key, reverse=params.get("SortOrder", "Ascending") == "Descending")
        return summaries_page(summaries, params, "TrainingJobSummaries")

    def shutdown(self) -> None:
        with self._lock:
            self._closed = True
            runners = [job.runner for job in self._jobs.values() if job.runner and job.runner.alive]
        for runner in runners:
            runner.shutdown()


def _store(ctx) -> TuningJobStore:
    return ctx.emulator.store(TuningJobStore)


@operation("CreateHyperParameterTuningJob")
def create_hyper_parameter_tuning_job(ctx, params):
    return {"HyperParameterTuningJobArn": _store(ctx).create(ctx, params).arn}


@operation("DescribeHyperParameterTuningJob")
def describe_hyper_parameter_tuning_job(ctx, params):
    store = _store(ctx)
    return store.get(params["HyperParameterTuningJobName"], ctx.region).describe(store.training)


@operation("ListHyperParameterTuningJobs")
def list_hyper_parameter_tuning_jobs(ctx, params):
    return _store(ctx).list(ctx.region, params)


@operation("StopHyperParameterTuningJob")
def stop_hyper_parameter_tuning_job(ctx, params):
    _store(ctx).stop(params["HyperParameterTuningJobName"], ctx.region)
    return {}


@operation("ListTrainingJobsForHyperParameterTuningJob")
def list_training_jobs_for_hyper_parameter_tuning_job(ctx, params):
    return _store(ctx).list_children(params["HyperParameterTuningJobName"], ctx.region, params)
