"""The endpoint janitor: delete the endpoints whose `expires-at` tag has passed, and what they leave behind.

A pipeline run tears its endpoint down itself; the janitor (dags/endpoint_janitor.py, hourly) catches
the ones a run kept (`keep_endpoint`) or could not delete. An endpoint is removed only when its
`expires-at` tag (include/pipelines/requests.py, EXPIRY_TAG) lies in the past; it is never touched
when it is tagged `endpoint-role` = `standing` (STANDING_ROLE_TAG), carries no expires-at tag, has not
expired yet, or is busy (Creating, Updating, SystemUpdating, RollingBack: the next run looks again).

With an expired endpoint go its Application Auto Scaling policies and scalable targets (deregistered
first: SageMaker refuses to delete an endpoint whose variants are still registered), the endpoint,
its endpoint config and the models of that config's variants, except a config or a model that an
endpoint which stays still runs. Something deleted meanwhile (by a teardown, by hand) is no error.

Plain functions over boto3 clients, so they run the same in a task, a test or a shell.
"""
from __future__ import annotations

import logging
import time
from datetime import datetime, timezone
from typing import Any, Iterable

from botocore.exceptions import ClientError

from .requests import EXPIRY_TAG, expiry_time

log = logging.getLogger(__name__)

# the tag a pipeline puts on an endpoint meant to stay up: the janitor never deletes it, expired or not
STANDING_ROLE_TAG = ("endpoint-role", "standing")
# statuses in which SageMaker refuses a delete, or the endpoint is mid-change: skipped until a later run
BUSY_STATUSES = frozenset({"Creating", "Updating", "SystemUpdating", "RollingBack"})
VARIANT_DIMENSION = "sagemaker:variant:DesiredInstanceCount"
_MISSING_CODES = ("ResourceNotFound", "ResourceNotFoundException", "ObjectNotFoundException")
_MISSING_WORDS = ("could not find", "not found", "does not exist")


class JanitorError(RuntimeError):
    """Some expired endpoints could not be removed (the others were); the message names each and why."""


def is_missing(error) -> bool:
    """A ClientError saying the resource is not there (already deleted)."""
    details = getattr(error, "response", {}).get("Error", {})
    code, message = details.get("Code", ""), details.get("Message", "").lower()
    if code in _MISSING_CODES:
        return True
    return code == "ValidationException" and any(words in message for words in _MISSING_WORDS)


def _isoformat(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


# --- reading ---------------------------------------------------------------------------------------

def list_endpoints(sagemaker) -> list[dict]:
    """Every endpoint of the account and region (ListEndpoints, all pages), oldest first."""
    pages = sagemaker.get_paginator("list_endpoints").paginate(SortBy="CreationTime", SortOrder="Ascending")
    return [endpoint for page in pages for endpoint in page.get("Endpoints", [])]


def resource_tags(sagemaker, arn: str) -> dict[str, str]:
    """A resource's tags (ListTags, all pages) as {key: value}."""
    pages = sagemaker.get_paginator("list_tags").paginate(ResourceArn=arn)
    return {tag["Key"]: tag.get("Value", "") for page in pages for tag in page.get("Tags", [])}


def why_kept(tags: dict[str, str], status: str, now: datetime) -> tuple[str | None, datetime | None]:
    """(the reason an endpoint stays, None when it goes; its expiry time, when it has one)."""
    key, value = STANDING_ROLE_TAG
    if tags.get(key) == value:
        return f"standing endpoint ({key}={value})", None
    if not tags.get(EXPIRY_TAG):
        return f"no {EXPIRY_TAG} tag", None
    try:
        expires = expiry_time(tags)
    except ValueError:
        return f"unreadable {EXPIRY_TAG} tag {tags[EXPIRY_TAG]!r}", None
    if expires.tzinfo is None:  # a time without offset is taken as UTC, as the pipelines write it
        expires = expires.replace(tzinfo=timezone.utc)
    if expires > now:
        return f"not expired: {EXPIRY_TAG} {_isoformat(expires)}", expires
    if status in BUSY_STATUSES:
        return f"expired at {_isoformat(expires)} but busy ({status}); a later run removes it", expires
    return None, expires


def _describe(call, **kwargs) -> dict | None:
    """A Describe* call's answer, or None when the resource is gone."""
    try:
        return call(**kwargs)
    except ClientError as error:
        if is_missing(error):
            return None
        raise


def _config_models(config: dict | None) -> list[str]:
    if not config:
        return []
    variants = [*config.get("ProductionVariants", []), *config.get("ShadowProductionVariants", [])]
    return list(dict.fromkeys(v["ModelName"] for v in variants if v.get("ModelName")))


def in_use(sagemaker, endpoint_names: Iterable[str]) -> tuple[dict[str, str], dict[str, str]]:
    """({config: an endpoint running it}, {model: an endpoint running it}) over the given endpoints,
    counting the config an update is rolling out as well as the one in service."""
    configs: dict[str, str] = {}
    models: dict[str, str] = {}
    for name in endpoint_names:
        description = _describe(sagemaker.describe_endpoint, EndpointName=name)
        if description is None:
            continue
        names = [description.get("EndpointConfigName"),
                 description.get("PendingDeploymentSummary", {}).get("EndpointConfigName")]
        for config_name in filter(None, names):
            configs.setdefault(config_name, name)
            config = _describe(sagemaker.describe_endpoint_config, EndpointConfigName=config_name)
            for model in _config_models(config):
                models.setdefault(model, name)
    return configs, models


def scalable_targets_by_endpoint(autoscaling) -> dict[str, list[str]]:
    """{endpoint name: the ResourceIds of its variants' scalable targets} (DescribeScalableTargets, all pages)."""
    found: dict[str, list[str]] = {}
    pages = autoscaling.get_paginator("describe_scalable_targets").paginate(ServiceNamespace="sagemaker")
    for page in pages:
        for target in page.get("ScalableTargets", []):
            resource_id = target["ResourceId"]  # endpoint/<endpoint>/variant/<variant>
            parts = resource_id.split("/")
            if (len(parts) == 4 and parts[0] == "endpoint" and parts[2] == "variant"
                    and target.get("ScalableDimension") == VARIANT_DIMENSION):
                found.setdefault(parts[1], []).append(resource_id)
    return {name: sorted(ids) for name, ids in found.items()}


# --- deleting --------------------------------------------------------------------------------------

def _delete(call, what: str, **kwargs) -> bool:
    """Run a Delete* call; False (and a log line) when the resource was gone already."""
    try:
        call(**kwargs)
    except ClientError as error:
        if is_missing(error):
            log.info("%s is gone already", what)
            return False
        raise
    return True


def deregister_scalable_target(autoscaling, resource_id: str) -> bool:
    """Delete the target's scaling policies, then deregister it; False when it was gone already."""
    target = {"ServiceNamespace": "sagemaker", "ResourceId": resource_id, "ScalableDimension": VARIANT_DIMENSION}
    pages = autoscaling.get_paginator("describe_scaling_policies").paginate(**target)
    for policy in (p for page in pages for p in page.get("ScalingPolicies", [])):
        if _delete(autoscaling.delete_scaling_policy, f"Scaling policy {policy['PolicyName']}",
                   PolicyName=policy["PolicyName"], **target):
            log.info("Deleted scaling policy %s of %s", policy["PolicyName"], resource_id)
    return _delete(autoscaling.deregister_scalable_target, f"Scalable target {resource_id}", **target)


def wait_until_gone(sagemaker, names: Iterable[str], *, timeout: float = 900, poll_interval: float = 5) -> None:
    """Poll DescribeEndpoint until every endpoint named is gone; TimeoutError after `timeout` seconds."""
    waiting = set(names)
    deadline = time.monotonic() + timeout
    while waiting:
        waiting = {name for name in waiting if _describe(sagemaker.describe_endpoint, EndpointName=name) is not None}
        if not waiting:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"endpoints still being deleted after {timeout:.0f} s: {', '.join(sorted(waiting))}")
        log.info("Waiting for %s to go", ", ".join(sorted(waiting)))
        time.sleep(poll_interval)


def _remove(sagemaker, autoscaling, name: str, expires: datetime, *, dry_run: bool, targets: list[str],
            configs_in_use: dict[str, str], models_in_use: dict[str, str]) -> tuple[dict | None, str | None]:
    """Remove one expired endpoint and what goes with it: (its `removed` entry, or None and why not)."""
    description = _describe(sagemaker.describe_endpoint, EndpointName=name)
    if description is None:
        log.info("Endpoint %s is gone already", name)
        return None, None
    status = description["EndpointStatus"]
    if status in BUSY_STATUSES:
        return None, f"expired at {_isoformat(expires)} but busy ({status}); a later run removes it"

    config_name = description.get("EndpointConfigName")
    config = _describe(sagemaker.describe_endpoint_config, EndpointConfigName=config_name) if config_name else None
    if config_name and config is None:
        log.info("Endpoint config %s of %s is gone already", config_name, name)
    elif config_name in configs_in_use:
        log.info("Keeping endpoint config %s: endpoint %s runs it too", config_name, configs_in_use[config_name])
        config = None  # nor its models: the other endpoint runs them
    models = []
    for model in _config_models(config):
        if model in models_in_use:
            log.info("Keeping model %s: endpoint %s runs it too", model, models_in_use[model])
        else:
            models.append(model)
    entry = {"endpoint": name, "endpoint_config": config_name if config is not None else None, "models": models,
             "scalable_targets": list(targets), "expired_at": _isoformat(expires)}

    if dry_run:
        log.info("Would delete endpoint %s (%s, expired at %s)", name, status, entry["expired_at"])
        for resource_id in targets:
            log.info("Would deregister scalable target %s", resource_id)
        if entry["endpoint_config"]:
            log.info("Would delete endpoint config %s", entry["endpoint_config"])
        for model in models:
            log.info("Would delete model %s", model)
        return entry, None

    entry["scalable_targets"] = []
    for resource_id in targets:  # before the endpoint: SageMaker refuses to delete a registered variant
        if deregister_scalable_target(autoscaling, resource_id):
            entry["scalable_targets"].append(resource_id)
            log.info("Deregistered scalable target %s", resource_id)
    if status == "Deleting":
        log.info("Endpoint %s is being deleted already (expired at %s)", name, entry["expired_at"])
    elif _delete(sagemaker.delete_endpoint, f"Endpoint {name}", EndpointName=name):
        log.info("Deleted endpoint %s (was %s, expired at %s)", name, status, entry["expired_at"])
    else:
        return None, None
    # SageMaker lets a config and its models go while the endpoint shuts down
    if entry["endpoint_config"]:
        if _delete(sagemaker.delete_endpoint_config, f"Endpoint config {config_name}", EndpointConfigName=config_name):
            log.info("Deleted endpoint config %s", config_name)
        else:
            entry["endpoint_config"] = None
    entry["models"] = []
    for model in models:
        if _delete(sagemaker.delete_model, f"Model {model}", ModelName=model):
            entry["models"].append(model)
            log.info("Deleted model %s", model)
    return entry, None


def sweep_expired_endpoints(sagemaker, autoscaling, *, dry_run: bool = False, now: datetime | None = None,
                            wait_timeout: float = 900, poll_interval: float = 5) -> dict[str, Any]:
    """Delete every expired endpoint (see the module's doc) and wait until each is gone.

    Returns {"dry_run", "removed": [{"endpoint", "endpoint_config", "models", "scalable_targets",
    "expired_at"}], "kept": [{"endpoint", "why"}]}; with dry_run, `removed` is what a real run would
    remove, and nothing is changed. Raises JanitorError, after trying every other endpoint, when an
    AWS error kept one from going.
    """
    now = now or datetime.now(timezone.utc)
    endpoints = list_endpoints(sagemaker)
    expired: list[tuple[str, datetime]] = []
    kept: list[dict[str, str]] = []
    for summary in endpoints:
        name = summary["EndpointName"]
        try:
            tags = resource_tags(sagemaker, summary["EndpointArn"])
        except ClientError as error:
            if not is_missing(error):
                raise
            log.info("Endpoint %s is gone already", name)
            continue
        why, expires = why_kept(tags, summary.get("EndpointStatus", ""), now)
        if why:
            kept.append({"endpoint": name, "why": why})
            log.info("Keeping endpoint %s: %s", name, why)
        else:
            expired.append((name, expires))
    log.info("%d endpoint(s), %d expired", len(endpoints), len(expired))

    removed: list[dict] = []
    failed: list[str] = []
    if expired:
        going = {name for name, _ in expired}
        configs_in_use, models_in_use = in_use(sagemaker, (e["EndpointName"] for e in endpoints
                                                           if e["EndpointName"] not in going))
        targets = scalable_targets_by_endpoint(autoscaling)
        for name, expires in expired:
            try:
                entry, busy = _remove(sagemaker, autoscaling, name, expires, dry_run=dry_run,
                                      targets=targets.get(name, []), configs_in_use=configs_in_use,
                                      models_in_use=models_in_use)
            except ClientError as error:  # one endpoint's trouble must not keep the others running
                log.error("Could not remove endpoint %s: %s", name, error)
                failed.append(f"{name}: {error}")
                continue
            if entry:
                removed.append(entry)
            elif busy:
                kept.append({"endpoint": name, "why": busy})
                log.info("Keeping endpoint %s: %s", name, busy)
        if not dry_run:
            wait_until_gone(sagemaker, [entry["endpoint"] for entry in removed], timeout=wait_timeout,
                            poll_interval=poll_interval)
    verb = "Would remove" if dry_run else "Removed"
    log.info("%s %d endpoint(s)%s; kept %d", verb, len(removed),
             f" ({', '.join(e['endpoint'] for e in removed)})" if removed else "", len(kept))
    if failed:  # the task fails and its retry finds what is left (what went meanwhile counts as gone)
        raise JanitorError(f"could not remove {len(failed)} expired endpoint(s): " + "; ".join(failed))
    return {"dry_run": dry_run, "removed": removed, "kept": kept}
