"""The runtime publishes SageMaker's endpoint metrics to CloudWatch, and alarms on them are evaluated."""
from __future__ import annotations

import datetime as dt
import json
import time
import types

import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from include.emulator import alarms
from include.emulator.alarms import ALARM, INSUFFICIENT_DATA, OK, AlarmRule, Datapoint, evaluate
from include.emulator.endpoint_metrics import EndpointMetrics, cloudwatch_backend
from tests.conftest import TEST_BUCKET, TEST_REGION, client_of, start_emulator
from tests.emulator.hosting_fixtures import create_config, create_model, deploy, instance_variant, scaler_files, unique

NAMESPACE = "AWS/SageMaker"
T0 = dt.datetime(2026, 1, 12, 20, 0, 0)


# --- the rule, without time: CloudWatch's own tables ---------------------------------------------

def _points(pattern: str, *, breaching: float = 5.0, fine: float = 0.0) -> list[Datapoint]:
    """'0 - X' -> datapoints a minute apart, oldest first: 0 within the threshold, X breaching, - missing."""
    values = {"0": fine, "X": breaching, "-": None}
    return [Datapoint(T0 + dt.timedelta(minutes=index), values[symbol], 1.0 if symbol != "-" else 0.0)
            for index, symbol in enumerate(pattern.split())]


def _rule(treat: str, *, periods: int = 3, to_alarm: int = 3, comparison: str = "GreaterThanOrEqualToThreshold",
          threshold: float = 1.0) -> AlarmRule:
    return AlarmRule(statistic="Sum", period_s=60, evaluation_periods=periods, datapoints_to_alarm=to_alarm,
                     threshold=threshold, comparison=comparison, treat_missing_data=treat)


KEEP = "keep"  # the "Retain current state" of the docs' tables
TREATMENTS = ("missing", "ignore", "breaching", "notBreaching")
# https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/AlarmThatSendsEmail.html#alarms-evaluating-missing-data
THREE_OF_THREE = [
    ("0 - X - X", (OK, OK, OK, OK)),
    ("0 - - - -", (OK, OK, OK, OK)),
    ("- - - - -", (INSUFFICIENT_DATA, KEEP, ALARM, OK)),
    ("0 X X - X", (ALARM, ALARM, ALARM, ALARM)),
    ("- - - - X", (INSUFFICIENT_DATA, KEEP, ALARM, OK)),
    ("X - - - -", (ALARM, KEEP, ALARM, OK)),
]
TWO_OF_THREE = [
    ("0 - X - X", (ALARM, ALARM, ALARM, ALARM)),
    ("0 0 X 0 X", (ALARM, ALARM, ALARM, ALARM)),
    ("0 - X - -", (OK, OK, ALARM, OK)),
    ("- - - - 0", (OK, OK, ALARM, OK)),
    ("- - - - X", (INSUFFICIENT_DATA, KEEP, ALARM, OK)),
]


@pytest.mark.parametrize("to_alarm, pattern, expected", [
    *[(3, pattern, states) for pattern, states in THREE_OF_THREE],
    *[(2, pattern, states) for pattern, states in TWO_OF_THREE],
])
@pytest.mark.parametrize("treat", TREATMENTS)
def test_missing_data_is_treated_as_cloudwatch_documents(treat, to_alarm, pattern, expected):
    wanted = expected[TREATMENTS.index(treat)]
    for current in (OK, ALARM, INSUFFICIENT_DATA):
        result = evaluate(_rule(treat, to_alarm=to_alarm), _points(pattern), current)
        assert result.state == (None if wanted == KEEP else wanted), (pattern, treat, current, result.reason)


def test_m_out_of_n_counts_breaching_datapoints_anywhere_in_the_last_n():
    rule = _rule("missing", periods=5, to_alarm=3)  # 3 out of 5; the range holds 7 periods
    assert evaluate(rule, _points("0 0 X 0 X X 0"), OK).state == ALARM  # the last 5: X 0 X X 0
    assert evaluate(rule, _points("0 0 0 X 0 0 X"), ALARM).state == OK  # X 0 0 X: only 2
    assert evaluate(rule, _points("X X X 0 0 0 0"), ALARM).state == OK  # the old breaches are out of the last 5
    # enough real datapoints: the missing ones are skipped, whatever TreatMissingData says
    for treat in TREATMENTS:
        assert evaluate(_rule(treat, periods=5, to_alarm=3), _points("X - X 0 - X 0"), OK).state == ALARM


@pytest.mark.parametrize("comparison, value, breaches", [
    ("GreaterThanOrEqualToThreshold", 1.0, True), ("GreaterThanOrEqualToThreshold", 0.5, False),
    ("GreaterThanThreshold", 1.0, False), ("GreaterThanThreshold", 1.5, True),
    ("LessThanThreshold", 1.0, False), ("LessThanThreshold", 0.5, True),
    ("LessThanOrEqualToThreshold", 1.0, True), ("LessThanOrEqualToThreshold", 1.5, False),
])
def test_each_comparison_operator(comparison, value, breaches):
    rule = _rule("missing", periods=1, to_alarm=1, comparison=comparison)
    result = evaluate(rule, [Datapoint(T0, value, 1.0)], INSUFFICIENT_DATA)
    assert result.state == (ALARM if breaches else OK)


def test_state_reason_reads_like_cloudwatchs():
    rule = _rule("missing", periods=1, to_alarm=1)
    alarm = evaluate(rule, _points("0 - X"), OK)
    assert alarm.state == ALARM
    assert alarm.reason == ("Threshold Crossed: 1 out of the last 1 datapoints [5.0 (12/01/26 20:02:00)] was greater "
                            "than or equal to the threshold (1.0) (minimum 1 datapoint for OK -> ALARM transition).")
    data = json.loads(alarm.reason_data)
    assert data["statistic"] == "Sum" and data["period"] == 60 and data["threshold"] == 1.0
    assert data["recentDatapoints"] == [5.0]
    assert data["evaluatedDatapoints"] == [
        {"timestamp": "2026-01-12T20:02:00.000+0000", "sampleCount": 1.0, "value": 5.0}]

    ok = evaluate(rule, _points("X - 0"), ALARM)
    assert ok.state == OK
    assert ok.reason == ("Threshold Crossed: 1 out of the last 1 datapoints [0.0 (12/01/26 20:02:00)] was not greater "
                         "than or equal to the threshold (1.0) (minimum 1 datapoint for ALARM -> OK transition).")
    unknown = evaluate(rule, _points("- - -"), OK)
    assert (unknown.state, unknown.reason) == (INSUFFICIENT_DATA, "Insufficient Data: 3 datapoints were unknown.")
    filled = evaluate(_rule("breaching", periods=1, to_alarm=1), _points("- - -"), OK)
    assert filled.reason == ("Threshold Crossed: no datapoints were received for 1 period and 1 missing datapoint "
                             "was treated as [Breaching].")


def test_an_alarm_is_evaluated_once_per_period_so_a_manual_state_holds_until_then():
    # an account of its own: the evaluators of the other emulators in this process never see it
    emulator = types.SimpleNamespace(settings=types.SimpleNamespace(account_id="111122223333"))
    backend = cloudwatch_backend(emulator, TEST_REGION)
    name = "once-per-period"
    backend.put_metric_alarm(name=name, namespace=NAMESPACE, metric_name="Invocation5XXErrors",
                             comparison_operator="GreaterThanOrEqualToThreshold", evaluation_periods=1, period=60,
                             threshold=1.0, statistic="Sum", description="", dimensions=[], alarm_actions=[])
    memory: dict = {}
    start = (time.time() // 60) * 60 + 5
    assert alarms.evaluate_alarms(emulator, TEST_REGION, now=start, evaluated=memory) == {name: INSUFFICIENT_DATA}
    backend.set_alarm_state(name, "rehearsed regression", None, ALARM)
    assert alarms.evaluate_alarms(emulator, TEST_REGION, now=start + 30, evaluated=memory) == {}
    assert alarms.alarm_states(emulator, TEST_REGION, [name]) == {name: ALARM}
    assert alarms.evaluate_alarms(emulator, TEST_REGION, now=start + 60, evaluated=memory) == {name: INSUFFICIENT_DATA}
    backend.delete_alarms([name])


# --- aggregation into StatisticSets ------------------------------------------------------------------

def test_one_statistic_set_per_metric_variant_and_period():
    region = "eu-west-3"  # a region no other test writes metrics to
    emulator = types.SimpleNamespace(settings=types.SimpleNamespace(account_id="123456789012", metrics_period_s=60))
    metrics = EndpointMetrics(emulator)
    try:
        start = (time.time() // 60) * 60 - 600  # a period long over
        for status, latency in ((200, 0.010), (400, 0.020), (503, 0.030)):
            metrics.record(region, "agg-ep", "AllTraffic", status=status, instance_count=2, model_latency_s=latency,
                           overhead_latency_s=0.001, at=start + 5)
        metrics.flush()
        published = {datum.name: datum for datum in cloudwatch_backend(emulator, region).metric_data
                     if any(d.value == "agg-ep" for d in datum.dimensions)}
    finally:
        metrics.shutdown()
    assert set(published) == {"Invocations", "Invocation4XXErrors", "Invocation5XXErrors", "InvocationsPerInstance",
                              "ModelLatency", "OverheadLatency"}
    stats = {name: (d.sample_count, d.sum, d.min, d.max, d.unit) for name, d in published.items()}
    assert stats["Invocations"] == (3, 3, 1, 1, "None")
    assert stats["Invocation4XXErrors"] == (3, 1, 0, 1, "None")
    assert stats["Invocation5XXErrors"] == (3, 1, 0, 1, "None")
    assert stats["InvocationsPerInstance"] == (3, 1.5, 0.5, 0.5, "None")
    assert stats["ModelLatency"][0] == 3 and stats["ModelLatency"][4] == "Microseconds"
    assert stats["ModelLatency"][1] == pytest.approx(60_000) and stats["ModelLatency"][3] == pytest.approx(30_000)
    assert published["Invocations"].timestamp == dt.datetime.fromtimestamp(start, dt.timezone.utc).replace(tzinfo=None)
    assert [d.name for d in published["Invocations"].dimensions] == ["EndpointName", "VariantName"]


# --- through boto3, against an emulator with 1 s periods ---------------------------------------------

@pytest.fixture(scope="module")
def metrics_emulator(tmp_path_factory):
    """An emulator of its own that publishes metrics every second and evaluates alarms twice a second."""
    server = start_emulator(tmp_path_factory.mktemp("metrics-state"), metrics_period_s=1, alarm_evaluation_interval_s=0.5)

    def client(name, **kwargs):
        return client_of(server, name, **kwargs)

    clients = types.SimpleNamespace(
        server=server, sagemaker=client("sagemaker"), s3=client("s3"), cloudwatch=client("cloudwatch"),
        runtime=client("sagemaker-runtime", config=Config(retries={"total_max_attempts": 1})))
    clients.s3.create_bucket(Bucket=TEST_BUCKET)
    yield clients
    server.stop()


@pytest.fixture(scope="module")
def endpoint(metrics_emulator):
    """Three variants of one instance each, all the scaler model (which fails on request): Counted for the
    counting test, Champion and Challenger for the alarm test, so neither sees the other's errors."""
    sm = metrics_emulator.sagemaker
    model = create_model(sm, metrics_emulator.s3, unique("metrics-model"), scaler_files(2, "m"))
    config = create_config(sm, unique("metrics-cfg"), [instance_variant(model, variant)
                                                       for variant in ("Counted", "Champion", "Challenger")])
    endpoint = unique("metrics-ep")
    described = deploy(sm, endpoint, config)
    assert described["EndpointStatus"] == "InService", described.get("FailureReason")
    yield endpoint
    sm.delete_endpoint(EndpointName=endpoint)


def _invoke(clients, endpoint: str, variant: str, payload: dict) -> int:
    """The container's status for one request to ``variant``: 200, or ModelError's OriginalStatusCode."""
    try:
        clients.runtime.invoke_endpoint(EndpointName=endpoint, TargetVariant=variant, ContentType="application/json",
                                        Body=json.dumps(payload))
        return 200
    except ClientError as error:
        assert error.response["Error"]["Code"] == "ModelError", error.response
        return error.response["OriginalStatusCode"]


def _dimensions(endpoint: str, variant: str) -> list[dict]:
    return [{"Name": "EndpointName", "Value": endpoint}, {"Name": "VariantName", "Value": variant}]


def _poll(check, timeout: float = 60, interval: float = 0.25, describe=None) -> None:
    """check() until it holds; describe() (when given) says in the failure message what was seen last."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"gave up waiting; last seen: {describe() if describe else None!r}"
        time.sleep(interval)


def _totals(cloudwatch, endpoint: str, variant: str, metric: str, statistic: str) -> float:
    now = dt.datetime.now(dt.timezone.utc)
    answer = cloudwatch.get_metric_statistics(
        Namespace=NAMESPACE, MetricName=metric, Dimensions=_dimensions(endpoint, variant),
        StartTime=now - dt.timedelta(minutes=15), EndTime=now + dt.timedelta(minutes=1), Period=60,
        Statistics=[statistic])
    return sum(point[statistic] for point in answer["Datapoints"])


@pytest.mark.slow
def test_invocations_and_model_errors_reach_cloudwatch(metrics_emulator, endpoint):
    clients = metrics_emulator
    statuses = [_invoke(clients, endpoint, "Counted", payload) for payload in
                [{"values": [1]}] * 5 + [{"no": "values"}] * 2 + [{"fail": "boom"}] * 3]
    assert statuses == [200] * 5 + [400] * 2 + [500] * 3

    cw = clients.cloudwatch
    wanted = [("Invocations", "Sum", 10), ("Invocation4XXErrors", "Sum", 2), ("Invocation5XXErrors", "Sum", 3),
              ("Invocation5XXErrors", "SampleCount", 10),  # a 0 for each request the model did not fail
              ("InvocationsPerInstance", "Sum", 10), ("ModelLatency", "SampleCount", 10)]

    def totals():
        return [_totals(cw, endpoint, "Counted", metric, statistic) for metric, statistic, _ in wanted]

    # the periods (and within one, the metrics) are published one after the other: wait for them all
    _poll(lambda: totals() == [total for *_, total in wanted], describe=totals)

    now = dt.datetime.now(dt.timezone.utc)
    latency = cw.get_metric_statistics(
        Namespace=NAMESPACE, MetricName="ModelLatency", Dimensions=_dimensions(endpoint, "Counted"),
        StartTime=now - dt.timedelta(minutes=15), EndTime=now + dt.timedelta(minutes=1), Period=900,
        Statistics=["SampleCount", "Minimum", "Maximum"])["Datapoints"]
    assert sum(point["SampleCount"] for point in latency) == 10
    assert all(point["Unit"] == "Microseconds" and 0 < point["Minimum"] <= point["Maximum"] < 60e6 for point in latency)

    data = cw.get_metric_data(
        StartTime=now - dt.timedelta(minutes=15), EndTime=now + dt.timedelta(minutes=1),
        MetricDataQueries=[{"Id": f"m{index}", "MetricStat": {
            "Metric": {"Namespace": NAMESPACE, "MetricName": metric, "Dimensions": _dimensions(endpoint, "Counted")},
            "Period": 60, "Stat": "Sum"}} for index, metric in enumerate(("Invocations", "Invocation4XXErrors"))],
    )["MetricDataResults"]
    assert [sum(result["Values"]) for result in data] == [10, 2]
    assert all(result["StatusCode"] == "Complete" for result in data)


def _state(cloudwatch, name: str) -> dict:
    return cloudwatch.describe_alarms(AlarmNames=[name])["MetricAlarms"][0]


def _evaluated_state(cloudwatch, name: str) -> str | None:
    """The alarm's StateValue once evaluated (moto creates alarms OK, "Unchecked: Initial alarm creation")."""
    alarm = _state(cloudwatch, name)
    return None if alarm["StateReason"].startswith("Unchecked") else alarm["StateValue"]


def _put_error_alarm(cloudwatch, name: str, endpoint: str, variant: str) -> None:
    cloudwatch.put_metric_alarm(
        AlarmName=name, Namespace=NAMESPACE, MetricName="Invocation5XXErrors",
        Dimensions=_dimensions(endpoint, variant),
        Statistic="Sum", Period=2, EvaluationPeriods=1, DatapointsToAlarm=1, Threshold=1.0,
        ComparisonOperator="GreaterThanOrEqualToThreshold", TreatMissingData="notBreaching")


@pytest.mark.slow
def test_an_error_alarm_goes_off_by_itself_and_clears_after_clean_periods(metrics_emulator, endpoint):
    clients, cw = metrics_emulator, metrics_emulator.cloudwatch
    challenger_alarm, champion_alarm = unique("challenger-5xx"), unique("champion-5xx")
    _put_error_alarm(cw, challenger_alarm, endpoint, "Challenger")
    _put_error_alarm(cw, champion_alarm, endpoint, "Champion")
    # no request yet to either variant: no datapoints, treated as not breaching
    _poll(lambda: [_evaluated_state(cw, name) for name in (challenger_alarm, champion_alarm)] == [OK, OK])
    before = _state(cw, challenger_alarm)["StateUpdatedTimestamp"]

    def challenger_fails():  # a bad challenger keeps failing while the traffic keeps coming
        assert _invoke(clients, endpoint, "Challenger", {"fail": "challenger is broken"}) == 500
        _invoke(clients, endpoint, "Champion", {"values": [1]})
        return _state(cw, challenger_alarm)["StateValue"] == ALARM

    _poll(challenger_fails)
    alarmed = _state(cw, challenger_alarm)
    assert alarmed["StateReason"].startswith("Threshold Crossed: 1 out of the last 1 datapoints [")
    assert "was greater than or equal to the threshold (1.0)" in alarmed["StateReason"]
    assert json.loads(alarmed["StateReasonData"])["evaluatedDatapoints"][0]["value"] >= 1
    assert alarmed["StateUpdatedTimestamp"] > before
    assert _state(cw, champion_alarm)["StateValue"] == OK

    def challenger_recovers():
        assert _invoke(clients, endpoint, "Challenger", {"values": [1]}) == 200
        return _state(cw, challenger_alarm)["StateValue"] == OK

    _poll(challenger_recovers)
    assert "was not greater than or equal to the threshold (1.0)" in _state(cw, challenger_alarm)["StateReason"]
    assert _state(cw, champion_alarm)["StateValue"] == OK


def test_a_manual_state_holds_until_the_next_evaluation_and_for_other_namespaces(metrics_emulator):
    cw = metrics_emulator.cloudwatch
    sagemaker_alarm, custom_alarm = unique("no-data"), unique("custom")
    cw.put_metric_alarm(AlarmName=custom_alarm, Namespace="Custom/Things", MetricName="Errors", Statistic="Sum",
                        Period=60, EvaluationPeriods=1, Threshold=1.0, ComparisonOperator="GreaterThanThreshold")
    cw.put_metric_alarm(  # the default TreatMissingData: missing, so no data at all is INSUFFICIENT_DATA
        AlarmName=sagemaker_alarm, Namespace=NAMESPACE, MetricName="Invocation5XXErrors", Statistic="Sum",
        Dimensions=_dimensions("no-such-endpoint", "AllTraffic"), Period=2, EvaluationPeriods=1, Threshold=1.0,
        ComparisonOperator="GreaterThanOrEqualToThreshold")
    _poll(lambda: _state(cw, sagemaker_alarm)["StateValue"] == INSUFFICIENT_DATA)
    assert _state(cw, sagemaker_alarm)["StateReason"] == "Insufficient Data: 3 datapoints were unknown."

    for name in (sagemaker_alarm, custom_alarm):
        cw.set_alarm_state(AlarmName=name, StateValue=ALARM, StateReason="testing the rollback")
    # the evaluator puts the AWS/SageMaker alarm back, and leaves the other namespace's alone
    _poll(lambda: _state(cw, sagemaker_alarm)["StateValue"] == INSUFFICIENT_DATA)
    custom = _state(cw, custom_alarm)
    assert (custom["StateValue"], custom["StateReason"]) == (ALARM, "testing the rollback")


def test_alarm_states_and_evaluate_now_in_process(metrics_emulator):
    cw, emulator = metrics_emulator.cloudwatch, metrics_emulator.server.emulator
    name = unique("in-process")
    _put_error_alarm(cw, name, "another-endpoint", "AllTraffic")
    alarms.evaluate_now(emulator, TEST_REGION, [name])
    assert alarms.alarm_states(emulator, TEST_REGION, [name, "no-such-alarm"]) == {name: OK}
    described = _state(cw, name)
    assert described["StateValue"] == OK
    assert described["StateReason"] == ("Threshold Crossed: no datapoints were received for 1 period and 1 missing "
                                        "datapoint was treated as [NonBreaching].")


def test_the_publisher_and_the_evaluator_stop_with_the_server(tmp_path):
    import threading

    from include.emulator.state import Settings
    from include.emulator.gateway import EmulatorServer

    names = {"endpoint-metrics", "alarm-evaluator"}
    server = EmulatorServer(Settings(port=0, state_dir=tmp_path, metrics_period_s=1, alarm_evaluation_interval_s=0.5))
    before = set(threading.enumerate())  # other emulators of this session have threads of these names too
    server.start()
    running = [thread for thread in threading.enumerate() if thread.name in names and thread not in before]
    server.stop()
    assert len(running) == 2
    assert not any(thread.is_alive() for thread in running)
