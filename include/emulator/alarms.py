"""CloudWatch metric alarms on the ``AWS/SageMaker`` endpoint metrics, evaluated as CloudWatch does.

moto keeps the alarms (PutMetricAlarm, DescribeAlarms, SetAlarmState) but never evaluates them. The
``AlarmEvaluator`` store does, once per alarm period as CloudWatch does: every
``Settings.alarm_evaluation_interval_s`` (default 1 s) it evaluates each alarm whose Period has ended
since its last evaluation, or that PutMetricAlarm changed. Evaluated are the metric alarms in the
``AWS/SageMaker`` namespace on one metric, with a statistic among Sum, Average, Minimum, Maximum and
SampleCount and one of the four threshold comparisons; alarms in other namespaces, on metric math, on
percentiles or on anomaly bands are left as they are, so SetAlarmState keeps working for them.

``evaluate`` is the rule, pure: the datapoints of the evaluation range and the alarm's definition give
the new state and its reason. It follows "How alarm state is evaluated when data is missing"
(https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/AlarmThatSendsEmail.html): the range
holds EvaluationPeriods + 2 periods; when at least EvaluationPeriods of them hold data, the most recent
EvaluationPeriods datapoints decide and TreatMissingData is not consulted; otherwise the missing ones
are filled as few times as possible per TreatMissingData. At least DatapointsToAlarm breaching
datapoints among those evaluated mean ALARM, fewer mean OK.

A state is written (moto's ``update_state``, what SetAlarmState does, so DescribeAlarms shows the new
StateValue, StateReason, StateReasonData and StateUpdatedTimestamp) only when it changes; a manual
SetAlarmState therefore holds until the next evaluation (the alarm's next period) disagrees with it,
as on AWS.

For the rest of the emulator: ``alarm_states(emulator, region, names)`` reads states, and
``evaluate_now(emulator)`` publishes the finished metric periods and evaluates at once.
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import math
import threading
import time
from dataclasses import dataclass

from .endpoint_metrics import NAMESPACE, EndpointMetrics, cloudwatch_backend, utc_datetime

log = logging.getLogger(__name__)

OK, ALARM, INSUFFICIENT_DATA = "OK", "ALARM", "INSUFFICIENT_DATA"
STATISTICS = ("Sum", "Average", "Minimum", "Maximum", "SampleCount")
COMPARISONS = {  # ComparisonOperator -> (test, how StateReason says it)
    "GreaterThanOrEqualToThreshold": (lambda value, threshold: value >= threshold, "greater than or equal to"),
    "GreaterThanThreshold": (lambda value, threshold: value > threshold, "greater than"),
    "LessThanThreshold": (lambda value, threshold: value < threshold, "less than"),
    "LessThanOrEqualToThreshold": (lambda value, threshold: value <= threshold, "less than or equal to"),
}
TREAT_MISSING = ("missing", "notBreaching", "breaching", "ignore")
UNCHECKED = "Unchecked: Initial alarm creation"  # moto's StateReason for an alarm never evaluated
EXTRA_PERIODS = 2  # the evaluation range: EvaluationPeriods + 2 periods (the docs' example retrieves 5 for 3)


@dataclass(frozen=True)
class AlarmRule:
    """What of a metric alarm decides its state."""
    statistic: str
    period_s: int
    evaluation_periods: int
    datapoints_to_alarm: int
    threshold: float
    comparison: str
    treat_missing_data: str = "missing"

    @property
    def evaluation_range(self) -> int:
        return self.evaluation_periods + EXTRA_PERIODS

    def breaches(self, value: float) -> bool:
        return COMPARISONS[self.comparison][0](value, self.threshold)


@dataclass(frozen=True)
class Datapoint:
    """One period of the evaluation range: its start and its statistic (None: no data in that period)."""
    timestamp: dt.datetime
    value: float | None
    sample_count: float = 0.0


@dataclass(frozen=True)
class Evaluation:
    """The state an evaluation arrives at; ``state`` None means the current state is kept."""
    state: str | None
    reason: str = ""
    reason_data: str = "{}"


def evaluate(rule: AlarmRule, datapoints: list[Datapoint], current_state: str, *,
             query_date: dt.datetime | None = None) -> Evaluation:
    """The new state of an alarm from the datapoints of its evaluation range (oldest first)."""
    n, m = rule.evaluation_periods, rule.datapoints_to_alarm
    real = [point for point in datapoints if point.value is not None]
    evaluated = real[-n:]  # the most recent real datapoints, as many as needed
    breaching = [point for point in evaluated if rule.breaches(point.value)]
    filled = n - len(evaluated)  # missing datapoints filled per TreatMissingData, as few as possible
    treat = rule.treat_missing_data if filled else "missing"

    if not real and treat == "missing":
        return _evaluation(rule, INSUFFICIENT_DATA, datapoints, evaluated, query_date,
                           f"Insufficient Data: {_count(len(datapoints), 'datapoint')} "
                           f"{'was' if len(datapoints) == 1 else 'were'} unknown.")
    breach_count = len(breaching) + (filled if treat == "breaching" else 0)
    if breach_count >= m:
        state = ALARM
    elif treat in ("missing", "ignore") and len(breaching) == len(evaluated):
        # only breaching datapoints, too few of them: "missing" alarms when the oldest datapoint of the
        # range is real (the docs' "X - - - -"), else knows too little; "ignore" keeps its state
        if treat == "ignore":
            return Evaluation(None)
        state = ALARM if datapoints[0].value is not None else INSUFFICIENT_DATA
        if state == INSUFFICIENT_DATA:
            return _evaluation(rule, state, datapoints, evaluated, query_date,
                               f"Insufficient Data: {_count(len(datapoints) - len(real), 'datapoint')} "
                               f"{'was' if len(datapoints) - len(real) == 1 else 'were'} unknown.")
    else:
        state = OK
    return _evaluation(rule, state, datapoints, evaluated, query_date,
                       _threshold_reason(rule, state, current_state, evaluated, breaching, filled, treat))


def _threshold_reason(rule: AlarmRule, state: str, current_state: str, evaluated: list[Datapoint],
                      breaching: list[Datapoint], filled: int, treat: str) -> str:
    n, m = rule.evaluation_periods, rule.datapoints_to_alarm
    phrase = COMPARISONS[rule.comparison][1]
    filled_as = {"breaching": "Breaching", "notBreaching": "NonBreaching"}.get(treat)
    if not evaluated:
        return (f"Threshold Crossed: no datapoints were received for {_count(n, 'period')} and "
                f"{_count(filled, 'missing datapoint')} {'was' if filled == 1 else 'were'} treated as [{filled_as}].")
    shown = breaching if state == ALARM else [point for point in evaluated if point not in breaching]
    listed = ", ".join(f"{point.value!r} ({point.timestamp:%d/%m/%y %H:%M:%S})" for point in reversed(shown))
    verb = "was" if len(shown) == 1 else "were"
    if state == ALARM:
        head = (f"{len(shown)} out of the last {n} datapoints [{listed}] {verb} {phrase} the threshold "
                f"({rule.threshold!r})")
        minimum = f"minimum {_count(m, 'datapoint')} for {current_state} -> ALARM transition"
    else:
        head = (f"{len(shown)} out of the last {n} datapoints [{listed}] {verb} not {phrase} the threshold "
                f"({rule.threshold!r})")
        minimum = f"minimum {_count(n - m + 1, 'datapoint')} for {current_state} -> OK transition"
    if filled and filled_as:
        head += (f" and {_count(filled, 'missing datapoint')} {'was' if filled == 1 else 'were'} "
                 f"treated as [{filled_as}]")
    return f"Threshold Crossed: {head} ({minimum})."


def _evaluation(rule: AlarmRule, state: str, datapoints: list[Datapoint], evaluated: list[Datapoint],
                query_date: dt.datetime | None, reason: str) -> Evaluation:
    """StateReasonData in CloudWatch's shape."""
    query_date = query_date or dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    data = {
        "version": "1.0",
        "queryDate": _iso(query_date),
        "startDate": _iso(datapoints[0].timestamp) if datapoints else _iso(query_date),
        "statistic": rule.statistic,
        "period": rule.period_s,
        "recentDatapoints": [point.value for point in evaluated],
        "threshold": rule.threshold,
        "evaluatedDatapoints": [
            {"timestamp": _iso(point.timestamp), "sampleCount": point.sample_count, "value": point.value}
            for point in reversed(evaluated)
        ],
    }
    return Evaluation(state, reason, json.dumps(data))


def _iso(timestamp: dt.datetime) -> str:
    return timestamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{timestamp.microsecond // 1000:03d}+0000"


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"


# --- the alarms in moto's backend ------------------------------------------------------------------

def rule_of(alarm) -> AlarmRule | None:
    """The rule of a moto Alarm that this module evaluates, or None for one it leaves alone."""
    if (alarm.namespace != NAMESPACE or getattr(alarm, "rule", None) or alarm.metric_data_queries
            or not alarm.metric_name or alarm.extended_statistic or alarm.statistic not in STATISTICS
            or alarm.comparison_operator not in COMPARISONS or not alarm.period or not alarm.evaluation_periods):
        return None
    treat = alarm.treat_missing_data if alarm.treat_missing_data in TREAT_MISSING else "missing"
    periods = int(alarm.evaluation_periods)
    return AlarmRule(statistic=alarm.statistic, period_s=int(alarm.period), evaluation_periods=periods,
                     datapoints_to_alarm=int(alarm.datapoints_to_alarm or periods), threshold=float(alarm.threshold),
                     comparison=alarm.comparison_operator, treat_missing_data=treat)


def datapoints_for(alarm, rule: AlarmRule, metric_data, now: float) -> list[Datapoint]:
    """The alarm's evaluation range (the last complete periods, aligned as CloudWatch aligns them)."""
    end = math.floor(now / rule.period_s) * rule.period_s
    start = end - rule.evaluation_range * rule.period_s
    wanted = {(dimension.name, dimension.value) for dimension in alarm.dimensions}
    periods: list[list] = [[] for _ in range(rule.evaluation_range)]
    first, last = utc_datetime(start), utc_datetime(end)
    for datum in metric_data:
        if (datum.namespace != NAMESPACE or datum.name != alarm.metric_name or not first <= datum.timestamp < last
                or (alarm.unit and datum.unit != alarm.unit)
                or {(dimension.name, dimension.value) for dimension in datum.dimensions} != wanted):
            continue
        seconds = (datum.timestamp - first).total_seconds()
        periods[min(int(seconds // rule.period_s), rule.evaluation_range - 1)].append(datum)
    return [_datapoint(utc_datetime(start + index * rule.period_s), rule.statistic, data)
            for index, data in enumerate(periods)]


def _datapoint(timestamp: dt.datetime, statistic: str, data: list) -> Datapoint:
    """A period's statistic over moto's datums: single values and StatisticSets alike."""
    if not data:
        return Datapoint(timestamp, None)
    sets = [(1.0, d.value, d.value, d.value) if hasattr(d, "value") else (d.sample_count, d.sum, d.min, d.max)
            for d in data]
    samples = sum(s[0] for s in sets)
    total = sum(s[1] for s in sets)
    value = {
        "Sum": total,
        "SampleCount": samples,
        "Average": total / samples if samples else None,
        "Minimum": min(s[2] for s in sets),
        "Maximum": max(s[3] for s in sets),
    }[statistic]
    return Datapoint(timestamp, value, samples)


def evaluate_alarms(emulator, region: str | None = None, names=None, now: float | None = None,
                    evaluated: dict | None = None) -> dict[str, str]:
    """Evaluate the AWS/SageMaker alarms (of ``region``, or every region; of ``names``, or all) once,
    write the states that changed; returns {alarm name: new state} for those.

    With ``evaluated`` (the evaluator's memory of what it last evaluated), an alarm is evaluated only
    once per period, when a new one has ended, or when PutMetricAlarm changed it, as CloudWatch does:
    a manual SetAlarmState holds until then."""
    from moto.cloudwatch.models import cloudwatch_backends

    now = time.time() if now is None else now
    regions = [region] if region else list(cloudwatch_backends[emulator.settings.account_id].keys())
    changed: dict[str, str] = {}
    for name_of_region in regions:
        backend = cloudwatch_backend(emulator, name_of_region)
        alarms = [alarm for alarm in list(backend.alarms.values()) if names is None or alarm.name in names]
        ruled = [(alarm, rule) for alarm in alarms if (rule := rule_of(alarm)) is not None]
        if evaluated is not None:
            ruled = [(alarm, rule) for alarm, rule in ruled
                     if evaluated.get((name_of_region, alarm.name)) != _evaluation_key(alarm, rule, now)]
        if not ruled:
            continue
        metric_data = list(backend.metric_data)
        for alarm, rule in ruled:
            if evaluated is not None:
                evaluated[(name_of_region, alarm.name)] = _evaluation_key(alarm, rule, now)
            # moto creates an alarm OK ("Unchecked: Initial alarm creation"); CloudWatch, INSUFFICIENT_DATA
            unchecked = alarm.state_reason.startswith(UNCHECKED)
            current = INSUFFICIENT_DATA if unchecked else alarm.state_value
            result = evaluate(rule, datapoints_for(alarm, rule, metric_data, now), current,
                              query_date=utc_datetime(now))
            if result.state is not None and (unchecked or result.state != alarm.state_value):
                alarm.update_state(result.reason, result.reason_data, result.state)
                changed[alarm.name] = result.state
                log.info("alarm %s is %s: %s", alarm.name, result.state, result.reason)
    return changed


def _evaluation_key(alarm, rule: AlarmRule, now: float) -> tuple:
    """What an evaluation saw: the alarm's configuration and the last period that had ended."""
    return alarm.configuration_updated_timestamp, math.floor(now / rule.period_s)


def evaluate_now(emulator, region: str | None = None, names=None) -> dict[str, str]:
    """Publish the metric periods that have ended, then evaluate every alarm (or those of ``names``) at
    once, whether or not a period has ended since the last evaluation (see ``evaluate_alarms``)."""
    emulator.store(EndpointMetrics).flush()
    return evaluate_alarms(emulator, region, names)


def alarm_states(emulator, region: str, names) -> dict[str, str]:
    """{alarm name: StateValue} for those of ``names`` that exist in ``region`` (read in-process)."""
    backend = cloudwatch_backend(emulator, region)
    return {name: alarm.state_value for name in names if (alarm := backend.alarms.get(name)) is not None}


class AlarmEvaluator:
    """Evaluates the alarms on a thread of its own: every ``Settings.alarm_evaluation_interval_s`` it
    publishes the metric periods that have ended and evaluates each alarm whose own period has ended."""

    def __init__(self, emulator):
        self.emulator = emulator
        self.interval_s = float(emulator.settings.alarm_evaluation_interval_s)
        self._evaluated: dict = {}  # (region, alarm name) -> _evaluation_key of its last evaluation
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="alarm-evaluator", daemon=True)
        self._thread.start()

    def shutdown(self) -> None:
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.emulator.store(EndpointMetrics).flush()
                evaluate_alarms(self.emulator, evaluated=self._evaluated)
            except Exception:  # one bad alarm or datum must not stop the evaluation of the others
                log.warning("alarm evaluation failed", exc_info=True)
