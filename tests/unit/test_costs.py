"""What a run cost (include/pipelines/costs.py): the arithmetic over described jobs through a stub
client, one real training job on the local SageMaker, and a price for every instance type the
workload files name, in the table of the role it is used in."""
from __future__ import annotations

import io
import json
import tarfile
import textwrap
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import yaml
from botocore.exceptions import ClientError

from include.pipelines import costs
from tests.conftest import TEST_BUCKET, TEST_REGION, TEST_ROLE_ARN

ROOT = Path(__file__).resolve().parents[2]
T0 = datetime(2026, 3, 1, 12, tzinfo=timezone.utc)
PRICES = {"source": "https://aws.amazon.com/sagemaker/pricing/", "as_of": "2026-12-01", "region": "us-east-1",
          "training": {"ml.g4dn.xlarge": 0.736, "ml.m5.xlarge": 0.23}, "processing": {"ml.m5.xlarge": 0.23},
          "transform": {"ml.m5.xlarge": 0.23}, "hosting": {"ml.m5.xlarge": 0.23},
          "serverless": {"usd_per_gb_second": 0.00002}}


def _missing(operation: str) -> ClientError:
    return ClientError({"Error": {"Code": "ValidationException", "Message": "Requested resource not found."}}, operation)


class StubSageMaker:
    """Describe* answers from dicts; ListTrainingJobsForHyperParameterTuningJob in pages of two."""

    def __init__(self, training=(), processing=(), transform=(), tuning=None):
        self.training = {job["TrainingJobName"]: job for job in training}
        self.processing = {job["ProcessingJobName"]: job for job in processing}
        self.transform = {job["TransformJobName"]: job for job in transform}
        self.tuning = tuning or {}

    def describe_training_job(self, TrainingJobName):
        if TrainingJobName not in self.training:
            raise _missing("DescribeTrainingJob")
        return self.training[TrainingJobName]

    def describe_processing_job(self, ProcessingJobName):
        if ProcessingJobName not in self.processing:
            raise _missing("DescribeProcessingJob")
        return self.processing[ProcessingJobName]

    def describe_transform_job(self, TransformJobName):
        if TransformJobName not in self.transform:
            raise _missing("DescribeTransformJob")
        return self.transform[TransformJobName]

    def get_paginator(self, name):
        assert name == "list_training_jobs_for_hyper_parameter_tuning_job"
        stub = self

        class Paginator:
            def paginate(self, HyperParameterTuningJobName):
                names = stub.tuning[HyperParameterTuningJobName]
                return iter([{"TrainingJobSummaries": [{"TrainingJobName": n} for n in names[i:i + 2]]}
                             for i in range(0, len(names), 2)])
        return Paginator()


def _training(name, instance_type="ml.g4dn.xlarge", count=1, billable=3600, spot=False, **more):
    job = {"TrainingJobName": name, "ResourceConfig": {"InstanceType": instance_type, "InstanceCount": count},
           "TrainingStartTime": T0, "TrainingEndTime": T0 + timedelta(seconds=billable / (0.3 if spot else 1)),
           "BillableTimeInSeconds": billable, "EnableManagedSpotTraining": spot, **more}
    return job


# --- the arithmetic ----------------------------------------------------------------------------

def test_training_cost_is_billable_time_times_instances_times_price():
    sm = StubSageMaker(training=[_training("ddp", count=2, billable=1800)])
    line = costs.training_cost(sm, "ddp", PRICES)
    assert line == {"kind": "training", "name": "ddp", "instance_type": "ml.g4dn.xlarge", "instance_count": 2,
                    "billable_seconds": 1800.0, "usd_per_hour": 0.736, "usd": pytest.approx(0.736), "note": None}


def test_spot_training_is_priced_on_the_billable_seconds_without_a_second_discount():
    # TrainingTimeInSeconds 3600, BillableTimeInSeconds 1080: SageMaker bills the 1080 at the on-demand rate
    sm = StubSageMaker(training=[_training("spot", billable=1080, spot=True, TrainingTimeInSeconds=3600)])
    line = costs.training_cost(sm, "spot", PRICES)
    assert line["usd"] == pytest.approx(1080 * 0.736 / 3600) and "spot" in line["note"]


def test_training_job_without_billable_time_counts_its_time_so_far():
    job = _training("running")
    del job["BillableTimeInSeconds"], job["TrainingEndTime"]
    job["TrainingStartTime"] = datetime.now(timezone.utc) - timedelta(seconds=600)
    line = costs.training_line(job, PRICES)
    assert 599 <= line["billable_seconds"] <= 660 and "running" in line["note"]
    job["TrainingStartTime"] = None
    assert costs.training_line(job, PRICES)["usd"] == 0


def test_heterogeneous_cluster_bills_every_group():
    job = {"TrainingJobName": "hetero", "BillableTimeInSeconds": 3600,
           "ResourceConfig": {"InstanceGroups": [{"InstanceType": "ml.g4dn.xlarge", "InstanceCount": 1,
                                                  "InstanceGroupName": "gpu"},
                                                 {"InstanceType": "ml.m5.xlarge", "InstanceCount": 2,
                                                  "InstanceGroupName": "cpu"}]}}
    line = costs.training_line(job, PRICES)
    assert line["usd"] == pytest.approx(0.736 + 2 * 0.23) and line["instance_count"] == 3


def test_unknown_instance_type_says_no_price_and_stays_out_of_the_total():
    sm = StubSageMaker(training=[_training("priced"), _training("exotic", instance_type="ml.trn9.huge")])
    cost = costs.run_cost(sm, training_jobs=["priced", "exotic"], prices=PRICES)
    exotic = cost["lines"][1]
    assert exotic["usd"] is None and exotic["usd_per_hour"] is None
    assert exotic["note"] == "no price for ml.trn9.huge in the training table"
    assert cost["total_usd"] == pytest.approx(0.736)
    summary = costs.format_cost(cost)
    assert "plus 1 item(s) with no price" in summary and "exotic: no price" in summary


def test_tuning_cost_sums_its_training_jobs_over_every_page():
    names = [f"tune-{i:03d}" for i in range(5)]
    sm = StubSageMaker(training=[_training(n, billable=600 * (i + 1)) for i, n in enumerate(names)],
                       tuning={"tune": names})
    line = costs.tuning_cost(sm, "tune", PRICES)
    assert line["kind"] == "tuning" and line["training_jobs"] == 5 and [j["name"] for j in line["jobs"]] == names
    assert line["billable_seconds"] == 600 * 15
    assert line["usd"] == pytest.approx(600 * 15 * 0.736 / 3600)
    assert (line["instance_type"], line["instance_count"], line["usd_per_hour"]) == ("ml.g4dn.xlarge", 1, 0.736)


def test_processing_and_transform_cost_end_minus_start():
    sm = StubSageMaker(
        processing=[{"ProcessingJobName": "prep", "ProcessingStartTime": T0, "ProcessingEndTime": T0 + timedelta(minutes=30),
                     "ProcessingResources": {"ClusterConfig": {"InstanceType": "ml.m5.xlarge", "InstanceCount": 2,
                                                               "VolumeSizeInGB": 30}}}],
        transform=[{"TransformJobName": "batch", "TransformStartTime": T0, "TransformEndTime": T0 + timedelta(hours=2),
                    "TransformResources": {"InstanceType": "ml.m5.xlarge", "InstanceCount": 1}}])
    assert costs.processing_cost(sm, "prep", PRICES)["usd"] == pytest.approx(0.5 * 2 * 0.23)
    line = costs.transform_cost(sm, "batch", PRICES)
    assert (line["kind"], line["billable_seconds"], line["usd"]) == ("transform", 7200.0, pytest.approx(0.46))


def test_endpoint_and_serverless_cost():
    line = costs.endpoint_cost("ml.m5.xlarge", 2, 1800, name="ep", prices=PRICES)
    assert (line["kind"], line["usd"]) == ("endpoint", pytest.approx(0.23))
    serverless = costs.serverless_cost(4096, 1000, name="sl", prices=PRICES)
    assert serverless["usd"] == pytest.approx(4 * 1000 * 0.00002)
    assert serverless["usd_per_hour"] == pytest.approx(4 * 0.00002 * 3600)
    assert costs.endpoint_cost("ml.nope.large", 1, 60, prices=PRICES)["note"] == "no price for ml.nope.large in the hosting table"


def test_run_cost_adds_everything_and_skips_jobs_that_do_not_exist(caplog):
    sm = StubSageMaker(training=[_training("train", count=2)], tuning={"tune": ["train"]},
                       transform=[{"TransformJobName": "batch", "TransformStartTime": T0,
                                   "TransformEndTime": T0 + timedelta(hours=1),
                                   "TransformResources": {"InstanceType": "ml.m5.xlarge", "InstanceCount": 1}}])
    with caplog.at_level("INFO", logger="include.pipelines.costs"):
        cost = costs.run_cost(sm, training_jobs=["train", "never-started"], tuning_jobs=["tune"], transform_jobs=["batch"],
                              processing_jobs=["no-such"], prices=PRICES,
                              endpoints=[{"name": "ep", "instance_type": "ml.m5.xlarge", "instance_count": 1, "seconds": 3600},
                                         {"name": "sl", "memory_size_mb": 2048, "seconds": 500}])
    assert [(line["kind"], line["name"]) for line in cost["lines"]] == [
        ("training", "train"), ("tuning", "tune"), ("transform", "batch"), ("endpoint", "ep"), ("serverless", "sl")]
    assert cost["total_usd"] == pytest.approx(2 * 0.736 + 2 * 0.736 + 0.23 + 0.23 + 2 * 500 * 0.00002)
    assert cost["prices"] == {"source": PRICES["source"], "as_of": "2026-12-01", "region": "us-east-1"}
    assert "No training job never-started; skipped" in caplog.text and "No processing job no-such" in caplog.text
    json.dumps(cost)  # an XCom: plain JSON
    summary = costs.format_cost(cost)
    assert summary.splitlines()[0].startswith(f"Run cost: ${cost['total_usd']:.2f} (on-demand, us-east-1 prices as of 2026-12-01")
    assert len(summary.splitlines()) == 6 and "2 x ml.g4dn.xlarge for 1 h 0 min at $0.736/h" in summary


def test_other_errors_are_not_swallowed():
    class Throttled(StubSageMaker):
        def describe_training_job(self, TrainingJobName):
            raise ClientError({"Error": {"Code": "ThrottlingException", "Message": "Rate exceeded"}}, "DescribeTrainingJob")

    with pytest.raises(ClientError):
        costs.run_cost(Throttled(), training_jobs=["x"], prices=PRICES)


# --- the table ---------------------------------------------------------------------------------

def test_price_table_names_its_source_date_and_region():
    prices = costs.load_prices()
    assert prices["source"] == "https://aws.amazon.com/sagemaker/pricing/"
    assert datetime.strptime(str(prices["as_of"]), "%Y-%m-%d") and prices["region"] == "us-east-1"
    for role in costs.ROLES:
        assert prices[role] and all(name.startswith("ml.") and 0 < rate < 100 for name, rate in prices[role].items())
    assert 0 < prices["serverless"]["usd_per_gb_second"] < 0.001


# the role a key of a workload file bills its instance_type under
ROLE_OF_SECTION = {"training": "training", "tuning": "training", "processing": "processing", "transform": "transform",
                   "endpoint": "hosting",
                   "promotion": "processing"}  # promotion.instance_type: the champion/challenger evaluation job


def _instance_types(node, path=()):
    """(section path, instance type) for every instance_type anywhere in a workload file, profiles included."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "instance_type" and isinstance(value, str):
                yield path, value
            else:
                yield from _instance_types(value, (*path, key))
    elif isinstance(node, list):
        for item in node:
            yield from _instance_types(item, path)


def test_every_instance_type_in_the_workloads_has_a_price_for_its_role():
    prices = costs.load_prices()
    found, missing = set(), []
    for path in sorted((ROOT / "include" / "workloads").glob("*.yaml")):
        for sections, instance_type in _instance_types(yaml.safe_load(path.read_text())):
            roles = [ROLE_OF_SECTION[s] for s in sections if s in ROLE_OF_SECTION]
            assert roles, f"{path.name}: {'.'.join(sections)}.instance_type: which role bills it? (ROLE_OF_SECTION)"
            found.add((roles[-1], instance_type))
            if costs.hourly_price(roles[-1], instance_type, prices) is None:
                missing.append(f"{path.name}: {'.'.join(sections)}.instance_type {instance_type} ({roles[-1]})")
    assert not missing, "no price in include/pipelines/sagemaker_prices.yaml for:\n" + "\n".join(missing)
    # the scan sees what the workloads are known to use
    assert {("training", "ml.g4dn.xlarge"), ("training", "ml.p3.2xlarge"), ("training", "ml.g5.2xlarge"),
            ("transform", "ml.m5.xlarge"), ("hosting", "ml.m5.xlarge"), ("hosting", "ml.g4dn.xlarge")} <= found


def test_every_serverless_endpoint_in_the_workloads_has_a_price():
    for path in sorted((ROOT / "include" / "workloads").glob("*.yaml")):
        text = path.read_text()
        if "serverless:" in text:
            assert "memory_size_mb" in text
            assert costs.serverless_cost(4096, 1)["usd"] > 0, path.name


# --- one real job ------------------------------------------------------------------------------

TRAIN_PY = textwrap.dedent(
    """
    import json, os, time
    time.sleep(1)
    with open(os.path.join(os.environ["SM_MODEL_DIR"], "model.json"), "w") as f:
        json.dump({"ok": True}, f)
    """
)


@pytest.mark.slow
def test_cost_of_a_real_training_job_on_the_local_sagemaker(sagemaker_client, s3_client):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        info = tarfile.TarInfo("train.py")
        info.size = len(TRAIN_PY.encode())
        archive.addfile(info, io.BytesIO(TRAIN_PY.encode()))
    s3_client.put_object(Bucket=TEST_BUCKET, Key="cost-tests/sourcedir.tar.gz", Body=buffer.getvalue())
    name = f"cost-test-{int(time.time())}"
    sagemaker_client.create_training_job(
        TrainingJobName=name,
        AlgorithmSpecification={"TrainingImage": "763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-training:"
                                                 "2.5.1-cpu-py311-ubuntu22.04-sagemaker", "TrainingInputMode": "File"},
        RoleArn=TEST_ROLE_ARN,
        HyperParameters={"sagemaker_program": json.dumps("train.py"),
                         "sagemaker_submit_directory": json.dumps(f"s3://{TEST_BUCKET}/cost-tests/sourcedir.tar.gz"),
                         "sagemaker_region": json.dumps(TEST_REGION)},
        OutputDataConfig={"S3OutputPath": f"s3://{TEST_BUCKET}/cost-tests/output"},
        ResourceConfig={"InstanceType": "ml.m5.xlarge", "InstanceCount": 1, "VolumeSizeInGB": 5},
        StoppingCondition={"MaxRuntimeInSeconds": 300},
    )
    deadline = time.monotonic() + 180
    while (job := sagemaker_client.describe_training_job(TrainingJobName=name))["TrainingJobStatus"] == "InProgress":
        assert time.monotonic() < deadline, "the training job never finished"
        time.sleep(0.5)
    assert job["TrainingJobStatus"] == "Completed", job.get("FailureReason")

    cost = costs.run_cost(sagemaker_client, training_jobs=[name, "cost-test-never-ran"])
    (line,) = cost["lines"]
    assert line["billable_seconds"] == job["BillableTimeInSeconds"] >= 1
    assert line["usd"] == pytest.approx(job["BillableTimeInSeconds"] * costs.hourly_price("training", "ml.m5.xlarge") / 3600)
    assert cost["total_usd"] == pytest.approx(line["usd"])
    assert f"training   {name}: $" in costs.format_cost(cost)
