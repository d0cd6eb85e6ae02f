"""Fault injection for tests: one tag switches a fault on for one resource; nothing is injected by default.

The tag ``emulator:fault`` holds one fault or several separated by spaces (SageMaker tag values
allow no commas):

    health-check-fails[:<seconds>]   the model server answers /ping with 500, so the deployment fails
                                     as a container that never gets healthy fails; the emulator gives up
                                     after <seconds> (default 5) instead of the variant's startup timeout
    slow-start:<seconds>             /ping answers 503 ("model is loading") until <seconds> after the
                                     model server started, then 200
    spot-interruption:<seconds>      a managed spot training job loses its instance <seconds> after
                                     training began (the training runner resumes it from its checkpoint)

Where a tag is read: endpoint faults from the tags of the endpoint, of the endpoint config being
deployed and of each variant's model (CreateEndpoint, UpdateEndpoint); transform jobs from the
job's and its model's tags; training jobs from the job's tags. ``faults_for`` is the one parser.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Iterable, Mapping

FAULT_TAG = "emulator:fault"
DEFAULT_HEALTH_CHECK_GIVE_UP_S = 5.0

# what a model server process reads (set only by the fleet; inherited values are removed)
PING_FAILS_ENV = "EMULATOR_FAULT_PING_FAILS"
SLOW_START_ENV = "EMULATOR_FAULT_SLOW_START_SECONDS"
_SERVER_ENV = (PING_FAILS_ENV, SLOW_START_ENV)

_FORMS = "health-check-fails[:<seconds>], slow-start:<seconds>, spot-interruption:<seconds>"


class FaultTagError(ValueError):
    """The tag's value names no known fault, or a bad number; the message says which and what is accepted."""


@dataclass(frozen=True)
class Faults:
    """The faults switched on for one resource. ``Faults()`` (all off) is the default everywhere."""

    health_check_fails: bool = False
    health_check_give_up_s: float = DEFAULT_HEALTH_CHECK_GIVE_UP_S
    slow_start_s: float = 0.0
    spot_interruption_after_s: float | None = None

    def __bool__(self) -> bool:
        return self.health_check_fails or self.slow_start_s > 0 or self.spot_interruption_after_s is not None

    def merged(self, other: "Faults") -> "Faults":
        """Both sets of faults (the stronger value where both set one)."""
        spot = [value for value in (self.spot_interruption_after_s, other.spot_interruption_after_s) if value is not None]
        return Faults(
            health_check_fails=self.health_check_fails or other.health_check_fails,
            health_check_give_up_s=min(self.health_check_give_up_s, other.health_check_give_up_s),
            slow_start_s=max(self.slow_start_s, other.slow_start_s),
            spot_interruption_after_s=min(spot) if spot else None,
        )

    def startup_timeout(self, configured_s: float) -> float:
        """How long a deployment waits for /ping: a failing health check gives up early."""
        return min(configured_s, self.health_check_give_up_s) if self.health_check_fails else configured_s

    def server_environment(self, inherited: Mapping[str, str]) -> dict[str, str]:
        """``inherited`` with exactly these faults for a model server (never ones leaked from the parent)."""
        env = {key: value for key, value in inherited.items() if key not in _SERVER_ENV}
        if self.health_check_fails:
            env[PING_FAILS_ENV] = "1"
        if self.slow_start_s > 0:
            env[SLOW_START_ENV] = f"{self.slow_start_s:g}"
        return env

    def __str__(self) -> str:
        parts = []
        if self.health_check_fails:
            parts.append(f"health-check-fails:{self.health_check_give_up_s:g}")
        if self.slow_start_s > 0:
            parts.append(f"slow-start:{self.slow_start_s:g}")
        if self.spot_interruption_after_s is not None:
            parts.append(f"spot-interruption:{self.spot_interruption_after_s:g}")
        return " ".join(parts) or "none"


NO_FAULTS = Faults()


def _seconds(fault: str, text: str | None, *, required: bool) -> float | None:
    if text is None or text == "":
        if required:
            raise FaultTagError(f"Tag {FAULT_TAG}: fault '{fault}' needs a number of seconds, e.g. '{fault}:5'.")
        return None
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0:
        raise FaultTagError(f"Tag {FAULT_TAG}: '{fault}:{text}' needs a non-negative number of seconds.")
    return value


def parse_fault_value(value: str) -> Faults:
    """Faults from the value of an ``emulator:fault`` tag (see the module docstring for the forms)."""
    faults = Faults()
    for item in value.split():
        name, _, argument = item.partition(":")
        name = name.lower()
        if name == "health-check-fails":
            give_up = _seconds(name, argument, required=False)
            faults = replace(faults, health_check_fails=True,
                             health_check_give_up_s=DEFAULT_HEALTH_CHECK_GIVE_UP_S if give_up is None else give_up)
        elif name == "slow-start":
            faults = replace(faults, slow_start_s=_seconds(name, argument, required=True))
        elif name == "spot-interruption":
            faults = replace(faults, spot_interruption_after_s=_seconds(name, argument, required=True))
        else:
            raise FaultTagError(f"Tag {FAULT_TAG}: unknown fault '{item}'; the local SageMaker knows {_FORMS}.")
    return faults


def _as_mapping(tags: Mapping[str, str] | Iterable[dict] | None) -> Mapping[str, str]:
    if tags is None:
        return {}
    if isinstance(tags, Mapping):
        return tags
    return {tag["Key"]: tag.get("Value", "") for tag in tags}  # the wire form: [{"Key": ..., "Value": ...}]


def faults_for(tags: Mapping[str, str] | Iterable[dict] | None) -> Faults:
    """The faults a resource's tags switch on (``{key: value}`` or the wire form's list of Key/Value).

    Raises FaultTagError for a value it cannot read, so a typo never silently injects nothing.
    """
    value = _as_mapping(tags).get(FAULT_TAG)
    return parse_fault_value(value) if value else NO_FAULTS


def faults_of_resources(emulator, arns: Iterable[str]) -> Faults:
    """The faults switched on by the tags of any of these SageMaker resources (from the TagStore)."""
    from .sagemaker.tags import TagStore  # here, not at import: the sagemaker package imports the fleet

    tags = emulator.store(TagStore)
    combined = NO_FAULTS
    for arn in arns:
        combined = combined.merged(faults_for(tags.get(arn)))
    return combined


def endpoint_variant_faults(emulator, region: str, endpoint_name: str, model_name: str) -> Faults:
    """Faults for one variant of an endpoint deployment: the endpoint's, the deploying config's, the model's."""
    from .sagemaker.hosting import EndpointStore

    ctx = emulator.context(region)
    arns = [ctx.arn("endpoint", endpoint_name), ctx.arn("model", model_name)]
    record = emulator.store(EndpointStore).find(region, endpoint_name)
    if record is not None:
        with record.lock:
            # an update deploys its pending config; a create (or a capacity change) the current one
            config_name = record.pending.config_name if record.pending is not None else record.config_name
        arns.append(ctx.arn("endpoint-config", config_name))
    return faults_of_resources(emulator, arns)
