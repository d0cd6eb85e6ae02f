"""Runs one batch transform job: the model's server on every instance, the input objects through it.

The model's server starts on every instance (``ModelServerFleet``, log group
``/aws/sagemaker/TransformJobs``, stream ``<job>/<instance id>``, plus ``<job>/<instance id>/data-log``
for SageMaker's own ``[sagemaker logs]`` lines), every object under the input (S3Prefix or
ManifestFile) is split (``transform_data``), sent to ``/invocations`` in mini-batches with the job's
ContentType and Accept, and the assembled answers are written to ``<S3OutputPath>/<path of the
object below the input prefix>.out``. Objects are spread over the instances, up to
MaxConcurrentTransforms at a time on each. A record the model rejects fails the job (after
ModelClientConfig's retries for server errors), naming the object; objects already done keep their
output, as on SageMaker. StopTransformJob stops sending and takes the servers down.
"""
from __future__ import annotations

import gzip
import json
import posixpath
import shutil
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from .. import images
from ..cloudwatch import LogWriter
from ..serving.fleet import (
    DeploymentCancelled,
    DeploymentFailed,
    InvocationTimeout,
    ModelServerFleet,
    ModelServerProcess,
)
from ..serving.specs import VariantSpec
from . import staging
from .failures import JobFailure
from .runner import JobRunner
from .transform_data import DataProcessing, RecordError, assemble, mini_batches, payload, response_lines, split_records

LOG_GROUP = "/aws/sagemaker/TransformJobs"
DEFAULT_INVOCATION_TIMEOUT_S = 600
DEFAULT_INVOCATION_RETRIES = 3


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

    def __init__(self, emulator, job, servers: list[ModelServerProcess]):
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


class TransformRunner(JobRunner):
    kind = "transform"
    state_folder = "transform-jobs"

    def __init__(self, emulator, job):
        super().__init__(emulator, job)
        self._failure: str | None = None  # the first object's failure fails the job; the others stop
        self._failure_lock = threading.Lock()

    def run(self) -> None:
        request = self.job.request
        if self.job.problem:  # the model cannot be served here: nothing starts
            self.job.fail(f"ClientError: {self.job.problem}")
            return
        try:
            self._check_runnable()
        except JobFailure as failure:
            self.job.fail(str(failure))
            return
        self.job.started()
        if self.job_dir.exists():
            shutil.rmtree(self.job_dir)
        try:
            objects = self._input_objects()
        except staging.StagingError as exc:
            self.job.fail(str(exc))
            return

        resources = request["TransformResources"]
        variant = VariantSpec(name=self.job.name, model_name=request["ModelName"], container=self.job.container,
                              instance_count=resources["InstanceCount"], instance_type=resources["InstanceType"])
        fleet = self.emulator.store(ModelServerFleet)
        try:
            deployment = fleet.deploy(self.job.region, self.job.name, [variant], self.job.stop_requested,
                                      log_group=LOG_GROUP, base_dir=self.job_dir / "instances",
                                      faults={variant.name: self.job.faults})
        except DeploymentCancelled:
            self.job.finish("Stopped")
            return
        except DeploymentFailed as failure:
            self.job.fail(f"AlgorithmError: {failure.reason}")
            return
        servers = deployment.variants[variant.name].servers
        data_log = _DataLog(self.emulator, self.job, servers)
        try:
            if not self.acquire_slot():
                self.job.finish("Stopped")
                return
            try:
                data_log.broadcast(
                    f"MaxConcurrentTransforms={request['MaxConcurrentTransforms']}, "
                    f"MaxPayloadInMB={request['MaxPayloadInMB']}, "
                    f"BatchStrategy={batch_environment(request)['SAGEMAKER_BATCH_STRATEGY']}")
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
            self.job.fail(self._failure)
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
            images.check_inference_image(self.job.container.image)
        except images.UnsupportedImage as exc:
            raise JobFailure(f"ClientError: {exc}") from exc

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
                f'S3 prefix, and that the role "{self.job.role_arn}" has "s3:ListBucket" permissions on bucket "{bucket}".')
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


def batch_environment(request: dict) -> dict[str, str]:
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
