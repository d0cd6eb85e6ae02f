"""A job's hosts running together: one container process per host, each with its own log stream.

The hosts start at once and the cluster runs until every process has exited, one of them fails
(SageMaker then tears the other instances down), or the runner asks it to end (stop, time limit,
spot interruption, shutdown).
"""
from __future__ import annotations

import datetime as dt
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Callable

from ..cloudwatch import LogWriter
from .hosts import HostFolder
from .process import ContainerProcess

LOG_GROUP = "/aws/sagemaker/TrainingJobs"
TAIL_LINES = 1000  # enough for a chained traceback through h5py or torch and the toolkit's echo of it


@dataclass
class HostRun:
    host: HostFolder
    process: ContainerProcess | None = None
    logs: LogWriter | None = None
    tail: deque = field(default_factory=lambda: deque(maxlen=TAIL_LINES))
    exit_code: int | None = None
    exited_at: float | None = None


class Cluster:
    """Start with ``start``, then ``run_until`` returns why it ended; ``close`` always."""

    def __init__(self, emulator, job, hosts: list[HostFolder], *, command: Callable[[HostFolder], list[str]],
                 environment: Callable[[HostFolder], dict[str, str]], poll_seconds: float = 0.2,
                 preamble: tuple[str, ...] = ()):
        self._emulator = emulator
        self._preamble = preamble  # the local SageMaker's own lines, first in each host's log stream
        self._job = job
        self._command = command
        self._environment = environment
        self._poll_seconds = poll_seconds
        self._exited = threading.Event()  # a host's process exited: look now, not at the next poll
        self.runs = [HostRun(host) for host in hosts]

    @property
    def first_pid(self) -> int | None:
        process = self.runs[0].process if self.runs else None
        return process.pid if process else None

    def start(self) -> "Cluster":
        started = int(time.time())
        for run in self.runs:
            # one stream per host and start, as SageMaker names them: <job>/algo-N-<epoch seconds>
            stream = f"{self._job.name}/{run.host.host}-{started}"
            run.logs = LogWriter(self._emulator, LOG_GROUP, stream, region=self._job.region)
            for line in self._preamble:
                run.logs.write(f"[local-sagemaker] {line}", int(time.time() * 1000))
            run.process = ContainerProcess(
                self._command(run.host), cwd=run.host.base, env=self._environment(run.host), on_line=self._reader(run),
                on_exit=self._exited.set,
            )
        return self

    def _reader(self, run: HostRun):
        def on_line(line: str) -> None:
            now = time.time()
            run.logs.write(line, int(now * 1000))
            self._job.metrics.observe(line, dt.datetime.fromtimestamp(now, dt.timezone.utc))
            run.tail.append(line)

        return on_line

    def run_until(self, end_reason: Callable[[], str | None], *, grace_seconds: Callable[[str], float]) -> str | None:
        """Wait for the hosts. Returns None when they all exited on their own or one failed, else the
        reason ``end_reason`` gave, after ending every process (SIGTERM, then SIGKILL after the grace)."""
        while True:
            self._exited.clear()  # before looking: an exit from here on ends the wait below at once
            for run in self.runs:
                if run.exit_code is None:
                    code = run.process.poll()
                    if code is not None:
                        run.exit_code, run.exited_at = code, time.monotonic()
            if all(run.exit_code is not None for run in self.runs):
                return None
            if any(run.exit_code not in (None, 0) for run in self.runs):
                self.terminate(grace_seconds("failure"))  # a failed host fails the job: tear down the rest
                return None
            reason = end_reason()
            if reason:
                self.terminate(grace_seconds(reason))
                return reason
            self._exited.wait(self._poll_seconds)  # the poll still sees stops, deadlines and spot interruptions

    def terminate(self, grace_seconds: float) -> None:
        """SIGTERM to every running host at once, SIGKILL to what is left after the grace period."""
        live = [run.process for run in self.runs if run.process is not None and run.exit_code is None]
        for process in live:
            process.interrupt()
        deadline = time.monotonic() + grace_seconds
        while any(process.poll() is None for process in live) and time.monotonic() < deadline:
            time.sleep(0.05)
        for process in live:
            process.finish()

    def close(self) -> None:
        """Reap every process (killing what is left) and flush the logs."""
        for run in self.runs:
            if run.process is not None:
                code = run.process.finish()
                if run.exit_code is None:
                    run.exit_code, run.exited_at = code, time.monotonic()
            if run.logs is not None:
                run.logs.close()

    def first_failure(self) -> HostRun | None:
        """The host that failed first: its error is the job's, the others usually just lost their peer."""
        failed = [run for run in self.runs if run.exit_code not in (None, 0)]
        return min(failed, key=lambda run: run.exited_at) if failed else None
