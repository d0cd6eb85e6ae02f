"""A tuning operator that rejoins its run's tuning job after a retry instead of failing or duplicating it.

The provider's SageMakerTuningOperator creates the job under the planned name on every try, so a
retry after a lost worker fails with "already exists" while the first job keeps running (and
billing) unobserved. Here a retry rejoins that job, or returns it once it completed.
"""
from __future__ import annotations

from airflow.providers.amazon.aws.operators.sagemaker import SageMakerTuningOperator, serialize

from sagemaker_pipelines_plugin.links import SageMakerTuningJobLink
from sagemaker_pipelines_plugin.rejoin import JobKind, RejoinEarlierTryMixin

MAX_TUNING_JOB_NAME = 32  # SageMaker's limit: it appends "-NNN-xxxxxxxx" for each child training job


class SageMakerResumableTuningOperator(RejoinEarlierTryMixin, SageMakerTuningOperator):
    """SageMakerTuningOperator that rejoins, returns or resubmits its run's tuning job."""

    job_kind = JobKind(label="Tuning", name_key="HyperParameterTuningJobName", status_key="HyperParameterTuningJobStatus",
                       describe="describe_tuning_job", trigger_type="tuning", max_name_length=MAX_TUNING_JOB_NAME)
    operator_extra_links = (SageMakerTuningJobLink(),)

    def finished_result(self, name: str) -> dict:
        return {"Tuning": serialize(self.describe_job(name))}
