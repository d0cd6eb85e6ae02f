"""Create-once versions of the provider's model and endpoint-config operators, and a delete that tolerates absence.

Their names derive from the run, so a resource that already exists under the name was made by an
earlier try of the same task: a retry or a cleared task finds it and goes on, instead of failing on
"Cannot create already existing model" (the provider's operators create unconditionally).
"""
from __future__ import annotations

from airflow.providers.amazon.aws.operators.sagemaker import (
    SageMakerDeleteModelOperator,
    SageMakerEndpointConfigOperator,
    SageMakerModelOperator,
)

from sagemaker_pipelines_plugin.links import (
    SageMakerDeletedModelLink,
    SageMakerEndpointConfigLink,
    SageMakerModelLink,
)
from sagemaker_pipelines_plugin.lookup import describe_or_none


class SageMakerCreateModelOnceOperator(SageMakerModelOperator):
    """SageMakerModelOperator that keeps the model an earlier try of this run already created."""

    operator_extra_links = (SageMakerModelLink(),)

    def execute(self, context) -> dict:
        from airflow.providers.amazon.aws.operators.sagemaker import serialize

        existing = describe_or_none(self.hook.describe_model, self.config["ModelName"])
        if existing is None:
            return super().execute(context)
        self.log.info("Model %s exists from an earlier try; keeping it.", self.config["ModelName"])
        return {"Model": serialize(existing)}


class SageMakerCreateEndpointConfigOnceOperator(SageMakerEndpointConfigOperator):
    """SageMakerEndpointConfigOperator that keeps the config an earlier try of this run already created."""

    operator_extra_links = (SageMakerEndpointConfigLink(),)

    def execute(self, context) -> dict:
        from airflow.providers.amazon.aws.operators.sagemaker import serialize

        existing = describe_or_none(self.hook.describe_endpoint_config, self.config["EndpointConfigName"])
        if existing is None:
            return super().execute(context)
        self.log.info("Endpoint config %s exists from an earlier try; keeping it.", self.config["EndpointConfigName"])
        return {"EndpointConfig": serialize(existing)}


class SageMakerDeleteModelIfPresentOperator(SageMakerDeleteModelOperator):
    """SageMakerDeleteModelOperator for a teardown: a model that was never created, or is gone already, is fine."""

    ui_color = "#f4a460"
    operator_extra_links = (SageMakerDeletedModelLink(),)

    def execute(self, context) -> str | None:
        name = self.config["ModelName"]
        if describe_or_none(self.hook.describe_model, name) is None:
            self.log.info("Model %s does not exist; nothing to delete.", name)
            return None
        super().execute(context)
        self.log.info("Deleted model %s", name)
        return name
