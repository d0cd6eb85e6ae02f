"""Runs one training job on this machine, the way SageMaker runs it in a container.

Phases, each a SecondaryStatus: Starting (waiting for one of ``emulator.job_slots``), Downloading
(channels from S3 into the host folder), Training (AWS's sagemaker-training toolkit as a process
group, its output streamed to CloudWatch Logs and scraped for metrics), Uploading (model.tar.gz and
output.tar.gz to S3). A stop request or MaxRuntimeInSeconds ends the process group; the model
folder is still uploaded when the script wrote to it.

The runner talks to the job record through a small interface (see ``TrainingJob`` in
``include.emulator.sagemaker.training``): ``transition``, ``mark_training_started``, ``finish``,
``metrics`` and the request fields.
"""
from __future__ import annotations

import datetime as dt
import logging
import shutil
import threading
import time
from collections import deque
from pathlib import Path

from .. import images
from ..cloudwatch import LogWriter
from . import staging
from .failures import MAX_FAILURE_REASON, algorithm_failure_reason
from .hosts import HostFolder, host_names, input_data_config, resource_config
from .process import ContainerProcess

log = logging.getLogger(__name__)

LOG_GROUP = "/aws/sagemaker/TrainingJobs"
TOOLKIT_COMMAND = ["-m", "sagemaker_training.cli.train"]  # what the framework images run as `train`

STOP = "stop"
TIMEOUT = "timeout"
SHUTDOWN = "shutdown"

NOT_YET = "not supported by the local SageMaker yet"


class JobFailure(Exception):
    """The job cannot go on; the message is its FailureReason."""


class TrainingRunner:
    """Runs one job in a background thread; ``request_stop`` ends it early."""

    # SageMaker gives the algorithm 120 s between SIGTERM and SIGKILL; locally a shorter wait will do
    stop_grace_seconds = 10.0
    poll_seconds = 0.2

    def __init__(self, emulator, job):
        self.emulator = emulator
        self.job = job
        self._stop_reason: str | None = None
        self._stop_lock = threading.Lock()
        self._deadline: float | None = None
        self._process: ContainerProcess | None = None
        self._s3 = None
        self._thread = threading.Thread(target=self._run, name=f"training:{job.name}", daemon=True)

    # --- control, from other threads -------------------------------------------------------------

    def start(self) -> "TrainingRunner":
        self._thread.start()
        return self

    def request_stop(self, reason: str = STOP) -> None:
        with self._stop_lock:
            if self._stop_reason is None or reason == SHUTDOWN:
                self._stop_reason = reason

    def join(self, timeout: float | None = None) -> bool:
        self._thread.join(timeout)
        return not self._thread.is_alive()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    @property
    def pid(self) -> int | None:
        """The container process (its process group leader), once training has begun."""
        return self._process.pid if self._process else None

    # --- the job ----------------------------------------------------------------------------------

    @property
    def stop_reason(self) -> str | None:
        if self._stop_reason is None and self._deadline is not None and time.monotonic() > self._deadline:
            self.request_stop(TIMEOUT)
        return self._stop_reason

    def _run(self) -> None:
        try:
            self._execute()
        except Exception as exc:  # a bug of ours still ends the job, with a reason that says so
            log.exception("training job %s failed inside the local SageMaker", self.job.name)
            self._fail(f"InternalServerError: {exc}")

    def _fail(self, reason: str) -> None:
        self.job.finish("Failed", "Failed", "Training job failed", failure_reason=reason[:MAX_FAILURE_REASON])

    def _execute(self) -> None:
        try:
            image = self._check_runnable()
        except JobFailure as failure:
            self._fail(str(failure))
            return
        if not self._acquire_slot():
            self._end_stopped(None)
            return
        try:
            self._run_with_slot(image)
        finally:
            self.emulator.job_slots.release()
            # the channels are still in S3; a tuning job would otherwise keep a copy per child job
            for data_dir in self.job_dir.glob("algo-*/input/data"):
                shutil.rmtree(data_dir, ignore_errors=True)

    def _check_runnable(self) -> images.TrainingImage:
        """What SageMaker would run but this machine cannot fails the job here, before it starts."""
        spec, resources = self.job.request["AlgorithmSpecification"], self.job.request["ResourceConfig"]
        if spec.get("AlgorithmName"):
            raise JobFailure(
                f"ClientError: Algorithm '{spec['AlgorithmName']}' cannot run on the local SageMaker; use a "
                "framework training image (pytorch-training, huggingface-pytorch-training) with a script."
            )
        if spec.get("ContainerEntrypoint") or spec.get("ContainerArguments"):
            raise JobFailure(f"ClientError: ContainerEntrypoint and ContainerArguments are {NOT_YET}.")
        try:
            image = images.training_image(spec.get("TrainingImage", ""))
        except images.UnsupportedImage as exc:
            raise JobFailure(f"ClientError: {exc}") from exc
        if resources.get("InstanceGroups"):
            raise JobFailure(f"ClientError: Heterogeneous clusters (ResourceConfig.InstanceGroups) are {NOT_YET}.")
        if resources.get("InstanceCount", 1) > 1:
            raise JobFailure(
                f"ClientError: InstanceCount {resources['InstanceCount']} is {NOT_YET}; "
                "it runs single-instance training jobs (set InstanceCount to 1)."
            )
        for channel in self.job.request.get("InputDataConfig") or []:
            if channel.get("InputMode", spec["TrainingInputMode"]) == "Pipe":
                raise JobFailure(
                    f"ClientError: Channel '{channel['ChannelName']}' uses Pipe input mode, "
                    "which the local SageMaker does not support; use File or FastFile."
                )
        return image

    def _acquire_slot(self) -> bool:
        slots = self.emulator.job_slots
        if slots.acquire(blocking=False):
            return True
        limit = self.emulator.settings.max_concurrent_jobs
        self.job.transition("Starting", f"Waiting for a free job slot: the local SageMaker runs {limit} jobs at a time")
        while not slots.acquire(timeout=self.poll_seconds):
            if self._stop_reason:
                return False
        return True

    def _run_with_slot(self, image: images.TrainingImage) -> None:
        job, request = self.job, self.job.request
        job.transition("Starting", "Preparing the instances for training")
        job.mark_training_started()
        self._deadline = time.monotonic() + self.max_runtime

        hosts = host_names(request["ResourceConfig"]["InstanceCount"])
        host = HostFolder(self.job_dir / hosts[0], hosts[0])
        channels = request.get("InputDataConfig") or []
        host.prepare(
            hyperparameters=request.get("HyperParameters") or {},
            resource_config=resource_config(hosts[0], hosts, request["ResourceConfig"]["InstanceType"]),
            input_data_config=input_data_config(channels, request["AlgorithmSpecification"]["TrainingInputMode"]),
        )

        job.transition("Downloading", "Downloading input data")
        try:
            self._download_channels(host, channels, host_index=0, host_count=len(hosts))
        except staging.StagingError as exc:
            self._fail(str(exc))
            return
        if self.stop_reason:
            self._end_stopped(host)
            return

        job.transition("Training", "Training image download completed. Training in progress.")
        exit_code, log_tail = self._run_container(host, image)
        if self._stop_reason:  # only a stop the container loop acted on; a script that finished in time completed
            self._end_stopped(host)
            return
        if exit_code != 0:
            failure_text = host.failure_file.read_text(errors="replace") if host.failure_file.exists() else None
            self._fail(algorithm_failure_reason(failure_text, log_tail, exit_code))
            return

        job.transition("Uploading", "Uploading generated training model")
        try:
            artifacts = self._upload_model(host)
            if staging.directory_has_files(host.output_data_dir):
                self._upload_tarball(host.output_data_dir, "output.tar.gz")
        except JobFailure as failure:
            self._fail(str(failure))
            return
        job.finish("Completed", "Completed", "Training job completed", model_artifacts=artifacts)

    @property
    def max_runtime(self) -> int:
        return self.job.request["StoppingCondition"]["MaxRuntimeInSeconds"]

    @property
    def job_dir(self) -> Path:
        return Path(self.emulator.settings.state_dir) / "training-jobs" / self.job.name

    @property
    def s3(self):
        if self._s3 is None:
            self._s3 = self.emulator.client("s3", self.job.region)
        return self._s3

    def _download_channels(self, host: HostFolder, channels: list[dict], *, host_index: int, host_count: int) -> None:
        for channel in channels:
            if self.stop_reason:
                return
            staging.download_channel(
                self.s3,
                channel,
                host.channel_dir(channel["ChannelName"]),
                region=self.job.region,
                role_arn=self.job.request["RoleArn"],
                host_index=host_index,
                host_count=host_count,
                should_stop=lambda: bool(self.stop_reason),
            )

    def _environment(self, host: HostFolder, image: images.TrainingImage) -> dict[str, str]:
        env = self.emulator.child_environment(self.job.region)
        # offline: a requirements.txt is satisfied from what is installed, or fails at once
        env.update(PIP_NO_INDEX="1", PIP_DISABLE_PIP_VERSION_CHECK="1")
        env.update(self.job.request.get("Environment") or {})
        env.update(
            SAGEMAKER_BASE_DIR=str(host.base),
            # the toolkit waits for DNS of algo-N hostnames unless told it runs outside SageMaker
            SM_STUDIO_LOCAL_MODE="true",
            SAGEMAKER_TRAINING_MODULE=image.training_module,
            TRAINING_JOB_NAME=self.job.name,
            TRAINING_JOB_ARN=self.job.arn,
            S3_ENDPOINT_URL=self.emulator.endpoint_url,
            PYTHONUNBUFFERED="1",  # as the framework images set it: lines reach CloudWatch as printed
        )
        return env

    def _run_container(self, host: HostFolder, image: images.TrainingImage) -> tuple[int, list[str]]:
        """Run the toolkit until it exits or a stop ends it; returns its exit code and last lines."""
        tail: deque[str] = deque(maxlen=200)
        stream = f"{self.job.name}/{host.host}-{int(time.time())}"

        with LogWriter(self.emulator, LOG_GROUP, stream, region=self.job.region) as logs:

            def on_line(line: str) -> None:
                now = time.time()
                logs.write(line, int(now * 1000))
                self.job.metrics.observe(line, dt.datetime.fromtimestamp(now, dt.timezone.utc))
                tail.append(line)

            process = self._process = ContainerProcess(
                [self.emulator.settings.python, *TOOLKIT_COMMAND],
                cwd=host.base,
                env=self._environment(host, image),
                on_line=on_line,
            )
            while process.wait(self.poll_seconds) is None:
                reason = self.stop_reason
                if reason:
                    if reason == TIMEOUT:
                        message = f"Stopping the training job: it ran longer than MaxRuntimeInSeconds ({self.max_runtime} s)"
                        self.job.transition("Stopping", message, status="Stopping")
                    process.terminate(0 if reason == SHUTDOWN else self.stop_grace_seconds)
                    break
            exit_code = process.finish()
        return exit_code, list(tail)

    def _end_stopped(self, host: HostFolder | None) -> None:
        """Stopped, as SageMaker ends a job it stops: what the script saved to the model folder is kept."""
        reason = self.stop_reason
        artifacts = None
        if host is not None and reason != SHUTDOWN and staging.directory_has_files(host.model_dir):
            self.job.transition("Stopping", "Uploading the model the script saved before it was stopped", status="Stopping")
            try:
                artifacts = self._upload_model(host)
            except JobFailure as failure:
                log.warning("training job %s: %s", self.job.name, failure)
        if reason == TIMEOUT:
            message = f"Training job ran longer than MaxRuntimeInSeconds ({self.max_runtime} s) and was stopped"
            self.job.finish("Stopped", "MaxRuntimeExceeded", message, model_artifacts=artifacts)
        elif reason == SHUTDOWN:
            self.job.finish("Stopped", "Stopped", "Training job stopped: the local SageMaker shut down")
        else:
            self.job.finish("Stopped", "Stopped", "Training job stopped", model_artifacts=artifacts)

    def _output_prefix(self) -> str:
        return f"{self.job.request['OutputDataConfig']['S3OutputPath'].rstrip('/')}/{self.job.name}/output"

    def _upload_model(self, host: HostFolder) -> str:
        if self.job.request["OutputDataConfig"]["CompressionType"] == "NONE":
            try:
                return staging.upload_directory(self.s3, host.model_dir, f"{self._output_prefix()}/model/")
            except Exception as exc:
                raise JobFailure(f"ClientError: Artifact upload failed: {exc}") from exc
        return self._upload_tarball(host.model_dir, "model.tar.gz")

    def _upload_tarball(self, directory: Path, name: str) -> str:
        uri = f"{self._output_prefix()}/{name}"
        try:
            return staging.upload_tarball(self.s3, directory, self.job_dir / name, uri)
        except Exception as exc:
            raise JobFailure(f"ClientError: Artifact upload failed: could not write {uri}: {exc}") from exc
