"""SageMaker endpoint configs: CreateEndpointConfig, DescribeEndpointConfig, DeleteEndpointConfig,
ListEndpointConfigs. A config names, per production variant, a model and the capacity to run it."""
from __future__ import annotations

import copy
import datetime as dt
from dataclasses import dataclass

from ..errors import ValidationException
from .hosting_models import ModelStore
from .hosting_store import HostingStore
from .operations import operation
from .times import utcnow


@dataclass
class EndpointConfigRecord:
    name: str
    arn: str
    region: str
    creation_time: dt.datetime
    request: dict  # CreateEndpointConfig's parameters, less Tags, with defaults filled in

    @property
    def production_variants(self) -> list[dict]:
        return self.request["ProductionVariants"]

    def describe(self) -> dict:
        description = {key: copy.deepcopy(value) for key, value in self.request.items()}
        description.update(EndpointConfigArn=self.arn, CreationTime=self.creation_time)
        return description


class EndpointConfigStore(HostingStore):
    kind = "endpoint configuration"
    resource_type = "endpoint-config"


def _check_variants(ctx, variants: list[dict]) -> None:
    seen: set[str] = set()
    models = ctx.emulator.store(ModelStore)
    for variant in variants:
        name = variant["VariantName"]
        if name in seen:
            raise ValidationException(f"ProductionVariants has more than one variant named '{name}'; variant names must be unique.")
        seen.add(name)
        if not variant.get("ModelName"):
            raise ValidationException(f"ModelName is required for production variant '{name}'.")
        models.get(ctx, variant["ModelName"])  # 'Could not find model "..."' as SageMaker answers
        serverless = variant.get("ServerlessConfig")
        provisioned = variant.get("InstanceType") is not None or variant.get("InitialInstanceCount") is not None
        if serverless and provisioned:
            raise ValidationException(
                f"Production variant '{name}' sets ServerlessConfig together with InstanceType/InitialInstanceCount; "
                "a variant is either serverless or instance-based.")
        if not serverless and (variant.get("InstanceType") is None or variant.get("InitialInstanceCount") is None):
            raise ValidationException(
                f"Production variant '{name}' needs InstanceType and InitialInstanceCount, or a ServerlessConfig.")


@operation("CreateEndpointConfig")
def create_endpoint_config(ctx, params):
    variants = copy.deepcopy(params["ProductionVariants"])
    if not variants:
        raise ValidationException("ProductionVariants must contain at least one production variant.")
    _check_variants(ctx, variants)
    for variant in variants:
        variant.setdefault("InitialVariantWeight", 1.0)
    request = {key: copy.deepcopy(value) for key, value in params.items() if key != "Tags"}
    request["ProductionVariants"] = variants
    name = params["EndpointConfigName"]
    record = EndpointConfigRecord(name, ctx.arn("endpoint-config", name), ctx.region, utcnow(), request)
    ctx.emulator.store(EndpointConfigStore).add(record, params.get("Tags"))
    return {"EndpointConfigArn": record.arn}


@operation("DescribeEndpointConfig")
def describe_endpoint_config(ctx, params):
    return ctx.emulator.store(EndpointConfigStore).get(ctx, params["EndpointConfigName"]).describe()


@operation("DeleteEndpointConfig")
def delete_endpoint_config(ctx, params):
    # SageMaker lets a config go while an endpoint runs it; the endpoint keeps what it deployed
    ctx.emulator.store(EndpointConfigStore).delete(ctx, params["EndpointConfigName"])
    return {}


@operation("ListEndpointConfigs")
def list_endpoint_configs(ctx, params):
    page, next_token = ctx.emulator.store(EndpointConfigStore).list(ctx.region, params)
    configs = [{"EndpointConfigName": r.name, "EndpointConfigArn": r.arn, "CreationTime": r.creation_time} for r in page]
    return {"EndpointConfigs": configs, "NextToken": next_token}
