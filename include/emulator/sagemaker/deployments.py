"""One endpoint update carried out as its DeploymentConfig says (the plan of ``deployment_policy``).

Blue/green: the new (green) fleet starts and must pass /ping (else the update fails and the old
fleet never stopped serving); then traffic moves to it step by step (ALL_AT_ONCE: one step; CANARY:
the canary's share, then all; LINEAR: one more step's share each time), each step followed by a
baking period of WaitIntervalInSeconds, and TerminationWaitInSeconds before the old (blue) fleet goes.
Rolling: the new fleet starts with one batch; each step turns traffic on for it (requests split by
healthy instances), bakes, terminates a batch of the old fleet and starts the next batch of the new.

Throughout the steps and baking periods the AutoRollbackConfiguration alarms are read from the
emulator's CloudWatch (DescribeAlarms, about every second); one in ALARM, or the deployment running
past MaximumExecutionTimeoutInSeconds, rolls it back: the endpoint is RollingBack, traffic returns to
the old fleet (a rolling rollback first starts the old instances again, RollbackMaximumBatchSize at a
time), the new fleet goes, and the endpoint is InService on its old config with a FailureReason. A
rollback that cannot complete leaves it UpdateRollbackFailed. Requests never fail meanwhile: traffic
leaves a fleet before its instances stop, and a request that meets a stopped instance is routed again
(``runtime``).
"""
from __future__ import annotations

import dataclasses
import logging
import time

from ..serving.fleet import Deployment, DeploymentCancelled, DeploymentFailed
from ..serving.specs import VariantSpec
from .deployment_policy import DeploymentPlan
from .times import utcnow

log = logging.getLogger(__name__)

ALARM_POLL_S = 1.0  # how often the rollback alarms are read during a step or a baking period
DRAIN_S = 60.0  # requests already on a retired fleet finish first


class _Cancelled(Exception):
    """DeleteEndpoint (or the emulator's shutdown) ended the update."""


class _RollBack(Exception):
    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def alarm_rollback_reason(alarms: list[str]) -> str:
    names = ", ".join(alarms)
    return (f"Deployment was rolled back because CloudWatch alarm(s) {names} went into ALARM state "
            "during the deployment; the endpoint serves its previous endpoint configuration.")


def timeout_rollback_reason(limit_s: float) -> str:
    return (f"Deployment was rolled back because it did not complete within MaximumExecutionTimeoutInSeconds "
            f"({limit_s:g} seconds); the endpoint serves its previous endpoint configuration.")


class GuardedUpdate:
    """Runs on the endpoint's worker thread: brings the new fleet up, shifts traffic, finishes or rolls back."""

    def __init__(self, store, record, config_name: str, specs: list[VariantSpec], plan: DeploymentPlan):
        self.store = store
        self.fleet = store.fleet
        self.record = record
        self.config_name = config_name
        self.specs = specs
        self.plan = plan
        self.started = time.monotonic()
        self._cloudwatch = None
        self._blue_counts: dict[str, int] = {}

    # --- the update -----------------------------------------------------------------------------

    def run(self) -> None:
        record, plan = self.record, self.plan
        first = self.specs
        if plan.rolling:  # the new fleet starts with one batch
            first = [dataclasses.replace(spec, instance_count=min(plan.batch, spec.instance_count)) for spec in self.specs]
        try:
            green = self.fleet.deploy(record.region, record.name, first, record.cancel)
        except DeploymentCancelled:
            return
        except DeploymentFailed as failure:
            with record.lock:
                if record.status == "Updating":  # the old deployment never stopped serving
                    record.failure_reason = failure.reason
                    record.pending = None
                    record.touch("InService")
            log.info("update of endpoint %s to %s failed, old config keeps serving: %s",
                     record.name, self.config_name, failure.reason)
            return
        with record.lock:
            proceed = record.status == "Updating"
            if proceed:
                blue = record.deployment
                self._blue_counts = {name: len(group.servers) for name, group in blue.variants.items()} if blue else {}
                record.green, record.green_share = green, (None if plan.rolling else 0.0)
        if not proceed:
            self.fleet.retire(green)
            return
        try:
            if plan.rolling:
                self._roll(green)
            else:
                self._shift(green)
        except _Cancelled:
            with record.lock:
                record.green = None
            self.fleet.retire(green)
            return
        except _RollBack as rollback:
            self._roll_back(green, rollback.reason)
            return
        self._finish(green)

    def _shift(self, green: Deployment) -> None:
        for share in self.plan.shares:
            self._check()
            self._status("ActivatingTraffic", f"Turning on traffic for {share:.0%} of the new fleet's capacity.")
            with self.record.lock:
                self.record.green_share = share
            self._bake(self.plan.wait_s, f"Baking with {share:.0%} of the traffic on the new fleet.")
        self._bake(self.plan.termination_wait_s, "Waiting TerminationWaitInSeconds before terminating the old fleet.")

    def _roll(self, green: Deployment) -> None:
        (spec,) = self.specs
        blue = self.record.deployment
        wanted, batch = spec.instance_count, self.plan.batch
        while True:
            active = len(green.variants[spec.name].servers)
            self._check()
            self._status("ActivatingTraffic", f"Turning on traffic for {active} of {wanted} new instances.")
            self._bake(self.plan.wait_s, f"Baking with {active} of {wanted} new instances serving.")
            if blue is not None and spec.name in blue.variants:
                left = len(blue.variants[spec.name].servers)
                if active >= wanted:  # the last of the old fleet goes: no request is sent its way any more
                    with self.record.lock:
                        self.record.green_share = 1.0
                self.fleet.remove_instances(blue, spec.name, left if active >= wanted else min(batch, left), DRAIN_S)
            if active >= wanted:
                return
            self._check()
            more = min(batch, wanted - active)
            self._status("Updating", f"Starting {more} more new instances ({active} of {wanted} running).")
            try:
                self.fleet.add_instances(green, spec.name, more, self._stopping)
            except DeploymentCancelled:
                raise _Cancelled() from None
            except DeploymentFailed as failure:
                raise _RollBack(failure.reason) from None

    def _finish(self, green: Deployment) -> None:
        record = self.record
        with record.lock:
            switched = record.status == "Updating"
            if switched:
                old = record.deployment
                record.deployment, record.variants, record.deployed_at = green, self.specs, utcnow()
                record.green, record.green_share = None, 0.0
                record.config_name = self.config_name
                record.pending = None
                record.failure_reason = None
                record.touch("InService")
        if not switched:
            self.fleet.retire(green)
            return
        self.store.watch(record, green)
        log.info("endpoint %s now serves %s", record.name, self.config_name)
        if old is not None:
            self.fleet.retire(old, drain_s=DRAIN_S)

    def _roll_back(self, green: Deployment, reason: str) -> None:
        record = self.record
        log.info("endpoint %s: rolling back the update to %s: %s", record.name, self.config_name, reason)
        with record.lock:
            if record.status != "Updating":
                record.green = None
                self.fleet.retire(green)
                return
            record.touch("RollingBack")
            blue = record.deployment
        try:
            if self.plan.rolling and blue is not None:
                self._regrow(blue, green)
        except Exception as exc:  # the old fleet cannot come back: what serves is what is left
            message = exc.reason if isinstance(exc, DeploymentFailed) else str(exc)
            with record.lock:
                record.pending = None
                record.failure_reason = f"{reason} The rollback failed: {message}"[:1024]
                record.touch("UpdateRollbackFailed")
            log.warning("endpoint %s: rollback failed: %s", record.name, message)
            return
        with record.lock:
            record.green_share = 0.0  # traffic leaves the new fleet before its instances stop
            record.green = None
            record.pending = None
            record.failure_reason = reason
            record.touch("InService")
        self.fleet.retire(green, drain_s=DRAIN_S)

    def _regrow(self, blue: Deployment, green: Deployment) -> None:
        """A rolling rollback: the old instances start again, RollbackMaximumBatchSize at a time, and as
        many new ones stop each time."""
        for name, wanted in self._blue_counts.items():
            while (have := len(blue.variants[name].servers)) < wanted:
                count = min(self.plan.rollback_batch, wanted - have)
                self.fleet.add_instances(blue, name, count, lambda: self.fleet.closed)
                if name in green.variants:
                    self.fleet.remove_instances(green, name, min(count, len(green.variants[name].servers)), DRAIN_S)

    # --- steps, baking and alarms ---------------------------------------------------------------

    def _stopping(self) -> bool:
        return self.record.cancel.is_set() or self.fleet.closed

    def _status(self, status: str, message: str) -> None:
        with self.record.lock:
            if self.record.pending is not None:
                self.record.pending.enter(status, message)

    def _check(self) -> None:
        """Raise _Cancelled if the update is over, _RollBack if an alarm fired or time ran out."""
        if self._stopping():
            raise _Cancelled()
        with self.record.lock:
            if self.record.status != "Updating":
                raise _Cancelled()
        limit = self.plan.max_execution_s
        if limit and time.monotonic() - self.started > limit:
            raise _RollBack(timeout_rollback_reason(limit))
        fired = self._alarms_in_alarm()
        if fired:
            raise _RollBack(alarm_rollback_reason(fired))

    def _bake(self, seconds: float, message: str) -> None:
        if seconds <= 0:
            return
        self._status("Baking", message)
        end = time.monotonic() + seconds
        while True:
            self._check()
            left = end - time.monotonic()
            if left <= 0:
                return
            self.record.cancel.wait(min(ALARM_POLL_S, left))

    def _alarms_in_alarm(self) -> list[str]:
        if not self.plan.alarms:
            return []
        try:
            if self._cloudwatch is None:
                self._cloudwatch = self.store.emulator.client("cloudwatch", self.record.region)
            answer = self._cloudwatch.describe_alarms(AlarmNames=list(self.plan.alarms))
        except Exception:  # CloudWatch unreadable for a moment: not a reason to roll back
            log.warning("endpoint %s: could not read its rollback alarms", self.record.name, exc_info=True)
            return []
        alarms = [*answer.get("MetricAlarms", []), *answer.get("CompositeAlarms", [])]
        return sorted({alarm["AlarmName"] for alarm in alarms if alarm.get("StateValue") == "ALARM"})


def run_update(store, record, config_name: str, specs: list[VariantSpec], plan: DeploymentPlan) -> None:
    GuardedUpdate(store, record, config_name, specs, plan).run()

