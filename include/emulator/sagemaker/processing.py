"""Processing jobs: CreateProcessingJob, DescribeProcessingJob, ListProcessingJobs, StopProcessingJob.

The record, the store and the request's checks; ``include.emulator.jobs.processing_runner`` really
runs the job (each instance's /opt/ml stand-in, the entrypoint as a process group, inputs and
outputs through S3, CloudWatch Logs ``/aws/sagemaker/ProcessingJobs``). A script that fails leaves
its exception in FailureReason; what it wrote to ``/opt/ml/output/message`` is the ExitMessage.
"""
from __future__ import annotations

import copy

from ..errors import ValidationException
from ..jobs.failures import MAX_FAILURE_REASON
from ..jobs.processing_runner import PROCESSING_PREFIX, ProcessingRunner
from .job_records import JobRecord, JobStore, job_operations

DEFAULT_MAX_RUNTIME_SECONDS = 86_400


class ProcessingJob(JobRecord):
    exit_message: str | None = None  # what the script wrote to /opt/ml/output/message (1 KB at most)

    def _ended(self, now, *, exit_message: str | None = None) -> None:
        self.exit_message = exit_message[:MAX_FAILURE_REASON] if exit_message else None

    def describe(self) -> dict:
        with self.lock:
            body = self.echoed_request()
            body.update(
                ProcessingJobArn=self.arn,
                ProcessingJobStatus=self.status,
                ExitMessage=self.exit_message,
                FailureReason=self.failure_reason,
                ProcessingStartTime=self.start_time,
                ProcessingEndTime=self.end_time,
                LastModifiedTime=self.last_modified_time,
                CreationTime=self.creation_time,
            )
            return body

    def summary(self) -> dict:
        with self.lock:
            return {
                "ProcessingJobName": self.name,
                "ProcessingJobArn": self.arn,
                "CreationTime": self.creation_time,
                "ProcessingEndTime": self.end_time,
                "LastModifiedTime": self.last_modified_time,
                "ProcessingJobStatus": self.status,
                "FailureReason": self.failure_reason,
                "ExitMessage": self.exit_message,
            }


class ProcessingJobStore(JobStore):
    resource_type = "processing-job"
    noun = "processing job"

    def new_record(self, ctx, params: dict) -> ProcessingJob:
        name = params["ProcessingJobName"]
        return ProcessingJob(name, ctx.arn(self.resource_type, name), ctx.region, normalized_request(params))

    def new_runner(self, record: ProcessingJob) -> ProcessingRunner:
        return ProcessingRunner(self.emulator, record)


job_operations(ProcessingJobStore, "ProcessingJob")


# --- the request --------------------------------------------------------------------------------------

def _check_local_path(path: str | None, where: str) -> None:
    if not path or not (path + "/").startswith(PROCESSING_PREFIX) or "/../" in f"{path}/":
        raise ValidationException(f"{where}.LocalPath '{path}' must be an absolute path under {PROCESSING_PREFIX}.")


def _unique(values: list[str], what: str) -> None:
    repeated = sorted({value for value in values if values.count(value) > 1})
    if repeated:
        raise ValidationException(f"{what} must be unique; repeated: {', '.join(repeated)}.")


def normalized_request(params: dict) -> dict:
    """The request with SageMaker's defaults filled in, after the checks botocore's model leaves to the service."""
    request = {key: copy.deepcopy(value) for key, value in params.items() if key != "Tags"}
    inputs = request.get("ProcessingInputs") or []
    outputs = (request.get("ProcessingOutputConfig") or {}).get("Outputs") or []
    _unique([item["InputName"] for item in inputs], "ProcessingInputs InputName values")
    _unique([item["OutputName"] for item in outputs], "ProcessingOutputConfig.Outputs OutputName values")
    local_paths = []
    for index, item in enumerate(inputs, start=1):
        item.setdefault("AppManaged", False)
        s3 = item.get("S3Input")
        if s3 is None and item.get("DatasetDefinition") is None:
            raise ValidationException(f"ProcessingInputs.{index} ({item['InputName']}) needs S3Input or DatasetDefinition.")
        if s3 is not None:
            if not item["AppManaged"]:
                _check_local_path(s3.get("LocalPath"), f"ProcessingInputs.{index}.S3Input")
                local_paths.append(s3["LocalPath"].rstrip("/"))
            s3.setdefault("S3InputMode", "File")
            s3.setdefault("S3DataDistributionType", "FullyReplicated")
            s3.setdefault("S3CompressionType", "None")
            if s3["S3CompressionType"] == "Gzip" and s3["S3InputMode"] != "Pipe":
                raise ValidationException(f"ProcessingInputs.{index}.S3Input: S3CompressionType Gzip can only be "
                                          "used with S3InputMode Pipe.")
    # SageMaker refuses two inputs that write to the same folder (with no message; we say why)
    _unique(local_paths, "ProcessingInputs LocalPath values")
    for index, item in enumerate(outputs, start=1):
        item.setdefault("AppManaged", False)
        s3 = item.get("S3Output")
        if s3 is not None:
            if not item["AppManaged"]:
                _check_local_path(s3.get("LocalPath"), f"ProcessingOutputConfig.Outputs.{index}.S3Output")
            s3.setdefault("S3UploadMode", "EndOfJob")
    request.setdefault("StoppingCondition", {}).setdefault("MaxRuntimeInSeconds", DEFAULT_MAX_RUNTIME_SECONDS)
    return request
