"""What every job kind (training, tuning, processing, transform) shares: a record with SageMaker's
statuses and times, a store with one create / describe / list / stop shape, and those four operations.

A job is InProgress from its creation, Stopping once StopXxxJob arrives, and ends Completed, Failed
or Stopped. Its runner (``include.emulator.jobs``, ``include.emulator.tuning``) runs on a thread of
its own, reports through ``started``, ``finish`` and ``fail``, and watches ``stop_reason``. A kind
keeps only what is particular to it: its request checks and runner (``new_record``,
``new_runner``), its answers (``describe``, ``summary``) and what its end records (``_ended``).
"""
from __future__ import annotations

import copy
import datetime as dt
import logging
import threading

from ..errors import AwsError, ResourceInUse, ValidationException
from ..jobs.failures import MAX_FAILURE_REASON
from ..jobs.runner import SHUTDOWN, STOP, JobRunner
from .listing import list_page
from .operations import operation
from .tags import TagStore
from .times import utcnow

log = logging.getLogger(__name__)

TERMINAL = ("Completed", "Failed", "Stopped")


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
        self.done = threading.Event()
        self.stop_requested = threading.Event()
        self._stop_reason: str | None = None
        self.runner: JobRunner | None = None

    # --- stopping ----------------------------------------------------------------------------------

    @property
    def stop_reason(self) -> str | None:
        return self._stop_reason

    def request_stop(self, reason: str = STOP) -> None:
        """Tell the runner to end the job; the first reason holds, but a shutdown overrides any."""
        with self.lock:
            if self._stop_reason is None or reason == SHUTDOWN:
                self._stop_reason = reason
        self.stop_requested.set()

    def enter_stopping(self) -> None:
        """StopXxxJob was accepted (called under ``lock``): what the job shows until its runner ends it."""
        self.status = "Stopping"
        self.last_modified_time = utcnow()

    # --- reported by the runner --------------------------------------------------------------------

    def started(self) -> None:
        with self.lock:
            if self.start_time is None:
                self.start_time = utcnow()
                self.last_modified_time = self.start_time

    def finish(self, status: str, *, failure_reason: str | None = None, **details) -> None:
        """End the job, once (a later end is ignored); ``details`` go to the kind's ``_ended``."""
        with self.lock:
            if self.status in TERMINAL:
                return
            now = utcnow()
            self.status = status
            # FailureReason carries at most 1 KB
            self.failure_reason = failure_reason[:MAX_FAILURE_REASON] if failure_reason else None
            self.end_time = self.last_modified_time = now
            self._ended(now, **details)
        self.done.set()

    def fail(self, reason: str) -> None:
        self.finish("Failed", failure_reason=reason)

    def _ended(self, now: dt.datetime) -> None:
        """What else a kind records when its job ends (under ``lock``)."""

    # --- answers -----------------------------------------------------------------------------------

    def echoed_request(self) -> dict:
        return copy.deepcopy(self.request)

    def describe(self) -> dict:
        raise NotImplementedError

    def summary(self) -> dict:
        raise NotImplementedError


class JobStore:
    """The jobs of one kind, keyed by region and lower-cased name (their ARNs are lower-cased too, so
    names differing in case collide)."""

    resource_type = "job"  # the ARN's resource type, e.g. "transform-job"
    noun = "job"  # in messages, e.g. "transform job"
    default_sort = ("CreationTime", "Descending")  # List*'s SortBy and SortOrder when the request names none

    def __init__(self, emulator):
        self.emulator = emulator
        self._lock = threading.Lock()
        self._jobs: dict[tuple[str, str], JobRecord] = {}
        self._closed = False

    # --- what each kind says -----------------------------------------------------------------------

    def new_record(self, ctx, params: dict, **options) -> JobRecord:
        """The job's record, from a Create request that passed the kind's checks."""
        raise NotImplementedError

    def new_runner(self, record: JobRecord) -> JobRunner:
        raise NotImplementedError

    def missing(self, name: str) -> AwsError:
        return ValidationException(f"Could not find requested job with name {name}")

    def selected(self, record: JobRecord, params: dict) -> bool:
        """A kind's own List* filters, beyond NameContains, StatusEquals and the time bounds."""
        return True

    # --- create, describe, list, stop --------------------------------------------------------------

    def create(self, ctx, params: dict, **options) -> JobRecord:
        record = self.new_record(ctx, params, **options)
        key = (record.region, record.name.lower())
        with self._lock:
            if self._closed:
                raise ValidationException("The local SageMaker is shutting down.")
            if key in self._jobs:
                noun = self.noun[0].upper() + self.noun[1:]
                raise ResourceInUse(f"{noun} names must be unique within an AWS account and region, and a "
                                    f"{self.noun} with this name already exists ({record.arn})")
            self._jobs[key] = record
            ctx.emulator.store(TagStore).add(record.arn, params.get("Tags"))
            # started under the lock, so shutdown() either refuses the job or sees its runner
            record.runner = self.new_runner(record).start()
        return record

    @property
    def closed(self) -> bool:
        """Shutting down: no job is created any more."""
        return self._closed

    def get(self, name: str, region: str | None = None) -> JobRecord:
        with self._lock:
            record = self._jobs.get((region or self.emulator.settings.region, name.lower()))
        if record is None:
            raise self.missing(name)
        return record

    def in_region(self, region: str) -> list[JobRecord]:
        with self._lock:
            return [record for (record_region, _), record in self._jobs.items() if record_region == region]

    def list(self, region: str, params: dict) -> tuple[list[JobRecord], str | None]:
        """One page of List*Jobs: filtered, sorted and paged as SageMaker does."""
        return list_page(
            self.in_region(region),
            params,
            name=lambda record: record.name,
            created=lambda record: record.creation_time,
            modified=lambda record: record.last_modified_time,
            status=lambda record: record.status,
            keep=lambda record: self.selected(record, params),
            sort_keys={
                "Name": lambda record: record.name,
                "CreationTime": lambda record: record.creation_time,
                "Status": lambda record: record.status,
            },
            default_sort=self.default_sort,
        )

    def stop(self, name: str, region: str | None = None, **why) -> None:
        """StopXxxJob; ``why`` goes to the record's ``enter_stopping`` (a tuning job's reason to stop a child)."""
        record = self.get(name, region)
        with record.lock:
            if record.status != "InProgress":
                raise ValidationException(
                    f"The request was rejected because the {self.noun} is in status {record.status}.")
            record.enter_stopping(**why)
        record.request_stop(STOP)

    def shutdown(self) -> None:
        """Stop every running job, so no process or model server outlives the emulator."""
        with self._lock:
            self._closed = True
            running = [record for record in self._jobs.values() if record.runner and record.runner.alive]
        for record in running:
            record.request_stop(SHUTDOWN)
        for record in running:
            if not record.runner.join(timeout=30):
                log.warning("%s %s did not end within 30 s of shutdown", self.noun, record.name)


def job_operations(store_type: type[JobStore], resource: str) -> None:
    """Register Create<resource>, Describe<resource>, List<resource>s and Stop<resource> (e.g.
    resource "TrainingJob"), the same four for every job kind, with SageMaker's member names."""
    name_member = f"{resource}Name"

    def store(ctx) -> JobStore:
        return ctx.emulator.store(store_type)

    def create(ctx, params):
        return {f"{resource}Arn": store(ctx).create(ctx, params).arn}

    def describe(ctx, params):
        return store(ctx).get(params[name_member], ctx.region).describe()

    def list_jobs(ctx, params):
        page, next_token = store(ctx).list(ctx.region, params)
        return {f"{resource}Summaries": [record.summary() for record in page], "NextToken": next_token}

    def stop(ctx, params):
        store(ctx).stop(params[name_member], ctx.region)
        return {}

    operation(f"Create{resource}")(create)
    operation(f"Describe{resource}")(describe)
    operation(f"List{resource}s")(list_jobs)
    operation(f"Stop{resource}")(stop)
