"""Batch transform: CreateTransformJob, DescribeTransformJob, ListTransformJobs, StopTransformJob.

The record, the store and the request's checks; ``include.emulator.jobs.transform_runner`` really
runs the job: the model's server on every instance, every input object split into records, sent to
``/invocations`` in mini-batches and the answers assembled into ``<S3OutputPath>/<object>.out``.
The model's container is resolved when the job is created, as SageMaker does: a model the local
SageMaker cannot serve fails the job at once, with the reason.
"""
from __future__ import annotations

import copy
from dataclasses import replace

from ..errors import ValidationException
from ..faults import FaultTagError, Faults, faults_for, faults_of_resources
from ..jobs.transform_data import DataProcessing, RecordError
from ..jobs.transform_runner import TransformRunner, batch_environment
from ..serving.specs import ContainerSpec
from .hosting import model_container
from .hosting_models import ModelStore
from .job_records import JobRecord, JobStore, job_operations

DEFAULT_MAX_PAYLOAD_MB = 6
MAX_PAYLOAD_TIMES_CONCURRENCY_MB = 100


class TransformJob(JobRecord):
    def __init__(self, name: str, arn: str, region: str, request: dict, *, container: ContainerSpec,
                 faults: Faults, role_arn: str, problem: str | None):
        super().__init__(name, arn, region, request)
        self.container = container  # the model's ContainerSpec, with the job's Environment
        self.faults = faults
        self.role_arn = role_arn  # the model's execution role, named in S3 messages
        self.problem = problem  # why the model cannot be served here, or None

    def describe(self) -> dict:
        with self.lock:
            body = self.echoed_request()
            body.update(
                TransformJobArn=self.arn,
                TransformJobStatus=self.status,
                FailureReason=self.failure_reason,
                CreationTime=self.creation_time,
                TransformStartTime=self.start_time,
                TransformEndTime=self.end_time,
            )
            return body

    def summary(self) -> dict:
        with self.lock:
            return {
                "TransformJobName": self.name,
                "TransformJobArn": self.arn,
                "CreationTime": self.creation_time,
                "TransformEndTime": self.end_time,
                "LastModifiedTime": self.last_modified_time,
                "TransformJobStatus": self.status,
                "FailureReason": self.failure_reason,
            }


class TransformJobStore(JobStore):
    resource_type = "transform-job"
    noun = "transform job"

    def new_record(self, ctx, params: dict) -> TransformJob:
        name = params["TransformJobName"]
        request = normalized_request(params)
        container, problem = model_container(ctx, request["ModelName"])  # 'Could not find model' as SageMaker says
        try:
            faults = faults_for(params.get("Tags")).merged(
                faults_of_resources(ctx.emulator, [ctx.arn("model", request["ModelName"])]))
        except FaultTagError as exc:
            raise ValidationException(str(exc)) from None
        environment = {**container.environment, **(request.get("Environment") or {}), **batch_environment(request)}
        role_arn = ctx.emulator.store(ModelStore).get(ctx, request["ModelName"]).request.get("ExecutionRoleArn", "")
        return TransformJob(name, ctx.arn(self.resource_type, name), ctx.region, request,
                            container=replace(container, environment=environment), faults=faults, role_arn=role_arn,
                            problem=problem)

    def new_runner(self, record: TransformJob) -> TransformRunner:
        return TransformRunner(self.emulator, record)


job_operations(TransformJobStore, "TransformJob")


# --- the request --------------------------------------------------------------------------------------

def normalized_request(params: dict) -> dict:
    """The request with SageMaker's defaults filled in, after the checks botocore's model leaves to the service."""
    request = {key: copy.deepcopy(value) for key, value in params.items() if key != "Tags"}
    transform_input = request["TransformInput"]
    transform_input.setdefault("SplitType", "None")
    transform_input.setdefault("CompressionType", "None")
    request["TransformOutput"].setdefault("AssembleWith", "None")
    request.setdefault("MaxPayloadInMB", DEFAULT_MAX_PAYLOAD_MB)
    if not request.get("MaxConcurrentTransforms"):  # 0 or unset: the container's default, which is 1 here
        request["MaxConcurrentTransforms"] = 1
    if request["MaxPayloadInMB"] * request["MaxConcurrentTransforms"] > MAX_PAYLOAD_TIMES_CONCURRENCY_MB:
        raise ValidationException(
            f"MaxConcurrentTransforms * MaxPayloadInMB must not exceed {MAX_PAYLOAD_TIMES_CONCURRENCY_MB} MB; "
            f"{request['MaxConcurrentTransforms']} * {request['MaxPayloadInMB']} MB is more.")
    if request.get("DataProcessing") is not None:
        processing = request["DataProcessing"]
        processing.setdefault("InputFilter", "$")
        processing.setdefault("OutputFilter", "$")
        processing.setdefault("JoinSource", "None")
        try:  # a JSONPath we cannot read is refused now, not after the servers started
            DataProcessing(processing, transform_input.get("ContentType"), request["TransformOutput"].get("Accept"))
        except RecordError as exc:
            raise ValidationException(f"DataProcessing: {exc}") from None
    return request
