"""A training operator that never pays twice for one run: it rejoins its job after a retry.

The provider's SageMakerTrainingOperator submits a new job on every try, so a worker that dies while
a job runs makes the retry start (and bill) a second one. Here each try first looks at the jobs of the
earlier tries of the same run and task: a running one is rejoined, a completed one is returned, and
only a failed or stopped one is resubmitted, under a name derived from the try number.
A failure of the training code itself (AlgorithmError, ClientError) is not retried: the same code
and data would fail the same way; capacity and internal errors are.
"""
from __future__ import annotations

from typing import Any

from airflow.sdk.exceptions import AirflowException, AirflowFailException
from airflow.providers.amazon.aws.operators.sagemaker import SageMakerTrainingOperator
from airflow.providers.amazon.aws.triggers.sagemaker import SageMakerTrigger

NOT_RETRIED = ("AlgorithmError", "ClientError")
LOG_LINES_SHOWN = 200


def attempt_job_name(base: str, try_number: int) -> str:
    """The job name of one try: the planned name first, then '<name>-retry<N>' (63 characters at most)."""
    if try_number <= 1:
        return base
    suffix = f"-retry{try_number - 1}"
    return base[: 63 - len(suffix)] + suffix


class SageMakerResumableTrainingOperator(SageMakerTrainingOperator):
    """SageMakerTrainingOperator that rejoins, returns or resubmits its run's job instead of duplicating it."""

    def __init__(self, **kwargs):
        kwargs["action_if_job_exists"] = "fail"
        super().__init__(**kwargs)

    def _describe(self, job_name: str) -> dict | None:
        from botocore.exceptions import ClientError

        try:
            return self.hook.describe_training_job(job_name)
        except ClientError as error:
            if error.response["Error"]["Code"] == "ValidationException":
                return None
            raise

    def execute(self, context) -> dict:
        base = self.config["TrainingJobName"]
        try_number = context["ti"].try_number
        for earlier in range(try_number - 1, 0, -1):
            name = attempt_job_name(base, earlier)
            description = self._describe(name)
            if description is None:
                continue
            status = description["TrainingJobStatus"]
            self.config["TrainingJobName"] = name
            if status == "Completed":
                self.log.info("Training job %s of an earlier try already completed; using it.", name)
                return self.serialize_result(name)
            if status in ("InProgress", "Stopping"):
                self.log.info("Rejoining training job %s of an earlier try (%s).", name, status)
                return self._wait_for(name)
            self.log.info("Training job %s of an earlier try ended %s; submitting a new one.", name, status)
            break
        self.config["TrainingJobName"] = attempt_job_name(base, try_number)
        try:
            return super().execute(context)
        except AirflowException as error:
            self._raise_for_failure(self.config["TrainingJobName"], str(error))
            raise

    def _wait_for(self, job_name: str) -> dict:
        if self.deferrable:
            self.defer(
                trigger=SageMakerTrigger(
                    job_name=job_name,
                    job_type="Training",
                    waiter_delay=self.check_interval,
                    waiter_max_attempts=self.max_attempts,
                    aws_conn_id=self.aws_conn_id,
                    region_name=self.region_name,
                    verify=self.verify,
                    botocore_config=self.botocore_config,
                ),
                method_name="execute_complete",
            )
        self.hook.check_status(
            job_name, "TrainingJobStatus", self.hook.describe_training_job, self.check_interval, self.max_ingestion_time
        )
        return self.execute_complete({}, {"status": "success", "job_name": job_name})

    def execute_complete(self, context, event: dict[str, Any] | None = None) -> dict[str, dict]:
        job_name = (event or {}).get("job_name") or self.config["TrainingJobName"]
        self._show_job_log(job_name)
        if (event or {}).get("status") != "success":
            self._raise_for_failure(job_name, str(event))
            raise AirflowException(f"Training job {job_name} did not complete: {event}")
        self.log.info("SageMaker training job %s completed.", job_name)
        return self.serialize_result(job_name)

    def _raise_for_failure(self, job_name: str, context_message: str) -> None:
        description = self._describe(job_name) or {}
        reason = description.get("FailureReason", "")
        if description.get("TrainingJobStatus") == "Failed" and reason.startswith(NOT_RETRIED):
            raise AirflowFailException(
                f"Training job {job_name} failed in the training code (not retried: the same code and data "
                f"would fail again):\n{reason}"
            )
        if reason:
            raise AirflowException(f"Training job {job_name} {description.get('TrainingJobStatus')}: {reason}")

    def _show_job_log(self, job_name: str) -> None:
        """The job's own output (from CloudWatch Logs) in the task log: the last lines of each host."""
        logs = self.hook.logs_hook.get_conn()
        group = "/aws/sagemaker/TrainingJobs"
        try:
            streams = logs.describe_log_streams(logGroupName=group, logStreamNamePrefix=f"{job_name}/")["logStreams"]
        except Exception as error:  # the log is a convenience; its absence must not fail the task
            self.log.info("No CloudWatch log for %s: %s", job_name, error)
            return
        for stream in streams:
            events = logs.get_log_events(
                logGroupName=group, logStreamName=stream["logStreamName"], startFromHead=False, limit=LOG_LINES_SHOWN
            )["events"]
            self.log.info("---- %s (last %d lines) ----", stream["logStreamName"], len(events))
            for event in events:
                self.log.info("%s", event["message"].rstrip())

    def on_kill(self) -> None:
        """Killing the task stops its job, so nothing keeps billing after the run is gone."""
        job_name = self.config.get("TrainingJobName")
        description = self._describe(job_name) if job_name else None
        if description and description["TrainingJobStatus"] == "InProgress":
            self.log.info("Stopping training job %s", job_name)
            self.hook.conn.stop_training_job(TrainingJobName=job_name)
