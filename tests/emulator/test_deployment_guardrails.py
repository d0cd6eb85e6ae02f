"""UpdateEndpoint's DeploymentConfig on the local SageMaker: canary, linear and rolling updates, and an
alarm that rolls a canary back, all through plain boto3. The old model answers "blue", the new one
"green", so a test sees which fleet took each request."""
from __future__ import annotations

import threading
import time

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from tests.conftest import TEST_REGION
from tests.emulator.hosting_fixtures import (
    create_config,
    create_model,
    deploy,
    instance_variant,
    invoke_json,
    scaler_files,
    unique,
    wait_for_status,
)

pytestmark = pytest.mark.slow

DEADLINE_S = 120  # generous: model servers start slowly on a loaded machine


@pytest.fixture(scope="module")
def cloudwatch_client(emulator):
    return boto3.client("cloudwatch", endpoint_url=emulator.endpoint_url, region_name=TEST_REGION,
                        aws_access_key_id="testing", aws_secret_access_key="testing")


@pytest.fixture(scope="module")
def unchecked_sagemaker_client(emulator):
    """botocore checks no maximum; this client checks nothing, so the server's own validation answers."""
    return boto3.client("sagemaker", endpoint_url=emulator.endpoint_url, region_name=TEST_REGION,
                        aws_access_key_id="testing", aws_secret_access_key="testing",
                        config=Config(parameter_validation=False))


def _blue_green_endpoint(sagemaker_client, s3_client, *, blue_count: int, green_count: int) -> tuple[str, str, str]:
    """An InService endpoint on the blue model, and a config of the green one; (endpoint, blue config, green config)."""
    blue = create_model(sagemaker_client, s3_client, unique("gr-blue"), scaler_files(2, "blue"))
    green = create_model(sagemaker_client, s3_client, unique("gr-green"), scaler_files(10, "green"))
    blue_config = create_config(sagemaker_client, unique("gr-blue-cfg"), [instance_variant(blue, count=blue_count)])
    green_config = create_config(sagemaker_client, unique("gr-green-cfg"), [instance_variant(green, count=green_count)])
    endpoint = unique("gr-ep")
    described = deploy(sagemaker_client, endpoint, blue_config)
    assert described["EndpointStatus"] == "InService", described.get("FailureReason")
    return endpoint, blue_config, green_config


def _pending_variant(description: dict) -> dict | None:
    pending = description.get("PendingDeploymentSummary")
    return pending["ProductionVariants"][0] if pending else None


def _wait_for_variant_status(sagemaker_client, endpoint: str, wanted: str, timeout: float = DEADLINE_S) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        description = sagemaker_client.describe_endpoint(EndpointName=endpoint)
        variant = _pending_variant(description)
        if variant and variant["VariantStatus"][0]["Status"] == wanted:
            return description
        assert time.monotonic() < deadline, f"never {wanted}: {description}"
        time.sleep(0.2)


def _while_updating(sagemaker_client, endpoint: str, timeout: float = DEADLINE_S):
    """(description, pending variant) every 0.2 s while the endpoint has a pending deployment."""
    deadline = time.monotonic() + timeout
    while (pending := _pending_variant(description := sagemaker_client.describe_endpoint(EndpointName=endpoint))):
        yield description, pending
        assert time.monotonic() < deadline, description
        time.sleep(0.2)


class Traffic:
    """A client thread invoking the endpoint without pause, counting which fleet answered and what failed."""

    def __init__(self, runtime_client, endpoint: str):
        self.runtime_client, self.endpoint = runtime_client, endpoint
        self.answers: list[str] = []
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.answers.append(invoke_json(self.runtime_client, self.endpoint, {"values": [1]})[0]["tag"])
            except Exception as error:  # any failed request is what these tests look for
                self.failures.append(repr(error))

    def __enter__(self) -> "Traffic":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def _canary(size: dict, wait_s: int, **policy) -> dict:
    return {"BlueGreenUpdatePolicy": {
        "TrafficRoutingConfiguration": {"Type": "CANARY", "CanarySize": size, "WaitIntervalInSeconds": wait_s},
        **policy}}


def test_canary_sends_its_share_to_the_new_fleet_then_everything(sagemaker_client, runtime_client, s3_client):
    endpoint, blue_config, green_config = _blue_green_endpoint(sagemaker_client, s3_client, blue_count=1, green_count=4)
    config = _canary({"Type": "CAPACITY_PERCENT", "Value": 25}, wait_s=10, TerminationWaitInSeconds=1)
    sagemaker_client.update_endpoint(EndpointName=endpoint, EndpointConfigName=green_config, DeploymentConfig=config)

    during = _wait_for_variant_status(sagemaker_client, endpoint, "Baking")
    assert during["EndpointStatus"] == "Updating" and during["EndpointConfigName"] == blue_config
    pending = _pending_variant(during)
    assert (pending["CurrentWeight"], pending["DesiredWeight"]) == (0.25, 1.0)
    assert (pending["CurrentInstanceCount"], pending["DesiredInstanceCount"]) == (4, 4)
    assert during["ProductionVariants"][0]["CurrentWeight"] == 0.75
    answers = [invoke_json(runtime_client, endpoint, {"values": [1]})[0]["tag"] for _ in range(120)]
    still = _pending_variant(sagemaker_client.describe_endpoint(EndpointName=endpoint))
    assert still and still["VariantStatus"][0]["Status"] == "Baking", "the canary's bake ended before 120 requests"
    share = answers.count("green") / len(answers)
    assert 0.10 <= share <= 0.42, f"the canary took {share:.0%} of the requests, not about 25%"
    assert answers.count("blue") + answers.count("green") == len(answers)

    after = wait_for_status(sagemaker_client, endpoint, {"InService"}, timeout=DEADLINE_S)
    assert after["EndpointConfigName"] == green_config and "FailureReason" not in after
    assert after["LastDeploymentConfig"] == config
    (variant,) = after["ProductionVariants"]
    assert (variant["CurrentWeight"], variant["CurrentInstanceCount"]) == (1.0, 4)
    assert {invoke_json(runtime_client, endpoint, {"values": [1]})[0]["tag"] for _ in range(20)} == {"green"}
    sagemaker_client.delete_endpoint(EndpointName=endpoint)


def test_linear_update_shifts_traffic_step_by_step(sagemaker_client, runtime_client, s3_client):
    endpoint, _, green_config = _blue_green_endpoint(sagemaker_client, s3_client, blue_count=1, green_count=3)
    sagemaker_client.update_endpoint(EndpointName=endpoint, EndpointConfigName=green_config, DeploymentConfig={
        "BlueGreenUpdatePolicy": {"TrafficRoutingConfiguration": {
            "Type": "LINEAR", "LinearStepSize": {"Type": "INSTANCE_COUNT", "Value": 1}, "WaitIntervalInSeconds": 3}}})

    seen: list[tuple[float, float]] = []  # (new fleet's weight, old fleet's weight), as DescribeEndpoint shows them
    with Traffic(runtime_client, endpoint) as traffic:
        for description, pending in _while_updating(sagemaker_client, endpoint):
            if "CurrentWeight" in pending and (not seen or seen[-1][0] != pending["CurrentWeight"]):
                seen.append((pending["CurrentWeight"], description["ProductionVariants"][0]["CurrentWeight"]))
    new_weights = [round(new, 2) for new, _ in seen if new > 0]
    assert new_weights == [0.33, 0.67, 1.0], seen
    assert all(abs(new + old - 1.0) < 1e-9 for new, old in seen), seen
    assert traffic.failures == [], traffic.failures[:5]
    assert {"blue", "green"} <= set(traffic.answers)
    assert wait_for_status(sagemaker_client, endpoint, {"InService"})["EndpointConfigName"] == green_config
    sagemaker_client.delete_endpoint(EndpointName=endpoint)


def test_rolling_update_replaces_instances_batch_by_batch(sagemaker_client, runtime_client, s3_client):
    endpoint, _, green_config = _blue_green_endpoint(sagemaker_client, s3_client, blue_count=2, green_count=2)
    config = {"RollingUpdatePolicy": {"MaximumBatchSize": {"Type": "INSTANCE_COUNT", "Value": 1},
                                      "WaitIntervalInSeconds": 3}}
    sagemaker_client.update_endpoint(EndpointName=endpoint, EndpointConfigName=green_config, DeploymentConfig=config)

    counts: list[tuple[int, int]] = []  # (old instances, new instances) serving
    with Traffic(runtime_client, endpoint) as traffic:
        for description, pending in _while_updating(sagemaker_client, endpoint):
            if "CurrentInstanceCount" in pending:
                count = (description["ProductionVariants"][0]["CurrentInstanceCount"], pending["CurrentInstanceCount"])
                if not counts or counts[-1] != count:
                    counts.append(count)
        mixed = list(traffic.answers)
    assert counts[0] == (2, 1), counts  # one new instance first, beside the whole old fleet
    assert (1, 1) in counts or (1, 2) in counts, counts  # then one old instance went
    assert traffic.failures == [], traffic.failures[:5]
    assert {"blue", "green"} <= set(mixed)  # both models served during the update
    after = wait_for_status(sagemaker_client, endpoint, {"InService"})
    assert after["EndpointConfigName"] == green_config
    assert after["ProductionVariants"][0]["CurrentInstanceCount"] == 2
    assert after["LastDeploymentConfig"] == config
    assert {invoke_json(runtime_client, endpoint, {"values": [1]})[0]["tag"] for _ in range(10)} == {"green"}
    sagemaker_client.delete_endpoint(EndpointName=endpoint)


def test_alarm_during_the_canary_rolls_back_with_no_failed_request(sagemaker_client, runtime_client, s3_client,
                                                                  cloudwatch_client):
    endpoint, blue_config, green_config = _blue_green_endpoint(sagemaker_client, s3_client, blue_count=1, green_count=2)
    alarm = unique("gr-errors")
    # a rehearsal alarm, set by hand below: on a namespace of its own, since the emulator evaluates the
    # AWS/SageMaker alarms itself and would put an alarm on clean traffic back to OK at its next period
    cloudwatch_client.put_metric_alarm(
        AlarmName=alarm, Namespace="Rehearsals", MetricName="Regressions", Statistic="Sum",
        Dimensions=[{"Name": "EndpointName", "Value": endpoint}],
        Period=60, EvaluationPeriods=1, Threshold=1, ComparisonOperator="GreaterThanOrEqualToThreshold",
        TreatMissingData="notBreaching")
    config = {**_canary({"Type": "INSTANCE_COUNT", "Value": 1}, wait_s=300),
              "AutoRollbackConfiguration": {"Alarms": [{"AlarmName": alarm}]}}
    sagemaker_client.update_endpoint(EndpointName=endpoint, EndpointConfigName=green_config, DeploymentConfig=config)

    with Traffic(runtime_client, endpoint) as traffic:
        _wait_for_variant_status(sagemaker_client, endpoint, "Baking")
        deadline = time.monotonic() + 30
        while "green" not in traffic.answers:  # the canary answers before its alarm fires
            assert time.monotonic() < deadline, "the canary never answered"
            time.sleep(0.1)
        cloudwatch_client.set_alarm_state(AlarmName=alarm, StateValue="ALARM", StateReason="rehearsed regression")
        after = wait_for_status(sagemaker_client, endpoint, {"InService"}, timeout=30)
        rolled_back_at = len(traffic.answers)
        time.sleep(1.0)  # requests keep flowing after the rollback
    cloudwatch_client.delete_alarms(AlarmNames=[alarm])

    assert after["EndpointConfigName"] == blue_config
    assert alarm in after["FailureReason"] and "rolled back" in after["FailureReason"]
    assert after["LastDeploymentConfig"] == config
    assert traffic.failures == [], traffic.failures[:5]
    assert set(traffic.answers[rolled_back_at:]) == {"blue"}
    assert {invoke_json(runtime_client, endpoint, {"values": [1]})[0]["tag"] for _ in range(10)} == {"blue"}
    sagemaker_client.delete_endpoint(EndpointName=endpoint)


def test_deployment_configs_sagemaker_refuses(sagemaker_client, unchecked_sagemaker_client, s3_client):
    endpoint, blue_config, _ = _blue_green_endpoint(sagemaker_client, s3_client, blue_count=1, green_count=1)
    model = create_model(sagemaker_client, s3_client, unique("gr-v2"), scaler_files(3, "v2"))
    two = create_config(sagemaker_client, unique("gr-two"), [instance_variant(model, count=2)])
    renamed = create_config(sagemaker_client, unique("gr-renamed"), [instance_variant(model, "Other", count=2)])
    serverless = create_config(sagemaker_client, unique("gr-sls"), [{
        "VariantName": "AllTraffic", "ModelName": model, "ServerlessConfig": {"MemorySizeInMB": 2048, "MaxConcurrency": 5}}])
    linear = {"Type": "LINEAR", "WaitIntervalInSeconds": 0}
    rolling = {"WaitIntervalInSeconds": 0}

    refused = [
        (two, _canary({"Type": "INSTANCE_COUNT", "Value": 2}, 0), "CanarySize must be less than or equal to 50%"),
        (two, _canary({"Type": "CAPACITY_PERCENT", "Value": 60}, 0), "CanarySize must be less than or equal to 50%"),
        (two, _canary({"Type": "INSTANCE_COUNT", "Value": 3}, 0), "exceeds the variant's total instance count of 2"),
        (two, {"BlueGreenUpdatePolicy": {"TrafficRoutingConfiguration": {"Type": "CANARY", "WaitIntervalInSeconds": 0}}},
         "CanarySize is required for CANARY traffic routing."),
        (two, {"BlueGreenUpdatePolicy": {"TrafficRoutingConfiguration": {
            **linear, "LinearStepSize": {"Type": "CAPACITY_PERCENT", "Value": 5}}}}, "LinearStepSize must be between 10% and 50%"),
        (two, {"BlueGreenUpdatePolicy": {"TrafficRoutingConfiguration": {
            **linear, "LinearStepSize": {"Type": "CAPACITY_PERCENT", "Value": 75}}}}, "LinearStepSize must be between 10% and 50%"),
        (two, {"RollingUpdatePolicy": {**rolling, "MaximumBatchSize": {"Type": "CAPACITY_PERCENT", "Value": 80}}},
         "MaximumBatchSize must be between 5% and 50%"),
        (two, {"RollingUpdatePolicy": {**rolling, "MaximumBatchSize": {"Type": "INSTANCE_COUNT", "Value": 1}},
               "BlueGreenUpdatePolicy": {"TrafficRoutingConfiguration": {"Type": "ALL_AT_ONCE", "WaitIntervalInSeconds": 0}}},
         "either BlueGreenUpdatePolicy or RollingUpdatePolicy"),
        (renamed, _canary({"Type": "INSTANCE_COUNT", "Value": 1}, 0), "same variant names as the current one"),
        (serverless, _canary({"Type": "CAPACITY_PERCENT", "Value": 50}, 0), "not supported for serverless variants"),
        (serverless, {"RollingUpdatePolicy": {**rolling, "MaximumBatchSize": {"Type": "CAPACITY_PERCENT", "Value": 50}}},
         "RollingUpdatePolicy is not supported for serverless variants"),
    ]
    for config_name, deployment_config, message in refused:
        with pytest.raises(ClientError) as excinfo:
            sagemaker_client.update_endpoint(EndpointName=endpoint, EndpointConfigName=config_name,
                                             DeploymentConfig=deployment_config)
        error = excinfo.value.response["Error"]
        assert error["Code"] == "ValidationException" and message in error["Message"], (deployment_config, error)

    # the service model's ranges and enums, which botocore's client leaves to the server (AWS's wording)
    for routing, member in (({"Type": "ALL_AT_ONCE", "WaitIntervalInSeconds": 3601}, "trafficRoutingConfiguration.waitIntervalInSeconds"),
                            ({"Type": "SOMETIMES", "WaitIntervalInSeconds": 0}, "trafficRoutingConfiguration.type")):
        with pytest.raises(ClientError) as excinfo:
            unchecked_sagemaker_client.update_endpoint(EndpointName=endpoint, EndpointConfigName=two, DeploymentConfig={
                "BlueGreenUpdatePolicy": {"TrafficRoutingConfiguration": routing, "MaximumExecutionTimeoutInSeconds": 600}})
        error = excinfo.value.response["Error"]
        assert error["Code"] == "ValidationException" and member in error["Message"], error
    with pytest.raises(ClientError) as excinfo:
        unchecked_sagemaker_client.update_endpoint(EndpointName=endpoint, EndpointConfigName=two, DeploymentConfig={
            "BlueGreenUpdatePolicy": {"TrafficRoutingConfiguration": {"Type": "ALL_AT_ONCE", "WaitIntervalInSeconds": 0},
                                      "MaximumExecutionTimeoutInSeconds": 60}})
    assert "blueGreenUpdatePolicy.maximumExecutionTimeoutInSeconds" in excinfo.value.response["Error"]["Message"]

    described = sagemaker_client.describe_endpoint(EndpointName=endpoint)  # nothing refused touched the endpoint
    assert described["EndpointStatus"] == "InService" and described["EndpointConfigName"] == blue_config
    assert "PendingDeploymentSummary" not in described and "LastDeploymentConfig" not in described
    sagemaker_client.delete_endpoint(EndpointName=endpoint)


def test_deployment_past_its_maximum_execution_time_rolls_back(sagemaker_client, runtime_client, s3_client, monkeypatch):
    """MaximumExecutionTimeoutInSeconds is at least 600: the deployment's clock is moved on instead of waiting."""
    import types

    from include.emulator.sagemaker import deployments

    endpoint, blue_config, green_config = _blue_green_endpoint(sagemaker_client, s3_client, blue_count=1, green_count=2)
    skipped = [0.0]
    monkeypatch.setattr(deployments, "time", types.SimpleNamespace(monotonic=lambda: time.monotonic() + skipped[0]))
    sagemaker_client.update_endpoint(EndpointName=endpoint, EndpointConfigName=green_config, DeploymentConfig=_canary(
        {"Type": "INSTANCE_COUNT", "Value": 1}, wait_s=300, MaximumExecutionTimeoutInSeconds=600))
    _wait_for_variant_status(sagemaker_client, endpoint, "Baking")
    skipped[0] = 601.0

    after = wait_for_status(sagemaker_client, endpoint, {"InService"}, timeout=30)
    assert after["EndpointConfigName"] == blue_config
    assert "MaximumExecutionTimeoutInSeconds (600 seconds)" in after["FailureReason"]
    assert {invoke_json(runtime_client, endpoint, {"values": [1]})[0]["tag"] for _ in range(10)} == {"blue"}
    sagemaker_client.delete_endpoint(EndpointName=endpoint)
