"""SageMaker models: CreateModel, DescribeModel, DeleteModel, ListModels.

A model is a record only: an image, model data in S3 and an environment. Nothing runs until an
endpoint (or a transform job) uses it.
"""
from __future__ import annotations

import copy
import datetime as dt
import threading
from dataclasses import dataclass

from ..errors import ValidationException
from .hosting_common import already_exists, could_not_find, list_page, utcnow
from .registry import operation
from .tags import TagStore


@dataclass
class ModelRecord:
    name: str
    arn: str
    region: str
    creation_time: dt.datetime
    request: dict  # CreateModel's parameters, less Tags

    @property
    def containers(self) -> list[dict]:
        if self.request.get("PrimaryContainer"):
            return [self.request["PrimaryContainer"]]
        return list(self.request.get("Containers") or [])

    def describe(self) -> dict:
        description = {
            "ModelName": self.name,
            "ModelArn": self.arn,
            "CreationTime": self.creation_time,
            "EnableNetworkIsolation": self.request.get("EnableNetworkIsolation", False),
        }
        for key in ("PrimaryContainer", "Containers", "InferenceExecutionConfig", "ExecutionRoleArn", "VpcConfig"):
            if self.request.get(key) is not None:
                description[key] = copy.deepcopy(self.request[key])
        return description


class ModelStore:
    def __init__(self, emulator):
        self._lock = threading.Lock()
        self._models: dict[tuple[str, str], ModelRecord] = {}

    def add(self, record: ModelRecord) -> None:
        with self._lock:
            if (record.region, record.name) in self._models:
                raise already_exists("model", record.arn)
            self._models[(record.region, record.name)] = record

    def get(self, ctx, name: str) -> ModelRecord:
        with self._lock:
            record = self._models.get((ctx.region, name))
        if record is None:
            raise could_not_find("model", ctx.arn("model", name))
        return record

    def remove(self, ctx, name: str) -> ModelRecord:
        with self._lock:
            record = self._models.pop((ctx.region, name), None)
        if record is None:
            raise could_not_find("model", ctx.arn("model", name))
        return record

    def in_region(self, region: str) -> list[ModelRecord]:
        with self._lock:
            return [record for (record_region, _), record in self._models.items() if record_region == region]


def _check_container(container: dict, where: str) -> None:
    if not container.get("Image") and not container.get("ModelPackageName"):
        raise ValidationException(f"{where}.Image is required: name the inference image to run the model in.")
    if container.get("ModelDataUrl") and container.get("ModelDataSource"):
        raise ValidationException(f"{where}: specify ModelDataUrl or ModelDataSource, not both.")


@operation("CreateModel")
def create_model(ctx, params):
    primary, containers = params.get("PrimaryContainer"), params.get("Containers")
    if primary and containers:
        raise ValidationException("Specify PrimaryContainer or Containers, not both.")
    if not primary and not containers:
        raise ValidationException("Either PrimaryContainer or Containers must be specified.")
    if primary:
        _check_container(primary, "PrimaryContainer")
    for index, container in enumerate(containers or [], start=1):
        _check_container(container, f"Containers.{index}")
    request = {key: copy.deepcopy(value) for key, value in params.items() if key != "Tags"}
    record = ModelRecord(params["ModelName"], ctx.arn("model", params["ModelName"]), ctx.region, utcnow(), request)
    ctx.emulator.store(ModelStore).add(record)
    ctx.emulator.store(TagStore).add(record.arn, params.get("Tags"))
    return {"ModelArn": record.arn}


@operation("DescribeModel")
def describe_model(ctx, params):
    return ctx.emulator.store(ModelStore).get(ctx, params["ModelName"]).describe()


@operation("DeleteModel")
def delete_model(ctx, params):
    # as on SageMaker, endpoints already built from the model keep serving it
    record = ctx.emulator.store(ModelStore).remove(ctx, params["ModelName"])
    ctx.emulator.store(TagStore).delete(record.arn)
    return {}


@operation("ListModels")
def list_models(ctx, params):
    page, next_token = list_page(
        ctx.emulator.store(ModelStore).in_region(ctx.region),
        params,
        name=lambda record: record.name,
        created=lambda record: record.creation_time,
        sort_keys={"Name": lambda record: record.name, "CreationTime": lambda record: record.creation_time},
    )
    models = [{"ModelName": r.name, "ModelArn": r.arn, "CreationTime": r.creation_time} for r in page]
    return {"Models": models, "NextToken": next_token}
