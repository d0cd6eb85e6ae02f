"""What a pipeline run cost: its SageMaker jobs and temporary endpoints priced from a table.

Prices come from include/pipelines/sagemaker_prices.yaml (on-demand, us-east-1, with its source and
date): one table of USD per instance-hour for each way SageMaker bills an instance (training,
processing, transform, hosting) and serverless inference per GB-second. An instance type the table
does not list gives a line that says "no price" (its `usd` None), never an error.

Each *_cost function returns one cost line:
    {"kind", "name", "instance_type", "instance_count", "billable_seconds", "usd_per_hour", "usd", "note"}
where usd = billable_seconds x instance_count x usd_per_hour / 3600; run_cost adds the lines of a
whole run up, and format_cost makes a short summary for a task log. Plain functions over a boto3
SageMaker client, as the rest of include/pipelines.
"""
from __future__ import annotations

import logging
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable, Mapping

import yaml
from botocore.exceptions import ClientError

from .janitor import is_missing

log = logging.getLogger(__name__)

PRICES_FILE = Path(__file__).with_name("sagemaker_prices.yaml")
ROLES = ("training", "processing", "transform", "hosting")  # the price tables billed per instance-hour
NO_PRICE = "no price"


@lru_cache(maxsize=None)
def _load(path: Path) -> dict:
    prices = yaml.safe_load(path.read_text())
    for role in ROLES:
        table = prices.get(role) or {}
        bad = {k: v for k, v in table.items() if not isinstance(v, (int, float)) or isinstance(v, bool) or v < 0}
        if bad:
            raise ValueError(f"{path.name}: {role}: prices must be non-negative numbers, not {bad}")
    return prices


def load_prices(path: str | Path | None = None) -> dict:
    """The price table (sagemaker_prices.yaml unless `path`): {source, as_of, region, currency,
    training, processing, transform, hosting: {instance type: USD per hour}, serverless: {usd_per_gb_second}}."""
    return _load(Path(path) if path else PRICES_FILE)


def hourly_price(role: str, instance_type: str | None, prices: Mapping | None = None) -> float | None:
    """USD per instance-hour of `instance_type` used for `role` (training, processing, transform,
    hosting), or None when the table has no price for it."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; the roles are {', '.join(ROLES)}")
    value = ((prices or load_prices()).get(role) or {}).get(instance_type)
    return None if value is None else float(value)


def price_source(prices: Mapping | None = None) -> dict[str, str]:
    prices = prices or load_prices()
    return {"source": prices.get("source", ""), "as_of": str(prices.get("as_of", "")), "region": prices.get("region", "")}


def cost_line(kind: str, name: str, instance_type: str | None, instance_count: int, billable_seconds: float,
              usd_per_hour: float | None, note: str | None = None, *, role: str | None = None) -> dict[str, Any]:
    """One line: usd = billable_seconds x instance_count x usd_per_hour / 3600 (None without a price;
    the note then names the `role` table, default `kind`, that lacks the instance type)."""
    if usd_per_hour is None:
        note = "; ".join(filter(None, [f"{NO_PRICE} for {instance_type} in the {role or kind} table", note]))
        usd = None
    else:
        usd = round(billable_seconds * instance_count * usd_per_hour / 3600, 10)
    return {"kind": kind, "name": name, "instance_type": instance_type, "instance_count": instance_count,
            "billable_seconds": billable_seconds, "usd_per_hour": usd_per_hour, "usd": usd, "note": note}


def _seconds_between(start, end) -> tuple[float, str | None]:
    """(seconds from start to end, a note): a job still running counts until now, one not started as 0."""
    if start is None:
        return 0.0, "not started"
    if end is None:
        return max(0.0, (datetime.now(timezone.utc) - start).total_seconds()), "still running: the time so far"
    return max(0.0, (end - start).total_seconds()), None


# --- jobs ------------------------------------------------------------------------------------------

def training_line(job: Mapping, prices: Mapping | None = None, kind: str = "training") -> dict[str, Any]:
    """The cost line of a DescribeTrainingJob answer."""
    # BillableTimeInSeconds is per instance (times InstanceCount for the cluster), and for managed spot
    # it is already the discounted time: SageMaker bills spot jobs on-demand rates for fewer seconds
    # (the emulator reports it the same way), so no spot discount is applied on top of it here
    notes = []
    billable = job.get("BillableTimeInSeconds")
    if billable is None:  # not finished yet, or failed before training started
        billable, note = _seconds_between(job.get("TrainingStartTime"), job.get("TrainingEndTime"))
        notes.append(note)
    if job.get("EnableManagedSpotTraining"):
        notes.append("managed spot: billable time is the discounted time")
    resources = job.get("ResourceConfig", {})
    groups = resources.get("InstanceGroups")
    if groups:  # a heterogeneous cluster: every group bills its own type for the same time
        count = sum(g["InstanceCount"] for g in groups)
        rates = [hourly_price("training", g["InstanceType"], prices) for g in groups]
        instance_type = ", ".join(f"{g['InstanceType']} x{g['InstanceCount']}" for g in groups)
        rate = (None if None in rates or not count
                else sum(r * g["InstanceCount"] for r, g in zip(rates, groups)) / count)
    else:
        instance_type, count = resources.get("InstanceType"), resources.get("InstanceCount", 1)
        rate = hourly_price("training", instance_type, prices)
    return cost_line(kind, job["TrainingJobName"], instance_type, count, float(billable), rate,
                     "; ".join(filter(None, notes)) or None)


def training_cost(sm, job_name: str, prices: Mapping | None = None) -> dict[str, Any]:
    """A training job's cost: BillableTimeInSeconds x ResourceConfig.InstanceCount x the hourly price / 3600."""
    return training_line(sm.describe_training_job(TrainingJobName=job_name), prices)


def tuning_training_jobs(sm, tuning_job_name: str) -> list[str]:
    """The names of a tuning job's training jobs (ListTrainingJobsForHyperParameterTuningJob, all pages)."""
    pages = sm.get_paginator("list_training_jobs_for_hyper_parameter_tuning_job").paginate(
        HyperParameterTuningJobName=tuning_job_name)
    return [summary["TrainingJobName"] for page in pages for summary in page.get("TrainingJobSummaries", [])]


def tuning_cost(sm, tuning_job_name: str, prices: Mapping | None = None) -> dict[str, Any]:
    """A tuning job's cost: the sum of its training jobs' (one line, kind "tuning", with the count of
    jobs in `training_jobs` and their own lines in `jobs`)."""
    jobs = []
    for name in tuning_training_jobs(sm, tuning_job_name):
        try:
            jobs.append(training_line(sm.describe_training_job(TrainingJobName=name), prices))
        except ClientError as error:
            if not is_missing(error):
                raise
            log.info("Training job %s of tuning job %s is not there; skipped", name, tuning_job_name)
    types = sorted({str(j["instance_type"]) for j in jobs})
    counts = {j["instance_count"] for j in jobs}
    rates = {j["usd_per_hour"] for j in jobs}
    unpriced = [j["name"] for j in jobs if j["usd"] is None]
    notes = [f"{NO_PRICE} for {len(unpriced)} of {len(jobs)} training jobs ({', '.join(types)})"] if unpriced else []
    if any(j["note"] and "spot" in j["note"] for j in jobs):
        notes.append("managed spot: billable time is the discounted time")
    return {
        "kind": "tuning", "name": tuning_job_name,
        "instance_type": types[0] if len(types) == 1 else ", ".join(types) or None,
        "instance_count": counts.pop() if len(counts) == 1 else None,
        "billable_seconds": float(sum(j["billable_seconds"] for j in jobs)),
        "usd_per_hour": rates.pop() if len(rates) == 1 else None,
        "usd": None if len(unpriced) == len(jobs) and jobs else round(sum(j["usd"] or 0 for j in jobs), 10),
        "note": "; ".join(notes) or None,
        "training_jobs": len(jobs),
        "jobs": jobs,
    }


def _timed_line(kind: str, prefix: str, job: Mapping, resources: Mapping, prices: Mapping | None) -> dict[str, Any]:
    """The cost line of a job billed from <prefix>StartTime to <prefix>EndTime on `resources`' instances
    (InstanceType, InstanceCount) at the `kind` table's price: a processing or a transform job."""
    seconds, note = _seconds_between(job.get(f"{prefix}StartTime"), job.get(f"{prefix}EndTime"))
    instance_type = resources.get("InstanceType")
    return cost_line(kind, job[f"{prefix}JobName"], instance_type, resources.get("InstanceCount", 1), seconds,
                     hourly_price(kind, instance_type, prices), note)


def processing_line(job: Mapping, prices: Mapping | None = None) -> dict[str, Any]:
    cluster = job.get("ProcessingResources", {}).get("ClusterConfig", {})
    return _timed_line("processing", "Processing", job, cluster, prices)


def processing_cost(sm, name: str, prices: Mapping | None = None) -> dict[str, Any]:
    """A processing job's cost: (ProcessingEndTime - ProcessingStartTime) x instance count x the hourly price."""
    return processing_line(sm.describe_processing_job(ProcessingJobName=name), prices)


def transform_line(job: Mapping, prices: Mapping | None = None) -> dict[str, Any]:
    return _timed_line("transform", "Transform", job, job.get("TransformResources", {}), prices)


def transform_cost(sm, name: str, prices: Mapping | None = None) -> dict[str, Any]:
    """A batch transform job's cost: (TransformEndTime - TransformStartTime) x instance count x the hourly price."""
    return transform_line(sm.describe_transform_job(TransformJobName=name), prices)


# --- endpoints -------------------------------------------------------------------------------------

def endpoint_cost(instance_type: str, instance_count: int, seconds: float, *, name: str = "",
                  prices: Mapping | None = None) -> dict[str, Any]:
    """A real-time endpoint's cost: instances x seconds it existed x the hosting price per hour."""
    return cost_line("endpoint", name, instance_type, instance_count, float(seconds),
                     hourly_price("hosting", instance_type, prices), role="hosting")


def serverless_cost(memory_size_mb: int, seconds: float, *, name: str = "", prices: Mapping | None = None) -> dict[str, Any]:
    """A serverless endpoint's cost: memory (GB) x the seconds it spent processing requests (not the
    seconds it existed: an idle serverless endpoint costs nothing) x the price per GB-second."""
    per_gb_second = ((prices or load_prices()).get("serverless") or {}).get("usd_per_gb_second")
    rate = None if per_gb_second is None else round(float(per_gb_second) * memory_size_mb / 1024 * 3600, 6)
    return cost_line("serverless", name, f"serverless {memory_size_mb} MB", 1, float(seconds), rate,
                     "billed for the time spent processing requests")


def _endpoint_line(endpoint: Mapping, prices: Mapping | None) -> dict[str, Any]:
    """A line for run_cost's `endpoints`: a line already made, or a dict naming the endpoint and its use:
    {"name", "instance_type", "instance_count", "seconds"} or {"name", "memory_size_mb", "seconds"}."""
    if "usd" in endpoint:
        return dict(endpoint)
    if endpoint.get("memory_size_mb"):
        return serverless_cost(endpoint["memory_size_mb"], endpoint["seconds"], name=endpoint.get("name", ""),
                               prices=prices)
    return endpoint_cost(endpoint["instance_type"], endpoint.get("instance_count", 1), endpoint["seconds"],
                         name=endpoint.get("name", ""), prices=prices)


# --- a run -----------------------------------------------------------------------------------------

def run_cost(sm, *, training_jobs: Iterable[str] = (), tuning_jobs: Iterable[str] = (),
             processing_jobs: Iterable[str] = (), transform_jobs: Iterable[str] = (),
             endpoints: Iterable[Mapping] = (), prices: Mapping | None = None) -> dict[str, Any]:
    """What a run cost: {"total_usd", "lines": [one per job or endpoint], "prices": {"source", "as_of", "region"}}.

    A job that does not exist (never started, or another region) is skipped with a log line; the
    total adds the lines that have a price (format_cost says which have none).
    """
    prices = prices or load_prices()
    region = getattr(getattr(sm, "meta", None), "region_name", None)
    if region and prices.get("region") and region != prices["region"]:
        log.warning("Prices are %s's; the jobs ran in %s, where they may differ", prices["region"], region)
    lines: list[dict[str, Any]] = []
    for kind, names, price in (("training", training_jobs, training_cost), ("tuning", tuning_jobs, tuning_cost),
                               ("processing", processing_jobs, processing_cost),
                               ("transform", transform_jobs, transform_cost)):
        for name in names:
            if not name:
                continue
            try:
                lines.append(price(sm, name, prices))
            except ClientError as error:
                if not is_missing(error):
                    raise
                log.info("No %s job %s; skipped in the cost", kind, name)
    lines.extend(_endpoint_line(endpoint, prices) for endpoint in endpoints)
    total = round(sum(line["usd"] or 0 for line in lines), 10)
    return {"total_usd": total, "lines": lines, "prices": price_source(prices)}


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"


def format_cost(cost: Mapping) -> str:
    """A few lines for a task log: the total, then one line per job or endpoint."""
    prices = cost.get("prices", {})
    lines = cost.get("lines", [])
    unpriced = [line for line in lines if line["usd"] is None]
    total = cost.get("total_usd") or 0
    head = f"Run cost: ${total:.2f}" if total >= 1 else f"Run cost: ${total:.4f}"
    if unpriced:
        head += f" plus {len(unpriced)} item(s) with {NO_PRICE}"
    head += f" (on-demand, {prices.get('region', '?')} prices as of {prices.get('as_of', '?')}, {prices.get('source', '')})"
    out = [head]
    for line in lines:
        usd = NO_PRICE if line["usd"] is None else f"${line['usd']:.4f}"
        rate = "" if line["usd_per_hour"] is None else f" at ${line['usd_per_hour']:.4g}/h"
        count = f"{line['instance_count']} x " if line.get("instance_count") not in (None, 1) else ""
        jobs = f", {line['training_jobs']} training jobs" if "training_jobs" in line else ""
        note = f" ({line['note']})" if line.get("note") else ""
        out.append(f"  {line['kind']:<10} {line['name']}: {usd} = {count}{line['instance_type']} "
                   f"for {_duration(line['billable_seconds'])}{rate}{jobs}{note}")
    return "\n".join(out)
