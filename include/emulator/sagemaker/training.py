"""Training jobs: CreateTrainingJob, DescribeTrainingJob, ListTrainingJobs, StopTrainingJob.

The store keeps each job's state and answers as SageMaker does; ``include.emulator.jobs.runner``
really runs the job in a background thread and reports back through ``TrainingJob``'s methods.
"""
from __future__ import annotations

import base64
import copy
import datetime as dt
import json
import logging
import threading

from include.aws_shapes import service_model

from ..errors import ResourceInUse, ValidationException, not_found
from ..faults import FaultTagError, faults_for
from ..jobs.hosts import DEFAULT_CHECKPOINT_PATH
from ..jobs.metrics import MetricPoint, MetricRecorder, compile_metric_definitions
from ..jobs.runner import SHUTDOWN, TrainingRunner
from ..jobs.tensorboard import DEFAULT_TENSORBOARD_PATH
from .registry import operation
from .tags import TagStore

log = logging.getLogger(__name__)

DEFAULT_MAX_RUNTIME_SECONDS = 86_400  # SageMaker's default StoppingCondition: one day
# Managed spot instances cost a fraction of on-demand; the local SageMaker bills spot seconds at
# this fixed rate (a 70% saving), so BillableTimeInSeconds < TrainingTimeInSeconds as on SageMaker.
SPOT_BILLING_RATE = 0.3
DEFAULT_LIST_RESULTS = 10
TERMINAL_STATUSES = {"Completed", "Failed", "Stopped"}

# request members DescribeTrainingJob echoes back (everything it shares with CreateTrainingJob's input)
_ECHOED = [
    name
    for name in service_model("sagemaker").operation_model("DescribeTrainingJob").output_shape.members
    if name in service_model("sagemaker").operation_model("CreateTrainingJob").input_shape.members
    and name not in ("TrainingJobName",)
]


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _null(path: str) -> ValidationException:
    return ValidationException(
        f"1 validation error detected: Value null at '{path}' failed to satisfy constraint: Member must not be null"
    )


class TrainingJob:
    """One job's state. Mutations come from the runner thread and the API; all go through ``lock``."""

    def __init__(
        self, name: str, arn: str, region: str, request: dict, lock: threading.RLock, tuning_job_arn: str | None = None
    ):
        self.name = name
        self.arn = arn
        self.region = region
        self.request = request
        self.tuning_job_arn = tuning_job_arn
        self._lock = lock
        self.metrics = MetricRecorder(request["AlgorithmSpecification"].get("MetricDefinitions"))
        self.creation_time = _now()
        self.last_modified_time = self.creation_time
        self.status = "InProgress"
        self.secondary_status = "Starting"
        self.transitions: list[dict] = [
            {"Status": "Starting", "StartTime": self.creation_time, "StatusMessage": "Starting the training job"}
        ]
        self.training_start_time: dt.datetime | None = None
        self.training_end_time: dt.datetime | None = None
        self.failure_reason: str | None = None
        self.model_artifacts: str | None = None
        self.training_seconds = 0.0  # what the job's attempts ran, summed (billing)
        self.stop_message: str | None = None  # why StopTrainingJob was called, when not by a user
        self.runner: TrainingRunner | None = None
        self.done = threading.Event()

    @property
    def role_arn(self) -> str:
        return self.request["RoleArn"]

    # --- reported by the runner -------------------------------------------------------------------

    def transition(self, secondary: str, message: str, *, status: str | None = None) -> None:
        """Enter a secondary status (or, if already in it, update its message)."""
        with self._lock:
            if self.status in TERMINAL_STATUSES:
                return
            now = _now()
            current = self.transitions[-1]
            if current["Status"] == secondary:
                current["StatusMessage"] = message
            else:
                current["EndTime"] = now
                self.transitions.append({"Status": secondary, "StartTime": now, "StatusMessage": message})
            self.secondary_status = secondary
            if status:
                self.status = status
            self.last_modified_time = now

    def mark_training_started(self) -> None:
        with self._lock:
            self.training_start_time = _now()

    def add_training_seconds(self, seconds: float) -> None:
        with self._lock:
            self.training_seconds += seconds

    def finish(
        self,
        status: str,
        secondary: str,
        message: str,
        *,
        failure_reason: str | None = None,
        model_artifacts: str | None = None,
    ) -> None:
        with self._lock:
            if self.status in TERMINAL_STATUSES:
                return
            now = _now()
            self.transitions[-1]["EndTime"] = now
            self.transitions.append({"Status": secondary, "StartTime": now, "EndTime": now, "StatusMessage": message})
            self.status = status
            self.secondary_status = secondary
            self.failure_reason = failure_reason
            self.model_artifacts = model_artifacts
            if self.training_start_time is not None:
                self.training_end_time = now
            self.last_modified_time = now
        self.done.set()

    # --- answers ----------------------------------------------------------------------------------

    def describe(self) -> dict:
        with self._lock:
            body = {name: copy.deepcopy(self.request[name]) for name in _ECHOED if name in self.request}
            body.update(
                TrainingJobName=self.name,
                TrainingJobArn=self.arn,
                TuningJobArn=self.tuning_job_arn,
                TrainingJobStatus=self.status,
                SecondaryStatus=self.secondary_status,
                FailureReason=self.failure_reason,
                CreationTime=self.creation_time,
                TrainingStartTime=self.training_start_time,
                TrainingEndTime=self.training_end_time,
                LastModifiedTime=self.last_modified_time,
                SecondaryStatusTransitions=copy.deepcopy(self.transitions),
                FinalMetricDataList=self.metrics.final_metric_data_list(),
            )
            if self.model_artifacts:
                body["ModelArtifacts"] = {"S3ModelArtifacts": self.model_artifacts}
            if self.training_start_time and self.training_end_time:
                seconds = max(1, round((self.training_end_time - self.training_start_time).total_seconds()))
                body["TrainingTimeInSeconds"] = seconds
                body["BillableTimeInSeconds"] = self._billable_seconds(seconds)
            return body

    def _billable_seconds(self, training_seconds: int) -> int:
        """Per instance, as SageMaker reports it (multiply by InstanceCount for the cluster's compute time);
        managed spot bills the seconds the attempts ran at SPOT_BILLING_RATE, so the saving,
        1 - Billable / TrainingTime, shows as it does on SageMaker."""
        if not self.request.get("EnableManagedSpotTraining"):
            return training_seconds
        return max(1, round(self.training_seconds * SPOT_BILLING_RATE))

    def timeline(self) -> dict:
        """Status, times and failure at one instant (what a tuning job's summary of its child shows)."""
        with self._lock:
            return {
                "CreationTime": self.creation_time,
                "TrainingStartTime": self.training_start_time,
                "TrainingEndTime": self.training_end_time,
                "TrainingJobStatus": self.status,
                "FailureReason": self.failure_reason,
            }

    def summary(self) -> dict:
        with self._lock:
            return {
                "TrainingJobName": self.name,
                "TrainingJobArn": self.arn,
                "CreationTime": self.creation_time,
                "TrainingEndTime": self.training_end_time,
                "LastModifiedTime": self.last_modified_time,
                "TrainingJobStatus": self.status,
                "SecondaryStatus": self.secondary_status,
                "TrainingPlanArn": self.request["ResourceConfig"].get("TrainingPlanArn"),
            }


class TrainingJobStore:
    """All training jobs of the emulator, keyed by region and name (names are unique per account and region)."""

    def __init__(self, emulator):
        self.emulator = emulator
        self._lock = threading.RLock()
        self._jobs: dict[tuple[str, str], TrainingJob] = {}
        self._closed = False

    def create(self, ctx, params: dict, *, tuning_job_arn: str | None = None) -> TrainingJob:
        request = normalized_training_request(params)
        name = request["TrainingJobName"]
        arn = ctx.arn("training-job", name)
        with self._lock:
            if self._closed:
                raise ValidationException("The local SageMaker is shutting down.")
            key = (ctx.region, name.lower())  # the ARN is lower-cased, so names differing in case collide
            if key in self._jobs:
                raise ResourceInUse(
                    "Training job names must be unique within an AWS account and region, and a training job "
                    f"with this name already exists ({arn})"
                )
            job = TrainingJob(name, arn, ctx.region, request, self._lock, tuning_job_arn)
            self._jobs[key] = job
            ctx.emulator.store(TagStore).add(arn, params.get("Tags"))
            # started under the lock, so shutdown() either refuses the job or sees its runner
            job.runner = TrainingRunner(self.emulator, job).start()
        return job

    @property
    def closed(self) -> bool:
        """Shutting down: no job is created any more."""
        return self._closed

    def get(self, name: str, region: str | None = None) -> TrainingJob:
        with self._lock:
            job = self._jobs.get((region or self.emulator.settings.region, name.lower()))
        if job is None:
            raise not_found()
        return job

    def stop(self, name: str, region: str | None = None, *, message: str | None = None) -> None:
        """StopTrainingJob; ``message`` says why when the caller is not a user (a tuning job's early stopping)."""
        job = self.get(name, region)
        with self._lock:
            if job.status != "InProgress":
                raise ValidationException(f"The request was rejected because the training job is in status {job.status}.")
            job.stop_message = message
            job.transition("Stopping", message or "Stopping the training job", status="Stopping")
        job.runner.request_stop()

    def metric_series(self, name: str, region: str | None = None) -> dict[str, list[MetricPoint]]:
        """Every value each MetricDefinition matched, in log order (for tuning strategies such as Hyperband)."""
        return self.get(name, region).metrics.series()

    def wait(self, name: str, region: str | None = None, timeout: float | None = None) -> str:
        """Block until the job ends (or ``timeout``); returns its TrainingJobStatus."""
        job = self.get(name, region)
        job.done.wait(timeout)
        return job.status

    def list(self, region: str, params: dict) -> dict:
        with self._lock:
            jobs = [job for (job_region, _), job in self._jobs.items() if job_region == region]
        summaries = [job.summary() for job in jobs]
        summaries = [summary for summary in summaries if _matches(summary, params)]
        sort_key = {
            "Name": lambda s: s["TrainingJobName"],
            "Status": lambda s: s["TrainingJobStatus"],
            "CreationTime": lambda s: s["CreationTime"],
        }[params.get("SortBy", "CreationTime")]
        summaries.sort(key=sort_key, reverse=params.get("SortOrder", "Descending") == "Descending")
        return summaries_page(summaries, params, "TrainingJobSummaries")

    def shutdown(self) -> None:
        """Stop every running job and kill its process group, so no process outlives the emulator."""
        with self._lock:
            self._closed = True
            runners = [job.runner for job in self._jobs.values() if job.runner and job.runner.alive]
        for runner in runners:
            runner.request_stop(SHUTDOWN)
        for runner in runners:
            if not runner.join(timeout=30):
                log.warning("training job %s did not end within 30 s of shutdown", runner.job.name)


def normalized_training_request(params: dict) -> dict:
    """The request with SageMaker's defaults filled in, after the checks botocore's model leaves to the service."""
    request = copy.deepcopy(params)
    try:
        faults_for(request.pop("Tags", None))  # a typo in the fault tag must not silently inject nothing
    except FaultTagError as exc:
        raise ValidationException(str(exc)) from exc
    spec = request.get("AlgorithmSpecification")
    if spec is None:
        raise _null("algorithmSpecification")
    if not spec.get("TrainingImage") and not spec.get("AlgorithmName"):
        raise ValidationException("AlgorithmSpecification must name a TrainingImage or an AlgorithmName.")
    try:
        compile_metric_definitions(spec.get("MetricDefinitions"))
    except ValueError as exc:
        raise ValidationException(str(exc)) from exc
    resources = request.get("ResourceConfig")
    if resources is None:
        raise _null("resourceConfig")
    if not resources.get("InstanceGroups"):
        for member in ("InstanceType", "InstanceCount"):
            if resources.get(member) is None:
                raise _null(f"resourceConfig.{member[0].lower()}{member[1:]}")

    channel_names = [channel["ChannelName"] for channel in request.get("InputDataConfig") or []]
    duplicates = sorted({name for name in channel_names if channel_names.count(name) > 1})
    if duplicates:
        raise ValidationException(f"Channel names must be unique in InputDataConfig; repeated: {', '.join(duplicates)}.")

    stopping = request.setdefault("StoppingCondition", {})
    stopping.setdefault("MaxRuntimeInSeconds", DEFAULT_MAX_RUNTIME_SECONDS)
    if request.get("EnableManagedSpotTraining"):
        max_wait = stopping.get("MaxWaitTimeInSeconds")
        if max_wait is None:
            raise ValidationException("StoppingCondition.MaxWaitTimeInSeconds is required with EnableManagedSpotTraining.")
        if max_wait < stopping["MaxRuntimeInSeconds"]:
            raise ValidationException("StoppingCondition.MaxWaitTimeInSeconds must be at least MaxRuntimeInSeconds.")

    if request.get("CheckpointConfig") is not None:
        request["CheckpointConfig"].setdefault("LocalPath", DEFAULT_CHECKPOINT_PATH)
    if request.get("TensorBoardOutputConfig") is not None:
        request["TensorBoardOutputConfig"].setdefault("LocalPath", DEFAULT_TENSORBOARD_PATH)
    spec.setdefault("TrainingInputMode", "File")
    request["OutputDataConfig"].setdefault("CompressionType", "GZIP")
    for channel in request.get("InputDataConfig") or []:
        channel.setdefault("CompressionType", "None")
        channel.setdefault("RecordWrapperType", "None")
        s3_source = channel.get("DataSource", {}).get("S3DataSource")
        if s3_source is not None:
            s3_source.setdefault("S3DataDistributionType", "FullyReplicated")
    for flag in ("EnableNetworkIsolation", "EnableInterContainerTrafficEncryption", "EnableManagedSpotTraining"):
        request.setdefault(flag, False)
    return request


def parse_timestamp(value) -> dt.datetime:
    # awsJson1_1 sends timestamps as epoch seconds; accept ISO 8601 too, as the service does
    if isinstance(value, (int, float)):
        return dt.datetime.fromtimestamp(value, dt.timezone.utc)
    try:
        parsed = dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError as exc:
        raise ValidationException(f"Value '{value}' is not a valid timestamp.") from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.timezone.utc)


def summary_matches(summary: dict, params: dict, name_field: str, status_field: str) -> bool:
    """NameContains, StatusEquals and the Creation/LastModified time bounds of a List*Jobs request."""
    if "NameContains" in params and params["NameContains"].lower() not in summary[name_field].lower():
        return False
    if "StatusEquals" in params and summary[status_field] != params["StatusEquals"]:
        return False
    for member, field_name, after in (
        ("CreationTimeAfter", "CreationTime", True),
        ("CreationTimeBefore", "CreationTime", False),
        ("LastModifiedTimeAfter", "LastModifiedTime", True),
        ("LastModifiedTimeBefore", "LastModifiedTime", False),
    ):
        if member in params:
            bound = parse_timestamp(params[member])
            if (summary[field_name] <= bound) if after else (summary[field_name] >= bound):
                return False
    return True


def _matches(summary: dict, params: dict) -> bool:
    if "WarmPoolStatusEquals" in params:
        return False  # no warm pools here: KeepAlivePeriodInSeconds keeps nothing alive
    if "TrainingPlanArnEquals" in params and summary["TrainingPlanArn"] != params["TrainingPlanArnEquals"]:
        return False
    return summary_matches(summary, params, "TrainingJobName", "TrainingJobStatus")


def summaries_page(items: list[dict], params: dict, member: str) -> dict:
    """One page of a List* answer ({member: [...], NextToken}), from MaxResults and NextToken."""
    start = decode_next_token(params.get("NextToken"))
    limit = params.get("MaxResults", DEFAULT_LIST_RESULTS)
    answer: dict = {member: items[start : start + limit]}
    if start + limit < len(items):
        answer["NextToken"] = encode_next_token(start + limit)
    return answer


def encode_next_token(offset: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"offset": offset}).encode()).decode()


def decode_next_token(token: str | None) -> int:
    if not token:
        return 0
    try:
        offset = json.loads(base64.urlsafe_b64decode(token.encode()))["offset"]
        if isinstance(offset, int) and offset >= 0:
            return offset
    except Exception:
        pass
    raise ValidationException("Invalid pagination token because of the NextToken value.")


def _store(ctx) -> TrainingJobStore:
    return ctx.emulator.store(TrainingJobStore)


@operation("CreateTrainingJob")
def create_training_job(ctx, params):
    return {"TrainingJobArn": _store(ctx).create(ctx, params).arn}


@operation("DescribeTrainingJob")
def describe_training_job(ctx, params):
    return _store(ctx).get(params["TrainingJobName"], ctx.region).describe()


@operation("ListTrainingJobs")
def list_training_jobs(ctx, params):
    return _store(ctx).list(ctx.region, params)


@operation("StopTrainingJob")
def stop_training_job(ctx, params):
    _store(ctx).stop(params["TrainingJobName"], ctx.region)
    return {}
