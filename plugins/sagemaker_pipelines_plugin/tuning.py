"""A tuning operator that rejoins its run's tuning job after a retry instead of failing or duplicating it.

The provider's SageMakerTuningOperator creates the job under the planned name on every try, so a
retry after a lost worker fails with "already exists" while the first job keeps running (and
billing) unobserved. Here a retry rejoins that job, or returns it once it completed.
"""
from __future__ import annotations

from airflow.providers.amazon.aws.operators.sagemaker import SageMakerTuningOperator, serialize

from sagemaker_pipelines_plugin.rejoin import JobKind, RejoinEarlierTryMixin

MAX_TUNING_JOB_NAME = 32  # SageMaker's limit: it appends "-NNN-xxxxxxxx" for each child training job


class SageMakerResumableTuningOperator(RejoinEarlierTryMixin, SageMakerTuningOperator):
    """SageMakerTuningOperator that rejoins, returns or resubmits its run's tuning job."""

    job_kind = JobKind(label="Tuning", status_key="HyperParameterTuningJobStatus", trigger_type="tuning",
                       max_name_length=MAX_TUNING_JOB_NAME)

    def job_name(self) -> str:
        return self.config["HyperParameterTuningJobName"]

    def set_job_name(self, name: str) -> None:
        self.config["HyperParameterTuningJobName"] = name

    def describe_job(self, name: str) -> dict:
        return self.hook.describe_tuning_job(name)

    def finished_result(self, name: str) -> dict:
        return {"Tuning": serialize(self.describe_job(name))}
