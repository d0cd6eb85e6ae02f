"""Create-once versions of the provider's model and endpoint-config operators.

Their names derive from the run, so a resource that already exists under the name was made by an
earlier try of the same task: a retry or a cleared task finds it and goes on, instead of failing on
"Cannot create already existing model" (the provider's operators create unconditionally).
"""
from __future__ import annotations

from airflow.providers.amazon.aws.operators.sagemaker import SageMakerEndpointConfigOperator, SageMakerModelOperator

from sagemaker_pipelines_plugin.lookup import describe_or_none


class SageMakerCreateModelOnceOperator(SageMakerModelOperator):
    """SageMakerModelOperator that keeps the model an earlier try of this run already created."""

    def execute(self, context) -> dict:
        from airflow.providers.amazon.aws.operators.sagemaker import serialize

        existing = describe_or_none(self.hook.describe_model, self.config["ModelName"])
        if existing is None:
            return super().execute(context)
        self.log.info("Model %s exists from an earlier try; keeping it.", self.config["ModelName"])
        return {"Model": serialize(existing)}


class SageMakerCreateEndpointConfigOnceOperator(SageMakerEndpointConfigOperator):
    """SageMakerEndpointConfigOperator that keeps the config an earlier try of this run already created."""

    def execute(self, context) -> dict:
        from airflow.providers.amazon.aws.operators.sagemaker import serialize

        existing = describe_or_none(self.hook.describe_endpoint_config, self.config["EndpointConfigName"])
        if existing is None:
            return super().execute(context)
        self.log.info("Endpoint config %s exists from an earlier try; keeping it.", self.config["EndpointConfigName"])
        return {"EndpointConfig": serialize(existing)}
