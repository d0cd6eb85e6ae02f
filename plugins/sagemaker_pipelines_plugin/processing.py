"""A processing operator that rejoins its run's processing job after a retry.

The provider's SageMakerProcessingOperator submits under a timestamped name when the planned one
exists, so a retry runs (and bills) the whole job again. Here a retry rejoins the running job or
returns the completed one, and only a failed or stopped job is submitted again.
"""
from __future__ import annotations

from airflow.providers.amazon.aws.operators.sagemaker import SageMakerProcessingOperator, serialize

from sagemaker_pipelines_plugin.links import SageMakerProcessingJobLink
from sagemaker_pipelines_plugin.rejoin import JobKind, RejoinEarlierTryMixin


class SageMakerResumableProcessingOperator(RejoinEarlierTryMixin, SageMakerProcessingOperator):
    """SageMakerProcessingOperator that rejoins, returns or resubmits its run's processing job."""

    job_kind = JobKind(label="Processing", name_key="ProcessingJobName", status_key="ProcessingJobStatus",
                       describe="describe_processing_job", trigger_type="Processing")
    operator_extra_links = (SageMakerProcessingJobLink(),)

    def __init__(self, **kwargs):
        kwargs["action_if_job_exists"] = "fail"  # the name is chosen per try here, never timestamped
        super().__init__(**kwargs)

    def finished_result(self, name: str) -> dict:
        return {"Processing": serialize(self.describe_job(name))}
