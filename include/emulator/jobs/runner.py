"""What every job runner shares: its thread, the reasons it is told to stop, and the job's slot.

A runner (training, processing, transform, hyperparameter tuning) runs its job on a thread of its
own and reports to the job's record (``include.emulator.sagemaker.job_records.JobRecord``):
``started``, ``finish``, ``fail``. It learns that it must end early from ``stop_reason``, which the
record keeps: the API (StopXxxJob), the runner itself (a deadline) and the emulator's shutdown all
go through ``JobRecord.request_stop``.
"""
from __future__ import annotations

import logging
import threading
from pathlib import Path

log = logging.getLogger(__name__)

# why a job ends early, defined once for records and runners
STOP = "stop"  # StopXxxJob
TIMEOUT = "timeout"  # MaxRuntimeInSeconds spent
MAX_WAIT = "max-wait"  # managed spot: MaxWaitTimeInSeconds spent
SHUTDOWN = "shutdown"  # the emulator shuts down: end at once, keep nothing


class JobRunner:
    """Runs one job on a background thread; a bug of ours still ends the job, with a reason that says so."""

    kind = "job"  # in thread names and log lines, e.g. "training"
    state_folder = "jobs"  # the job's working folder: <state_dir>/<state_folder>/<job name>
    poll_seconds = 0.2
    # SageMaker gives a container 120 s between SIGTERM and SIGKILL; locally a shorter wait will do
    stop_grace_seconds = 10.0

    def __init__(self, emulator, job):
        self.emulator = emulator
        self.job = job
        self._s3 = None
        self._thread = threading.Thread(target=self._guarded, name=f"{self.kind}:{job.name}", daemon=True)

    # --- control, from other threads -------------------------------------------------------------

    def start(self) -> "JobRunner":
        self._thread.start()
        return self

    def join(self, timeout: float | None = None) -> bool:
        self._thread.join(timeout)
        return not self._thread.is_alive()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    # --- the job ----------------------------------------------------------------------------------

    def run(self) -> None:
        raise NotImplementedError

    @property
    def stop_reason(self) -> str | None:
        return self.job.stop_reason

    def _guarded(self) -> None:
        try:
            self.run()
        except Exception as exc:
            self.crashed(exc)
        finally:
            if not self.job.done.is_set():  # a runner that forgot to finish must not leave it InProgress
                self.job.fail("InternalServerError: the job ended without a status")

    def crashed(self, exc: Exception) -> None:
        log.exception("%s job %s failed inside the local SageMaker", self.kind, self.job.name)
        self.job.fail(f"InternalServerError: {exc}")

    # --- what the jobs that run containers need ---------------------------------------------------

    @property
    def job_dir(self) -> Path:
        return Path(self.emulator.settings.state_dir) / self.state_folder / self.job.name

    @property
    def s3(self):
        if self._s3 is None:  # made on the job's thread, when first needed
            self._s3 = self.emulator.client("s3", self.job.region)
        return self._s3

    def acquire_slot(self) -> bool:
        """Wait for one of ``emulator.job_slots`` (the job stays InProgress meanwhile); False when
        the job must stop first. The caller releases the slot."""
        slots = self.emulator.job_slots
        if slots.acquire(blocking=False):
            return True
        self.waiting_for_slot()
        while not slots.acquire(timeout=self.poll_seconds):
            if self.stop_reason:
                return False
        return True

    def waiting_for_slot(self) -> None:
        """Called once when every slot is taken (a training job says so in its SecondaryStatus)."""
