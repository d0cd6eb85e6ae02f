"""Runs one training job on this machine, the way SageMaker runs it on its instances.

Phases, each a SecondaryStatus: Starting (waiting for one of ``emulator.job_slots``), Downloading
(channels and checkpoints from S3 into each host's folder), Training (one process group per host,
see ``cluster`` and ``entrypoints``; output streamed to CloudWatch Logs per host and scraped for
metrics; CheckpointConfig's and TensorBoardOutputConfig's folders uploaded meanwhile, see
``checkpoints`` and ``tensorboard``), Uploading (model.tar.gz and output.tar.gz, gathered from
every host). A stop request, MaxRuntimeInSeconds or (managed spot) MaxWaitTimeInSeconds ends the
hosts; what the script saved to the model folder is still uploaded.

InstanceCount > 1 runs hosts algo-1..N side by side, each with its own folder and
resourceconfig.json, joined over loopback (see ``network``). Managed spot training with an
injected interruption (tag ``emulator:fault`` = ``spot-interruption:<seconds>``, see
``include.emulator.faults``; never by default; read while the job trains) ends the hosts that
many seconds into training, records Interrupted, and starts the job again on fresh hosts, which
get CheckpointConfig's checkpoints back from S3 (see ``checkpoints``). It strikes once per job.

The runner talks to the job record through a small interface (see ``TrainingJob`` in
``include.emulator.sagemaker.training``): ``transition``, ``started``, ``add_training_seconds``,
``finish``, ``fail``, ``metrics`` and the request fields; the record keeps the stop reason.
"""
from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path

from .. import images
from ..faults import FaultTagError, faults_for
from ..instance_types import job_figures
from . import entrypoints, staging
from .checkpoints import CheckpointSync
from .cluster import Cluster
from .failures import JobFailure, algorithm_failure_reason, recorded_exception
from .folder_sync import FolderSync
from .hosts import DEFAULT_CHECKPOINT_PATH, HostFolder, host_names, input_data_config, is_container_path, resource_config
from .host_names import resolver_library
from .network import free_port, network_environment
from .runner import MAX_WAIT, SHUTDOWN, TIMEOUT, JobRunner
from .tensorboard import DEFAULT_TENSORBOARD_PATH, tensorboard_sync

log = logging.getLogger(__name__)

INTERRUPTION = "spot-interruption"  # not a stop: the job goes on, on new hosts

NOT_YET = "not supported by the local SageMaker yet"


class TrainingRunner(JobRunner):
    """Runs one training job; its record's ``request_stop`` ends it early."""

    kind = "training"
    state_folder = "training-jobs"
    # a spot instance gets a two-minute warning; locally the hosts get a short SIGTERM grace
    interruption_grace_seconds = 2.0
    # when one host failed, the others only lose their peers: end them quickly
    failure_grace_seconds = 5.0

    def __init__(self, emulator, job):
        super().__init__(emulator, job)
        self._created = time.monotonic()
        self._wait_deadline: float | None = None  # managed spot: MaxWaitTimeInSeconds from creation
        self._runtime_used = 0.0  # seconds the job's attempts ran (MaxRuntimeInSeconds counts these)
        self._attempt_started: float | None = None
        self._cluster: Cluster | None = None
        self._interrupted = False  # an injected spot interruption strikes once per job
        self._bad_fault_tag_logged = False

    @property
    def pid(self) -> int | None:
        """The first host's container process (its process group leader), once training has begun."""
        return self._cluster.first_pid if self._cluster else None

    # --- the job ----------------------------------------------------------------------------------

    @property
    def stop_reason(self) -> str | None:
        """The record's, or a deadline of the job's that has passed (read when asked, not on a timer)."""
        if self.job.stop_reason is None:
            now = time.monotonic()
            if self._wait_deadline is not None and now > self._wait_deadline:
                self.job.request_stop(MAX_WAIT)
            elif self._runtime(now) > self.max_runtime:
                self.job.request_stop(TIMEOUT)
        return self.job.stop_reason

    def _runtime(self, now: float) -> float:
        return self._runtime_used + (now - self._attempt_started if self._attempt_started is not None else 0.0)

    @property
    def max_runtime(self) -> int:
        return self.job.request["StoppingCondition"]["MaxRuntimeInSeconds"]

    @property
    def spot(self) -> bool:
        return bool(self.job.request.get("EnableManagedSpotTraining"))

    def run(self) -> None:
        try:
            image = self._check_runnable()
            self._spot_interruption_after()  # an unreadable fault tag fails the job before it starts
        except JobFailure as failure:
            self.job.fail(str(failure))
            return
        if self.spot:
            self._wait_deadline = self._created + self.job.request["StoppingCondition"]["MaxWaitTimeInSeconds"]
        if not self.acquire_slot():  # a stop, or a spot job's MaxWaitTimeInSeconds spent waiting
            self._end_stopped([])
            return
        try:
            self._run_with_slot(image)
        finally:
            self.emulator.job_slots.release()
            # the channels are still in S3; a tuning job would otherwise keep a copy per child job; and
            # the container's /tmp goes with the container
            for scratch in [*self.job_dir.glob("algo-*/input/data"), *self.job_dir.glob("algo-*/emulator/tmp")]:
                shutil.rmtree(scratch, ignore_errors=True)

    def _check_runnable(self) -> images.TrainingImage:
        """What SageMaker would run but this machine cannot fails the job here, before it starts."""
        request = self.job.request
        spec, resources = request["AlgorithmSpecification"], request["ResourceConfig"]
        if spec.get("AlgorithmName"):
            raise JobFailure(
                f"ClientError: Algorithm '{spec['AlgorithmName']}' cannot run on the local SageMaker; use a "
                "framework training image (pytorch-training, huggingface-pytorch-training) with a script."
            )
        if spec.get("ContainerArguments") and not spec.get("ContainerEntrypoint"):
            raise JobFailure(
                "ClientError: ContainerArguments without a ContainerEntrypoint would go to the image's own "
                f"entrypoint, which is {NOT_YET}; name the ContainerEntrypoint too."
            )
        try:
            image = images.training_image(spec.get("TrainingImage", ""))
        except images.UnsupportedImage as exc:
            raise JobFailure(f"ClientError: {exc}") from exc
        if resources.get("InstanceGroups"):
            raise JobFailure(f"ClientError: Heterogeneous clusters (ResourceConfig.InstanceGroups) are {NOT_YET}.")
        for channel in request.get("InputDataConfig") or []:
            if channel.get("InputMode", spec["TrainingInputMode"]) == "Pipe":
                raise JobFailure(
                    f"ClientError: Channel '{channel['ChannelName']}' uses Pipe input mode, "
                    "which the local SageMaker does not support; use File or FastFile."
                )
        for member, default, what in (
            ("CheckpointConfig", DEFAULT_CHECKPOINT_PATH, "checkpoints"),
            ("TensorBoardOutputConfig", DEFAULT_TENSORBOARD_PATH, "TensorBoard output"),
        ):
            local_path = (request.get(member) or {}).get("LocalPath", default)
            if not is_container_path(local_path):
                raise JobFailure(
                    f"ClientError: {member}.LocalPath '{local_path}' is outside /opt/ml; the local SageMaker "
                    f"keeps each host's /opt/ml in a folder of its own and can only sync {what} there "
                    f"(the default is {default})."
                )
        for member, uri_member in (("CheckpointConfig", "S3Uri"), ("TensorBoardOutputConfig", "S3OutputPath")):
            uri = (request.get(member) or {}).get(uri_member)
            if uri is not None and not uri.startswith("s3://"):
                raise JobFailure(f"ClientError: {member}.{uri_member} '{uri}' is not an s3:// URI; the local SageMaker "
                                 "writes S3 through s3:// URIs only.")
        return image

    def _spot_interruption_after(self) -> float | None:
        """Seconds into training when the injected spot interruption strikes (managed spot jobs only).

        Read from the job's tags while it trains, so a test may also add the tag once the job has made
        progress (``spot-interruption:0`` then strikes at once)."""
        if not self.spot or self._interrupted:
            return None
        from ..sagemaker.tags import TagStore  # here: the sagemaker package imports this module

        try:
            return faults_for(self.emulator.store(TagStore).get(self.job.arn)).spot_interruption_after_s
        except FaultTagError as exc:
            raise JobFailure(f"ClientError: {exc}") from exc

    def waiting_for_slot(self) -> None:
        limit = self.emulator.settings.max_concurrent_jobs
        self.job.transition("Starting", f"Waiting for a free job slot: the local SageMaker runs {limit} jobs at a time")

    def _run_with_slot(self, image: images.TrainingImage) -> None:
        self.job.transition("Starting", "Preparing the instances for training")
        self.job.started()
        while self._attempt(image):  # the fault strikes once; the restarted job runs to its end
            self.job.transition("Interrupted", "Training job interrupted: the spot instances were reclaimed")
            self.job.transition(
                "Starting", "Restarting the training job on new spot instances; it resumes from its last checkpoint"
            )

    def _attempt(self, image: images.TrainingImage) -> bool:
        """One run of the job on fresh hosts; True when a spot interruption ended it."""
        self._attempt_started = time.monotonic()
        try:
            return self._attempt_on_hosts(image)
        finally:
            seconds = time.monotonic() - self._attempt_started
            self._runtime_used += seconds
            self._attempt_started = None
            self.job.add_training_seconds(seconds)

    def _attempt_on_hosts(self, image: images.TrainingImage) -> bool:
        job, request = self.job, self.job.request
        names = host_names(request["ResourceConfig"]["InstanceCount"])
        hosts = [HostFolder(self.job_dir / name, name) for name in names]
        channels = request.get("InputDataConfig") or []
        for host in hosts:  # a fresh folder per host and attempt: a restarted job runs on new instances
            host.prepare(
                hyperparameters=request.get("HyperParameters") or {},
                resource_config=resource_config(host.host, names, request["ResourceConfig"]["InstanceType"]),
                input_data_config=input_data_config(channels, request["AlgorithmSpecification"]["TrainingInputMode"]),
            )
        checkpoints = self._checkpoints(hosts)
        tensorboard = self._tensorboard(hosts)

        job.transition("Downloading", "Downloading input data")
        try:
            for index, host in enumerate(hosts):
                self._download_channels(host, channels, host_index=index, host_count=len(hosts))
                entrypoints.localize_driver_channels(request, host)
                staging.unpack_submit_directory(self.s3, request.get("HyperParameters") or {}, host.code_dir)
            if checkpoints is not None:
                checkpoints.restore()
        except staging.StagingError as exc:
            self.job.fail(str(exc))
            return False
        if self.stop_reason:
            self._end_stopped(hosts)
            return False

        job.transition("Training", "Training image download completed. Training in progress.")
        try:
            reason, cluster = self._run_hosts(hosts, image, [sync for sync in (checkpoints, tensorboard) if sync])
        except JobFailure as failure:
            self.job.fail(str(failure))
            return False
        if reason == INTERRUPTION:
            return True
        if reason:
            self._end_stopped(hosts)
            return False
        failure = cluster.first_failure()
        if failure is not None:
            failure_file = failure.host.failure_file
            failure_text = failure_file.read_text(errors="replace") if failure_file.exists() else None
            self.job.fail(algorithm_failure_reason(failure_text, list(failure.tail), failure.exit_code,
                                                   recorded_exception(failure.host.exceptions_dir)))
            return False

        job.transition("Uploading", "Uploading generated training model")
        try:
            artifacts = self._upload_model(hosts)
            outputs = [host.output_data_dir for host in hosts if staging.directory_has_files(host.output_data_dir)]
            if outputs:
                self._upload_tarball(outputs, "output.tar.gz")
        except JobFailure as failure:
            self.job.fail(str(failure))
            return False
        job.finish("Completed", secondary="Completed", message="Training job completed", model_artifacts=artifacts)
        return False

    def _run_hosts(self, hosts: list[HostFolder], image, syncs: list[FolderSync]) -> tuple[str | None, Cluster]:
        """Run every host until they exit or the job must end; returns (why it ended early, cluster).

        ``syncs`` (checkpoints, TensorBoard output) upload their folders while the hosts run, and once
        more after they stopped, however the job ended."""
        names = [host.host for host in hosts]
        master_port = free_port()
        python = self.emulator.settings.python
        instance_env, instance_line = job_figures(self.job.request["ResourceConfig"]["InstanceType"])
        preamble = (instance_line, *images.version_warnings(image.uri))
        cluster = self._cluster = Cluster(
            self.emulator, self.job, hosts,
            command=lambda host: entrypoints.host_command(self.job.request, host, python),
            environment=lambda host: {**self._environment(host, image, names, master_port), **instance_env},
            poll_seconds=self.poll_seconds,
            preamble=preamble,
        )
        training_began = time.monotonic()

        def end_reason() -> str | None:
            reason = self.stop_reason
            if reason == TIMEOUT:
                message = f"Stopping the training job: it ran longer than MaxRuntimeInSeconds ({self.max_runtime} s)"
                self.job.transition("Stopping", message, status="Stopping")
            elif reason == MAX_WAIT:
                self.job.transition("Stopping", self._max_wait_message("Stopping the training job"), status="Stopping")
            if reason:
                return reason
            interruption_after = self._spot_interruption_after_while_training()
            if interruption_after is not None and time.monotonic() - training_began >= interruption_after:
                self._interrupted = True
                return INTERRUPTION
            return None

        for sync in syncs:
            sync.start()
        try:
            try:
                cluster.start()
            except OSError as exc:  # e.g. a ContainerEntrypoint that names no program on this machine
                raise JobFailure(f"ClientError: The training container could not start: {exc}") from exc
            reason = cluster.run_until(end_reason, grace_seconds=self._grace_seconds)
        finally:
            cluster.close()
            for sync in syncs:
                sync.stop()  # the last upload: what a restart resumes from, the last TensorBoard events
        return reason, cluster

    def _spot_interruption_after_while_training(self) -> float | None:
        try:
            return self._spot_interruption_after()
        except JobFailure as failure:  # a bad tag added while the job runs: say so once, inject nothing
            if not self._bad_fault_tag_logged:
                log.warning("training job %s: %s", self.job.name, failure)
                self._bad_fault_tag_logged = True
            return None

    def _grace_seconds(self, reason: str) -> float:
        return {SHUTDOWN: 0.0, INTERRUPTION: self.interruption_grace_seconds, "failure": self.failure_grace_seconds}.get(
            reason, self.stop_grace_seconds
        )

    def _max_wait_message(self, prefix: str) -> str:
        seconds = self.job.request["StoppingCondition"].get("MaxWaitTimeInSeconds")
        return f"{prefix}: it ran out of MaxWaitTimeInSeconds ({seconds} s) for managed spot training"

    def _checkpoints(self, hosts: list[HostFolder]) -> CheckpointSync | None:
        config = self.job.request.get("CheckpointConfig")
        if not config:
            return None
        folders = [host.local(config.get("LocalPath", DEFAULT_CHECKPOINT_PATH)) for host in hosts]
        for folder in folders:
            folder.mkdir(parents=True, exist_ok=True)
        return CheckpointSync(self.s3, config["S3Uri"], folders)

    def _tensorboard(self, hosts: list[HostFolder]) -> FolderSync | None:
        config = self.job.request.get("TensorBoardOutputConfig")
        return tensorboard_sync(self.s3, config, self.job.name, hosts) if config else None

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

    def _environment(self, host: HostFolder, image: images.TrainingImage, hosts: list[str], master_port: int) -> dict[str, str]:
        env = self.emulator.child_environment(self.job.region, tmp_dir=host.tmp_dir)
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
            EMULATOR_EXCEPTION_DIR=str(host.exceptions_dir),
        )
        settings = self.emulator.settings
        env.update(network_environment(hosts, master_port, env, settings.python, resolver_library(settings.state_dir, settings.python)))
        return env

    def _end_stopped(self, hosts: list[HostFolder]) -> None:
        """Stopped, as SageMaker ends a job it stops: what the script saved to the model folder is kept."""
        reason = self.stop_reason
        if reason == MAX_WAIT:
            self.job.transition("Stopping", self._max_wait_message("Stopping the training job"), status="Stopping")
        artifacts = None
        if reason != SHUTDOWN and any(staging.directory_has_files(host.model_dir) for host in hosts):
            self.job.transition("Stopping", "Uploading the model the script saved before it was stopped", status="Stopping")
            try:
                artifacts = self._upload_model(hosts)
            except JobFailure as failure:
                log.warning("training job %s: %s", self.job.name, failure)
        if reason == TIMEOUT:
            message = f"Training job ran longer than MaxRuntimeInSeconds ({self.max_runtime} s) and was stopped"
            self.job.finish("Stopped", secondary="MaxRuntimeExceeded", message=message, model_artifacts=artifacts)
        elif reason == MAX_WAIT:
            self.job.finish("Stopped", secondary="MaxWaitTimeExceeded",
                            message=self._max_wait_message("Training job stopped"), model_artifacts=artifacts)
        elif reason == SHUTDOWN:
            self.job.finish("Stopped", secondary="Stopped", message="Training job stopped: the local SageMaker shut down")
        else:
            self.job.finish("Stopped", secondary="Stopped", message=self.job.stop_message or "Training job stopped",
                            model_artifacts=artifacts)

    def _output_prefix(self) -> str:
        return f"{self.job.request['OutputDataConfig']['S3OutputPath'].rstrip('/')}/{self.job.name}/output"

    def _upload_model(self, hosts: list[HostFolder]) -> str:
        model_dirs = [host.model_dir for host in hosts]
        if self.job.request["OutputDataConfig"]["CompressionType"] == "NONE":
            prefix = f"{self._output_prefix()}/model/"
            try:
                for model_dir in reversed(model_dirs):  # uploaded last, the first host's files win a clash
                    if model_dir.is_dir():
                        staging.upload_directory(self.s3, model_dir, prefix)
                return prefix
            except Exception as exc:
                raise JobFailure(f"ClientError: Artifact upload failed: {exc}") from exc
        return self._upload_tarball(model_dirs, "model.tar.gz")

    def _upload_tarball(self, directories: list[Path], name: str) -> str:
        uri = f"{self._output_prefix()}/{name}"
        try:
            return staging.upload_merged_tarball(self.s3, directories, self.job_dir / name, uri)
        except Exception as exc:
            raise JobFailure(f"ClientError: Artifact upload failed: could not write {uri}: {exc}") from exc
