"""A training operator that never pays twice for one run: it rejoins its job after a retry.

Each try rejoins, returns or resubmits the job of an earlier try (see rejoin.py). A failure of the
training code itself (AlgorithmError, ClientError) is not retried: the same code and data would
fail the same way; capacity and internal errors are. The job's own log lands in the task log.
"""
from __future__ import annotations

from typing import Any

from airflow.sdk.exceptions import AirflowException, AirflowFailException
from airflow.providers.amazon.aws.hooks.sagemaker import SageMakerHook
from airflow.providers.amazon.aws.operators.sagemaker import SageMakerTrainingOperator

from sagemaker_pipelines_plugin.links import SageMakerTrainingJobLink
from sagemaker_pipelines_plugin.rejoin import JobKind, RejoinEarlierTryMixin, attempt_job_name

__all__ = ["SageMakerResumableTrainingOperator", "attempt_job_name"]

NOT_RETRIED = ("AlgorithmError", "ClientError")
LOG_LINES_SHOWN = 200


class TrainingHook(SageMakerHook):
    """SageMakerHook whose create_training_job can leave the job's first log lines to the operator.

    Deferrable, the provider's operator passes print_log to create_training_job (which, not waiting,
    prints what the job has logged so far) and then prints the same lines again itself before it
    defers: every early line of every host showed twice in the task log."""

    def __init__(self, *args, log_on_create: bool = True, **kwargs):
        super().__init__(*args, **kwargs)
        self.log_on_create = log_on_create

    def create_training_job(self, config: dict, wait_for_completion: bool = True, print_log: bool = True, **kwargs):
        return super().create_training_job(config, wait_for_completion=wait_for_completion,
                                           print_log=print_log and self.log_on_create, **kwargs)


class SageMakerResumableTrainingOperator(RejoinEarlierTryMixin, SageMakerTrainingOperator):
    """SageMakerTrainingOperator that rejoins, returns or resubmits its run's job instead of duplicating it."""

    aws_hook_class = TrainingHook
    job_kind = JobKind(label="Training", name_key="TrainingJobName", status_key="TrainingJobStatus",
                       describe="describe_training_job", trigger_type="Training")
    operator_extra_links = (SageMakerTrainingJobLink(),)

    def __init__(self, **kwargs):
        kwargs["action_if_job_exists"] = "fail"
        super().__init__(**kwargs)

    @property
    def _hook_parameters(self) -> dict[str, Any]:
        # deferring, the operator prints the job's log itself right after creating it
        return {**super()._hook_parameters, "log_on_create": not (self.deferrable and self.wait_for_completion)}

    def finished_result(self, name: str) -> dict:
        return self.serialize_result(name)

    def execute(self, context) -> dict:
        try:
            return super().execute(context)
        except AirflowException as error:
            self._raise_for_failure(self.job_name(), str(error))
            raise

    def execute_complete(self, context, event: dict[str, Any] | None = None) -> dict[str, dict]:
        job_name = (event or {}).get("job_name") or self.job_name()
        self._show_job_log(job_name)
        if (event or {}).get("status") != "success":
            self._raise_for_failure(job_name, str(event))
            raise AirflowException(f"Training job {job_name} did not complete: {event}")
        self.log.info("SageMaker training job %s completed.", job_name)
        return self.serialize_result(job_name)

    def _raise_for_failure(self, job_name: str, context_message: str) -> None:
        description = self.find_job(job_name) or {}
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
