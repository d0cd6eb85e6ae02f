"""SageMaker hosting: endpoints (Create, Describe, Update, Delete, List) over local model servers.

Models and endpoint configs live in ``hosting_models`` and ``hosting_configs`` (imported here so
their operations register). An endpoint is Creating until every instance of every variant passes
``/ping``, then InService; Failed with the model's own error otherwise. UpdateEndpoint is
blue/green: the new deployment must pass ``/ping`` before traffic moves, and a failed one leaves the
old deployment serving, InService with a FailureReason, as SageMaker rolls back. UpdateEndpoint's
DeploymentConfig (canary, linear, rolling, alarms that roll back) is checked in ``deployment_policy``
and carried out by ``deployments``; while both fleets serve, ``EndpointRecord.serving_deployment``
splits requests between them. Model servers are started and stopped on background threads, so every
call answers at once. While an endpoint is
InService its instances are health-checked and a failing one is replaced (``serving.health``);
DescribeEndpoint's CurrentInstanceCount counts the healthy ones.
"""
from __future__ import annotations

import copy
import dataclasses
import datetime as dt
import logging
import random
import threading
from dataclasses import dataclass, field

from ..errors import ValidationException, already_exists
from ..serving.fleet import Deployment, DeploymentCancelled, DeploymentFailed, ModelServerFleet
from ..serving.health import HealthMonitor
from ..serving.specs import DEFAULT_STARTUP_TIMEOUT_S, ContainerSpec, VariantSpec
from .deployment_policy import DeploymentPlan, plan_deployment
from .deployments import run_update
from .hosting_configs import EndpointConfigRecord, EndpointConfigStore
from .hosting_models import ModelStore
from .hosting_store import HostingStore
from .model_registry import resolve_package_container
from .operations import operation
from .tags import TagStore
from .times import utcnow

log = logging.getLogger(__name__)

IN_PROGRESS = {"Creating", "Updating", "SystemUpdating", "RollingBack", "Deleting"}


@dataclass
class PendingUpdate:
    config_name: str
    variants: list[VariantSpec]
    start_time: dt.datetime
    status: str = "Creating"  # the new variants' stage: Creating, Updating, ActivatingTraffic, Baking
    status_time: dt.datetime | None = None
    status_message: str | None = None

    def enter(self, status: str, message: str | None = None) -> None:
        self.status, self.status_time, self.status_message = status, utcnow(), message


@dataclass
class EndpointRecord:
    name: str
    arn: str
    region: str
    config_name: str
    creation_time: dt.datetime
    status: str = "Creating"
    last_modified_time: dt.datetime = field(default_factory=utcnow)
    failure_reason: str | None = None
    deployment: Deployment | None = None  # what serves traffic now (the old fleet, while an update shifts it)
    green: Deployment | None = None  # the new fleet, while an update shifts traffic to it
    green_share: float | None = 0.0  # its share of requests; None: by healthy instances (a rolling update)
    variants: list[VariantSpec] = field(default_factory=list)  # of that deployment
    deployed_at: dt.datetime | None = None
    pending: PendingUpdate | None = None
    deployment_config: dict | None = None
    cancel: threading.Event = field(default_factory=threading.Event)  # set by DeleteEndpoint
    worker: threading.Thread | None = None
    lock: threading.RLock = field(default_factory=threading.RLock)

    def touch(self, status: str) -> None:
        self.status = status
        self.last_modified_time = utcnow()

    def traffic_share(self) -> float:
        """The share of requests the new fleet takes now (0 with no update shifting traffic)."""
        with self.lock:
            blue, green, share = self.deployment, self.green, self.green_share
        if green is None:
            return 0.0
        if blue is None:
            return 1.0
        if share is None:  # a rolling update: every healthy instance, old or new, takes its turn
            new = sum(green.healthy_count(name) for name in green.variants)
            old = sum(blue.healthy_count(name) for name in blue.variants)
            return new / (new + old) if new + old else 0.0
        return share

    def serving_deployment(self) -> Deployment | None:
        """The fleet that takes the next request: the new one for its share of traffic, else the old one."""
        with self.lock:
            blue, green = self.deployment, self.green
        if green is not None and (blue is None or random.random() < self.traffic_share()):
            return green
        return blue


def _deployed_images(spec: VariantSpec, when: dt.datetime) -> list[dict]:
    # no registry resolves a digest here: the image ran as named
    image = spec.container.image
    return [{"SpecifiedImage": image, "ResolvedImage": image, "ResolutionTime": when}]


def variant_summary(spec: VariantSpec, deployed_at: dt.datetime, healthy_instances: int | None = None,
                    traffic: float = 1.0) -> dict:
    summary = {
        "VariantName": spec.name,
        "DeployedImages": _deployed_images(spec, deployed_at),
        "CurrentWeight": spec.weight * traffic,
        "DesiredWeight": spec.weight,
    }
    if spec.is_serverless:
        summary["CurrentServerlessConfig"] = dict(spec.serverless_config)
        summary["DesiredServerlessConfig"] = dict(spec.serverless_config)
    else:
        summary["CurrentInstanceCount"] = spec.instance_count if healthy_instances is None else healthy_instances
        summary["DesiredInstanceCount"] = spec.instance_count
    return summary


def pending_variant_summary(spec: VariantSpec, pending: PendingUpdate, green: Deployment | None = None,
                            traffic: float = 0.0) -> dict:
    status = {"Status": pending.status, "StartTime": pending.status_time or pending.start_time}
    if pending.status_message:
        status["StatusMessage"] = pending.status_message
    summary = {"VariantName": spec.name, "DesiredWeight": spec.weight, "VariantStatus": [status]}
    if green is not None and spec.name in green.variants:  # the new fleet is up: what it serves so far
        summary.update(DeployedImages=_deployed_images(spec, pending.start_time), CurrentWeight=spec.weight * traffic)
        if spec.is_serverless:
            summary["CurrentServerlessConfig"] = dict(spec.serverless_config)
        else:
            summary["CurrentInstanceCount"] = green.healthy_count(spec.name)
    if spec.is_serverless:
        summary["DesiredServerlessConfig"] = dict(spec.serverless_config)
    else:
        summary.update(DesiredInstanceCount=spec.instance_count, InstanceType=spec.instance_type)
    return summary


def _local_problem(model_name: str, containers: list[dict]) -> str | None:
    """Why a model cannot be served here, or None."""
    if len(containers) != 1:
        return (f"Model {model_name} has {len(containers)} containers (an inference pipeline); "
                "the local SageMaker serves single-container models only.")
    container = containers[0]
    if container.get("Mode") == "MultiModel":
        return f"Model {model_name} is a multi-model container; the local SageMaker serves single models only."
    if not container.get("Image"):
        return (f"Model {model_name} names a model package instead of an image; "
                "the local SageMaker needs Image and ModelDataUrl in the container definition.")
    return None


def model_container(ctx, model_name: str) -> tuple[ContainerSpec, str | None]:
    """A model's container as it is now, and why it cannot be served here (or None).

    Raises ValidationException 'Could not find model ...' for an unknown model.
    """
    model = ctx.emulator.store(ModelStore).get(ctx, model_name)
    containers = model.containers
    package_problem = None
    if len(containers) == 1 and containers[0].get("ModelPackageName"):  # the registered package's image and data
        resolved, package_problem = resolve_package_container(ctx, containers[0])
        containers = [resolved]
    container = containers[0] if containers else {}
    spec = ContainerSpec(
        image=container.get("Image", ""),
        model_data_url=container.get("ModelDataUrl"),
        model_data_source=copy.deepcopy(container.get("ModelDataSource")),
        environment=dict(container.get("Environment") or {}),
    )
    return spec, package_problem or _local_problem(model.name, containers)


def variant_specs(ctx, config: EndpointConfigRecord, retain_from: list[VariantSpec] | None = None,
                  excluded: set[str] = frozenset()) -> list[VariantSpec]:
    """The deployment an endpoint config asks for, with each model's container as it is now."""
    current = {spec.name: spec for spec in retain_from or []}
    specs = []
    for variant in config.production_variants:
        container, problem = model_container(ctx, variant["ModelName"])
        spec = VariantSpec(
            name=variant["VariantName"],
            model_name=variant["ModelName"],
            container=container,
            instance_count=variant.get("InitialInstanceCount") or 1,
            instance_type=variant.get("InstanceType"),
            serverless_config=copy.deepcopy(variant.get("ServerlessConfig")),
            weight=float(variant.get("InitialVariantWeight", 1.0)),
            startup_timeout_s=variant.get("ContainerStartupHealthCheckTimeoutInSeconds") or DEFAULT_STARTUP_TIMEOUT_S,
            problem=problem,
        )
        retained = current.get(spec.name)
        if retained is not None:  # RetainAllVariantProperties keeps what scaling changed since
            changes = {}
            if "DesiredWeight" not in excluded:
                changes["weight"] = retained.weight
            if "DesiredInstanceCount" not in excluded and not spec.is_serverless and not retained.is_serverless:
                changes["instance_count"] = retained.instance_count
            spec = dataclasses.replace(spec, **changes)
        specs.append(spec)
    return specs


class EndpointStore(HostingStore):
    """Endpoint records and the background work that brings their deployments up and down."""

    kind = "endpoint"
    resource_type = "endpoint"

    @property
    def fleet(self) -> ModelServerFleet:
        return self.emulator.store(ModelServerFleet)

    def _forget(self, record: EndpointRecord) -> None:
        with self._lock:
            if self._records.get((record.region, record.name)) is record:
                del self._records[(record.region, record.name)]

    def _run(self, record: EndpointRecord, target, *args) -> None:
        def work() -> None:
            try:
                target(record, *args)
            except Exception as exc:  # a bug of ours must not leave the endpoint Creating forever
                log.exception("background work on endpoint %s failed", record.name)
                with record.lock:
                    green, record.green = record.green, None
                    if record.status in ("Creating", "Updating", "RollingBack"):
                        record.failure_reason = f"Internal error of the local SageMaker: {exc}"
                        record.pending = None
                        record.touch("Failed" if record.deployment is None else "InService")
                if green is not None:
                    self.fleet.retire(green)

        record.worker = threading.Thread(target=work, name=f"endpoint:{record.name}", daemon=True)
        record.worker.start()

    def watch(self, record: EndpointRecord, deployment: Deployment) -> None:
        """Health-check the deployment's instances while it serves; replace failing ones only while
        the endpoint is InService on it (not while it updates or is deleted)."""
        def may_replace() -> bool:
            with record.lock:
                return record.status == "InService" and record.deployment is deployment and not record.cancel.is_set()

        settings = self.emulator.settings
        deployment.monitor = HealthMonitor(self.fleet, deployment, may_replace,
                                           interval_s=settings.health_check_interval_s,
                                           failure_threshold=settings.health_check_failures).start()

    # --- background work -------------------------------------------------------------------------

    def start_creating(self, record: EndpointRecord, specs: list[VariantSpec]) -> None:
        self._run(record, self._create, specs)

    def _create(self, record: EndpointRecord, specs: list[VariantSpec]) -> None:
        try:
            deployment = self.fleet.deploy(record.region, record.name, specs, record.cancel)
        except DeploymentCancelled:
            return
        except DeploymentFailed as failure:
            with record.lock:
                if record.status == "Creating":
                    record.failure_reason = failure.reason
                    record.touch("Failed")
            log.info("endpoint %s failed: %s", record.name, failure.reason)
            return
        with record.lock:
            created = record.status == "Creating"
            if created:
                record.deployment, record.variants, record.deployed_at = deployment, specs, utcnow()
                record.touch("InService")
        if not created:  # deleted while it came up
            self.fleet.retire(deployment)
        else:
            self.watch(record, deployment)
            log.info("endpoint %s is InService", record.name)

    def start_updating(self, record: EndpointRecord, config_name: str, specs: list[VariantSpec],
                       plan: DeploymentPlan | None = None) -> None:
        self._run(record, lambda record: run_update(self, record, config_name, specs, plan or DeploymentPlan()))

    def start_deleting(self, record: EndpointRecord) -> None:
        threading.Thread(target=self._delete, args=(record,), name=f"delete:{record.name}", daemon=True).start()

    def _delete(self, record: EndpointRecord) -> None:
        worker = record.worker
        if worker is not None and worker is not threading.current_thread():
            worker.join()  # a create or update in flight sees the cancel and stops its servers
        with record.lock:
            deployment, record.deployment = record.deployment, None
        try:
            if deployment is not None:
                self.fleet.retire(deployment)
        finally:
            self._forget(record)
            self.emulator.store(TagStore).delete(record.arn)
            log.info("endpoint %s deleted", record.name)


def describe(record: EndpointRecord) -> dict:
    with record.lock:
        description = {
            "EndpointName": record.name,
            "EndpointArn": record.arn,
            "EndpointConfigName": record.config_name,
            "EndpointStatus": record.status,
            "CreationTime": record.creation_time,
            "LastModifiedTime": record.last_modified_time,
        }
        traffic = record.traffic_share()  # the new fleet's share, while an update shifts traffic
        if record.deployment is not None and record.deployed_at is not None:
            description["ProductionVariants"] = [
                variant_summary(spec, record.deployed_at, record.deployment.healthy_count(spec.name), 1.0 - traffic)
                for spec in record.variants]
        if record.failure_reason:
            description["FailureReason"] = record.failure_reason
        if record.pending is not None:
            description["PendingDeploymentSummary"] = {
                "EndpointConfigName": record.pending.config_name,
                "ProductionVariants": [pending_variant_summary(spec, record.pending, record.green, traffic)
                                       for spec in record.pending.variants],
                "StartTime": record.pending.start_time,
            }
        if record.deployment_config:
            description["LastDeploymentConfig"] = copy.deepcopy(record.deployment_config)
        return description


@operation("CreateEndpoint")
def create_endpoint(ctx, params):
    store = ctx.emulator.store(EndpointStore)
    name = params["EndpointName"]
    arn = ctx.arn("endpoint", name)
    if store.find(ctx.region, name) is not None:
        raise already_exists("endpoint", arn)
    config = ctx.emulator.store(EndpointConfigStore).get(ctx, params["EndpointConfigName"])
    specs = variant_specs(ctx, config)
    record = EndpointRecord(name, arn, ctx.region, config.name, creation_time=utcnow(),
                            deployment_config=copy.deepcopy(params.get("DeploymentConfig")))
    store.add(record, params.get("Tags"))
    store.start_creating(record, specs)
    return {"EndpointArn": arn}


@operation("DescribeEndpoint")
def describe_endpoint(ctx, params):
    return describe(ctx.emulator.store(EndpointStore).get(ctx, params["EndpointName"]))


@operation("UpdateEndpoint")
def update_endpoint(ctx, params):
    store = ctx.emulator.store(EndpointStore)
    record = store.get(ctx, params["EndpointName"])
    config = ctx.emulator.store(EndpointConfigStore).get(ctx, params["EndpointConfigName"])
    with record.lock:
        if record.status in IN_PROGRESS:
            raise ValidationException(f'Cannot update in-progress endpoint "{record.arn}".')
        if record.status != "InService":
            raise ValidationException(
                f'Cannot update endpoint "{record.arn}" in status {record.status}; delete it and create it again.')
        excluded = {item["VariantPropertyType"] for item in params.get("ExcludeRetainedVariantProperties") or []}
        retain = record.variants if params.get("RetainAllVariantProperties") else None
        specs = variant_specs(ctx, config, retain, excluded)
        deployment_config = (record.deployment_config if params.get("RetainDeploymentConfig")
                             else copy.deepcopy(params.get("DeploymentConfig")))
        plan = plan_deployment(deployment_config, specs, record.variants)  # refuses what SageMaker refuses
        record.deployment_config = deployment_config
        record.pending = PendingUpdate(config.name, specs, utcnow())
        record.failure_reason = None
        record.touch("Updating")
        store.start_updating(record, config.name, specs, plan)
    return {"EndpointArn": record.arn}


@operation("UpdateEndpointWeightsAndCapacities")
def update_endpoint_weights_and_capacities(ctx, params):
    """New weights or instance counts, rolled out like any update (status Updating, then InService)."""
    store = ctx.emulator.store(EndpointStore)
    record = store.get(ctx, params["EndpointName"])
    with record.lock:
        if record.status != "InService":
            raise ValidationException(f'Cannot update in-progress endpoint "{record.arn}".'
                                      if record.status in IN_PROGRESS else
                                      f'Cannot update endpoint "{record.arn}" in status {record.status}.')
        current = {spec.name: spec for spec in record.variants}
        changes = {}
        for desired in params["DesiredWeightsAndCapacities"]:
            name = desired["VariantName"]
            if name not in current:
                raise ValidationException(
                    f'The variant name "{name}" is not present in endpoint "{record.arn}"; '
                    f"its variants are {', '.join(current)}.")
            fields = {}
            if desired.get("DesiredWeight") is not None:
                fields["weight"] = float(desired["DesiredWeight"])
            if desired.get("DesiredInstanceCount") is not None:
                if current[name].is_serverless:
                    raise ValidationException(f"Variant {name} is serverless; it has no instance count to change.")
                fields["instance_count"] = desired["DesiredInstanceCount"]
            changes[name] = fields
        specs = [dataclasses.replace(spec, **changes.get(spec.name, {})) for spec in record.variants]
        record.pending = PendingUpdate(record.config_name, specs, utcnow())
        record.failure_reason = None
        record.touch("Updating")
        store.start_updating(record, record.config_name, specs)
    return {"EndpointArn": record.arn}


@operation("DeleteEndpoint")
def delete_endpoint(ctx, params):
    store = ctx.emulator.store(EndpointStore)
    record = store.get(ctx, params["EndpointName"])
    with record.lock:
        if record.status == "Deleting":
            return {}
        record.touch("Deleting")
        record.pending = None
        record.cancel.set()
    store.start_deleting(record)
    return {}


@operation("ListEndpoints")
def list_endpoints(ctx, params):
    page, next_token = ctx.emulator.store(EndpointStore).list(
        ctx.region, params,
        modified=lambda record: record.last_modified_time,
        status=lambda record: record.status,
        sort_keys={"Status": lambda record: record.status},
    )
    endpoints = [{
        "EndpointName": r.name,
        "EndpointArn": r.arn,
        "CreationTime": r.creation_time,
        "LastModifiedTime": r.last_modified_time,
        "EndpointStatus": r.status,
    } for r in page]
    return {"Endpoints": endpoints, "NextToken": next_token}
