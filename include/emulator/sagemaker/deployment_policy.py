"""UpdateEndpoint's DeploymentConfig: its rules checked, and turned into the steps a deployment takes.

botocore's service model already bounds every field (WaitIntervalInSeconds 0-3600,
TerminationWaitInSeconds 0-3600, MaximumExecutionTimeoutInSeconds 600-28800, CapacitySize Value >= 1,
1-10 alarms); this module checks what the model cannot say, as SageMaker documents it:

- CANARY needs CanarySize, at most 50% of the new fleet; LINEAR needs LinearStepSize, 10-50% of it;
  RollingUpdatePolicy's MaximumBatchSize is 5-50% of it. A CAPACITY_PERCENT size becomes
  floor(percent x instances), at least one instance; an INSTANCE_COUNT size is checked as the share
  of instances it is.
- Blue/green and rolling deployments keep the variant names of the endpoint's current config.
- Rolling deployments exclude serverless and multi-variant endpoints; deployment guardrails apply to
  real-time endpoints only, so a serverless variant takes ALL_AT_ONCE blue/green and nothing else.

The traffic a step gives the new fleet is the share of its capacity that the step has turned on.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from ..errors import ValidationException
from ..serving.specs import VariantSpec

ALL_AT_ONCE, CANARY, LINEAR = "ALL_AT_ONCE", "CANARY", "LINEAR"


@dataclass(frozen=True)
class DeploymentPlan:
    """What a deployment does once the new fleet is healthy."""

    rolling: bool = False
    traffic_type: str = ALL_AT_ONCE  # blue/green only
    shares: tuple[float, ...] = (1.0,)  # blue/green: the new fleet's share of traffic at each step
    batch: int = 0  # rolling: instances replaced per step
    rollback_batch: int = 0  # rolling: old instances started again per step of a rollback
    wait_s: float = 0.0  # the baking period after each step
    termination_wait_s: float = 0.0  # before the old fleet goes
    max_execution_s: float | None = None
    alarms: tuple[str, ...] = field(default_factory=tuple)

    @property
    def guarded(self) -> bool:
        """Whether anything happens beyond a plain blue/green switch."""
        return bool(self.rolling or self.alarms or self.wait_s or self.termination_wait_s
                    or self.max_execution_s or self.shares != (1.0,))


def _instances(size: dict, total: int) -> int:
    if size["Type"] == "INSTANCE_COUNT":
        return size["Value"]
    return max(1, math.floor(total * size["Value"] / 100))


def _share(size: dict, total: int) -> float:
    """The share of the fleet a CapacitySize asks for, as asked (not rounded to instances)."""
    return size["Value"] / 100 if size["Type"] == "CAPACITY_PERCENT" else size["Value"] / total


def _check_size(size: dict, total: int, field_name: str, low: float, high: float, rule: str) -> int:
    share = _share(size, total)
    if size["Type"] == "INSTANCE_COUNT" and size["Value"] > total:
        raise ValidationException(
            f"{field_name} Value {size['Value']} (INSTANCE_COUNT) exceeds the variant's total instance count of {total}.")
    if not low - 1e-9 <= share <= high + 1e-9:
        asked = f"{size['Value']}%" if size["Type"] == "CAPACITY_PERCENT" else f"{size['Value']} of {total} instances"
        raise ValidationException(f"{field_name} must be {rule} of the variant's total instance count; got {asked}.")
    return min(total, _instances(size, total))


def plan_deployment(deployment_config: dict | None, new: list[VariantSpec], current: list[VariantSpec]) -> DeploymentPlan:
    """The plan for updating from ``current`` to ``new`` under ``deployment_config``; raises
    ValidationException where SageMaker would refuse the UpdateEndpoint call."""
    config = deployment_config or {}
    blue_green = config.get("BlueGreenUpdatePolicy")
    rolling = config.get("RollingUpdatePolicy")
    alarms = tuple(alarm["AlarmName"] for alarm in (config.get("AutoRollbackConfiguration") or {}).get("Alarms") or [])
    if blue_green and rolling:
        raise ValidationException("DeploymentConfig takes either BlueGreenUpdatePolicy or RollingUpdatePolicy, not both.")
    serverless = [spec.name for spec in new if spec.is_serverless]
    total = sum(spec.instance_count for spec in new if not spec.is_serverless) or 1
    guarded = rolling or (blue_green and blue_green["TrafficRoutingConfiguration"]["Type"] != ALL_AT_ONCE)
    if guarded and current and sorted(spec.name for spec in new) != sorted(spec.name for spec in current):
        raise ValidationException(
            "A blue/green deployment with traffic shifting, or a rolling deployment, needs the new endpoint config to "
            f"have the same variant names as the current one ({', '.join(spec.name for spec in current)}); "
            f"got {', '.join(spec.name for spec in new)}.")

    if rolling:
        if serverless:
            raise ValidationException(
                f"RollingUpdatePolicy is not supported for serverless variants ({', '.join(serverless)}); "
                "use BlueGreenUpdatePolicy with ALL_AT_ONCE traffic routing.")
        if len(new) > 1:
            raise ValidationException("RollingUpdatePolicy is not supported for endpoints with more than one production "
                                      "variant; use BlueGreenUpdatePolicy.")
        batch = _check_size(rolling["MaximumBatchSize"], total, "MaximumBatchSize", 0.05, 0.5, "between 5% and 50%")
        old_total = sum(spec.instance_count for spec in current) or total
        rollback = rolling.get("RollbackMaximumBatchSize")
        rollback_batch = min(old_total, _instances(rollback, old_total)) if rollback else old_total
        return DeploymentPlan(rolling=True, batch=batch, rollback_batch=max(1, rollback_batch),
                              wait_s=rolling["WaitIntervalInSeconds"],
                              max_execution_s=rolling.get("MaximumExecutionTimeoutInSeconds"), alarms=alarms)

    if not blue_green:  # no policy (or only AutoRollbackConfiguration): all at once, alarms watched
        return DeploymentPlan(alarms=alarms)
    routing = blue_green["TrafficRoutingConfiguration"]
    kind = routing["Type"]
    if serverless and kind != ALL_AT_ONCE:
        raise ValidationException(
            f"{kind} traffic routing is not supported for serverless variants ({', '.join(serverless)}); "
            "deployment guardrails apply to real-time endpoints. Use ALL_AT_ONCE.")
    if kind != CANARY and routing.get("CanarySize"):
        raise ValidationException(f"CanarySize is only valid with CANARY traffic routing, not {kind}.")
    if kind != LINEAR and routing.get("LinearStepSize"):
        raise ValidationException(f"LinearStepSize is only valid with LINEAR traffic routing, not {kind}.")
    shares: tuple[float, ...] = (1.0,)
    if kind == CANARY:
        if not routing.get("CanarySize"):
            raise ValidationException("CanarySize is required for CANARY traffic routing.")
        canary = _check_size(routing["CanarySize"], total, "CanarySize", 0.0, 0.5, "less than or equal to 50%")
        shares = (canary / total, 1.0)
    elif kind == LINEAR:
        if not routing.get("LinearStepSize"):
            raise ValidationException("LinearStepSize is required for LINEAR traffic routing.")
        step = _check_size(routing["LinearStepSize"], total, "LinearStepSize", 0.1, 0.5, "between 10% and 50%")
        shares = tuple(min(total, k * step) / total for k in range(1, math.ceil(total / step) + 1))
    return DeploymentPlan(traffic_type=kind, shares=shares, wait_s=routing["WaitIntervalInSeconds"],
                          termination_wait_s=blue_green.get("TerminationWaitInSeconds") or 0,
                          max_execution_s=blue_green.get("MaximumExecutionTimeoutInSeconds"), alarms=alarms)
