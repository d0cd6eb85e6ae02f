"""Batch transform: CreateTransformJob, DescribeTransformJob, ListTransformJobs, StopTransformJob.

The job really runs: the model's server starts on every instance (``ModelServerFleet``, log group
``/aws/sagemaker/TransformJobs``, stream ``<job>/<instance id>``, plus ``<job>/<instance id>/data-log``
for SageMaker's own ``[sagemaker logs]`` lines), every object under the input (S3Prefix or
ManifestFile) is split (``transform_records``), sent to ``/invocations`` in mini-batches with the
job's ContentType and Accept, and the assembled answers are written to ``<S3OutputPath>/<path of the
object below the input prefix>.out``. Objects are spread over the instances, up to
MaxConcurrentTransforms at a time on each. A record the model rejects fails the job (after
ModelClientConfig's retries for server errors), naming the object; objects already done keep their
output, as on SageMaker. StopTransformJob stops sending and takes the servers down.
"""
from __future__ import annotations

import copy
import gzip
import json
import logging
import posixpath
import shutil
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

from .. import images
from ..cloudwatch import LogWriter
from ..errors import ValidationException
from ..faults import FaultTagError, faults_for, faults_of_resources
from ..jobs import staging
from ..serving.fleet import (
    DeploymentCancelled,
    DeploymentFailed,
    InvocationTimeout,
    ModelServerFleet,
    ModelServerProcess,
)
from ..serving.specs import VariantSpec
from .hosting import model_container
from .hosting_models import ModelStore
from .job_records import JobRecord, JobStore
from .registry import operation
from .transform_records import DataProcessing, RecordError, assemble, mini_batches, payload, response_lines, split_records

log = logging.getLogger(__name__)

LOG_GROUP = "/aws/sagemaker/TransformJobs"
DEFAULT_MAX_PAYLOAD_MB = 6
MAX_PAYLOAD_TIMES_CONCURRENCY_MB = 100
DEFAULT_INVOCATION_TIMEOUT_S = 600
DEFAULT_INVOCATION_RETRIES = 3
POLL_SECONDS = 0.2


class TransformJob(JobRecord):
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


# --- the run ------------------------------------------------------------------------------------------

class JobFailure(Exception):
    """The job cannot go on; the message is its FailureReason."""


@dataclass(frozen=True)
class InputObject:
    bucket: str
    key: str
    relative: str  # below the input prefix: the output is <S3OutputPath>/<relative>.out


def _list_keys(s3, bucket: str, prefix: str) -> list[str]:
    keys = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys.extend(item["Key"] for item in page.get("Contents", []) if not item["Key"].endswith("/"))
    return sorted(keys)


def _below_prefix(key: str, prefix: str) -> str:
    # s3://b/in/ holds in/a.csv -> a.csv; s3://b/in/a.csv itself -> a.csv; a partial name
    # (s3://b/in/da matching in/data.csv) keeps the name below the folder: data.csv
    if key == prefix:
        return posixpath.basename(key)
    if not prefix or prefix.endswith("/") or key[len(prefix)] == "/":
        return key[len(prefix):].lstrip("/")
    return key[len(posixpath.dirname(prefix)):].lstrip("/")


def _manifest_objects(s3, uri: str, bucket: str, key: str) -> list[InputObject]:
    """A manifest is a JSON list: {"prefix": "s3://bucket/prefix/"} followed by keys relative to it."""
    try:
        entries = json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    except Exception as exc:
        raise staging.StagingError(f"ClientError: Could not read the manifest file {uri}: {exc}") from exc
    if not (isinstance(entries, list) and entries and isinstance(entries[0], dict) and "prefix" in entries[0]):
        raise staging.StagingError(
            f'ClientError: Manifest file {uri} must be a JSON list starting with {{"prefix": "s3://..."}}.')
    prefix_bucket, prefix = staging.parse_s3_uri(entries[0]["prefix"])
    if any(not isinstance(entry, str) for entry in entries[1:]):
        raise staging.StagingError(f"ClientError: Manifest file {uri} holds an entry that is not a key.")
    return [InputObject(prefix_bucket, prefix + entry, entry) for entry in entries[1:]]


class _DataLog:
    """SageMaker's ``[sagemaker logs]`` lines, one data-log stream per instance."""

    def __init__(self, emulator, job: TransformJob, servers: list[ModelServerProcess]):
        self._writers = {server.instance_id: LogWriter(emulator, LOG_GROUP, f"{server.log_stream}/data-log",
                                                       region=job.region) for server in servers}

    @staticmethod
    def _lines(message: str) -> list[str]:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + ".000"
        return [f"{stamp}:[sagemaker logs]: {line}" for line in message.splitlines() or [""]]

    def write(self, server: ModelServerProcess, message: str) -> None:
        for line in self._lines(message):
            self._writers[server.instance_id].write(line)

    def broadcast(self, message: str) -> None:
        for writer in self._writers.values():
            for line in self._lines(message):
                writer.write(line)

    def close(self) -> None:
        for writer in self._writers.values():
            writer.close()


class TransformRunner:
    def __init__(self, emulator, job: TransformJob, container, faults, role_arn: str):
        self.emulator = emulator
        self.job = job
        self.container = container  # the model's ContainerSpec, with the job's Environment
        self.faults = faults
        self.role_arn = role_arn
        self._failure: str | None = None
        self._failure_lock = threading.Lock()
        self._s3 = None

    @property
    def s3(self):
        if self._s3 is None:
            self._s3 = self.emulator.client("s3", self.job.region)
        return self._s3

    @property
    def job_dir(self) -> Path:
        return Path(self.emulator.settings.state_dir) / "transform-jobs" / self.job.name

    def run(self, _record=None) -> None:
        request = self.job.request
        try:
            self._check_runnable()
        except JobFailure as failure:
            self.job.finish("Failed", failure_reason=str(failure))
            return
        self.job.started()
        if self.job_dir.exists():
            shutil.rmtree(self.job_dir)
        try:
            objects = self._input_objects()
        except staging.StagingError as exc:
            self.job.finish("Failed", failure_reason=str(exc))
            return

        resources = request["TransformResources"]
        variant = VariantSpec(name=self.job.name, model_name=request["ModelName"], container=self.container,
                              instance_count=resources["InstanceCount"], instance_type=resources["InstanceType"])
        fleet = self.emulator.store(ModelServerFleet)
        try:
            deployment = fleet.deploy(self.job.region, self.job.name, [variant], self.job.stop_requested,
                                      log_group=LOG_GROUP, base_dir=self.job_dir / "instances",
                                      faults={variant.name: self.faults})
        except DeploymentCancelled:
            self.job.finish("Stopped")
            return
        except DeploymentFailed as failure:
            self.job.finish("Failed", failure_reason=f"AlgorithmError: {failure.reason}")
            return
        servers = deployment.variants[variant.name].servers
        data_log = _DataLog(self.emulator, self.job, servers)
        try:
            if not self._acquire_slot():
                self.job.finish("Stopped")
                return
            try:
                data_log.broadcast(
                    f"MaxConcurrentTransforms={request['MaxConcurrentTransforms']}, "
                    f"MaxPayloadInMB={request['MaxPayloadInMB']}, "
                    f"BatchStrategy={_batch_environment(request)['SAGEMAKER_BATCH_STRATEGY']}")
                self._transform_all(objects, servers, data_log)
            finally:
                self.emulator.job_slots.release()
        finally:
            data_log.close()
            fleet.retire(deployment)
            shutil.rmtree(self.job_dir, ignore_errors=True)

        if self.job.stop_reason:
            self.job.finish("Stopped")
        elif self._failure:
            self.job.finish("Failed", failure_reason=self._failure)
        else:
            self.job.finish("Completed")

    def _check_runnable(self) -> None:
        request = self.job.request
        source = request["TransformInput"]["DataSource"].get("S3DataSource")
        if source is None:
            raise JobFailure("ClientError: TransformInput.DataSource must be an S3DataSource on the local SageMaker.")
        if source["S3DataType"] not in ("S3Prefix", "ManifestFile"):
            raise JobFailure(f"ClientError: S3DataType {source['S3DataType']} is not supported by the local SageMaker; "
                             "use S3Prefix or ManifestFile.")
        split_type = request["TransformInput"]["SplitType"]
        if split_type not in ("None", "Line"):
            raise JobFailure(f"ClientError: SplitType {split_type} is not supported by the local SageMaker; "
                             "use None or Line.")
        processing = DataProcessing(request.get("DataProcessing"), request["TransformInput"].get("ContentType"),
                                    request["TransformOutput"].get("Accept"))
        if (processing.per_record_output or processing.filters_input) and split_type != "Line":
            raise JobFailure("ClientError: DataProcessing filters and JoinSource Input need SplitType Line "
                             "on the local SageMaker.")
        try:
            images.check_inference_image(self.container.image)
        except images.UnsupportedImage as exc:
            raise JobFailure(f"ClientError: {exc}") from exc

    def _acquire_slot(self) -> bool:
        slots = self.emulator.job_slots
        while not slots.acquire(timeout=POLL_SECONDS):
            if self.job.stop_reason:
                return False
        return True

    def _input_objects(self) -> list[InputObject]:
        """Every object the job transforms, with its path below the input prefix (which its output keeps)."""
        source = self.job.request["TransformInput"]["DataSource"]["S3DataSource"]
        uri = source["S3Uri"]
        bucket, prefix = staging.parse_s3_uri(uri)
        try:
            if source["S3DataType"] == "ManifestFile":
                objects = _manifest_objects(self.s3, uri, bucket, prefix)
            else:
                objects = [InputObject(bucket, key, _below_prefix(key, prefix))
                           for key in _list_keys(self.s3, bucket, prefix)]
        except staging.StagingError:
            raise
        except Exception as exc:
            raise staging.StagingError(f"ClientError: Could not list the input {uri}: {exc}") from exc
        if not objects:
            raise staging.StagingError(
                f'ClientError: No S3 objects found under S3 URL "{uri}" given in input data source. Please ensure '
                f"that the bucket exists in the selected region ({self.job.region}), that objects exist under that "
                f'S3 prefix, and that the role "{self.role_arn}" has "s3:ListBucket" permissions on bucket "{bucket}".')
        return objects

    def _transform_all(self, objects: list[InputObject], servers: list[ModelServerProcess], data_log: _DataLog) -> None:
        workers = len(servers) * self.job.request["MaxConcurrentTransforms"]
        with ThreadPoolExecutor(max_workers=max(1, min(workers, len(objects))),
                                thread_name_prefix=f"transform:{self.job.name}") as pool:
            # objects are spread over the instances as SageMaker spreads them: each object on one instance
            futures = [pool.submit(self._transform_file, item, servers[index % len(servers)], data_log)
                       for index, item in enumerate(objects)]
            for future in futures:
                future.result()

    def _should_go_on(self) -> bool:
        return not self.job.stop_reason and self._failure is None

    def _fail(self, reason: str) -> None:
        with self._failure_lock:
            if self._failure is None:
                self._failure = reason

    def _transform_file(self, item: InputObject, server: ModelServerProcess, data_log: _DataLog) -> None:
        if not self._should_go_on():
            return
        where = f"{item.bucket}/{item.key}"  # SageMaker names an object as bucket/key in its data log
        try:
            data = self.s3.get_object(Bucket=item.bucket, Key=item.key)["Body"].read()
        except Exception as exc:
            self._fail(f"ClientError: Data download failed: could not read s3://{where}: {exc}")
            return
        try:
            output = self._transform_object(data, server, where, data_log)
        except JobFailure as failure:
            self._fail(str(failure))
            return
        except RecordError as exc:
            data_log.write(server, f"{where}: ClientError: {exc}")
            self._fail(f"ClientError: {where}: {exc}")
            return
        if output is None:  # stopped, or another object failed
            return
        target = f"{self.job.request['TransformOutput']['S3OutputPath'].rstrip('/')}/{item.relative}.out"
        bucket, key = staging.parse_s3_uri(target)
        try:
            self.s3.put_object(Bucket=bucket, Key=key, Body=output)
        except Exception as exc:
            self._fail(f"ClientError: Could not write the output of {where} to {target}: {exc}")

    def _transform_object(self, data: bytes, server: ModelServerProcess, where: str, data_log: _DataLog) -> bytes | None:
        request = self.job.request
        if request["TransformInput"]["CompressionType"] == "Gzip":
            try:
                data = gzip.decompress(data)
            except OSError as exc:
                raise RecordError(f"the object is not gzip-compressed data (CompressionType Gzip): {exc}") from None
        processing = DataProcessing(request.get("DataProcessing"), request["TransformInput"].get("ContentType"),
                                    request["TransformOutput"].get("Accept"))
        records = split_records(data, request["TransformInput"]["SplitType"])
        inputs = [processing.filter_input(record) for record in records]
        max_payload = request["MaxPayloadInMB"] * 1024 * 1024 or None
        batches = mini_batches(inputs, _strategy(request), max_payload)
        outputs: list[bytes] = []
        done = 0
        for batch in batches:
            if not self._should_go_on():
                return None
            response = self._invoke(server, payload(batch), where, data_log)
            if processing.per_record_output:
                lines = response_lines(response)
                if len(lines) != len(batch):
                    raise RecordError(f"the model answered {len(lines)} lines for a mini-batch of {len(batch)} records; "
                                      "JoinSource Input and OutputFilter need one output line per input record")
                outputs.extend(processing.finish_output(records[done + i], line) for i, line in enumerate(lines))
            else:
                outputs.append(response)
            done += len(batch)
        return assemble(outputs, request["TransformOutput"]["AssembleWith"])

    def _invoke(self, server: ModelServerProcess, body: bytes, where: str, data_log: _DataLog) -> bytes:
        request = self.job.request
        client_config = request.get("ModelClientConfig") or {}
        timeout = client_config.get("InvocationsTimeoutInSeconds") or DEFAULT_INVOCATION_TIMEOUT_S
        retries = client_config.get("InvocationsMaxRetries", DEFAULT_INVOCATION_RETRIES)
        headers = {}
        if request["TransformInput"].get("ContentType"):
            headers["Content-Type"] = request["TransformInput"]["ContentType"]
        if request["TransformOutput"].get("Accept"):
            headers["Accept"] = request["TransformOutput"]["Accept"]
        attempt = 0
        while True:
            try:
                status, _, answer = server.invoke(body, headers, timeout)
            except InvocationTimeout:
                status, answer = 0, f"Model server did not respond to /invocations within {timeout} s".encode()
            except Exception as exc:  # the server went away
                status, answer = 0, f"Unable to get response from algorithm: {exc}".encode()
            if 200 <= status < 300:
                return answer
            message = answer.decode("utf-8", errors="replace").strip()
            # a rejected record (4xx) is the data's fault: retrying cannot help
            if 400 <= status < 500 or attempt >= retries or not self._should_go_on():
                kind = "ClientError" if 400 <= status < 500 else "AlgorithmError"
                code = status or "no response"
                data_log.write(server, f"{where}: {kind}: {code}\n{where}: \n{where}: Message:\n{where}: {message}")
                raise JobFailure(f"{kind}: See job logs for more information. {where}: the model answered "
                                 f"{code}: {message}")
            attempt += 1
            data_log.write(server, f"{where}: Bad HTTP status received from algorithm: {status or 'none'}; "
                                   f"retrying ({attempt} of {retries})")


def _batch_environment(request: dict) -> dict[str, str]:
    """What SageMaker tells a container that serves a transform job (sagemaker-inference reads the payload limit)."""
    return {
        "SAGEMAKER_BATCH": "true",
        "SAGEMAKER_MAX_PAYLOAD_IN_MB": str(request["MaxPayloadInMB"]),
        "SAGEMAKER_BATCH_STRATEGY": _strategy(request).upper().replace("RECORD", "_RECORD"),
        "SAGEMAKER_MAX_CONCURRENT_TRANSFORMS": str(request["MaxConcurrentTransforms"]),
    }


def _strategy(request: dict) -> str:
    # with no BatchStrategy, framework containers (which serve no execution-parameters) get MultiRecord
    return request.get("BatchStrategy") or "MultiRecord"


# --- operations ---------------------------------------------------------------------------------------

def _store(ctx) -> TransformJobStore:
    return ctx.emulator.store(TransformJobStore)


@operation("CreateTransformJob")
def create_transform_job(ctx, params):
    name = params["TransformJobName"]
    request = normalized_request(params)
    container, problem = model_container(ctx, request["ModelName"])  # 'Could not find model' as SageMaker says
    try:
        faults = faults_for(params.get("Tags")).merged(
            faults_of_resources(ctx.emulator, [ctx.arn("model", request["ModelName"])]))
    except FaultTagError as exc:
        raise ValidationException(str(exc)) from None
    environment = {**container.environment, **(request.get("Environment") or {}), **_batch_environment(request)}
    role_arn = ctx.emulator.store(ModelStore).get(ctx, request["ModelName"]).request.get("ExecutionRoleArn", "")
    job = TransformJob(name, ctx.arn("transform-job", name), ctx.region, request)
    runner = TransformRunner(ctx.emulator, job, replace(container, environment=environment), faults, role_arn)
    if problem:
        def run(record, reason=f"ClientError: {problem}"):
            record.finish("Failed", failure_reason=reason)
    else:
        run = runner.run
    _store(ctx).start(ctx, job, params.get("Tags"), run)
    return {"TransformJobArn": job.arn}


@operation("DescribeTransformJob")
def describe_transform_job(ctx, params):
    return _store(ctx).get(ctx, params["TransformJobName"]).describe()


@operation("ListTransformJobs")
def list_transform_jobs(ctx, params):
    summaries, next_token = _store(ctx).list(ctx, params, lambda job: job.summary())
    return {"TransformJobSummaries": summaries, "NextToken": next_token}


@operation("StopTransformJob")
def stop_transform_job(ctx, params):
    _store(ctx).stop(ctx, params["TransformJobName"])
    return {}

