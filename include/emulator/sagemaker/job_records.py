"""What transform and processing jobs share: a record with SageMaker's statuses and times, and a store.

A job is InProgress from its creation, Stopping once StopXxxJob arrives, and ends Completed, Failed
or Stopped. The runner of each job (a thread of the module that owns the job type) reports through
``JobRecord.started`` and ``JobRecord.finish``, and watches ``JobRecord.stop_reason``.
"""
from __future__ import annotations

import copy
import datetime as dt
import logging
import threading
from typing import Callable

from ..errors import ResourceInUse, ValidationException
from .hosting_common import as_datetime, list_page, utcnow
from .tags import TagStore

log = logging.getLogger(__name__)

TERMINAL = ("Completed", "Failed", "Stopped")
MAX_REASON_CHARS = 1024  # FailureReason and ExitMessage carry at most 1 KB

STOP = "stop"
SHUTDOWN = "shutdown"
TIMEOUT = "timeout"


class JobRecord:
    """One job's state. The API thread and the runner thread both go through ``lock``."""

    def __init__(self, name: str, arn: str, region: str, request: dict):
        self.name = name
        self.arn = arn
        self.region = region
        self.request = request  # the Create request less Tags, with SageMaker's defaults filled in
        self.lock = threading.RLock()
        self.status = "InProgress"
        self.creation_time = utcnow()
        self.last_modified_time = self.creation_time
        self.start_time: dt.datetime | None = None
        self.end_time: dt.datetime | None = None
        self.failure_reason: str | None = None
        self.exit_message: str | None = None
        self.done = threading.Event()
        self.stop_requested = threading.Event()
        self._stop_reason: str | None = None
        self.worker: threading.Thread | None = None

    @property
    def stop_reason(self) -> str | None:
        return self._stop_reason

    def request_stop(self, reason: str = STOP) -> None:
        with self.lock:
            if self._stop_reason is None or reason == SHUTDOWN:
                self._stop_reason = reason
            if reason == STOP and self.status == "InProgress":
                self.status = "Stopping"
                self.last_modified_time = utcnow()
        self.stop_requested.set()

    def started(self) -> None:
        with self.lock:
            if self.start_time is None:
                self.start_time = utcnow()
                self.last_modified_time = self.start_time

    def finish(self, status: str, *, failure_reason: str | None = None, exit_message: str | None = None) -> None:
        with self.lock:
            if self.status in TERMINAL:
                return
            now = utcnow()
            self.status = status
            self.failure_reason = failure_reason[:MAX_REASON_CHARS] if failure_reason else None
            self.exit_message = exit_message[:MAX_REASON_CHARS] if exit_message else None
            self.end_time = now
            self.last_modified_time = now
        self.done.set()

    def echoed_request(self) -> dict:
        return copy.deepcopy(self.request)


class JobStore:
    """The jobs of one type, keyed by region and lower-cased name (their ARNs are lower-cased too)."""

    resource_type = "job"  # the ARN's resource type, e.g. "transform-job"
    noun = "job"  # in messages, e.g. "transform job"

    def __init__(self, emulator):
        self.emulator = emulator
        self._lock = threading.Lock()
        self._jobs: dict[tuple[str, str], JobRecord] = {}
        self._closed = False

    def start(self, ctx, record: JobRecord, tags: list[dict] | None, run: Callable[[JobRecord], None]) -> JobRecord:
        """Register the job and start ``run(record)`` on a thread of its own."""
        key = (record.region, record.name.lower())
        with self._lock:
            if self._closed:
                raise ValidationException("The local SageMaker is shutting down.")
            if key in self._jobs:
                noun = self.noun[0].upper() + self.noun[1:]
                raise ResourceInUse(f"{noun} names must be unique within an AWS account and region, and a "
                                    f"{self.noun} with this name already exists ({record.arn})")
            self._jobs[key] = record
            ctx.emulator.store(TagStore).add(record.arn, tags)
            record.worker = threading.Thread(target=self._guarded, args=(run, record),
                                             name=f"{self.resource_type}:{record.name}", daemon=True)
            record.worker.start()
        return record

    def _guarded(self, run: Callable[[JobRecord], None], record: JobRecord) -> None:
        try:
            run(record)
        except Exception as exc:  # a bug of ours still ends the job, with a reason that says so
            log.exception("%s %s failed inside the local SageMaker", self.noun, record.name)
            record.finish("Failed", failure_reason=f"InternalServerError: {exc}")
        finally:
            if not record.done.is_set():  # a runner that forgot to finish must not leave it InProgress
                record.finish("Failed", failure_reason="InternalServerError: the job ended without a status")

    def get(self, ctx, name: str) -> JobRecord:
        with self._lock:
            record = self._jobs.get((ctx.region, name.lower()))
        if record is None:
            raise ValidationException(f"Could not find requested job with name {name}")
        return record

    def stop(self, ctx, name: str) -> None:
        record = self.get(ctx, name)
        with record.lock:
            if record.status != "InProgress":
                raise ValidationException(
                    f"The request was rejected because the {self.noun} is in status {record.status}.")
            record.request_stop(STOP)

    def in_region(self, region: str) -> list[JobRecord]:
        with self._lock:
            return [record for (record_region, _), record in self._jobs.items() if record_region == region]

    def list(self, ctx, params: dict, summary: Callable[[JobRecord], dict]) -> tuple[list[dict], str | None]:
        """Filter, sort and page as ListTransformJobs / ListProcessingJobs do."""

        def keep(record: JobRecord) -> bool:
            if params.get("StatusEquals") and record.status != params["StatusEquals"]:
                return False
            after, before = params.get("LastModifiedTimeAfter"), params.get("LastModifiedTimeBefore")
            if after is not None and not record.last_modified_time > as_datetime(after):
                return False
            return before is None or record.last_modified_time < as_datetime(before)

        page, next_token = list_page(
            self.in_region(ctx.region),
            params,
            name=lambda record: record.name,
            created=lambda record: record.creation_time,
            keep=keep,
            sort_keys={
                "Name": lambda record: record.name,
                "CreationTime": lambda record: record.creation_time,
                "Status": lambda record: record.status,
            },
        )
        return [summary(record) for record in page], next_token

    def shutdown(self) -> None:
        """Stop every running job, so no process or model server outlives the emulator."""
        with self._lock:
            self._closed = True
            running = [record for record in self._jobs.values() if record.worker and record.worker.is_alive()]
        for record in running:
            record.request_stop(SHUTDOWN)
        for record in running:
            record.worker.join(timeout=30)
            if record.worker.is_alive():
                log.warning("%s %s did not end within 30 s of shutdown", self.noun, record.name)
