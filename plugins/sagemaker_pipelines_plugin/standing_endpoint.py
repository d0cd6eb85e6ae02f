"""Put an endpoint config on a long-lived ("standing") endpoint: create it, update it under a
DeploymentConfig (canary, linear, rolling, with alarms that roll it back), or leave it serving.

The provider's SageMakerEndpointOperator calls UpdateEndpoint and waits for InService. SageMaker rolls
a failed update back to InService on the old config with only a FailureReason, so that operator
reports a rolled-back canary as a success; and its retry, while the first update still runs, fails
on "Cannot update in-progress endpoint". Here each try looks before it acts:

- an endpoint that is Creating, Updating, SystemUpdating, RollingBack or Deleting is waited for (an
  update in flight towards the target is rejoined, never started again), then decided on afresh;
- absent: CreateEndpoint; InService on the target: nothing to do; on another config: UpdateEndpoint;
- after an update, the endpoint must serve the target (InService on it, nothing pending); a rollback
  raises EndpointUpdateRolledBack, which is not retried: another try would run another canary into
  the same failure.

A worker that dies while it waits loses what it knew, so each try records what it is about to do in
a tag of the endpoint itself (RECORD_TAG): the action, the target, the config it replaced, which
task instance did it (a hash of dag, run, task and map index: every try of one task instance shares
it, another run does not), and the endpoint's LastModifiedTime just before UpdateEndpoint. The tag
lives with the endpoint, so it survives what Airflow clears between tries (XComs); a retry that
finds the endpoint InService on the old config, changed since that time and with a FailureReason,
knows its own update was rolled back and raises instead of starting a second one. A record of
another run is ignored: that run's rollback does not stop this run from trying the config again.
"""
from __future__ import annotations

import copy
import hashlib
import time
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import Any, Sequence

from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook
from airflow.providers.amazon.aws.hooks.sagemaker import SageMakerHook
from airflow.providers.amazon.aws.operators.base_aws import AwsBaseOperator
from airflow.providers.amazon.aws.utils.mixins import aws_template_fields
from airflow.sdk.exceptions import AirflowException, AirflowFailException

from sagemaker_pipelines_plugin.links import SageMakerStandingEndpointLink
from sagemaker_pipelines_plugin.lookup import describe_or_none

__all__ = ["EndpointUpdateRolledBack", "SageMakerDeployStandingEndpointOperator"]

# statuses that end by themselves; UpdateEndpoint refuses all of them ("Cannot update in-progress endpoint")
IN_PROGRESS = ("Creating", "Updating", "SystemUpdating", "RollingBack", "Deleting")
RECORD_TAG = "sagemaker-pipelines:deployment"


class EndpointUpdateRolledBack(AirflowFailException):
    """SageMaker rolled the update back: the endpoint is InService, but on its old endpoint config.

    An AirflowFailException, so the task is not retried: a retry would run another canary of the same
    config into the same failure.
    """

    def __init__(self, endpoint_name: str, target: str, serving: str, reason: str | None):
        self.endpoint_name, self.target, self.serving, self.reason = endpoint_name, target, serving, reason
        super().__init__(
            f"The update of endpoint {endpoint_name} to endpoint config {target} was rolled back: the endpoint "
            f"still serves endpoint config {serving}. SageMaker's FailureReason: {reason or '(none given)'}. "
            "Not retried; every try of this task reports the same rollback, a new DAG run deploys again."
        )

    def __reduce__(self):  # the message is built from the fields: rebuild it from them
        return type(self), (self.endpoint_name, self.target, self.serving, self.reason)


def with_rollback_alarms(deployment_config: dict | None, alarm_names: Sequence[str]) -> dict | None:
    """A copy of the DeploymentConfig whose AutoRollbackConfiguration also names these alarms (once each)."""
    if not alarm_names:
        return copy.deepcopy(deployment_config) if deployment_config else None
    config = copy.deepcopy(deployment_config or {})
    rollback = config.setdefault("AutoRollbackConfiguration", {})
    alarms = rollback["Alarms"] = list(rollback.get("Alarms") or [])
    named = {alarm["AlarmName"] for alarm in alarms}
    alarms.extend({"AlarmName": name} for name in dict.fromkeys(alarm_names) if name not in named)
    return config


def _stamp(moment: datetime) -> str:
    """A timestamp as a tag value may hold it (no '+')."""
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class DeploymentRecord:
    """What a try did to the endpoint, kept in its RECORD_TAG ("action=update target=... from=... ...")."""

    action: str  # "create" or "update"
    target: str  # the endpoint config it put on the endpoint
    by: str  # attempt_key() of the task instance
    previous: str | None = None  # the config an update replaced
    base: str | None = None  # the endpoint's LastModifiedTime just before UpdateEndpoint
    sent: bool = False  # UpdateEndpoint was accepted

    def tag(self) -> dict[str, str]:
        # config names are letters, digits and '-': a space separates the fields safely
        fields = {"action": self.action, "target": self.target, "from": self.previous, "by": self.by,
                  "base": self.base, "sent": "yes" if self.sent else None}
        return {"Key": RECORD_TAG, "Value": " ".join(f"{k}={v}" for k, v in fields.items() if v)}

    @classmethod
    def parse(cls, value: str) -> DeploymentRecord | None:
        fields = dict(part.partition("=")[::2] for part in value.split())
        if not {"action", "target", "by"} <= fields.keys():
            return None  # written by hand or by another version: no record of ours
        return cls(action=fields["action"], target=fields["target"], by=fields["by"], previous=fields.get("from"),
                   base=fields.get("base"), sent=fields.get("sent") == "yes")


def attempt_key(context) -> str:
    """The same for every try of one task instance (retried or cleared), different for another run."""
    ti = context["ti"]
    parts = (getattr(ti, "dag_id", None), getattr(ti, "run_id", None) or context.get("run_id"),
             getattr(ti, "task_id", None), getattr(ti, "map_index", -1))
    return hashlib.sha256("/".join(map(str, parts)).encode()).hexdigest()[:16]


def _pending_config(described: dict) -> str | None:
    return (described.get("PendingDeploymentSummary") or {}).get("EndpointConfigName")


def _settled(described: dict) -> bool:
    return described["EndpointStatus"] not in IN_PROGRESS and "PendingDeploymentSummary" not in described


class SageMakerDeployStandingEndpointOperator(AwsBaseOperator[SageMakerHook]):
    """Make a standing endpoint serve ``endpoint_config_name``: create it, update it, or leave it be.

    :param endpoint_name: the endpoint
    :param endpoint_config_name: the endpoint config it must serve (the target)
    :param deployment_config: UpdateEndpoint's DeploymentConfig (BlueGreenUpdatePolicy or
        RollingUpdatePolicy, with or without AutoRollbackConfiguration); None for a plain blue/green switch
    :param alarms: PutMetricAlarm requests (a DAG's come from include/pipelines/requests.py's
        build_rollback_alarms), put before an update; their names join
        DeploymentConfig.AutoRollbackConfiguration.Alarms
    :param tags: CreateEndpoint's Tags, [{"Key": ..., "Value": ...}] (or a dict)
    :param check_interval: seconds between DescribeEndpoint calls while it changes
    :param max_wait_seconds: how long one try waits in all; a retry rejoins what is still in flight
    :return: {"endpoint_name", "endpoint_arn", "endpoint_config_name", "previous_endpoint_config_name",
        "action": "created" | "updated" | "unchanged", "deployment_config": what the update used, or None}
    """

    aws_hook_class = SageMakerHook
    template_fields: Sequence[str] = aws_template_fields(
        "endpoint_name", "endpoint_config_name", "deployment_config", "alarms", "tags")
    template_fields_renderers = {"deployment_config": "json", "alarms": "json", "tags": "json"}
    ui_color = "#ffd9b3"
    operator_extra_links = (SageMakerStandingEndpointLink(),)

    def __init__(
        self,
        *,
        endpoint_name: str,
        endpoint_config_name: str,
        deployment_config: dict | None = None,
        alarms: list[dict] | None = None,
        tags: list[dict[str, str]] | dict[str, str] | None = None,
        check_interval: float = 30,
        max_wait_seconds: float = 3600,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.endpoint_name = endpoint_name
        self.endpoint_config_name = endpoint_config_name
        self.deployment_config = deployment_config
        self.alarms = alarms
        self.tags = tags
        self.check_interval = check_interval
        self.max_wait_seconds = max_wait_seconds

    # --- the decision -----------------------------------------------------------------------------

    def execute(self, context) -> dict[str, Any]:
        from botocore.exceptions import ClientError

        self._deadline = time.monotonic() + self.max_wait_seconds
        self._seen: dict[str, Any] = {}
        self._by = attempt_key(context)
        target = self.endpoint_config_name
        while True:  # one pass, again only when another caller's change won the race to the endpoint
            described = self._describe()
            was_creating = described is not None and described["EndpointStatus"] == "Creating"
            in_flight, replacing = None, None
            if described is not None and not _settled(described):
                # SageMaker shows the old config until the update ends, the new one as pending
                in_flight, replacing = _pending_config(described), described["EndpointConfigName"]
                self.log.info("Endpoint %s is %s%s; waiting for it to settle before deciding.", self.endpoint_name,
                              described["EndpointStatus"], f" towards {in_flight}" if in_flight else "")
                described = self._wait(described)

            if described is None:
                try:
                    return self._create()
                except ClientError as error:
                    if "already exist" not in str(error):
                        raise
                    self.log.info("Endpoint %s was created meanwhile; deciding again.", self.endpoint_name)
                    continue
            self._raise_unless_in_service(described)
            record = self._own_record(described)
            serving = described["EndpointConfigName"]

            if serving == target:
                if was_creating:
                    return self._result(described, "created", None, None)
                if in_flight == target:
                    self.log.info("The update of %s to %s that was in flight has finished.", self.endpoint_name, target)
                    return self._result(described, "updated", replacing, described.get("LastDeploymentConfig"))
                if record is not None:
                    self.log.info("Endpoint %s serves %s since an earlier try of this task (%sd it).",
                                  self.endpoint_name, target, record.action)
                    if record.action == "create":
                        return self._result(described, "created", None, None)
                    return self._result(described, "updated", record.previous, described.get("LastDeploymentConfig"))
                self.log.info("Endpoint %s already serves %s; nothing to deploy.", self.endpoint_name, target)
                return self._result(described, "unchanged", None, None)

            if in_flight == target:  # the earlier try's update towards the target did not land
                raise EndpointUpdateRolledBack(self.endpoint_name, target, serving, described.get("FailureReason"))
            if record is not None and self._rolled_back(record, described):
                raise EndpointUpdateRolledBack(self.endpoint_name, target, serving, described.get("FailureReason"))
            try:
                return self._update(described)
            except ClientError as error:
                if "in-progress" not in str(error):
                    raise
                # another caller's change started between our look and our call: wait for it, look again
                self.log.info("Endpoint %s began changing meanwhile (%s); deciding again.", self.endpoint_name, error)

    def _rolled_back(self, record: DeploymentRecord, described: dict) -> bool:
        """Whether this task's recorded update towards the target was tried and rolled back: the endpoint is
        back on the config it replaced, with a FailureReason, and the update reached SageMaker (it was
        accepted, or the endpoint changed since the moment before the call). Otherwise the update is
        started (again): a record whose call never went out is no reason to fail."""
        if record.action != "update" or record.previous != described["EndpointConfigName"]:
            return False
        reached = record.sent or (record.base is not None and record.base != _stamp(described["LastModifiedTime"]))
        return reached and bool(described.get("FailureReason"))

    # --- the actions ------------------------------------------------------------------------------

    def _create(self) -> dict[str, Any]:
        target = self.endpoint_config_name
        record = DeploymentRecord("create", target, self._by)
        tags = [tag for tag in self._tag_list() if tag["Key"] != RECORD_TAG] + [record.tag()]
        self.log.info("Creating endpoint %s on endpoint config %s.", self.endpoint_name, target)
        self.hook.conn.create_endpoint(EndpointName=self.endpoint_name, EndpointConfigName=target, Tags=tags)
        described = self._wait(self._describe())
        if described is None:
            raise AirflowException(f"Endpoint {self.endpoint_name} was deleted while it was being created")
        if described["EndpointStatus"] == "Failed":
            raise AirflowFailException(
                f"Endpoint {self.endpoint_name} failed to create on endpoint config {target}: "
                f"{described.get('FailureReason', 'no reason given')}. Delete it before deploying again.")
        self._verify(described)
        self.log.info("Endpoint %s is InService on %s.", self.endpoint_name, target)
        return self._result(described, "created", None, None)

    def _update(self, described: dict) -> dict[str, Any]:
        from botocore.exceptions import ClientError

        target, previous = self.endpoint_config_name, described["EndpointConfigName"]
        deployment_config = with_rollback_alarms(self.deployment_config, self._put_alarms())
        record = DeploymentRecord("update", target, self._by, previous=previous,
                                  base=_stamp(described["LastModifiedTime"]))
        # recorded before the call, so a try that dies right after it still tells its retry
        self._write_record(described["EndpointArn"], record)
        self.log.info("Updating endpoint %s from %s to %s with DeploymentConfig %s.", self.endpoint_name, previous,
                      target, deployment_config)
        request = {"EndpointName": self.endpoint_name, "EndpointConfigName": target}
        if deployment_config:
            request["DeploymentConfig"] = deployment_config
        try:
            self._send_update(request)
        except ClientError as error:
            if "in-progress" in str(error):
                # another caller's change came first, and moves LastModifiedTime: without the base, only
                # an accepted call counts as this task's update when a later try reads the record
                self._write_record(described["EndpointArn"], replace(record, base=None))
            raise
        self._write_record(described["EndpointArn"], replace(record, sent=True))
        after = self._wait(self._describe())
        if after is None:
            raise AirflowException(f"Endpoint {self.endpoint_name} was deleted during its update to {target}")
        self._verify(after)
        self.log.info("Endpoint %s serves %s (it served %s).", self.endpoint_name, target, previous)
        return self._result(after, "updated", previous, deployment_config)

    def _send_update(self, request: dict) -> None:
        self.hook.conn.update_endpoint(**request)

    def _put_alarms(self) -> list[str]:
        """Put each alarm (PutMetricAlarm creates or overwrites one, leaving its state); their names."""
        if not self.alarms:
            return []
        cloudwatch = AwsBaseHook(client_type="cloudwatch", **self._hook_parameters).get_conn()
        for request in self.alarms:
            cloudwatch.put_metric_alarm(**request)
            self.log.info("Put alarm %s (rolls the update back when it goes into ALARM).", request["AlarmName"])
        return [request["AlarmName"] for request in self.alarms]

    # --- looking and waiting ----------------------------------------------------------------------

    def _describe(self) -> dict | None:
        return describe_or_none(self.hook.describe_endpoint, self.endpoint_name)

    def _wait(self, described: dict | None) -> dict | None:
        """DescribeEndpoint every check_interval until the endpoint settles (or is gone), logging progress."""
        while described is not None and not _settled(described):
            self._log_progress(described)
            if time.monotonic() >= self._deadline:
                raise AirflowException(
                    f"Endpoint {self.endpoint_name} is still {described['EndpointStatus']} after "
                    f"{self.max_wait_seconds:g} s; a retry rejoins it")
            time.sleep(self.check_interval)
            described = self._describe()
        if described is not None:
            self._log_progress(described)
        return described

    def _log_progress(self, described: dict) -> None:
        """Status changes, and each new variant's stage and weights, only when they change."""
        status = (described["EndpointStatus"], described["EndpointConfigName"])
        if self._seen.get("status") != status:
            self._seen["status"] = status
            pending = _pending_config(described)
            self.log.info("Endpoint %s: %s on %s%s", self.endpoint_name, status[0], status[1],
                          f", deploying {pending}" if pending else "")
        for variant in (described.get("PendingDeploymentSummary") or {}).get("ProductionVariants", []):
            stage = (variant.get("VariantStatus") or [{}])[0]
            view = (stage.get("Status"), variant.get("CurrentWeight"), variant.get("DesiredWeight"),
                    variant.get("CurrentInstanceCount"), variant.get("DesiredInstanceCount"))
            key = f"variant:{variant['VariantName']}"
            if self._seen.get(key) != view:
                self._seen[key] = view
                status, weight, desired_weight, instances, desired_instances = view
                parts = [status or "pending"]
                if weight is not None:
                    parts.append(f"weight {weight:g} of {desired_weight:g}")
                if instances is not None:
                    parts.append(f"instances {instances} of {desired_instances}")
                message = f" ({stage['StatusMessage']})" if stage.get("StatusMessage") else ""
                self.log.info("  new variant %s: %s%s", variant["VariantName"], ", ".join(parts), message)

    def _raise_unless_in_service(self, described: dict) -> None:
        """A settled endpoint that is not InService (Failed, UpdateRollbackFailed, OutOfService) takes no update
        and will not mend itself: a person must look, so it fails without retries."""
        status = described["EndpointStatus"]
        if status != "InService":
            raise AirflowFailException(
                f"Endpoint {self.endpoint_name} is {status} on endpoint config {described['EndpointConfigName']}: "
                f"{described.get('FailureReason', 'no reason given')}")

    def _verify(self, described: dict) -> None:
        """After a create or update: InService on the target with nothing pending, or a loud failure."""
        self._raise_unless_in_service(described)
        serving = described["EndpointConfigName"]
        if serving != self.endpoint_config_name:
            raise EndpointUpdateRolledBack(self.endpoint_name, self.endpoint_config_name, serving,
                                           described.get("FailureReason"))

    # --- the record of this task's deployment -------------------------------------------------------

    def _own_record(self, described: dict) -> DeploymentRecord | None:
        """The endpoint's record, when a try of this task instance wrote it for this target."""
        tags = self.hook.conn.list_tags(ResourceArn=described["EndpointArn"], MaxResults=100)["Tags"]
        for tag in tags:
            if tag["Key"] == RECORD_TAG:
                record = DeploymentRecord.parse(tag["Value"])
                if record is not None and record.by == self._by and record.target == self.endpoint_config_name:
                    return record
        return None

    def _write_record(self, arn: str, record: DeploymentRecord) -> None:
        self.hook.conn.add_tags(ResourceArn=arn, Tags=[record.tag()])

    def _tag_list(self) -> list[dict[str, str]]:
        if isinstance(self.tags, dict):
            return [{"Key": key, "Value": str(value)} for key, value in self.tags.items()]
        return list(self.tags or [])

    def _result(self, described: dict, action: str, previous: str | None, deployment_config: dict | None) -> dict:
        return {
            "endpoint_name": self.endpoint_name,
            "endpoint_arn": described["EndpointArn"],
            "endpoint_config_name": self.endpoint_config_name,
            "previous_endpoint_config_name": previous,
            "action": action,
            "deployment_config": deployment_config,
        }
