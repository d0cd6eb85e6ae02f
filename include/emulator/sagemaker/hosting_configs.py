"""SageMaker endpoint configs: CreateEndpointConfig, DescribeEndpointConfig, DeleteEndpointConfig,
ListEndpointConfigs. A config names, per production variant, a model and the capacity to run it."""
from __future__ import annotations

import copy
import datetime as dt
import threading
from dataclasses import dataclass

from ..errors import ValidationException
from .hosting_common import already_exists, could_not_find, list_page, utcnow
from .hosting_models import ModelStore
from .registry import operation
from .tags import TagStore


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


class EndpointConfigStore:
    def __init__(self, emulator):
        self._lock = threading.Lock()
        self._configs: dict[tuple[str, str], EndpointConfigRecord] = {}

    def add(self, record: EndpointConfigRecord) -> None:
        with self._lock:
            if (record.region, record.name) in self._configs:
                raise already_exists("endpoint configuration", record.arn)
            self._configs[(record.region, record.name)] = record

    def get(self, ctx, name: str) -> EndpointConfigRecord:
        with self._lock:
            record = self._configs.get((ctx.region, name))
        if record is None:
            raise could_not_find("endpoint configuration", ctx.arn("endpoint-config", name))
        return record

    def remove(self, ctx, name: str) -> EndpointConfigRecord:
        with self._lock:
            record = self._configs.pop((ctx.region, name), None)
        if record is None:
            raise could_not_find("endpoint configuration", ctx.arn("endpoint-config", name))
        return record

    def in_region(self, region: str) -> list[EndpointConfigRecord]:
        with self._lock:
            return [record for (record_region, _), record in self._configs.items() if record_region == region]


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
    ctx.emulator.store(EndpointConfigStore).add(record)
    ctx.emulator.store(TagStore).add(record.arn, params.get("Tags"))
    return {"EndpointConfigArn": record.arn}


@operation("DescribeEndpointConfig")
def describe_endpoint_config(ctx, params):
    return ctx.emulator.store(EndpointConfigStore).get(ctx, params["EndpointConfigName"]).describe()


@operation("DeleteEndpointConfig")
def delete_endpoint_config(ctx, params):
    # SageMaker lets a config go while an endpoint runs it; the endpoint keeps what it deployed
    record = ctx.emulator.store(EndpointConfigStore).remove(ctx, params["EndpointConfigName"])
    ctx.emulator.store(TagStore).delete(record.arn)
    return {}


@operation("ListEndpointConfigs")
def list_endpoint_configs(ctx, params):
    page, next_token = list_page(
        ctx.emulator.store(EndpointConfigStore).in_region(ctx.region),
        params,
        name=lambda record: record.name,
        created=lambda record: record.creation_time,
        sort_keys={"Name": lambda record: record.name, "CreationTime": lambda record: record.creation_time},
    )
    configs = [{"EndpointConfigName": r.name, "EndpointConfigArn": r.arn, "CreationTime": r.creation_time} for r in page]
    return {"EndpointConfigs": configs, "NextToken": next_token}
