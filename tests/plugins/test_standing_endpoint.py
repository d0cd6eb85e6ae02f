"""SageMakerDeployStandingEndpointOperator against the local SageMaker: it creates, updates (canary,
serverless all-at-once) or leaves a standing endpoint, raises when an alarm rolls the update back, and
every retry rejoins or reports what an earlier try did instead of deploying a second time. The blue
model answers "blue", the green one "green"."""
from __future__ import annotations

import pickle
import threading
import time
from dataclasses import replace
from types import SimpleNamespace

import pytest
from airflow.sdk.exceptions import AirflowException, AirflowFailException

from sagemaker_pipelines_plugin.standing_endpoint import (
    RECORD_TAG,
    DeploymentRecord,
    EndpointUpdateRolledBack,
    SageMakerDeployStandingEndpointOperator,
    with_rollback_alarms,
)
from tests.conftest import client_of
from tests.emulator.hosting_fixtures import (FAILING_MODEL_FN_PY, create_config, create_model, deploy, instance_variant,
                                             invoke_json, scaler_files, unique)
from tests.emulator.test_deployment_guardrails import Traffic

pytestmark = pytest.mark.slow

DEADLINE_S = 90
CANARY = {"BlueGreenUpdatePolicy": {
    "TrafficRoutingConfiguration": {"Type": "CANARY", "CanarySize": {"Type": "INSTANCE_COUNT", "Value": 1},
                                    "WaitIntervalInSeconds": 2},
    "TerminationWaitInSeconds": 0}}
ALL_AT_ONCE = {"BlueGreenUpdatePolicy": {
    "TrafficRoutingConfiguration": {"Type": "ALL_AT_ONCE", "WaitIntervalInSeconds": 2},
    "TerminationWaitInSeconds": 0}}


@pytest.fixture(scope="module")
def cloudwatch_client(emulator):
    return client_of(emulator, "cloudwatch")


@pytest.fixture(scope="module")
def configs(sagemaker_client, s3_client) -> SimpleNamespace:
    """Endpoint configs of the blue model (one instance) and the green one (two: room for a one-instance canary)."""
    blue = create_model(sagemaker_client, s3_client, unique("se-blue"), scaler_files(2, "blue"))
    green = create_model(sagemaker_client, s3_client, unique("se-green"), scaler_files(10, "green"))

    def serverless(model: str) -> list[dict]:
        return [{"VariantName": "AllTraffic", "ModelName": model,
                 "ServerlessConfig": {"MemorySizeInMB": 2048, "MaxConcurrency": 5}}]

    return SimpleNamespace(
        blue=create_config(sagemaker_client, unique("se-blue-cfg"), [instance_variant(blue)]),
        green=create_config(sagemaker_client, unique("se-green-cfg"), [instance_variant(green, count=2)]),
        serverless_blue=create_config(sagemaker_client, unique("se-sls-blue"), serverless(blue)),
        serverless_green=create_config(sagemaker_client, unique("se-sls-green"), serverless(green)),
    )


@pytest.fixture
def update_calls(monkeypatch) -> list[dict]:
    """Every UpdateEndpoint request any operator of the test sends."""
    calls: list[dict] = []
    original = SageMakerDeployStandingEndpointOperator._send_update

    def counting(self, request):
        calls.append(request)
        return original(self, request)

    monkeypatch.setattr(SageMakerDeployStandingEndpointOperator, "_send_update", counting)
    return calls


def _alarms(endpoint: str) -> list[dict]:
    """The operator's `alarms`, test data (a DAG's come from include/pipelines/requests.py): PutMetricAlarm for
    AllTraffic's 5XX errors and model latency (in microseconds), quiet when there is no traffic."""
    dimensions = [{"Name": "EndpointName", "Value": endpoint}, {"Name": "VariantName", "Value": "AllTraffic"}]
    return [{"AlarmName": f"{endpoint}-{suffix}", "Namespace": "AWS/SageMaker", "MetricName": metric,
             "Statistic": statistic, "Threshold": threshold, "Dimensions": dimensions, "Period": 60,
             "EvaluationPeriods": 1, "ComparisonOperator": "GreaterThanOrEqualToThreshold",
             "TreatMissingData": "notBreaching"}
            for suffix, metric, statistic, threshold in (("5xx-errors", "Invocation5XXErrors", "Sum", 1.0),
                                                         ("model-latency", "ModelLatency", "Average", 2_000_000.0))]


def _context(try_number: int = 1, run_id: str = "run-1") -> dict:
    ti = SimpleNamespace(try_number=try_number, dag_id="standing", run_id=run_id, task_id="deploy", map_index=-1)
    return {"ti": ti, "run_id": run_id}


def _operator(endpoint: str, config: str, **kwargs) -> SageMakerDeployStandingEndpointOperator:
    kwargs.setdefault("max_wait_seconds", DEADLINE_S)
    return SageMakerDeployStandingEndpointOperator(task_id="deploy", endpoint_name=endpoint, endpoint_config_name=config,
                                                   check_interval=0.5, **kwargs)


def _standing(sagemaker_client, config: str) -> tuple[str, dict]:
    endpoint = unique("se-ep")
    described = deploy(sagemaker_client, endpoint, config)
    assert described["EndpointStatus"] == "InService", described.get("FailureReason")
    return endpoint, described


def _tag_of(sagemaker_client, arn: str) -> dict[str, str]:
    return {tag["Key"]: tag["Value"] for tag in sagemaker_client.list_tags(ResourceArn=arn)["Tags"]}


def _answers(runtime_client, endpoint: str, count: int = 10) -> set[str]:
    return {invoke_json(runtime_client, endpoint, {"values": [1]})[0]["tag"] for _ in range(count)}


def _wait_for_update(sagemaker_client, endpoint: str, stage: str | None = None) -> dict:
    """DescribeEndpoint until an update is pending (and its new variant is at `stage`, when given)."""
    deadline = time.monotonic() + DEADLINE_S
    while True:
        described = sagemaker_client.describe_endpoint(EndpointName=endpoint)
        pending = described.get("PendingDeploymentSummary")
        if pending and (stage is None or pending["ProductionVariants"][0]["VariantStatus"][0]["Status"] == stage):
            return described
        assert time.monotonic() < deadline, f"no update {stage or ''} on {endpoint}: {described}"
        time.sleep(0.1)


# --- no SageMaker needed ------------------------------------------------------------------------

def test_alarm_names_join_the_deployment_config_once_each_and_the_input_is_left_alone():
    given = {**CANARY, "AutoRollbackConfiguration": {"Alarms": [{"AlarmName": "mine"}]}}
    merged = with_rollback_alarms(given, ["ep-5xx-errors", "mine", "ep-5xx-errors"])
    assert merged["AutoRollbackConfiguration"]["Alarms"] == [{"AlarmName": "mine"}, {"AlarmName": "ep-5xx-errors"}]
    assert given["AutoRollbackConfiguration"]["Alarms"] == [{"AlarmName": "mine"}]
    assert with_rollback_alarms(None, ["a"]) == {"AutoRollbackConfiguration": {"Alarms": [{"AlarmName": "a"}]}}
    assert with_rollback_alarms(None, []) is None


def test_the_record_tag_round_trips_and_the_rollback_error_is_not_retried():
    record = DeploymentRecord("update", "ep-v2", "0123456789abcdef", previous="ep-v1",
                              base="2026-01-02T03:04:05.000006Z", sent=True)
    tag = record.tag()
    assert tag["Key"] == RECORD_TAG and len(tag["Value"]) <= 256 and "+" not in tag["Value"]
    assert DeploymentRecord.parse(tag["Value"]) == record
    assert DeploymentRecord.parse("set by hand") is None

    error = EndpointUpdateRolledBack("ep", "ep-v2", "ep-v1", "alarm ep-5xx-errors went into ALARM")
    assert isinstance(error, AirflowFailException)
    assert all(part in str(error) for part in ("ep", "ep-v2", "ep-v1", "alarm ep-5xx-errors went into ALARM"))
    assert str(pickle.loads(pickle.dumps(error))) == str(error)
    operator = _operator("ep", "ep-v2")
    assert {"endpoint_name", "endpoint_config_name", "deployment_config", "alarms", "tags"} <= set(operator.template_fields)


def test_a_recorded_update_counts_as_rolled_back_only_when_it_reached_sagemaker_and_failed():
    from datetime import datetime, timedelta, timezone

    before = datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=timezone.utc)
    record = DeploymentRecord("update", "ep-v2", "key", previous="ep-v1", base="2026-01-02T03:04:05.000006Z")
    failed = {"EndpointConfigName": "ep-v1", "LastModifiedTime": before + timedelta(minutes=5), "FailureReason": "alarm"}
    rolled_back = _operator("ep", "ep-v2")._rolled_back
    assert rolled_back(record, failed)  # the endpoint changed after the record: the update ran and failed
    assert rolled_back(replace(record, sent=True), {**failed, "LastModifiedTime": before})  # accepted, then failed
    # the call never went out (the try died between the record and UpdateEndpoint): start it
    assert not rolled_back(record, {**failed, "LastModifiedTime": before})
    assert not rolled_back(replace(record, sent=True), {**failed, "FailureReason": None})  # no failure to report
    assert not rolled_back(replace(record, sent=True), {**failed, "EndpointConfigName": "ep-v0"})  # changed since by others


# --- against the local SageMaker ----------------------------------------------------------------

def test_an_absent_endpoint_is_created_and_its_retry_creates_nothing(sagemaker_client, runtime_client, configs,
                                                                     update_calls):
    endpoint = unique("se-new")
    tags = [{"Key": "endpoint-role", "Value": "standing"}]
    result = _operator(endpoint, configs.blue, tags=tags).execute(_context())

    described = sagemaker_client.describe_endpoint(EndpointName=endpoint)
    assert result == {"endpoint_name": endpoint, "endpoint_arn": described["EndpointArn"],
                      "endpoint_config_name": configs.blue, "previous_endpoint_config_name": None,
                      "action": "created", "deployment_config": None}
    assert (described["EndpointStatus"], described["EndpointConfigName"]) == ("InService", configs.blue)
    assert _tag_of(sagemaker_client, described["EndpointArn"])["endpoint-role"] == "standing"
    assert _answers(runtime_client, endpoint, 3) == {"blue"}

    # a retry of the same task (its first try died before returning) reports the create, and does nothing
    again = _operator(endpoint, configs.blue, tags=tags).execute(_context(try_number=2))
    assert again == result
    after = sagemaker_client.describe_endpoint(EndpointName=endpoint)
    assert after["LastModifiedTime"] == described["LastModifiedTime"] and update_calls == []
    sagemaker_client.delete_endpoint(EndpointName=endpoint)


def test_a_create_that_fails_raises_with_sagemakers_reason(sagemaker_client, s3_client):
    broken = create_model(sagemaker_client, s3_client, unique("se-broken"), {"code/inference.py": FAILING_MODEL_FN_PY})
    config = create_config(sagemaker_client, unique("se-broken-cfg"), [instance_variant(broken)])
    endpoint = unique("se-broken-ep")
    with pytest.raises(AirflowFailException, match="weights file model.bin is corrupt"):
        _operator(endpoint, config).execute(_context())
    with pytest.raises(AirflowFailException, match=f"{endpoint} is Failed"):  # and so does its retry
        _operator(endpoint, config).execute(_context(try_number=2))
    sagemaker_client.delete_endpoint(EndpointName=endpoint)


def test_an_endpoint_that_serves_the_target_is_left_unchanged(sagemaker_client, configs, update_calls):
    endpoint, before = _standing(sagemaker_client, configs.blue)
    result = _operator(endpoint, configs.blue, deployment_config=CANARY, alarms=_alarms(endpoint)).execute(_context())

    assert (result["action"], result["previous_endpoint_config_name"], result["deployment_config"]) == ("unchanged", None, None)
    after = sagemaker_client.describe_endpoint(EndpointName=endpoint)
    assert after["LastModifiedTime"] == before["LastModifiedTime"] and "LastDeploymentConfig" not in after
    assert update_calls == []
    sagemaker_client.delete_endpoint(EndpointName=endpoint)


def test_a_canary_update_that_succeeds_serves_the_target(sagemaker_client, runtime_client, configs, update_calls, capfd):
    endpoint, _ = _standing(sagemaker_client, configs.blue)
    capfd.readouterr()
    result = _operator(endpoint, configs.green, deployment_config=CANARY).execute(_context())
    log = capfd.readouterr().out  # the task log: Airflow's structlog writes it to stdout

    assert result["action"] == "updated" and result["previous_endpoint_config_name"] == configs.blue
    assert result["endpoint_config_name"] == configs.green and result["deployment_config"] == CANARY
    described = sagemaker_client.describe_endpoint(EndpointName=endpoint)
    assert (described["EndpointStatus"], described["EndpointConfigName"]) == ("InService", configs.green)
    assert "PendingDeploymentSummary" not in described and described["LastDeploymentConfig"] == CANARY
    assert _answers(runtime_client, endpoint) == {"green"}
    assert len(update_calls) == 1
    progress = [line.split("new variant AllTraffic: ")[1] for line in log.splitlines() if "new variant AllTraffic" in line]
    assert any(line.startswith("Baking, weight 0.5 of 1, instances 2 of 2") for line in progress), log
    assert any(line.startswith("Baking, weight 1 of 1") for line in progress), log
    assert len(progress) == len(set(progress)), "a variant's unchanged progress was logged again"

    # a retry of the same task finds its update done: the same answer, no second update
    again = _operator(endpoint, configs.green, deployment_config=CANARY).execute(_context(try_number=2))
    assert again == result and len(update_calls) == 1
    assert sagemaker_client.describe_endpoint(EndpointName=endpoint)["LastModifiedTime"] == described["LastModifiedTime"]
    sagemaker_client.delete_endpoint(EndpointName=endpoint)


def test_an_alarm_during_the_canary_rolls_back_and_fails_the_task(sagemaker_client, runtime_client, cloudwatch_client,
                                                                  configs, update_calls):
    endpoint, _ = _standing(sagemaker_client, configs.blue)
    alarms = _alarms(endpoint)
    baking = {**CANARY, "BlueGreenUpdatePolicy": {**CANARY["BlueGreenUpdatePolicy"], "TrafficRoutingConfiguration": {
        **CANARY["BlueGreenUpdatePolicy"]["TrafficRoutingConfiguration"], "WaitIntervalInSeconds": 120}}}
    alarm_raised = threading.Event()

    def raise_the_alarm_while_the_canary_bakes() -> None:
        _wait_for_update(sagemaker_client, endpoint, "Baking")
        # the emulator evaluates AWS/SageMaker alarms itself and puts a quiet one back to OK at its next
        # period: set ALARM again until the rollback has begun
        while sagemaker_client.describe_endpoint(EndpointName=endpoint)["EndpointStatus"] == "Updating":
            cloudwatch_client.set_alarm_state(AlarmName=f"{endpoint}-5xx-errors", StateValue="ALARM",
                                              StateReason="rehearsed regression")
            alarm_raised.set()
            time.sleep(0.5)

    setter = threading.Thread(target=raise_the_alarm_while_the_canary_bakes, daemon=True)
    with Traffic(runtime_client, endpoint) as traffic:
        setter.start()
        with pytest.raises(EndpointUpdateRolledBack) as excinfo:
            _operator(endpoint, configs.green, deployment_config=baking, alarms=alarms).execute(_context())
        setter.join(timeout=10)
        time.sleep(0.5)  # requests keep flowing after the rollback
    assert alarm_raised.is_set()

    error = excinfo.value
    described = sagemaker_client.describe_endpoint(EndpointName=endpoint)
    assert (described["EndpointStatus"], described["EndpointConfigName"]) == ("InService", configs.blue)
    assert f"{endpoint}-5xx-errors" in described["FailureReason"]
    assert (error.endpoint_name, error.target, error.serving, error.reason) == (
        endpoint, configs.green, configs.blue, described["FailureReason"])
    for part in (endpoint, configs.green, configs.blue, described["FailureReason"]):
        assert part in str(error)
    rollback = described["LastDeploymentConfig"]["AutoRollbackConfiguration"]["Alarms"]
    assert rollback == [{"AlarmName": f"{endpoint}-5xx-errors"}, {"AlarmName": f"{endpoint}-model-latency"}]
    assert traffic.failures == [], traffic.failures[:5]
    assert "blue" in traffic.answers
    assert _answers(runtime_client, endpoint) == {"blue"}

    # its retry (or a clear) reports the same rollback instead of running a second canary
    with pytest.raises(EndpointUpdateRolledBack, match=configs.green):
        _operator(endpoint, configs.green, deployment_config=baking, alarms=alarms).execute(_context(try_number=2))
    assert len(update_calls) == 1
    assert sagemaker_client.describe_endpoint(EndpointName=endpoint)["LastModifiedTime"] == described["LastModifiedTime"]

    # another run is not bound by this run's rollback: it deploys the config again
    result = _operator(endpoint, configs.green, deployment_config=ALL_AT_ONCE).execute(_context(run_id="run-2"))
    assert (result["action"], result["previous_endpoint_config_name"]) == ("updated", configs.blue)
    assert len(update_calls) == 2
    cloudwatch_client.delete_alarms(AlarmNames=[alarm["AlarmName"] for alarm in alarms])
    sagemaker_client.delete_endpoint(EndpointName=endpoint)


def test_a_second_execute_while_the_update_runs_rejoins_it(sagemaker_client, runtime_client, configs, update_calls):
    endpoint, _ = _standing(sagemaker_client, configs.blue)
    outcome: dict = {}

    def first_try() -> None:
        try:
            outcome["result"] = _operator(endpoint, configs.green, deployment_config=ALL_AT_ONCE).execute(_context())
        except Exception as error:  # reported below
            outcome["error"] = error

    worker = threading.Thread(target=first_try, daemon=True)
    worker.start()
    _wait_for_update(sagemaker_client, endpoint)
    second = _operator(endpoint, configs.green, deployment_config=ALL_AT_ONCE).execute(_context(try_number=2))
    worker.join(timeout=DEADLINE_S)

    assert "error" not in outcome, outcome
    assert second["action"] == outcome["result"]["action"] == "updated"
    assert second["previous_endpoint_config_name"] == configs.blue and second["deployment_config"] == ALL_AT_ONCE
    assert len(update_calls) == 1
    assert _answers(runtime_client, endpoint) == {"green"}
    sagemaker_client.delete_endpoint(EndpointName=endpoint)


def test_a_try_that_gave_up_waiting_is_rejoined_by_its_retry(sagemaker_client, configs, update_calls):
    endpoint, _ = _standing(sagemaker_client, configs.blue)
    with pytest.raises(AirflowException, match="still Updating") as excinfo:
        _operator(endpoint, configs.green, deployment_config=ALL_AT_ONCE, max_wait_seconds=1).execute(_context())
    assert not isinstance(excinfo.value, AirflowFailException)  # Airflow retries it

    result = _operator(endpoint, configs.green, deployment_config=ALL_AT_ONCE).execute(_context(try_number=2))
    assert (result["action"], result["previous_endpoint_config_name"]) == ("updated", configs.blue)
    assert len(update_calls) == 1
    assert sagemaker_client.describe_endpoint(EndpointName=endpoint)["EndpointConfigName"] == configs.green
    sagemaker_client.delete_endpoint(EndpointName=endpoint)


def test_a_serverless_endpoint_is_updated_all_at_once(sagemaker_client, runtime_client, cloudwatch_client, configs,
                                                      update_calls):
    endpoint, _ = _standing(sagemaker_client, configs.serverless_blue)
    alarms = _alarms(endpoint)
    result = _operator(endpoint, configs.serverless_green, deployment_config=ALL_AT_ONCE,
                       alarms=alarms).execute(_context())

    assert (result["action"], result["previous_endpoint_config_name"]) == ("updated", configs.serverless_blue)
    assert result["deployment_config"]["BlueGreenUpdatePolicy"] == ALL_AT_ONCE["BlueGreenUpdatePolicy"]
    described = sagemaker_client.describe_endpoint(EndpointName=endpoint)
    assert (described["EndpointStatus"], described["EndpointConfigName"]) == ("InService", configs.serverless_green)
    assert "CurrentServerlessConfig" in described["ProductionVariants"][0] and len(update_calls) == 1
    assert _answers(runtime_client, endpoint, 3) == {"green"}
    cloudwatch_client.delete_alarms(AlarmNames=[alarm["AlarmName"] for alarm in alarms])
    sagemaker_client.delete_endpoint(EndpointName=endpoint)
