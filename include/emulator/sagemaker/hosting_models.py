"""SageMaker models: CreateModel, DescribeModel, DeleteModel, ListModels.

A model is a record only: an image, model data in S3 and an environment. Nothing runs until an
endpoint (or a transform job) uses it.
"""
from __future__ import annotations

import copy
import datetime as dt
from dataclasses import dataclass

from ..errors import ValidationException
from .hosting_store import HostingStore
from .operations import operation
from .times import utcnow


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


class ModelStore(HostingStore):
    kind = "model"
    resource_type = "model"


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
    ctx.emulator.store(ModelStore).add(record, params.get("Tags"))
    return {"ModelArn": record.arn}


@operation("DescribeModel")
def describe_model(ctx, params):
    return ctx.emulator.store(ModelStore).get(ctx, params["ModelName"]).describe()


@operation("DeleteModel")
def delete_model(ctx, params):
    # as on SageMaker, endpoints already built from the model keep serving it
    ctx.emulator.store(ModelStore).delete(ctx, params["ModelName"])
    return {}


@operation("ListModels")
def list_models(ctx, params):
    page, next_token = ctx.emulator.store(ModelStore).list(ctx.region, params)
    models = [{"ModelName": r.name, "ModelArn": r.arn, "CreationTime": r.creation_time} for r in page]
    return {"Models": models, "NextToken": next_token}
