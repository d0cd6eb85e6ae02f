"""Champion/challenger promotion: who serves now, whether the new model beats it, and the registry's record.

The champion is the model the standing endpoint serves (or, with no endpoint, the latest Approved
version). evaluate.py scores it and the challenger in one processing job on the same held-out data,
so the comparison never uses a figure recorded on other data months ago. Plain functions on boto3
clients; the task layer (include/pipelines/tasks.py) wraps them.
"""
from __future__ import annotations

import json
import logging
import math
from dataclasses import asdict, dataclass

from .config import PromotionConfig

log = logging.getLogger(__name__)

CHALLENGER_REPORT = "evaluation.json"
CHAMPION_REPORT = "champion_evaluation.json"
# a version's CustomerMetadataProperties key for the metric evaluate.py measured
EVALUATED_PREFIX = "evaluation:"


@dataclass(frozen=True)
class Decision:
    promote: bool
    outcome: str  # "promote" | "rejected"
    reason: str
    metric: str
    direction: str
    challenger: float
    champion: float | None
    threshold: float
    margin: float

    def as_dict(self) -> dict:
        return asdict(self)


def decide(policy: PromotionConfig | dict, challenger: float, champion: float | None) -> Decision:
    """Promote when the challenger clears the absolute threshold and beats the champion by more than the
    margin (direction-aware); with no champion the threshold alone decides. NaN never wins."""
    p = policy if isinstance(policy, dict) else asdict(policy)
    metric, direction, threshold, margin = p["metric"], p["direction"], float(p["threshold"]), float(p["margin"])
    sign = 1.0 if direction == "maximize" else -1.0
    bar = ">=" if sign > 0 else "<="
    common = dict(metric=metric, direction=direction, challenger=challenger, champion=champion,
                  threshold=threshold, margin=margin)
    if math.isnan(challenger):
        return Decision(False, "rejected", f"the challenger's {metric} is not a number", **common)
    if sign * (challenger - threshold) < 0:
        return Decision(False, "rejected", f"challenger {metric} {challenger:.4f} does not clear the threshold "
                        f"({bar} {threshold:.4f})", **common)
    if champion is None:
        return Decision(True, "promote", f"no champion yet; challenger {metric} {challenger:.4f} clears the "
                        f"threshold ({bar} {threshold:.4f})", **common)
    improvement = sign * (challenger - champion)
    better = "higher" if sign > 0 else "lower"
    if improvement > margin:
        return Decision(True, "promote", f"challenger {metric} {challenger:.4f} beats champion {champion:.4f} "
                        f"by {improvement:.4f} ({better} is better, margin {margin:.4f})", **common)
    return Decision(False, "rejected", f"challenger {metric} {challenger:.4f} does not beat champion {champion:.4f} "
                    f"by more than the margin {margin:.4f} ({better} is better)", **common)


# --- the champion ------------------------------------------------------------------------------

def _describe_or_none(describe, **names) -> dict | None:
    """describe(**names), or None when SageMaker has nothing of that name."""
    from botocore.exceptions import ClientError

    try:
        return describe(**names)
    except ClientError as error:
        if error.response["Error"]["Code"] in ("ValidationException", "ResourceNotFound"):
            return None
        raise


def _version_of(package: dict) -> dict:
    container = package["InferenceSpecification"]["Containers"][0]
    return {"model_package_arn": package["ModelPackageArn"], "version": package.get("ModelPackageVersion"),
            "model_data": container["ModelDataUrl"], "approval_status": package.get("ModelApprovalStatus")}


def serving_version(sm, endpoint_name: str | None) -> dict | None:
    """The registered version the standing endpoint serves (InService), or None (no endpoint, or not ours)."""
    if not endpoint_name:
        return None
    endpoint = _describe_or_none(sm.describe_endpoint, EndpointName=endpoint_name)
    if endpoint is None or endpoint["EndpointStatus"] not in ("InService", "Updating", "RollingBack"):
        return None
    config = sm.describe_endpoint_config(EndpointConfigName=endpoint["EndpointConfigName"])
    model = sm.describe_model(ModelName=config["ProductionVariants"][0]["ModelName"])
    package_arn = (model.get("PrimaryContainer") or {}).get("ModelPackageName")
    if not package_arn:
        return None
    found = _version_of(sm.describe_model_package(ModelPackageName=package_arn))
    return {**found, "source": f"endpoint {endpoint_name}", "endpoint_config": endpoint["EndpointConfigName"]}


def latest_approved_version(sm, group: str, *, exclude_arn: str | None = None) -> dict | None:
    """The newest Approved version of the group (optionally other than `exclude_arn`), or None."""
    if _describe_or_none(sm.describe_model_package_group, ModelPackageGroupName=group) is None:
        return None
    pages = sm.get_paginator("list_model_packages").paginate(
        ModelPackageGroupName=group, ModelApprovalStatus="Approved", SortBy="CreationTime", SortOrder="Descending")
    for page in pages:
        for summary in page["ModelPackageSummaryList"]:
            if summary["ModelPackageArn"] != exclude_arn:
                package = sm.describe_model_package(ModelPackageName=summary["ModelPackageArn"])
                return {**_version_of(package), "source": f"latest Approved version of {group}"}
    return None


def find_champion(sm, *, group: str, endpoint_name: str | None) -> dict | None:
    """What the challenger must beat: the standing endpoint's version, else the latest Approved one."""
    champion = serving_version(sm, endpoint_name) or latest_approved_version(sm, group)
    if champion:
        log.info("Champion: version %s (%s), model %s", champion["version"], champion["source"], champion["model_data"])
    else:
        log.info("No champion: nothing serves %s and %s has no Approved version", endpoint_name or "(no endpoint)", group)
    return champion


# --- the evaluation's reports ------------------------------------------------------------------

def report_value(report: dict, metric: str) -> float:
    """`metric`'s value in an evaluation.json ({"<category>": {"<metric>": {"value": v}}})."""
    for metrics in report.values():
        if isinstance(metrics, dict) and isinstance(metrics.get(metric), dict):
            return float(metrics[metric]["value"])
    raise LookupError(f"evaluation report has no metric {metric!r}; it has {json.dumps(report)[:400]}")


def read_reports(s3, output_uri: str, *, with_champion: bool) -> tuple[dict, dict | None]:
    """(challenger report, champion report or None) the evaluation job wrote under `output_uri`."""
    bucket, prefix = output_uri.removeprefix("s3://").split("/", 1)

    def read(name: str) -> dict:
        key = f"{prefix.rstrip('/')}/{name}"
        try:
            return json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
        except s3.exceptions.NoSuchKey:
            raise FileNotFoundError(f"the evaluation job wrote no s3://{bucket}/{key}") from None

    return read(CHALLENGER_REPORT), (read(CHAMPION_REPORT) if with_champion else None)


# --- the registry's record ---------------------------------------------------------------------

def set_approval(sm, model_package_arn: str, approved: bool, description: str) -> dict:
    """Write a decision back to the version: ModelApprovalStatus and ApprovalDescription (1024 chars at most)."""
    status = "Approved" if approved else "Rejected"
    sm.update_model_package(ModelPackageArn=model_package_arn, ModelApprovalStatus=status,
                            ApprovalDescription=description[:1024])
    log.info("Version %s: %s (%s)", model_package_arn, status, description)
    return {"model_package_arn": model_package_arn, "approval_status": status, "approval_description": description}


# --- rollback on demand ------------------------------------------------------------------------

def rollback_target(sm, *, group: str, endpoint_name: str, version: int | None = None) -> dict:
    """The Approved version to put back on the standing endpoint: `version`, or the newest Approved one
    older than the version serving now. Anything else is refused with the reason."""
    serving = serving_version(sm, endpoint_name)
    approved = []
    for page in sm.get_paginator("list_model_packages").paginate(
            ModelPackageGroupName=group, ModelApprovalStatus="Approved", SortBy="CreationTime", SortOrder="Descending"):
        approved += page["ModelPackageSummaryList"]
    versions = {s["ModelPackageVersion"]: s["ModelPackageArn"] for s in approved}
    if version is not None:
        if version not in versions:
            raise ValueError(f"version {version} of {group} is not Approved (Approved: "
                             f"{', '.join(map(str, sorted(versions))) or 'none'}); only an Approved version goes back")
        chosen = version
    else:
        older = [v for v in versions if serving is None or v < serving["version"]]
        if not older:
            raise ValueError(f"{group} has no Approved version older than the one serving "
                             f"({serving['version'] if serving else 'none'}): nothing to roll back to")
        chosen = max(older)
    target = _version_of(sm.describe_model_package(ModelPackageName=versions[chosen]))
    log.info("Rolling %s back from version %s to version %s", endpoint_name, serving and serving["version"], chosen)
    return {**target, "serving_version": serving and serving["version"]}
