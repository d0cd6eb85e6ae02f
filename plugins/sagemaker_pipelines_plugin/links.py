"""Extra links from each SageMaker task to what it made: its job, model, endpoint config, endpoint or
model version in the AWS console or, when aws_default points at the local SageMaker (an endpoint_url
that is not an AWS host), to the local SageMaker's description of it (GET /_emulator/describe/...).

Airflow 3 asks a link in two places. On the worker, when a try ends or defers, each link of the
operator's class is asked once and the URL is stored as an XCom: our operators carry these links as
class attributes, so the URL names the job a try really submitted or rejoined, retries included. The
api-server asks the links the plugin (plugins/sagemaker_pipelines.py) registers for both the provider's
operators and ours; they return that stored URL or work it out from the task's result (its XCom) or,
while it still runs, from its rendered request.
"""
from __future__ import annotations

import json
import logging
import os
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import quote, unquote, urlencode

from airflow.providers.amazon.aws.links.base_aws import BaseAwsLink
from airflow.providers.amazon.aws.links.sagemaker import SageMakerTransformJobLink

if TYPE_CHECKING:
    from airflow.sdk.types import TaskInstanceKey

log = logging.getLogger(__name__)

PROVIDER = "airflow.providers.amazon.aws.operators.sagemaker"
CONSOLE_URL = "https://{region}.console.{domain}/sagemaker/home?region={region}#/{path}/{name}"
LOCAL_DESCRIBE_PATH = "/_emulator/describe/"  # include/emulator/gateway.py serves it
DEFAULT_REGION = "us-east-1"


@dataclass(frozen=True)
class SageMakerResource:
    """One kind of SageMaker resource: how it is described, shown in the console, and named by a task."""

    describe: str  # Describe<describe> on the local SageMaker: "TrainingJob"
    console_path: str  # the console's #/<console_path>/<name>
    result_keys: tuple[str, ...]  # where the operator's return value names it; () when the value is the name
    request_field: str = "config"  # the operator's templated field that holds the request
    request_keys: tuple[tuple[str, ...], ...] = ((),)  # where that request names it (first match wins)


TRAINING_JOB = SageMakerResource("TrainingJob", "jobs", ("Training", "TrainingJobName"),
                                 request_keys=(("TrainingJobName",),))
TUNING_JOB = SageMakerResource("HyperParameterTuningJob", "hyper-tuning-jobs", ("Tuning", "HyperParameterTuningJobName"),
                               request_keys=(("HyperParameterTuningJobName",),))
TRANSFORM_JOB = SageMakerResource("TransformJob", "transform-jobs", ("Transform", "TransformJobName"),
                                  request_keys=(("Transform", "TransformJobName"), ("TransformJobName",)))
PROCESSING_JOB = SageMakerResource("ProcessingJob", "processing-jobs", ("Processing", "ProcessingJobName"),
                                   request_keys=(("ProcessingJobName",),))
MODEL = SageMakerResource("Model", "models", ("Model", "ModelName"), request_keys=(("ModelName",),))
ENDPOINT_CONFIG = SageMakerResource("EndpointConfig", "endpointConfig", ("EndpointConfig", "EndpointConfigName"),
                                    request_keys=(("EndpointConfigName",),))
ENDPOINT = SageMakerResource("Endpoint", "endpoints", ("Endpoint", "EndpointName"),
                             request_keys=(("Endpoint", "EndpointName"), ("EndpointName",)))
# SageMakerDeleteEndpointOperator returns {"endpoint": <the name deleted, or None>, ...}
DELETED_ENDPOINT = SageMakerResource("Endpoint", "endpoints", ("endpoint",), request_field="endpoint_name")
# SageMakerDeleteModelOperator returns nothing, ours the name deleted (None when there was none)
DELETED_MODEL = SageMakerResource("Model", "models", (), request_keys=(("ModelName",),))
# SageMakerRegisterModelVersionOperator returns the version's ARN; before that only its group is known
MODEL_PACKAGE = SageMakerResource("ModelPackage", "model-registry", ())
MODEL_PACKAGE_GROUP = SageMakerResource("ModelPackageGroup", "model-registry", (), request_field="package_group_name")
# the standing endpoint's deploy task returns {"endpoint_name": ...}; the approval task names its version's ARN
STANDING_ENDPOINT = SageMakerResource("Endpoint", "endpoints", ("endpoint_name",), request_field="endpoint_name")
APPROVED_PACKAGE = SageMakerResource("ModelPackage", "model-registry", ("__none__",), request_field="model_package_arn")


def console_url(resource: SageMakerResource, name: str, region: str) -> str:
    """The resource's page in the AWS console of the region's partition."""
    if resource.describe == "ModelPackage":  # a version's page is its group's registry page
        name = name.rsplit(":", 1)[-1].split("/")[1] if name.startswith("arn:") else name
    domain = BaseAwsLink.get_aws_domain(_partition(region)) or "aws.amazon.com"
    return CONSOLE_URL.format(region=region, domain=domain, path=resource.console_path, name=quote(name, safe=""))


def local_url(resource: SageMakerResource, name: str, region: str, endpoint_url: str) -> str:
    """The local SageMaker's own description of the resource: its Describe* answer as JSON."""
    query = urlencode({"name": name, "region": region})
    return f"{endpoint_url.rstrip('/')}{LOCAL_DESCRIBE_PATH}{resource.describe}?{query}"


class SageMakerResourceLink(BaseAwsLink):
    """A link to the SageMaker resource a task made, in the AWS console or on the local SageMaker."""

    resource: ClassVar[SageMakerResource]
    # "module:Class" of the operators the plugin gives this link to (imported when Airflow asks)
    operator_paths: ClassVar[tuple[str, ...]] = ()

    @property
    def operators(self) -> list[type]:  # read by Airflow's plugin manager
        from importlib import import_module

        return [getattr(import_module(module), name) for module, name in (p.split(":") for p in self.operator_paths)]

    def get_link(self, operator, *, ti_key: TaskInstanceKey) -> str:
        try:
            return self.url(operator, ti_key)
        except Exception:  # a link must never fail a task or a page
            log.warning("No %s link for %s", self.name, getattr(ti_key, "task_id", ti_key), exc_info=True)
            return ""

    def url(self, operator, ti_key: TaskInstanceKey) -> str:
        in_task = _in_task_process()
        result = _xcom(ti_key, "return_value", in_task=in_task)
        found = self.name_in_result(result)
        if found:
            return self.url_for(operator, *found, result=result)
        # the URL this try stored when it deferred: the name it submitted under (a resumed try
        # renders its request anew, under the planned name)
        stored = _xcom(ti_key, self.xcom_key, in_task=in_task)
        if isinstance(stored, str) and stored.startswith(("http://", "https://")):
            return stored
        request = _live_request(operator, self.request_fields()) if in_task else _rendered_request(ti_key)
        found = self.name_in_request(request, ti_key=ti_key, in_task=in_task)
        return self.url_for(operator, *found) if found else ""

    def request_fields(self) -> tuple[str, ...]:
        return (self.resource.request_field,)

    def name_in_result(self, result: Any) -> tuple[SageMakerResource, str] | None:
        name = _dig(result, self.resource.result_keys)
        return (self.resource, name) if name else None

    def name_in_request(self, request: dict, *, ti_key, in_task: bool) -> tuple[SageMakerResource, str] | None:
        field = request.get(self.resource.request_field)
        for keys in self.resource.request_keys:
            name = _dig(field, keys)
            if name:
                return self.resource, name
        return None

    def url_for(self, operator, resource: SageMakerResource, name: str, result: Any = None) -> str:
        endpoint_url, region = _target(operator)
        region = region or _region_in(result) or os.environ.get("AWS_DEFAULT_REGION") or DEFAULT_REGION
        if endpoint_url and _is_local(endpoint_url):
            return local_url(resource, name, region, endpoint_url)
        return console_url(resource, name, region)


class SageMakerTrainingJobLink(SageMakerResourceLink):
    name = "SageMaker Training Job"
    resource = TRAINING_JOB
    operator_paths = (f"{PROVIDER}:SageMakerTrainingOperator",
                      "sagemaker_pipelines_plugin.training:SageMakerResumableTrainingOperator")


class SageMakerTuningJobLink(SageMakerResourceLink):
    name = "SageMaker Tuning Job"
    resource = TUNING_JOB
    operator_paths = (f"{PROVIDER}:SageMakerTuningOperator",
                      "sagemaker_pipelines_plugin.tuning:SageMakerResumableTuningOperator")


class SageMakerTransformLink(SageMakerResourceLink):
    """The provider's transform link under its own name, so it replaces it, made to follow the local SageMaker."""

    name = SageMakerTransformJobLink.name
    resource = TRANSFORM_JOB
    operator_paths = (f"{PROVIDER}:SageMakerTransformOperator",
                      "sagemaker_pipelines_plugin.transform:SageMakerResumableTransformOperator")

    def name_in_request(self, request: dict, *, ti_key, in_task: bool) -> tuple[SageMakerResource, str] | None:
        # the provider's operator stores the name it submitted under (SageMakerTransformJobLink.persist)
        persisted = _xcom(ti_key, SageMakerTransformJobLink.key, in_task=in_task)
        if isinstance(persisted, dict) and persisted.get("job_name"):
            return self.resource, unquote(persisted["job_name"])
        return super().name_in_request(request, ti_key=ti_key, in_task=in_task)


class SageMakerProcessingJobLink(SageMakerResourceLink):
    name = "SageMaker Processing Job"
    resource = PROCESSING_JOB
    operator_paths = (f"{PROVIDER}:SageMakerProcessingOperator",)


class SageMakerModelLink(SageMakerResourceLink):
    name = "SageMaker Model"
    resource = MODEL
    operator_paths = (f"{PROVIDER}:SageMakerModelOperator",
                      "sagemaker_pipelines_plugin.resources:SageMakerCreateModelOnceOperator")


class SageMakerDeletedModelLink(SageMakerModelLink):
    """The model a teardown deletes (gone once it succeeded: the page then says so)."""

    resource = DELETED_MODEL
    operator_paths = (f"{PROVIDER}:SageMakerDeleteModelOperator",
                      "sagemaker_pipelines_plugin.resources:SageMakerDeleteModelIfPresentOperator")


class SageMakerEndpointConfigLink(SageMakerResourceLink):
    name = "SageMaker Endpoint Config"
    resource = ENDPOINT_CONFIG
    operator_paths = (f"{PROVIDER}:SageMakerEndpointConfigOperator",
                      "sagemaker_pipelines_plugin.resources:SageMakerCreateEndpointConfigOnceOperator")


class SageMakerEndpointLink(SageMakerResourceLink):
    name = "SageMaker Endpoint"
    resource = ENDPOINT
    operator_paths = (f"{PROVIDER}:SageMakerEndpointOperator",)


class SageMakerDeletedEndpointLink(SageMakerEndpointLink):
    """The endpoint a teardown deletes (gone once it succeeded: the page then says so)."""

    resource = DELETED_ENDPOINT
    operator_paths = ("sagemaker_pipelines_plugin.endpoints:SageMakerDeleteEndpointOperator",)


class SageMakerModelVersionLink(SageMakerResourceLink):
    """The registered version (its group's registry page in the console); its group until it exists."""

    name = "SageMaker Model Registry"
    resource = MODEL_PACKAGE
    operator_paths = (f"{PROVIDER}:SageMakerRegisterModelVersionOperator",)

    def request_fields(self) -> tuple[str, ...]:
        return (MODEL_PACKAGE_GROUP.request_field,)

    def name_in_result(self, result: Any) -> tuple[SageMakerResource, str] | None:
        return (MODEL_PACKAGE, result) if isinstance(result, str) and result.startswith("arn:") else None

    def name_in_request(self, request: dict, *, ti_key, in_task: bool) -> tuple[SageMakerResource, str] | None:
        group = request.get(MODEL_PACKAGE_GROUP.request_field)
        return (MODEL_PACKAGE_GROUP, group) if isinstance(group, str) and group else None


class SageMakerStandingEndpointLink(SageMakerEndpointLink):
    """The standing endpoint a guarded update deploys to."""

    resource = STANDING_ENDPOINT
    operator_paths = ("sagemaker_pipelines_plugin.standing_endpoint:SageMakerDeployStandingEndpointOperator",)


class SageMakerApprovalLink(SageMakerResourceLink):
    """The version a person approves or rejects (its group's registry page in the console)."""

    name = "SageMaker Model Registry"
    resource = APPROVED_PACKAGE
    operator_paths = ("sagemaker_pipelines_plugin.approval:SageMakerModelApprovalOperator",)


ALL_LINKS: tuple[type[SageMakerResourceLink], ...] = (
    SageMakerTrainingJobLink, SageMakerTuningJobLink, SageMakerTransformLink, SageMakerProcessingJobLink,
    SageMakerModelLink, SageMakerDeletedModelLink, SageMakerEndpointConfigLink, SageMakerEndpointLink, SageMakerDeletedEndpointLink,
    SageMakerModelVersionLink, SageMakerStandingEndpointLink, SageMakerApprovalLink,
)


# --- where the pieces come from ------------------------------------------------------------------
def _in_task_process() -> bool:
    """True on a worker (the task runner talks to its supervisor), False in the api-server."""
    task_runner = sys.modules.get("airflow.sdk.execution_time.task_runner")
    return getattr(task_runner, "SUPERVISOR_COMMS", None) is not None


def _xcom(ti_key, key: str, *, in_task: bool) -> Any:
    """One XCom of the task instance: through the supervisor on a worker, from the database elsewhere."""
    if in_task:
        from airflow.sdk.execution_time.xcom import XCom

        if ti_key.map_index >= 0:
            return XCom.get_value(ti_key=ti_key, key=key)
        # get_all: an absent key is an empty answer, where get_value logs an error in the task log
        values = XCom.get_all(key=key, dag_id=ti_key.dag_id, task_id=ti_key.task_id, run_id=ti_key.run_id)
        return values[0] if values else None
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        value = session.execute(
            XComModel.get_many(key=key, run_id=ti_key.run_id, dag_ids=ti_key.dag_id, task_ids=ti_key.task_id,
                               map_indexes=ti_key.map_index).with_only_columns(XComModel.value)
        ).scalar()
    return _json(value)


def _rendered_request(ti_key) -> dict:
    """The task instance's rendered template fields, as the api-server stored them when the try started."""
    from sqlalchemy import select

    from airflow.models.renderedtifields import RenderedTaskInstanceFields as RTIF
    from airflow.utils.session import create_session

    with create_session() as session:
        fields = session.scalar(select(RTIF.rendered_fields).where(
            RTIF.dag_id == ti_key.dag_id, RTIF.task_id == ti_key.task_id, RTIF.run_id == ti_key.run_id,
            RTIF.map_index == ti_key.map_index,
        ))
    fields = _json(fields)
    # a field longer than [core] max_templated_field_length is stored as a truncated string: no name then
    return {name: _json(value) for name, value in fields.items()} if isinstance(fields, dict) else {}


def _live_request(operator, fields: tuple[str, ...]) -> dict:
    """The request fields of the operator that runs in this process (a retry renames its job in place)."""
    return {field: getattr(operator, field, None) for field in fields}


def _target(operator) -> tuple[str | None, str | None]:
    """(endpoint_url, region) of the task's AWS connection: where its SageMaker calls went."""
    from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook

    # a mapped operator, as the api-server holds it, has its partial arguments unexpanded (None)
    conn_id = getattr(operator, "aws_conn_id", None) or "aws_default"
    region = getattr(operator, "region_name", None)
    hook = AwsBaseHook(aws_conn_id=conn_id, region_name=region if isinstance(region, str) and region else None,
                       client_type="sagemaker")
    config = hook.conn_config
    return config.get_service_endpoint_url("sagemaker"), config.region_name


def _is_local(endpoint_url: str) -> bool:
    from include.pipelines.config import profile_for_endpoint_url

    return profile_for_endpoint_url(endpoint_url) == "local"


def _partition(region: str) -> str:
    if region.startswith("cn-"):
        return "aws-cn"
    if region.startswith("us-gov-"):
        return "aws-us-gov"
    return "aws"


def _region_in(result: Any) -> str | None:
    """The region in the first SageMaker ARN of a result (arn:aws:sagemaker:<region>:...)."""
    for text in _strings(result):
        parts = text.split(":")
        if len(parts) > 4 and parts[0] == "arn" and parts[2] == "sagemaker" and parts[3]:
            return parts[3]
    return None


def _strings(value: Any):
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def _dig(value: Any, keys: tuple[str, ...]) -> str | None:
    for key in keys:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value if isinstance(value, str) and value else None


def _json(value: Any) -> Any:
    """A stored value, decoded when it arrives as JSON text."""
    if isinstance(value, (str, bytes)) and value[:1] in ("{", "[", '"', b"{", b"[", b'"'):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value
