"""Runs one processing job on this machine, the way SageMaker runs its container on each instance.

Each instance (algo-1..N) gets a folder standing in for the container's file system:
``<state_dir>/processing-jobs/<job>/algo-N/opt/ml/...``. ProcessingInputs are downloaded from S3 to
their LocalPath there, ``/opt/ml/config/{processingjobconfig,resourceconfig}.json`` are written,
and the job's ContainerEntrypoint + ContainerArguments run as a process group with every ``/opt/ml``
path in them (and in Environment values, and in a shell script the entrypoint runs) rewritten to
that folder; ``python``/``python3`` is this machine's interpreter, which stands in for the image
(``images.check_processing_image``). Output goes to CloudWatch Logs ``/aws/sagemaker/ProcessingJobs``,
stream ``<job>/algo-N-<epoch>``. ProcessingOutputs are uploaded when every instance exited 0. A
script that fails leaves its exception in FailureReason; what it wrote to ``/opt/ml/output/message``
is the ExitMessage. MaxRuntimeInSeconds and StopProcessingJob end the process group.

A script must take its container paths from its arguments or environment (as the SDK's processors
pass them): a path written literally inside a Python script is not rewritten.
"""
from __future__ import annotations

import collections
import json
import os
import re
import shutil
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from .. import images
from ..cloudwatch import LogWriter
from . import staging
from .failures import JobFailure, algorithm_failure_reason
from .process import ContainerProcess
from .runner import SHUTDOWN, TIMEOUT, JobRunner

LOG_GROUP = "/aws/sagemaker/ProcessingJobs"
PROCESSING_PREFIX = "/opt/ml/processing/"

# "/opt/ml" as a path of its own, anywhere in an argument ("--input=/opt/ml/processing/in")
_CONTAINER_PATH = re.compile(r"(?<![\w.\-/])/opt/ml(?=/|$|[^\w.\-])")
_PYTHON = re.compile(r"^python(\d+(\.\d+)?)?$")
_SHELLS = {"bash", "sh"}


# --- one instance -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ProcessingHost:
    """One instance: ``root`` stands for the container's ``/``."""

    root: Path
    name: str

    def local(self, container_path: str) -> Path:
        return self.root / container_path.lstrip("/")

    def rewrite(self, text: str) -> str:
        """Every /opt/ml path in ``text`` as this host's folder."""
        return _CONTAINER_PATH.sub(lambda _: str(self.root / "opt" / "ml"), text)

    @property
    def message_file(self) -> Path:
        return self.local("/opt/ml/output/message")

    @property
    def tmp_dir(self) -> Path:
        """The container's /tmp, its TMPDIR: removed when the job ends, as the container is."""
        return self.local("/tmp")


def _resource_config(host: str, hosts: list[str], instance_type: str) -> dict:
    return {"current_host": host, "hosts": hosts, "current_instance_type": instance_type,
            "current_group_name": "homogeneousCluster", "network_interface_name": "lo",
            "instance_groups": [{"instance_group_name": "homogeneousCluster", "instance_type": instance_type,
                                 "hosts": hosts}]}


class ProcessingRunner(JobRunner):
    """Runs one processing job on this machine, the way SageMaker runs its container on each instance."""

    kind = "processing"
    state_folder = "processing-jobs"

    @property
    def max_runtime(self) -> int:
        return self.job.request["StoppingCondition"]["MaxRuntimeInSeconds"]

    def run(self) -> None:
        try:
            self._check_runnable()
        except JobFailure as failure:
            self.job.fail(str(failure))
            return
        if not self.acquire_slot():  # InProgress, waiting its turn
            self.job.finish("Stopped")
            return
        try:
            self.job.started()
            self._run_with_slot()
        finally:
            self.emulator.job_slots.release()
            # the inputs are still in S3, and the container's /tmp goes with the container
            for scratch in [*self.job_dir.glob("algo-*/opt/ml/processing/input"), *self.job_dir.glob("algo-*/tmp")]:
                shutil.rmtree(scratch, ignore_errors=True)

    def _check_runnable(self) -> None:
        request = self.job.request
        app = request["AppSpecification"]
        try:
            images.check_processing_image(app["ImageUri"])
        except images.UnsupportedImage as exc:
            raise JobFailure(f"ClientError: {exc}") from exc
        if not app.get("ContainerEntrypoint"):
            raise JobFailure("ClientError: AppSpecification.ContainerEntrypoint is required on the local SageMaker: "
                             "it runs the entrypoint you give (e.g. [\"python3\", \"/opt/ml/processing/input/code/x.py\"]), "
                             "not an image's built-in one.")
        for item in request.get("ProcessingInputs") or []:
            if item.get("DatasetDefinition") is not None:
                raise JobFailure(f"ClientError: Input '{item['InputName']}' uses a DatasetDefinition (Athena/Redshift), "
                                 "which the local SageMaker does not support; use S3Input.")
            if item["S3Input"]["S3InputMode"] == "Pipe":
                raise JobFailure(f"ClientError: Input '{item['InputName']}' uses Pipe mode, which the local SageMaker "
                                 "does not support; use File.")
        for item in (request.get("ProcessingOutputConfig") or {}).get("Outputs") or []:
            if item.get("S3Output") is None and not item["AppManaged"]:
                raise JobFailure(f"ClientError: Output '{item['OutputName']}' is not an S3Output; the local SageMaker "
                                 "uploads outputs to S3 only (FeatureStoreOutput is not supported).")

    def _hosts(self) -> list[ProcessingHost]:
        count = self.job.request["ProcessingResources"]["ClusterConfig"]["InstanceCount"]
        return [ProcessingHost(self.job_dir / f"algo-{index}", f"algo-{index}") for index in range(1, count + 1)]

    def _run_with_slot(self) -> None:
        hosts = self._hosts()
        deadline = time.monotonic() + self.max_runtime
        if self.job_dir.exists():
            shutil.rmtree(self.job_dir)
        try:
            for index, host in enumerate(hosts):
                self._prepare(host, [h.name for h in hosts], index)
        except (JobFailure, staging.StagingError) as failure:
            self.job.fail(str(failure))
            return
        if self.job.stop_reason:
            self.job.finish("Stopped")
            return

        outcomes = self._run_containers(hosts, deadline)
        exit_message = "".join(host.message_file.read_text(errors="replace") for host in hosts
                               if host.message_file.is_file()) or None
        reason = self.job.stop_reason
        if reason:
            why = (f"The processing job ran longer than MaxRuntimeInSeconds ({self.max_runtime} s) and was stopped."
                   if reason == TIMEOUT else None)
            self.job.finish("Stopped", failure_reason=why, exit_message=exit_message)
            return
        failed = [(host, code, tail) for host, (code, tail) in zip(hosts, outcomes) if code != 0]
        if failed:
            host, code, tail = failed[0]
            self.job.finish("Failed", failure_reason=algorithm_failure_reason(exit_message, tail, code),
                            exit_message=exit_message)
            return
        try:
            for host in hosts:
                self._upload_outputs(host)
        except JobFailure as failure:
            self.job.finish("Failed", failure_reason=str(failure), exit_message=exit_message)
            return
        self.job.finish("Completed", exit_message=exit_message)

    def _prepare(self, host: ProcessingHost, host_names: list[str], index: int) -> None:
        request = self.job.request
        config_dir = host.local("/opt/ml/config")
        config_dir.mkdir(parents=True)
        host.message_file.parent.mkdir(parents=True)
        instance_type = request["ProcessingResources"]["ClusterConfig"]["InstanceType"]
        (config_dir / "resourceconfig.json").write_text(json.dumps(_resource_config(host.name, host_names, instance_type)))
        job_config = {"ProcessingJobName": self.job.name, "ProcessingJobArn": self.job.arn, **request}
        (config_dir / "processingjobconfig.json").write_text(json.dumps(job_config, indent=2, default=str))
        for item in (request.get("ProcessingOutputConfig") or {}).get("Outputs") or []:
            if item.get("S3Output") and not item["AppManaged"]:
                host.local(item["S3Output"]["LocalPath"]).mkdir(parents=True, exist_ok=True)
        for item in request.get("ProcessingInputs") or []:
            s3_input = item["S3Input"]
            if item["AppManaged"]:
                continue  # the application fetches it itself
            channel = {"ChannelName": item["InputName"], "DataSource": {"S3DataSource": {
                "S3Uri": s3_input["S3Uri"], "S3DataType": s3_input["S3DataType"],
                "S3DataDistributionType": s3_input["S3DataDistributionType"]}}}
            staging.download_channel(self.s3, channel, host.local(s3_input["LocalPath"]), region=self.job.region,
                                     role_arn=request["RoleArn"], host_index=index, host_count=len(host_names),
                                     should_stop=lambda: bool(self.job.stop_reason))

    def _command(self, host: ProcessingHost) -> list[str]:
        app = self.job.request["AppSpecification"]
        command = [host.rewrite(part) for part in [*app["ContainerEntrypoint"], *(app.get("ContainerArguments") or [])]]
        if _PYTHON.match(Path(command[0]).name):
            command[0] = self.emulator.settings.python  # the image's interpreter is ours
        if Path(command[0]).name in _SHELLS:
            for part in command[1:]:
                self._localize_script(host, part)
        return command

    def _localize_script(self, host: ProcessingHost, part: str) -> None:
        """A shell script the entrypoint runs (the SDK's runproc.sh) cds to /opt/ml paths: rewrite its copy."""
        path = Path(part)
        if path.suffix == ".sh" and path.is_file() and host.root in path.resolve().parents:
            path.write_text(host.rewrite(path.read_text()))

    def _environment(self, host: ProcessingHost) -> dict[str, str]:
        env = self.emulator.child_environment(self.job.region, tmp_dir=host.tmp_dir)
        # `python3` inside a script or shell line is this machine's interpreter, as it is the image's
        env["PATH"] = os.pathsep.join([str(Path(self.emulator.settings.python).parent), env.get("PATH", "")])
        env.update(PIP_NO_INDEX="1", PIP_DISABLE_PIP_VERSION_CHECK="1", PYTHONUNBUFFERED="1")
        env.update({key: host.rewrite(str(value)) for key, value in (self.job.request.get("Environment") or {}).items()})
        return env

    def _run_containers(self, hosts: list[ProcessingHost], deadline: float) -> list[tuple[int, list[str]]]:
        """Run the entrypoint on every host until all exit or a stop ends them; (exit code, last lines) each."""
        tails = [collections.deque(maxlen=200) for _ in hosts]
        writers = [LogWriter(self.emulator, LOG_GROUP, f"{self.job.name}/{host.name}-{int(time.time())}",
                             region=self.job.region) for host in hosts]
        processes: list[ContainerProcess] = []
        exited = threading.Event()  # an instance's process exited: look now, not at the next poll
        try:
            for host, tail, writer in zip(hosts, tails, writers):
                def on_line(line: str, writer=writer, tail=tail) -> None:
                    writer.write(line)
                    tail.append(line)

                command = self._command(host)
                try:
                    processes.append(ContainerProcess(command, cwd=host.root, env=self._environment(host), on_line=on_line,
                                                      on_exit=exited.set))
                except OSError as exc:  # the entrypoint's program does not exist here
                    for process in processes:
                        process.terminate(0)
                    message = f"Could not run ContainerEntrypoint {command[0]}: {exc.strerror or exc}"
                    writer.write(message)
                    return [(127, [message]) for _ in hosts]
            while True:
                exited.clear()  # before looking: an exit from here on ends the wait below at once
                if all(process.poll() is not None for process in processes):
                    break
                if time.monotonic() > deadline:
                    self.job.request_stop(TIMEOUT)
                if self.job.stop_reason:
                    grace = 0.0 if self.job.stop_reason == SHUTDOWN else self.stop_grace_seconds
                    for process in processes:
                        process.terminate(grace)
                    break
                exited.wait(self.poll_seconds)
            codes = [process.finish() for process in processes]
        finally:
            for writer in writers:
                writer.close()
        return [(code, list(tail)) for code, tail in zip(codes, tails)]

    def _upload_outputs(self, host: ProcessingHost) -> None:
        for item in (self.job.request.get("ProcessingOutputConfig") or {}).get("Outputs") or []:
            s3_output = item.get("S3Output")
            if s3_output is None or item["AppManaged"]:
                continue
            directory = host.local(s3_output["LocalPath"])
            if not staging.directory_has_files(directory):
                continue
            uri = s3_output["S3Uri"].rstrip("/") + "/"
            try:
                staging.upload_directory(self.s3, directory, uri)
            except Exception as exc:
                raise JobFailure(f"ClientError: Could not upload output '{item['OutputName']}' to {uri}: {exc}") from exc
