"""A batch transform operator that rejoins its run's transform job after a retry.

The provider's SageMakerTransformOperator submits under a timestamped name when the planned one
exists, so every retry transforms (and bills) the whole data set again. Here a retry rejoins the
running job or returns the completed one, and only a failed or stopped job is submitted again.
"""
from __future__ import annotations

from airflow.providers.amazon.aws.operators.sagemaker import SageMakerTransformOperator

from sagemaker_pipelines_plugin.links import SageMakerTransformLink
from sagemaker_pipelines_plugin.lookup import describe_or_none
from sagemaker_pipelines_plugin.rejoin import JobKind, RejoinEarlierTryMixin


class SageMakerResumableTransformOperator(RejoinEarlierTryMixin, SageMakerTransformOperator):
    """SageMakerTransformOperator that rejoins, returns or resubmits its run's transform job."""

    job_kind = JobKind(label="Transform", name_key="TransformJobName", status_key="TransformJobStatus",
                       describe="describe_transform_job", trigger_type="Transform")
    operator_extra_links = (SageMakerTransformLink(),)  # the provider's link, following the local SageMaker too

    def __init__(self, **kwargs):
        kwargs["action_if_job_exists"] = "fail"  # the name is chosen per try here, never timestamped
        super().__init__(**kwargs)

    def job_request(self) -> dict:
        return self.config.get("Transform", self.config)  # {"Model": ..., "Transform": ...} or the request alone

    def finished_result(self, name: str) -> dict:
        return self.serialize_result(name)

    def submit(self, context) -> dict:
        # the model the config creates alongside the job has a per-run name too: an earlier try's is
        # the same model, where the provider would create a timestamped copy
        model = self.config.get("Model")
        if model and describe_or_none(self.hook.describe_model, model["ModelName"]) is not None:
            self.log.info("Model %s exists from an earlier try; keeping it.", model["ModelName"])
            self.config = self.config["Transform"]
        return super().submit(context)
