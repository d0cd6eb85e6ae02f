"""Hyperparameter tuning jobs: CreateHyperParameterTuningJob, DescribeHyperParameterTuningJob,
ListHyperParameterTuningJobs, StopHyperParameterTuningJob, ListTrainingJobsForHyperParameterTuningJob.

The record keeps each tuning job's state and answers as SageMaker does; ``include.emulator.tuning``
checks the request (``definitions``), proposes hyperparameters (``strategies``), stops weak
children early (``early_stopping``) and runs the job (``runner``). Children are real training jobs
of the TrainingJobStore, linked by TuningJobArn.
"""
from __future__ import annotations

import copy
import threading
from dataclasses import dataclass, field

from ..errors import ResourceNotFound, ValidationException
from ..faults import FaultTagError, faults_for
from ..jobs.runner import STOP
from ..tuning.definitions import TUNING_OBJECTIVE_HYPERPARAMETER, Definition, prepare
from ..tuning.runner import RUNNING, TuningRunner
from ..tuning.strategies import Proposal
from .job_records import JobRecord, JobStore, job_operations
from .listing import list_page
from .operations import operation
from .times import utcnow
from .training import TrainingJobStore

# BestObjectiveNotImproving counts a job as an improvement only when it beats the best by 1% or more
IMPROVEMENT = 0.01


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


class TuningJob(JobRecord):
    """One tuning job: its children and what they achieved, on top of the record's statuses and times."""

    def __init__(self, name: str, arn: str, region: str, request: dict, definitions: list[Definition],
                 tags: list | None, training: TrainingJobStore):
        super().__init__(name, arn, region, request)
        self.definitions = definitions
        self.tags = tags  # every child gets them
        self.training = training  # where the children run
        self.children: list[ChildJob] = []
        self.launching_finished = False
        self.wakeup = threading.Event()  # the runner looks again now (a stop), not at its next poll
        self.best_value: float | None = None
        self.jobs_not_improving = 0
        self.succeeded_count = 0
        self.failed_objective_count = 0
        self._turn = 0

    @property
    def maximize(self) -> bool:
        return self.definitions[0].maximize

    def request_stop(self, reason: str = STOP) -> None:
        super().request_stop(reason)
        self.wakeup.set()

    # --- reported by the runner -------------------------------------------------------------------

    def next_definition(self) -> Definition | None:
        """The definitions take turns; one whose strategy has nothing left drops out."""
        live = [definition for definition in self.definitions if not definition.exhausted]
        if not live:
            return None
        self._turn += 1
        return live[(self._turn - 1) % len(live)]

    def launch_child(self, definition: Definition, proposal: Proposal) -> ChildJob:
        index = len(self.children) + 1
        request = definition.child_request(self.name, index, proposal.hyperparameters, self.tags)
        job = self.training.create(self.training.emulator.context(self.region), request, tuning_job_arn=self.arn)
        child = ChildJob(job.name, job.arn, definition, proposal)
        with self.lock:
            self.children.append(child)
            self.last_modified_time = utcnow()
        return child

    def record_result(self, child: ChildJob, value: float | None) -> None:
        """A child's final objective, in the order children finish (for the completion criteria)."""
        with self.lock:
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
            self.last_modified_time = utcnow()

    def _better(self, value: float, than: float) -> bool:
        return value > than if self.maximize else value < than

    def _improves(self, value: float, best: float) -> bool:
        margin = abs(best) * IMPROVEMENT
        return value >= best + margin if self.maximize else value <= best - margin

    def finish_launching(self, reason: str) -> None:
        with self.lock:
            self.launching_finished = True

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

    def child_summary(self, child: ChildJob) -> dict:
        training_job = self.training.get(child.name, self.region)
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

    def describe(self) -> dict:
        with self.lock:
            summaries = [self.child_summary(child) for child in self.children]
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
                    "RuntimeInSeconds": int(((self.end_time or utcnow()) - self.creation_time).total_seconds())
                },
            }
            for member in ("TrainingJobDefinition", "TrainingJobDefinitions"):
                if member in self.request:
                    body[member] = _with_objective_hyperparameter(self.request[member], self.definitions)
            return body

    def summary(self) -> dict:
        with self.lock:
            summaries = [self.child_summary(child) for child in self.children]
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


class TuningJobStore(JobStore):
    """All tuning jobs of the emulator; their children are jobs of the TrainingJobStore."""

    resource_type = "hyper-parameter-tuning-job"
    noun = "hyperparameter tuning job"
    default_sort = ("Name", "Ascending")

    @property
    def training(self) -> TrainingJobStore:
        return self.emulator.store(TrainingJobStore)

    def new_record(self, ctx, params: dict) -> TuningJob:
        tags = params.get("Tags")
        try:
            faults_for(tags)  # the children inherit the tags: a typo must show now
        except FaultTagError as exc:
            raise ValidationException(str(exc)) from exc
        request, definitions = prepare({key: value for key, value in params.items() if key != "Tags"})
        name = request["HyperParameterTuningJobName"]
        return TuningJob(name, ctx.arn(self.resource_type, name), ctx.region, request, definitions, tags, self.training)

    def new_runner(self, record: TuningJob) -> TuningRunner:
        return TuningRunner(self.emulator, record)

    def missing(self, name: str) -> ResourceNotFound:
        return ResourceNotFound(f"Amazon SageMaker can't find a tuning job with name {name}")

    def list_children(self, name: str, region: str, params: dict) -> dict:
        """ListTrainingJobsForHyperParameterTuningJob."""
        job = self.get(name, region)
        with job.lock:
            children = list(job.children)
        sort_by = params.get("SortBy") or "Name"
        page, next_token = list_page(
            [job.child_summary(child) for child in children],
            params,
            status=lambda summary: summary["TrainingJobStatus"],
            # as documented: jobs that did not report an objective are left out of this order
            keep=lambda summary: (sort_by != "FinalObjectiveMetricValue"
                                  or "FinalHyperParameterTuningJobObjectiveMetric" in summary),
            sort_keys={
                "Name": lambda summary: summary["TrainingJobName"],
                "CreationTime": lambda summary: summary["CreationTime"],
                "Status": lambda summary: summary["TrainingJobStatus"],
                "FinalObjectiveMetricValue":
                    lambda summary: summary["FinalHyperParameterTuningJobObjectiveMetric"]["Value"],
            },
            default_sort=("Name", "Ascending"),
        )
        return {"TrainingJobSummaries": page, "NextToken": next_token}


job_operations(TuningJobStore, "HyperParameterTuningJob")


@operation("ListTrainingJobsForHyperParameterTuningJob")
def list_training_jobs_for_hyper_parameter_tuning_job(ctx, params):
    return ctx.emulator.store(TuningJobStore).list_children(params["HyperParameterTuningJobName"], ctx.region, params)
