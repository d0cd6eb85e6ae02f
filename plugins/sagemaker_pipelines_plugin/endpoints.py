"""Endpoint teardown: the endpoint chore the Amazon provider has no operator for."""
from __future__ import annotations

import time
from typing import Any, Sequence

from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook
from airflow.sdk import BaseOperator

from sagemaker_pipelines_plugin.links import SageMakerDeletedEndpointLink

_VARIANT_DIMENSION = "sagemaker:variant:DesiredInstanceCount"


def _is_missing(error) -> bool:
    code = error.response.get("Error", {}).get("Code", "")
    message = error.response.get("Error", {}).get("Message", "")
    return code in ("ValidationException", "ResourceNotFound", "ObjectNotFoundException") and (
        "not found" in message.lower() or "could not find" in message.lower() or code != "ValidationException"
    )


class SageMakerDeleteEndpointOperator(BaseOperator):
    """Delete an endpoint and, by default, its endpoint config and models; missing pieces are fine.

    Autoscaling targets are deregistered first: SageMaker refuses to delete an endpoint whose variants
    are still registered with Application Auto Scaling. Waits until the endpoint is really gone, so a
    run that ends green never leaves a paid endpoint behind.
    """

    template_fields: Sequence[str] = ("endpoint_name",)
    ui_color = "#f4a460"
    operator_extra_links = (SageMakerDeletedEndpointLink(),)

    def __init__(
        self,
        *,
        endpoint_name: str,
        delete_endpoint_config: bool = True,
        delete_models: bool = True,
        aws_conn_id: str | None = "aws_default",
        region_name: str | None = None,
        wait_timeout: int = 900,
        poll_interval: float = 5,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.endpoint_name = endpoint_name
        self.delete_endpoint_config = delete_endpoint_config
        self.delete_models = delete_models
        self.aws_conn_id = aws_conn_id
        self.region_name = region_name
        self.wait_timeout = wait_timeout
        self.poll_interval = poll_interval

    def _client(self, service: str):
        return AwsBaseHook(aws_conn_id=self.aws_conn_id, client_type=service, region_name=self.region_name).get_conn()

    def execute(self, context) -> dict[str, Any]:
        from botocore.exceptions import ClientError

        sagemaker = self._client("sagemaker")
        deleted: dict[str, Any] = {"endpoint": None, "endpoint_config": None, "models": []}
        try:
            endpoint = sagemaker.describe_endpoint(EndpointName=self.endpoint_name)
        except ClientError as error:
            if not _is_missing(error):
                raise
            self.log.info("Endpoint %s does not exist; nothing to delete.", self.endpoint_name)
            return deleted

        config_name = endpoint["EndpointConfigName"]
        variants = [v["VariantName"] for v in endpoint.get("ProductionVariants", [])]
        self._deregister_autoscaling(variants)
        sagemaker.delete_endpoint(EndpointName=self.endpoint_name)
        self._wait_until_gone(sagemaker)
        deleted["endpoint"] = self.endpoint_name
        self.log.info("Deleted endpoint %s", self.endpoint_name)

        if self.delete_endpoint_config:
            try:
                config = sagemaker.describe_endpoint_config(EndpointConfigName=config_name)
                sagemaker.delete_endpoint_config(EndpointConfigName=config_name)
                deleted["endpoint_config"] = config_name
                if self.delete_models:
                    for variant in config.get("ProductionVariants", []):
                        try:
                            sagemaker.delete_model(ModelName=variant["ModelName"])
                            deleted["models"].append(variant["ModelName"])
                        except ClientError as error:
                            if not _is_missing(error):
                                raise
            except ClientError as error:
                if not _is_missing(error):
                    raise
        return deleted

    def _deregister_autoscaling(self, variants: list[str]) -> None:
        autoscaling = self._client("application-autoscaling")
        resource_ids = [f"endpoint/{self.endpoint_name}/variant/{variant}" for variant in variants]
        if not resource_ids:
            return
        # look first: deregistering a target that is not there is an error, under a code that varies
        registered = autoscaling.describe_scalable_targets(
            ServiceNamespace="sagemaker", ResourceIds=resource_ids, ScalableDimension=_VARIANT_DIMENSION
        )["ScalableTargets"]
        for target in registered:
            autoscaling.deregister_scalable_target(
                ServiceNamespace="sagemaker", ResourceId=target["ResourceId"], ScalableDimension=_VARIANT_DIMENSION
            )
            self.log.info("Deregistered autoscaling target %s", target["ResourceId"])

    def _wait_until_gone(self, sagemaker) -> None:
        from botocore.exceptions import ClientError

        deadline = time.monotonic() + self.wait_timeout
        while time.monotonic() < deadline:
            try:
                status = sagemaker.describe_endpoint(EndpointName=self.endpoint_name)["EndpointStatus"]
            except ClientError as error:
                if _is_missing(error):
                    return
                raise
            self.log.info("Endpoint %s is %s; waiting for it to go.", self.endpoint_name, status)
            time.sleep(self.poll_interval)
        raise TimeoutError(f"Endpoint {self.endpoint_name} still exists after {self.wait_timeout} s")

