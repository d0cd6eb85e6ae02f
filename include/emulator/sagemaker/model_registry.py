"""The model registry: model package groups and the versioned model packages inside them.

CreateModelPackageGroup, DescribeModelPackageGroup, ListModelPackageGroups, DeleteModelPackageGroup,
CreateModelPackage, DescribeModelPackage, ListModelPackages, UpdateModelPackage, DeleteModelPackage.
A package in a group is version 1, 2, ... of it (``model-package/<group>/<version>``); one without a
group is an unversioned package (``model-package/<name>``). Records only: nothing runs until a model
names the package (``resolve_package_container``, used by hosting and transform jobs).
"""
from __future__ import annotations

import copy
import datetime as dt
import threading
from dataclasses import dataclass, field

from include.aws_shapes import service_model

from ..errors import AwsError, ValidationException
from .listing import list_page
from .operations import operation
from .tags import TagStore
from .times import utcnow

_VERSIONED, _UNVERSIONED = "Versioned", "Unversioned"

# request members DescribeModelPackage echoes back (all it shares with CreateModelPackage's input)
_ECHOED = [
    name
    for name in service_model("sagemaker").operation_model("DescribeModelPackage").output_shape.members
    if name in service_model("sagemaker").operation_model("CreateModelPackage").input_shape.members
    and name not in ("ModelPackageName", "ModelPackageGroupName", "ModelApprovalStatus", "CustomerMetadataProperties")
]


class ConflictException(AwsError):
    code = "ConflictException"
    status = 400


@dataclass
class PackageGroup:
    name: str
    arn: str
    region: str
    description: str | None
    creation_time: dt.datetime
    last_version: int = 0  # versions keep counting after a delete, as on SageMaker

    def describe(self) -> dict:
        return {
            "ModelPackageGroupName": self.name,
            "ModelPackageGroupArn": self.arn,
            "ModelPackageGroupDescription": self.description,
            "CreationTime": self.creation_time,
            "ModelPackageGroupStatus": "Completed",
        }

    summary = describe  # ListModelPackageGroups' summaries carry the same members


@dataclass
class ModelPackage:
    name: str  # the group's name for a versioned package
    arn: str
    region: str
    request: dict  # CreateModelPackage's parameters, less names, Tags and ClientToken
    creation_time: dt.datetime
    group_name: str | None = None
    version: int | None = None
    approval_status: str | None = None
    approval_description: str | None = None
    customer_metadata: dict[str, str] = field(default_factory=dict)
    last_modified_time: dt.datetime | None = None

    @property
    def kind(self) -> str:
        return _VERSIONED if self.group_name else _UNVERSIONED

    def describe(self) -> dict:
        body = {name: copy.deepcopy(self.request[name]) for name in _ECHOED if name in self.request}
        body.update(
            ModelPackageName=self.name,
            ModelPackageGroupName=self.group_name,
            ModelPackageVersion=self.version,
            ModelPackageArn=self.arn,
            CreationTime=self.creation_time,
            # no validation or image scan runs here: a package is complete at once
            ModelPackageStatus="Completed",
            ModelPackageStatusDetails={"ValidationStatuses": [], "ImageScanStatuses": []},
            CertifyForMarketplace=self.request.get("CertifyForMarketplace", False),
            ModelApprovalStatus=self.approval_status,
            ApprovalDescription=self.approval_description,
            CustomerMetadataProperties=dict(self.customer_metadata) or None,
            LastModifiedTime=self.last_modified_time,
        )
        return body

    def summary(self) -> dict:
        return {
            "ModelPackageName": self.name,
            "ModelPackageGroupName": self.group_name,
            "ModelPackageVersion": self.version,
            "ModelPackageArn": self.arn,
            "ModelPackageDescription": self.request.get("ModelPackageDescription"),
            "CreationTime": self.creation_time,
            "ModelPackageStatus": "Completed",
            "ModelApprovalStatus": self.approval_status,
            "ModelLifeCycle": copy.deepcopy(self.request.get("ModelLifeCycle")),
        }


def _name_from(value: str, resource: str) -> str:
    """The resource name in a name or an ARN (``arn:...:<resource>/<name>``)."""
    if value.startswith("arn:"):
        marker = f":{resource}/"
        if marker not in value:
            raise ValidationException(f"'{value}' is not the ARN of a {resource}.")
        return value.split(marker, 1)[1]
    return value


class ModelRegistryStore:
    """Package groups by (region, lower-cased name); packages by ARN. Names differing in case collide, as their ARNs do."""

    def __init__(self, emulator):
        self.emulator = emulator
        self._lock = threading.RLock()
        self._groups: dict[tuple[str, str], PackageGroup] = {}
        self._packages: dict[str, ModelPackage] = {}
        self._client_tokens: dict[tuple[str, str], str] = {}

    # --- groups ------------------------------------------------------------------------------------

    def create_group(self, ctx, params: dict) -> PackageGroup:
        name = params["ModelPackageGroupName"]
        arn = ctx.arn("model-package-group", name)
        with self._lock:
            if (ctx.region, name.lower()) in self._groups:
                # the Airflow provider matches the start of this message to treat the group as existing
                raise ValidationException(f"Model Package Group already exists: {arn}")
            group = PackageGroup(name, arn, ctx.region, params.get("ModelPackageGroupDescription"), utcnow())
            self._groups[(ctx.region, name.lower())] = group
        ctx.emulator.store(TagStore).add(arn, params.get("Tags"))
        return group

    def group(self, ctx, name_or_arn: str) -> PackageGroup:
        name = _name_from(name_or_arn, "model-package-group")
        with self._lock:
            group = self._groups.get((ctx.region, name.lower()))
        if group is None:
            raise ValidationException(f"ModelPackageGroup {ctx.arn('model-package-group', name)} does not exist.")
        return group

    def delete_group(self, ctx, name_or_arn: str) -> None:
        group = self.group(ctx, name_or_arn)
        with self._lock:
            versions = [p for p in self._packages.values() if p.region == ctx.region and p.group_name == group.name]
            if versions:
                raise ConflictException(
                    f"Model Package Group {group.arn} cannot be deleted: it still holds {len(versions)} model "
                    "package version(s); delete them (DeleteModelPackage) first.")
            del self._groups[(ctx.region, group.name.lower())]
        ctx.emulator.store(TagStore).delete(group.arn)

    def groups_in(self, region: str) -> list[PackageGroup]:
        with self._lock:
            return [group for (group_region, _), group in self._groups.items() if group_region == region]

    # --- packages ----------------------------------------------------------------------------------

    def create_package(self, ctx, params: dict) -> ModelPackage:
        name, group_name = params.get("ModelPackageName"), params.get("ModelPackageGroupName")
        if name and group_name:
            raise ValidationException("Both ModelPackageName and ModelPackageGroupName are provided in the input. "
                                      "Cannot determine which one to use.")
        if not name and not group_name:
            raise ValidationException("Missing ARN: give ModelPackageGroupName (a versioned package) "
                                      "or ModelPackageName (an unversioned one).")
        if not params.get("InferenceSpecification") and not params.get("SourceAlgorithmSpecification"):
            raise ValidationException("A model package needs an InferenceSpecification (its inference containers) "
                                      "or a SourceAlgorithmSpecification.")
        if name and params.get("ModelApprovalStatus"):
            raise ValidationException("ModelApprovalStatus applies to versioned model packages only "
                                      "(created with ModelPackageGroupName), not to unversioned ones.")
        token = params.get("ClientToken")
        request = {key: copy.deepcopy(value) for key, value in params.items()
                   if key not in ("ModelPackageName", "ModelPackageGroupName", "Tags", "ClientToken")}
        now = utcnow()
        with self._lock:
            if token and (ctx.region, token) in self._client_tokens:  # a retried call: the same package
                return self._packages[self._client_tokens[(ctx.region, token)]]
            if group_name:
                group = self.group(ctx, group_name)
                group.last_version += 1
                package = ModelPackage(
                    name=group.name, arn=f"{ctx.arn('model-package', group.name)}/{group.last_version}", region=ctx.region,
                    request=request, creation_time=now, group_name=group.name, version=group.last_version,
                    approval_status=params.get("ModelApprovalStatus") or "PendingManualApproval")
            else:
                arn = ctx.arn("model-package", name)
                if arn in self._packages:
                    raise ValidationException(f"Model Package already exists: {arn}")
                package = ModelPackage(name=name, arn=arn, region=ctx.region, request=request, creation_time=now)
            package.customer_metadata = dict(params.get("CustomerMetadataProperties") or {})
            package.last_modified_time = now
            self._packages[package.arn] = package
            if token:
                self._client_tokens[(ctx.region, token)] = package.arn
        ctx.emulator.store(TagStore).add(package.arn, params.get("Tags"))
        return package

    def package(self, ctx, name_or_arn: str) -> ModelPackage:
        """By ARN, by unversioned name, or by ``<group>/<version>``."""
        reference = _name_from(name_or_arn, "model-package")
        arn = ctx.arn("model-package", reference)
        with self._lock:
            package = self._packages.get(arn)
        if package is None:
            raise ValidationException(f"ModelPackage {arn} does not exist.")
        return package

    def update_package(self, ctx, params: dict) -> ModelPackage:
        package = self.package(ctx, params["ModelPackageArn"])
        with self._lock:
            status = params.get("ModelApprovalStatus")
            if status and package.kind == _UNVERSIONED:
                raise ValidationException(f"Model package {package.arn} is unversioned; only versioned model "
                                          "packages have a ModelApprovalStatus.")
            if status:
                package.approval_status = status
            if "ApprovalDescription" in params:
                package.approval_description = params["ApprovalDescription"]
            package.customer_metadata.update(params.get("CustomerMetadataProperties") or {})
            for key in params.get("CustomerMetadataPropertiesToRemove") or []:
                package.customer_metadata.pop(key, None)
            if params.get("AdditionalInferenceSpecificationsToAdd"):
                package.request.setdefault("AdditionalInferenceSpecifications", []).extend(
                    copy.deepcopy(params["AdditionalInferenceSpecificationsToAdd"]))
            for key in ("InferenceSpecification", "SourceUri", "ModelCard", "ModelLifeCycle"):
                if key in params:
                    package.request[key] = copy.deepcopy(params[key])
            package.last_modified_time = utcnow()
        return package

    def delete_package(self, ctx, name_or_arn: str) -> None:
        package = self.package(ctx, name_or_arn)
        with self._lock:
            self._packages.pop(package.arn, None)
        ctx.emulator.store(TagStore).delete(package.arn)

    def packages_in(self, region: str) -> list[ModelPackage]:
        with self._lock:
            return [package for package in self._packages.values() if package.region == region]


def _store(ctx) -> ModelRegistryStore:
    return ctx.emulator.store(ModelRegistryStore)


def resolve_package_container(ctx, container: dict) -> tuple[dict, str | None]:
    """A model's container that names ModelPackageName, as the package's image, model data and environment.

    Returns (container, None), or (the container unchanged, why it cannot be served) when the package
    is missing, holds no single inference container, or is a version not yet Approved.
    """
    reference = container["ModelPackageName"]
    try:
        package = _store(ctx).package(ctx, reference)
    except ValidationException as exc:
        return container, f"Model package {reference} cannot be used: {exc.message}"
    if package.kind == _VERSIONED and package.approval_status != "Approved":
        return container, (f"Model package {package.arn} is {package.approval_status}; a versioned model package "
                           "must be Approved (UpdateModelPackage) before it is deployed.")
    containers = (package.request.get("InferenceSpecification") or {}).get("Containers") or []
    if len(containers) != 1:
        return container, (f"Model package {package.arn} has {len(containers)} inference containers; "
                           "the local SageMaker serves packages with exactly one.")
    source = containers[0]
    resolved = {key: copy.deepcopy(value) for key, value in container.items() if key != "ModelPackageName"}
    resolved["Image"] = source["Image"]
    for key in ("ModelDataUrl", "ModelDataSource"):
        if source.get(key) is not None:
            resolved[key] = copy.deepcopy(source[key])
    # the model's own Environment refines the package's, as CreateModel's container environment does
    resolved["Environment"] = {**(source.get("Environment") or {}), **(container.get("Environment") or {})}
    return resolved, None


# --- operations ---------------------------------------------------------------------------------------

@operation("CreateModelPackageGroup")
def create_model_package_group(ctx, params):
    return {"ModelPackageGroupArn": _store(ctx).create_group(ctx, params).arn}


@operation("DescribeModelPackageGroup")
def describe_model_package_group(ctx, params):
    return _store(ctx).group(ctx, params["ModelPackageGroupName"]).describe()


@operation("DeleteModelPackageGroup")
def delete_model_package_group(ctx, params):
    _store(ctx).delete_group(ctx, params["ModelPackageGroupName"])
    return {}


@operation("ListModelPackageGroups")
def list_model_package_groups(ctx, params):
    page, next_token = list_page(
        _store(ctx).groups_in(ctx.region),
        params,
        name=lambda group: group.name,
        created=lambda group: group.creation_time,
        sort_keys={"Name": lambda group: group.name, "CreationTime": lambda group: group.creation_time},
    )
    return {"ModelPackageGroupSummaryList": [group.summary() for group in page], "NextToken": next_token}


@operation("CreateModelPackage")
def create_model_package(ctx, params):
    return {"ModelPackageArn": _store(ctx).create_package(ctx, params).arn}


@operation("DescribeModelPackage")
def describe_model_package(ctx, params):
    return _store(ctx).package(ctx, params["ModelPackageName"]).describe()


@operation("UpdateModelPackage")
def update_model_package(ctx, params):
    return {"ModelPackageArn": _store(ctx).update_package(ctx, params).arn}


@operation("DeleteModelPackage")
def delete_model_package(ctx, params):
    _store(ctx).delete_package(ctx, params["ModelPackageName"])
    return {}


@operation("ListModelPackages")
def list_model_packages(ctx, params):
    group_name = params.get("ModelPackageGroupName")
    if group_name:
        group_name = _store(ctx).group(ctx, group_name).name
    # UNVERSIONED is the documented default; naming a group asks for its versions
    kind = params.get("ModelPackageType") or (_VERSIONED if group_name else _UNVERSIONED)

    def keep(package: ModelPackage) -> bool:
        if kind != "Both" and package.kind != kind:
            return False
        if group_name and package.group_name != group_name:
            return False
        status = params.get("ModelApprovalStatus")
        return not status or package.approval_status == status

    page, next_token = list_page(
        _store(ctx).packages_in(ctx.region),
        params,
        name=lambda package: package.name,
        created=lambda package: package.creation_time,
        keep=keep,
        sort_keys={
            "Name": lambda package: (package.name, package.version or 0),
            "CreationTime": lambda package: (package.creation_time, package.version or 0),
        },
    )
    return {"ModelPackageSummaryList": [package.summary() for package in page], "NextToken": next_token}
