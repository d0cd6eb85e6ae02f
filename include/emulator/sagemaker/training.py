"""Training jobs: CreateTrainingJob, DescribeTrainingJob, ListTrainingJobs, StopTrainingJob.

The record keeps each job's state and answers as SageMaker does; ``include.emulator.jobs.training_runner``
really runs the job in a background thread and reports back through ``TrainingJob``'s methods.
"""
from __future__ import annotations

import copy

from include.aws_shapes import service_model

from ..errors import ValidationException, not_found
from ..faults import FaultTagError, faults_for
from ..jobs.hosts import DEFAULT_CHECKPOINT_PATH
from ..jobs.metrics import MetricPoint, MetricRecorder, compile_metric_definitions
from ..jobs.tensorboard import DEFAULT_TENSORBOARD_PATH
from ..jobs.training_runner import TrainingRunner
from .job_records import TERMINAL, JobRecord, JobStore, job_operations
from .times import utcnow

DEFAULT_MAX_RUNTIME_SECONDS = 86_400  # SageMaker's default StoppingCondition: one day
# Managed spot instances cost a fraction of on-demand; the local SageMaker bills spot seconds at
# this fixed rate (a 70% saving), so BillableTimeInSeconds < TrainingTimeInSeconds as on SageMaker.
SPOT_BILLING_RATE = 0.3

# request members DescribeTrainingJob echoes back (everything it shares with CreateTrainingJob's input)
_ECHOED = [
    name
    for name in service_model("sagemaker").operation_model("DescribeTrainingJob").output_shape.members
    if name in service_model("sagemaker").operation_model("CreateTrainingJob").input_shape.members
    and name not in ("TrainingJobName",)
]


def _null(path: str) -> ValidationException:
    return ValidationException(
        f"1 validation error detected: Value null at '{path}' failed to satisfy constraint: Member must not be null"
    )


class TrainingJob(JobRecord):
    """One training job: SageMaker's secondary statuses, metrics, artifacts and billing on top of the record's."""

    def __init__(self, name: str, arn: str, region: str, request: dict, tuning_job_arn: str | None = None):
        super().__init__(name, arn, region, request)
        self.tuning_job_arn = tuning_job_arn
        self.metrics = MetricRecorder(request["AlgorithmSpecification"].get("MetricDefinitions"))
        self.secondary_status = "Starting"
        self.transitions: list[dict] = [
            {"Status": "Starting", "StartTime": self.creation_time, "StatusMessage": "Starting the training job"}
        ]
        self.model_artifacts: str | None = None
        self.training_seconds = 0.0  # what the job's attempts ran, summed (billing)
        self.stop_message: str | None = None  # why StopTrainingJob was called, when not by a user

    @property
    def training_end_time(self):
        # a job that never began training has no TrainingEndTime
        return self.end_time if self.start_time is not None else None

    # --- reported by the runner -------------------------------------------------------------------

    def transition(self, secondary: str, message: str, *, status: str | None = None) -> None:
        """Enter a secondary status (or, if already in it, update its message)."""
        with self.lock:
            if self.status in TERMINAL:
                return
            now = utcnow()
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

    def enter_stopping(self, message: str | None = None) -> None:
        """``message`` says why, when the caller is not a user (a tuning job's early stopping)."""
        self.stop_message = message
        self.transition("Stopping", message or "Stopping the training job", status="Stopping")

    def add_training_seconds(self, seconds: float) -> None:
        with self.lock:
            self.training_seconds += seconds

    def _ended(self, now, *, secondary: str, message: str, model_artifacts: str | None = None) -> None:
        self.transitions[-1]["EndTime"] = now
        self.transitions.append({"Status": secondary, "StartTime": now, "EndTime": now, "StatusMessage": message})
        self.secondary_status = secondary
        self.model_artifacts = model_artifacts

    def fail(self, reason: str) -> None:
        self.finish("Failed", failure_reason=reason, secondary="Failed", message="Training job failed")

    # --- answers ----------------------------------------------------------------------------------

    def describe(self) -> dict:
        with self.lock:
            body = {name: copy.deepcopy(self.request[name]) for name in _ECHOED if name in self.request}
            body.update(
                TrainingJobName=self.name,
                TrainingJobArn=self.arn,
                TuningJobArn=self.tuning_job_arn,
                TrainingJobStatus=self.status,
                SecondaryStatus=self.secondary_status,
                FailureReason=self.failure_reason,
                CreationTime=self.creation_time,
                TrainingStartTime=self.start_time,
                TrainingEndTime=self.training_end_time,
                LastModifiedTime=self.last_modified_time,
                SecondaryStatusTransitions=copy.deepcopy(self.transitions),
                FinalMetricDataList=self.metrics.final_metric_data_list(),
            )
            if self.model_artifacts:
                body["ModelArtifacts"] = {"S3ModelArtifacts": self.model_artifacts}
            if self.start_time and self.training_end_time:
                seconds = max(1, round((self.training_end_time - self.start_time).total_seconds()))
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
        with self.lock:
            return {
                "CreationTime": self.creation_time,
                "TrainingStartTime": self.start_time,
                "TrainingEndTime": self.training_end_time,
                "TrainingJobStatus": self.status,
                "FailureReason": self.failure_reason,
            }

    def summary(self) -> dict:
        with self.lock:
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


class TrainingJobStore(JobStore):
    """All training jobs of the emulator; a tuning job's children are training jobs too."""

    resource_type = "training-job"
    noun = "training job"

    def new_record(self, ctx, params: dict, *, tuning_job_arn: str | None = None) -> TrainingJob:
        request = normalized_training_request(params)
        name = request["TrainingJobName"]
        return TrainingJob(name, ctx.arn(self.resource_type, name), ctx.region, request, tuning_job_arn)

    def new_runner(self, record: TrainingJob) -> TrainingRunner:
        return TrainingRunner(self.emulator, record)

    def missing(self, name: str) -> ValidationException:
        return not_found()

    def selected(self, record: TrainingJob, params: dict) -> bool:
        if "WarmPoolStatusEquals" in params:
            return False  # no warm pools here: KeepAlivePeriodInSeconds keeps nothing alive
        plan = record.request["ResourceConfig"].get("TrainingPlanArn")
        return "TrainingPlanArnEquals" not in params or plan == params["TrainingPlanArnEquals"]

    def metric_series(self, name: str, region: str | None = None) -> dict[str, list[MetricPoint]]:
        """Every value each MetricDefinition matched, in log order (for tuning strategies such as Hyperband)."""
        return self.get(name, region).metrics.series()


job_operations(TrainingJobStore, "TrainingJob")


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
