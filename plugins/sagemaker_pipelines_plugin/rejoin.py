"""Rejoin, return or resubmit the job of an earlier try, so a retried task never pays twice.

The provider's job operators submit a new job on every try (training and transform under a
timestamped name, tuning under the same name, which then fails as a duplicate). A worker that dies
while a job runs therefore makes the retry start and bill a second one, or fail on the first. Here
each try first looks at the jobs of the earlier tries of the same run and task, newest first: a
running one is rejoined, a completed one is returned, and only a failed or stopped one is
resubmitted, under a name derived from the try number.

Killing a task stops the job it waits on, wherever the task is: on a worker (on_kill, which Airflow
calls on SIGTERM and on an execution timeout), deferred (the trigger's on_kill, see triggers.py),
or resumed after its deferral timed out (resume_execution).
"""
from __future__ import annotations

from dataclasses import dataclass

from airflow.providers.amazon.aws.triggers.sagemaker import SageMakerTrigger
from airflow.sdk.exceptions import AirflowException, TaskDeferralTimeout

from sagemaker_pipelines_plugin.lookup import describe_or_none
from sagemaker_pipelines_plugin.triggers import STOPPABLE, SageMakerJobTrigger, stop_operation

NAME_TAIL = 10  # our names end in a per-run hash (include.pipelines.naming): a shortened name keeps it
# A Stopping job will not complete: like a stopped or failed one, it is replaced, not rejoined
RUNNING = ("InProgress",)


def attempt_job_name(base: str, try_number: int, max_length: int = 63) -> str:
    """The job name of one try: the planned name first, then '<name>-retry<N>', within max_length.

    A name too long for the suffix loses characters from its middle, not its end, where names
    carry what tells two runs apart.
    """
    if try_number <= 1:
        return base
    suffix = f"-retry{try_number - 1}"
    if len(base) + len(suffix) <= max_length:
        return base + suffix
    head = base[: max_length - len(suffix) - NAME_TAIL - 1].rstrip("-")
    return f"{head}-{base[-NAME_TAIL:].lstrip('-')}{suffix}"


@dataclass(frozen=True)
class JobKind:
    """How one kind of SageMaker job is named, described and waited for."""

    label: str  # for log lines: "Training", "Tuning", "Transform"
    name_key: str  # where the request names the job: "TrainingJobName"
    status_key: str  # in the Describe* answer: "TrainingJobStatus"
    describe: str  # the SageMakerHook method that describes one: "describe_training_job"
    trigger_type: str  # SageMakerTrigger's job_type
    max_name_length: int = 63

    @property
    def stop(self) -> str:
        """The SageMaker client method that stops one: "stop_training_job"."""
        return stop_operation(self.trigger_type)


class RejoinEarlierTryMixin:
    """Mixed in before a provider job operator: execute() looks for an earlier try's job first.

    A subclass gives its JobKind and what the operator returns for a finished job; the provider
    operator's own execute() submits a new one.
    """

    job_kind: JobKind

    def job_request(self) -> dict:
        """The part of the config that is the Create*Job request (all of it, unless a subclass says)."""
        return self.config

    def job_name(self) -> str:
        return self.job_request()[self.job_kind.name_key]

    def set_job_name(self, name: str) -> None:
        self.job_request()[self.job_kind.name_key] = name

    def describe_job(self, name: str) -> dict:
        return getattr(self.hook, self.job_kind.describe)(name)

    def finished_result(self, name: str) -> dict:
        raise NotImplementedError

    def find_job(self, name: str) -> dict | None:
        return describe_or_none(self.describe_job, name)

    def execute(self, context) -> dict:
        kind = self.job_kind
        base = self.job_name()
        try_number = context["ti"].try_number
        for earlier in range(try_number - 1, 0, -1):
            name = attempt_job_name(base, earlier, kind.max_name_length)
            description = self.find_job(name)
            if description is None:
                continue
            status = description[kind.status_key]
            self.set_job_name(name)
            if status == "Completed":
                self.log.info("%s job %s of an earlier try already completed; using it.", kind.label, name)
                return self.finished_result(name)
            if status in RUNNING:
                self.log.info("Rejoining %s job %s of an earlier try (%s).", kind.label.lower(), name, status)
                return self.wait_for(name)
            self.log.info("%s job %s of an earlier try ended %s; submitting a new one.", kind.label, name, status)
            break
        self.set_job_name(attempt_job_name(base, try_number, kind.max_name_length))
        return self.submit(context)

    def submit(self, context) -> dict:
        return super().execute(context)

    def on_kill(self) -> None:
        """Killing the task (marked failed or success, cleared, timed out) stops the job this try waits on."""
        self.stop_job(self.job_name())

    def stop_job(self, name: str) -> None:
        """Stop the job if it is still running; one that ended or never started is left as it is."""
        from botocore.exceptions import ClientError

        kind = self.job_kind
        description = self.find_job(name)
        if description is None or description[kind.status_key] not in STOPPABLE:
            return
        self.log.info("Stopping %s job %s: its task was killed.", kind.label.lower(), name)
        try:
            getattr(self.hook.conn, kind.stop)(**{kind.name_key: name})
        except ClientError as error:  # it ended between the describe and the stop
            self.log.info("%s job %s was not stopped: %s", kind.label, name, error)

    def stop_job_of_try(self, try_number: int) -> None:
        """Stop the job a try waited on when only the try number is known: the newest of its run and task."""
        base = self.job_name()
        for attempt in range(try_number, 0, -1):
            name = attempt_job_name(base, attempt, self.job_kind.max_name_length)
            if self.find_job(name) is not None:
                self.stop_job(name)
                return

    def defer(self, *, trigger, method_name, kwargs=None, timeout=None):
        """Defer to a trigger that stops the job when the deferred task is killed, within execution_timeout.

        Airflow 3.3 does not apply execution_timeout to a deferred task: the deferral's own timeout
        does, which the provider sets for training and transform but not for tuning.
        """
        if type(trigger) is SageMakerTrigger:
            trigger = SageMakerJobTrigger(**trigger.serialize()[1])
        super().defer(trigger=trigger, method_name=method_name, kwargs=kwargs,
                      timeout=timeout if timeout is not None else self.execution_timeout)

    def resume_execution(self, next_method: str, next_kwargs, context):
        try:
            return super().resume_execution(next_method, next_kwargs, context)
        except TaskDeferralTimeout:
            # the deferral outlived its timeout: the trigger was dropped without on_kill, the job runs on
            self.stop_job_of_try(context["ti"].try_number)
            raise

    def wait_for(self, name: str) -> dict:
        """Wait for a running job as the operator would have: deferred to the triggerer, or polling here."""
        if self.deferrable:
            self.defer(
                trigger=SageMakerJobTrigger(
                    job_name=name,
                    job_type=self.job_kind.trigger_type,
                    waiter_delay=self.check_interval,
                    waiter_max_attempts=getattr(self, "max_attempts", None) or 480,
                    aws_conn_id=self.aws_conn_id,
                    region_name=self.region_name,
                    verify=self.verify,
                    botocore_config=self.botocore_config,
                ),
                method_name="execute_complete",
            )
        self.hook.check_status(
            name, self.job_kind.status_key, self.describe_job, self.check_interval, self.max_ingestion_time
        )
        description = self.describe_job(name)
        status = description[self.job_kind.status_key]
        if status != "Completed":  # check_status takes Stopped for done: here it means try again
            raise AirflowException(
                f"{self.job_kind.label} job {name} ended {status}: {description.get('FailureReason', 'stopped')}"
            )
        return self.execute_complete({}, {"status": "success", "job_name": name})
