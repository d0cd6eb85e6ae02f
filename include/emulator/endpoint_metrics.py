"""SageMaker's endpoint invocation metrics, published to (moto's) CloudWatch as SageMaker publishes them.

The runtime records each request that reached a production variant (``record_invocation``); the
``EndpointMetrics`` store aggregates them in memory per endpoint, variant and period, and publishes one
StatisticSet per metric per variant per period (``Settings.metrics_period_s``, default 10 s), stamped
with the period's start, into the ``AWS/SageMaker`` namespace with dimensions EndpointName and
VariantName. It writes to moto's CloudWatch backend in-process (the same one that
``boto3.client("cloudwatch", endpoint_url=...)`` reaches), so nothing goes through the HTTP gateway.

What one request adds, in SageMaker's words and units
(https://docs.aws.amazon.com/sagemaker/latest/dg/monitoring-cloudwatch.html):

| metric | value per request | unit |
|---|---|---|
| Invocations | 1 | None |
| Invocation4XXErrors | 1 when the model answered 4xx, else 0 | None |
| Invocation5XXErrors | 1 when the model answered 5xx (or never answered in time), else 0 | None |
| InvocationsPerInstance | 1 / the variant's instance count | None |
| ModelLatency | the container's time to answer | Microseconds |
| OverheadLatency | the rest of the request's time on the server | Microseconds |
"""
from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

NAMESPACE = "AWS/SageMaker"
COUNT_METRICS = ("Invocations", "Invocation4XXErrors", "Invocation5XXErrors", "InvocationsPerInstance")
LATENCY_METRICS = ("ModelLatency", "OverheadLatency")


@dataclass
class StatisticSet:
    sample_count: int = 0
    total: float = 0.0
    minimum: float = float("inf")
    maximum: float = float("-inf")

    def add(self, value: float) -> None:
        self.sample_count += 1
        self.total += value
        self.minimum = min(self.minimum, value)
        self.maximum = max(self.maximum, value)

    def as_statistic_values(self) -> dict:
        return {"SampleCount": float(self.sample_count), "Sum": self.total, "Minimum": self.minimum,
                "Maximum": self.maximum}


@dataclass
class _Bucket:
    """One variant's requests during one period."""
    metrics: dict[str, StatisticSet] = field(default_factory=lambda: {
        name: StatisticSet() for name in (*COUNT_METRICS, *LATENCY_METRICS)})


def utc_datetime(epoch_s: float) -> dt.datetime:
    """A naive UTC datetime, as moto's CloudWatch backend keeps timestamps."""
    return dt.datetime.fromtimestamp(epoch_s, dt.timezone.utc).replace(tzinfo=None)


def cloudwatch_backend(emulator, region: str):
    """moto's CloudWatch backend for the emulator's account in ``region`` (the one its HTTP API serves)."""
    from moto.cloudwatch.models import cloudwatch_backends

    return cloudwatch_backends[emulator.settings.account_id][region]


class EndpointMetrics:
    """Aggregates invocations per (region, endpoint, variant, period) and publishes complete periods."""

    def __init__(self, emulator):
        self.emulator = emulator
        self.period_s = float(emulator.settings.metrics_period_s)
        self._buckets: dict[tuple[str, str, str, float], _Bucket] = {}
        self._lock = threading.Lock()  # guards _buckets
        self._publish_lock = threading.Lock()  # one flush at a time: each period is published once
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="endpoint-metrics", daemon=True)
        self._thread.start()

    def record(self, region: str, endpoint_name: str, variant: str, *, status: int | None, instance_count: int,
               model_latency_s: float, overhead_latency_s: float, at: float | None = None) -> None:
        """One request that reached ``variant``: ``status`` is the container's HTTP status (None: no answer)."""
        at = time.time() if at is None else at
        start = (at // self.period_s) * self.period_s
        values = {
            "Invocations": 1.0,
            "Invocation4XXErrors": 1.0 if status is not None and 400 <= status < 500 else 0.0,
            "Invocation5XXErrors": 1.0 if status is None or status >= 500 else 0.0,
            "InvocationsPerInstance": 1.0 / max(1, instance_count),
            "ModelLatency": max(0.0, model_latency_s) * 1e6,
            "OverheadLatency": max(0.0, overhead_latency_s) * 1e6,
        }
        with self._lock:
            bucket = self._buckets.setdefault((region, endpoint_name, variant, start), _Bucket())
            for name, value in values.items():
                bucket.metrics[name].add(value)

    def flush(self, now: float | None = None) -> int:
        """Publish every period that has ended; returns how many variant-periods were published."""
        now = time.time() if now is None else now
        with self._publish_lock:
            with self._lock:
                done = [key for key in self._buckets if key[3] + self.period_s <= now]
                ready = [(key, self._buckets.pop(key)) for key in sorted(done, key=lambda key: key[3])]
            for (region, endpoint_name, variant, start), bucket in ready:
                try:
                    cloudwatch_backend(self.emulator, region).put_metric_data(
                        NAMESPACE, _metric_data(endpoint_name, variant, utc_datetime(start), bucket))
                except Exception:  # a lost datapoint must never break serving
                    log.warning("could not publish the metrics of %s/%s", endpoint_name, variant, exc_info=True)
        return len(ready)

    def shutdown(self) -> None:
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
        self.flush()

    def _run(self) -> None:
        while True:
            # wake just after each period boundary, so a period is published as soon as it ends
            delay = self.period_s - (time.time() % self.period_s) + 0.01
            if self._stop.wait(delay):
                return
            self.flush()


def _metric_data(endpoint_name: str, variant: str, timestamp: dt.datetime, bucket: _Bucket) -> list[dict]:
    dimensions = [{"Name": "EndpointName", "Value": endpoint_name}, {"Name": "VariantName", "Value": variant}]
    return [
        {"MetricName": name, "Dimensions": dimensions, "Timestamp": timestamp,
         "Unit": "Microseconds" if name in LATENCY_METRICS else "None",
         "StatisticValues": statistics.as_statistic_values()}
        for name, statistics in bucket.metrics.items()
    ]


def record_invocation(ctx, endpoint_name: str, deployment, variant: str, status: int | None, started: float,
                      model_started: float) -> None:
    """Count one InvokeEndpoint request that reached ``variant`` of ``deployment``, now that it is answered.

    ``status`` is what the container answered (None: it did not answer in time, a 5XX); ``started`` and
    ``model_started`` are ``time.monotonic()`` when the request arrived and when it went to the container."""
    now = time.monotonic()
    try:
        instance_count = deployment.variants[variant].spec.instance_count
    except (AttributeError, KeyError):
        instance_count = 1
    ctx.emulator.store(EndpointMetrics).record(
        ctx.region, endpoint_name, variant, status=status, instance_count=instance_count or 1,
        model_latency_s=now - model_started, overhead_latency_s=model_started - started)
