"""Hyperparameter tuning on the local SageMaker: real child training jobs of a tiny script, tuned by
Random, Bayesian, Grid and Hyperband, with early stopping, counters and the provider's operator."""
from __future__ import annotations

import copy
import io
import json
import re
import tarfile
import textwrap
import time

import pytest
from botocore.exceptions import ClientError

from tests.conftest import TEST_BUCKET, TEST_REGION, TEST_ROLE_ARN
from tests.emulator.test_training_jobs import IMAGE

PREFIX = "tuning-tests"
TERMINAL = {"Completed", "Failed", "Stopped"}

# Its quality is a known function of the hyperparameters, reported every epoch (the metrics below).
# parse_args is strict: the _tuning_objective_metric SageMaker adds must not reach the script.
TUNE_PY = textwrap.dedent(
    """
    import argparse, time

    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--epoch-seconds", type=float, default=0.0)
    parser.add_argument("--shift", type=float, default=0.5)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--optimizer", default="sgd")
    parser.add_argument("--quality", type=float, default=None)
    args = parser.parse_args()
    if args.optimizer == "broken":
        raise ValueError("optimizer 'broken' cannot train")
    quality = args.quality
    if quality is None:
        quality = 1 - (args.shift - 0.3) ** 2 - 0.01 * abs(args.layers - 4) + (0.05 if args.optimizer == "adam" else 0)
    for epoch in range(1, args.epochs + 1):
        time.sleep(args.epoch_seconds)
        accuracy = quality * epoch / args.epochs
        print(f"epoch={epoch} val_accuracy={accuracy:.6f} val_loss={1 - accuracy:.6f}", flush=True)
    """
)
METRICS = [
    {"Name": "validation:accuracy", "Regex": r"val_accuracy=([0-9.]+)"},
    {"Name": "validation:loss", "Regex": r"val_loss=([0-9.]+)"},
]
CHILD_NAME = re.compile(r"^(?P<tuning>.+)-(?P<index>\d{3})-[0-9a-f]{8}$")


@pytest.fixture(scope="module")
def tune_source_uri(s3_client):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        data = TUNE_PY.encode()
        info = tarfile.TarInfo("train.py")
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data))
    s3_client.put_object(Bucket=TEST_BUCKET, Key=f"{PREFIX}/source/sourcedir.tar.gz", Body=buffer.getvalue())
    s3_client.put_object(Bucket=TEST_BUCKET, Key=f"{PREFIX}/data/train/a.csv", Body=b"1,2\n")
    return f"s3://{TEST_BUCKET}/{PREFIX}/source/sourcedir.tar.gz"


def tuning_request(name: str, source_uri: str, strategy: str, ranges: dict, *, max_jobs: int | None, parallel: int,
                   objective: tuple[str, str] = ("Maximize", "validation:accuracy"), image: str = IMAGE,
                   early_stopping: str = "Off", **static) -> dict:
    static_hyperparameters = {
        **{key.replace("_", "-"): str(value) for key, value in static.items()},
        "sagemaker_program": json.dumps("train.py"),
        "sagemaker_submit_directory": json.dumps(source_uri),
        "sagemaker_region": json.dumps(TEST_REGION),
    }
    limits = {"MaxParallelTrainingJobs": parallel}
    if max_jobs is not None:
        limits["MaxNumberOfTrainingJobs"] = max_jobs
    return {
        "HyperParameterTuningJobName": name,
        "HyperParameterTuningJobConfig": {
            "Strategy": strategy,
            "HyperParameterTuningJobObjective": {"Type": objective[0], "MetricName": objective[1]},
            "ResourceLimits": limits,
            "ParameterRanges": copy.deepcopy(ranges),
            "TrainingJobEarlyStoppingType": early_stopping,
            "RandomSeed": 7,
        },
        "TrainingJobDefinition": {
            "StaticHyperParameters": static_hyperparameters,
            "AlgorithmSpecification": {"TrainingImage": image, "TrainingInputMode": "File", "MetricDefinitions": METRICS},
            "RoleArn": TEST_ROLE_ARN,
            "InputDataConfig": [
                {
                    "ChannelName": "train",
                    "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": f"s3://{TEST_BUCKET}/{PREFIX}/data/train"}},
                }
            ],
            "OutputDataConfig": {"S3OutputPath": f"s3://{TEST_BUCKET}/{PREFIX}/output"},
            "ResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 5},
            "StoppingCondition": {"MaxRuntimeInSeconds": 300},
        },
        "Tags": [{"Key": "project", "Value": "tuning-tests"}],
    }


def wait_for_tuning(sagemaker_client, name: str, timeout: float = 300) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        description = sagemaker_client.describe_hyper_parameter_tuning_job(HyperParameterTuningJobName=name)
        if description["HyperParameterTuningJobStatus"] in TERMINAL:
            return description
        assert time.monotonic() < deadline, f"{name} still {description['HyperParameterTuningJobStatus']} after {timeout} s"
        time.sleep(0.5)


def children(sagemaker_client, name: str) -> list[dict]:
    pages = sagemaker_client.get_paginator("list_training_jobs_for_hyper_parameter_tuning_job")
    return [s for page in pages.paginate(HyperParameterTuningJobName=name) for s in page["TrainingJobSummaries"]]


def final_metric(sagemaker_client, job_name: str, metric: str) -> float | None:
    described = sagemaker_client.describe_training_job(TrainingJobName=job_name)
    values = {m["MetricName"]: m["Value"] for m in described["FinalMetricDataList"]}
    return values.get(metric)


def assert_best_is_best_child(sagemaker_client, tuning: dict, maximize: bool = True) -> None:
    """BestTrainingJob is the real best of the children, by the objective each child really logged."""
    metric = tuning["HyperParameterTuningJobConfig"]["HyperParameterTuningJobObjective"]["MetricName"]
    logged = {
        child["TrainingJobName"]: final_metric(sagemaker_client, child["TrainingJobName"], metric)
        for child in children(sagemaker_client, tuning["HyperParameterTuningJobName"])
        if child["ObjectiveStatus"] == "Succeeded"
    }
    best_name = (max if maximize else min)(logged, key=logged.get)
    best = tuning["BestTrainingJob"]
    assert best["TrainingJobName"] == best_name
    assert best["FinalHyperParameterTuningJobObjectiveMetric"] == {
        "Type": "Maximize" if maximize else "Minimize", "MetricName": metric, "Value": pytest.approx(logged[best_name]),
    }


def max_overlap(summaries: list[dict]) -> int:
    """The most children that trained at the same moment."""
    events = []
    for child in summaries:
        events += [(child["TrainingStartTime"], 1), (child["TrainingEndTime"], -1)]
    running = peak = 0
    for _, delta in sorted(events, key=lambda event: (event[0], event[1])):
        running += delta
        peak = max(peak, running)
    return peak


# --- Grid: every combination, one of which fails ------------------------------------------------


@pytest.fixture(scope="module")
def grid_tuning(sagemaker_client, tune_source_uri):
    ranges = {"CategoricalParameterRanges": [{"Name": "optimizer", "Values": ["sgd", "adam", "broken"]}]}
    request = tuning_request("unit-tune-grid", tune_source_uri, "Grid", ranges, max_jobs=None, parallel=2, shift=0.3)
    sagemaker_client.create_hyper_parameter_tuning_job(**request)
    return wait_for_tuning(sagemaker_client, "unit-tune-grid")


@pytest.mark.slow
def test_grid_tries_every_combination_and_counts_the_failed_child(grid_tuning, sagemaker_client):
    tuning = grid_tuning
    assert tuning["HyperParameterTuningJobStatus"] == "Completed", tuning.get("FailureReason")
    assert tuning["HyperParameterTuningJobConfig"]["ResourceLimits"]["MaxNumberOfTrainingJobs"] == 3
    assert tuning["TrainingJobStatusCounters"] == {"Completed": 2, "InProgress": 0, "RetryableError": 0, "NonRetryableError": 1, "Stopped": 0}
    assert tuning["ObjectiveStatusCounters"] == {"Succeeded": 2, "Pending": 0, "Failed": 1}
    summaries = children(sagemaker_client, "unit-tune-grid")
    assert sorted(s["TunedHyperParameters"]["optimizer"] for s in summaries) == ["adam", "broken", "sgd"]
    failed = next(s for s in summaries if s["TunedHyperParameters"]["optimizer"] == "broken")
    assert (failed["TrainingJobStatus"], failed["ObjectiveStatus"]) == ("Failed", "Failed")
    assert "ValueError: optimizer 'broken' cannot train" in failed["FailureReason"]
    assert_best_is_best_child(sagemaker_client, tuning)
    assert tuning["BestTrainingJob"]["TunedHyperParameters"] == {"optimizer": "adam"}  # adam adds 0.05
    assert tuning["CreationTime"] <= tuning["HyperParameterTuningEndTime"] <= tuning["LastModifiedTime"]


@pytest.mark.slow
def test_children_are_real_training_jobs_named_and_linked_as_on_sagemaker(grid_tuning, sagemaker_client):
    summaries = children(sagemaker_client, "unit-tune-grid")
    assert sorted(CHILD_NAME.match(s["TrainingJobName"])["index"] for s in summaries) == ["001", "002", "003"]
    for summary in summaries:
        assert CHILD_NAME.match(summary["TrainingJobName"])["tuning"] == "unit-tune-grid"
        assert summary["TuningJobName"] == "unit-tune-grid"
        job = sagemaker_client.describe_training_job(TrainingJobName=summary["TrainingJobName"])
        assert job["TuningJobArn"] == grid_tuning["HyperParameterTuningJobArn"]
        # static + tuned hyperparameters, and the objective SageMaker adds for the algorithm
        assert job["HyperParameters"]["optimizer"] == summary["TunedHyperParameters"]["optimizer"]
        assert job["HyperParameters"]["shift"] == "0.3"
        assert job["HyperParameters"]["_tuning_objective_metric"] == "validation:accuracy"
        tags = sagemaker_client.list_tags(ResourceArn=job["TrainingJobArn"])["Tags"]
        assert {"Key": "project", "Value": "tuning-tests"} in tags  # the tuning job's tags go to its children
    static = grid_tuning["TrainingJobDefinition"]["StaticHyperParameters"]
    assert static["_tuning_objective_metric"] == "validation:accuracy"


@pytest.mark.slow
def test_list_operations_find_the_tuning_job_and_order_its_children(grid_tuning, sagemaker_client):
    listed = sagemaker_client.list_hyper_parameter_tuning_jobs(NameContains="UNIT-TUNE-GRID")["HyperParameterTuningJobSummaries"]
    assert [s["HyperParameterTuningJobName"] for s in listed] == ["unit-tune-grid"]
    assert listed[0]["Strategy"] == "Grid" and listed[0]["TrainingJobStatusCounters"]["Completed"] == 2
    by_objective = sagemaker_client.list_training_jobs_for_hyper_parameter_tuning_job(
        HyperParameterTuningJobName="unit-tune-grid", SortBy="FinalObjectiveMetricValue", SortOrder="Descending"
    )["TrainingJobSummaries"]
    assert len(by_objective) == 2  # the failed child reported no objective
    assert by_objective[0]["TrainingJobName"] == grid_tuning["BestTrainingJob"]["TrainingJobName"]
    failed_only = sagemaker_client.list_training_jobs_for_hyper_parameter_tuning_job(
        HyperParameterTuningJobName="unit-tune-grid", StatusEquals="Failed"
    )["TrainingJobSummaries"]
    assert [s["TunedHyperParameters"]["optimizer"] for s in failed_only] == ["broken"]


# --- Random and Bayesian -----------------------------------------------------------------------

NUMERIC_RANGES = {
    "ContinuousParameterRanges": [
        {"Name": "shift", "MinValue": "0", "MaxValue": "1", "ScalingType": "Linear"},
        {"Name": "lr", "MinValue": "0.0001", "MaxValue": "0.1", "ScalingType": "Logarithmic"},
    ],
    "IntegerParameterRanges": [{"Name": "layers", "MinValue": "1", "MaxValue": "8", "ScalingType": "Auto"}],
    "CategoricalParameterRanges": [{"Name": "optimizer", "Values": ["sgd", "adam"]}],
}


def assert_within_ranges(summaries: list[dict]) -> None:
    for summary in summaries:
        tuned = summary["TunedHyperParameters"]
        assert 0 <= float(tuned["shift"]) <= 1
        assert 0.0001 <= float(tuned["lr"]) <= 0.1
        assert tuned["layers"].isdigit() and 1 <= int(tuned["layers"]) <= 8
        assert tuned["optimizer"] in ("sgd", "adam")


@pytest.fixture(scope="module")
def random_tuning(emulator, tune_source_uri):
    """A Random search run the way the DAGs run it: through the provider's SageMakerTuningOperator."""
    from airflow.providers.amazon.aws.operators.sagemaker import SageMakerTuningOperator

    config = tuning_request("unit-tune-random", tune_source_uri, "Random", NUMERIC_RANGES, max_jobs=3, parallel=2)
    operator = SageMakerTuningOperator(
        task_id="tune", config=config, aws_conn_id=None, region_name=TEST_REGION, wait_for_completion=True, check_interval=1,
    )
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AWS_ENDPOINT_URL", emulator.endpoint_url)  # the hooks use boto3's own resolution
        return operator.execute({})["Tuning"]


@pytest.mark.slow
def test_provider_tuning_operator_waits_for_the_tuning_job(random_tuning):
    assert random_tuning["HyperParameterTuningJobStatus"] == "Completed", random_tuning.get("FailureReason")
    assert random_tuning["TrainingJobStatusCounters"]["Completed"] == 3
    assert random_tuning["BestTrainingJob"]["TuningJobName"] == "unit-tune-random"


@pytest.mark.slow
def test_random_search_honours_the_limits_and_finds_the_best(random_tuning, sagemaker_client):
    tuning = sagemaker_client.describe_hyper_parameter_tuning_job(HyperParameterTuningJobName="unit-tune-random")
    summaries = children(sagemaker_client, "unit-tune-random")
    assert len(summaries) == 3  # MaxNumberOfTrainingJobs
    assert max_overlap(summaries) <= 2  # MaxParallelTrainingJobs
    assert_within_ranges(summaries)
    assert_best_is_best_child(sagemaker_client, tuning)


@pytest.mark.slow
def test_bayesian_search_minimizes_with_a_gaussian_process(emulator, sagemaker_client, tune_source_uri):
    from optuna.samplers import GPSampler

    from include.emulator.sagemaker.tuning import TuningJobStore

    request = tuning_request("unit-tune-bayes", tune_source_uri, "Bayesian", NUMERIC_RANGES, max_jobs=3, parallel=1,
                             objective=("Minimize", "validation:loss"))
    sagemaker_client.create_hyper_parameter_tuning_job(**request)
    tuning = wait_for_tuning(sagemaker_client, "unit-tune-bayes")
    assert tuning["HyperParameterTuningJobStatus"] == "Completed", tuning.get("FailureReason")
    summaries = children(sagemaker_client, "unit-tune-bayes")
    assert len(summaries) == 3 and max_overlap(summaries) == 1  # one at a time: each proposal learns from all before
    assert_within_ranges(summaries)
    assert_best_is_best_child(sagemaker_client, tuning, maximize=False)
    # the proposals came from optuna's Gaussian-process sampler, told every child's final objective
    study = emulator.emulator.store(TuningJobStore).get("unit-tune-bayes").definitions[0].strategy.study
    assert isinstance(study.sampler, GPSampler)
    told = sorted(trial.value for trial in study.trials)
    assert told == pytest.approx(sorted(s["FinalHyperParameterTuningJobObjectiveMetric"]["Value"] for s in summaries))


# --- stopping weak children early ---------------------------------------------------------------


@pytest.mark.slow
def test_hyperband_stops_children_that_fall_behind_at_a_rung(sagemaker_client, tune_source_uri):
    ranges = {"ContinuousParameterRanges": [{"Name": "quality", "MinValue": "0.1", "MaxValue": "1", "ScalingType": "Linear"}]}
    # MaxResource comes from the static "epochs"; rungs at 1 and 3 epochs (eta 3)
    request = tuning_request("unit-tune-hyperband", tune_source_uri, "Hyperband", ranges, max_jobs=3, parallel=1,
                             epochs=6, epoch_seconds=0.4)
    request["HyperParameterTuningJobConfig"]["StrategyConfig"] = {"HyperbandStrategyConfig": {"MinResource": 1}}
    sagemaker_client.create_hyper_parameter_tuning_job(**request)
    tuning = wait_for_tuning(sagemaker_client, "unit-tune-hyperband")
    assert tuning["HyperParameterTuningJobStatus"] == "Completed", tuning.get("FailureReason")
    summaries = sorted(children(sagemaker_client, "unit-tune-hyperband"), key=lambda s: s["TrainingJobName"][-12:-9])
    stopped = [s for s in summaries if s["TrainingJobStatus"] == "Stopped"]
    assert stopped, "with these seeded proposals some child falls behind an earlier one"
    assert tuning["TrainingJobStatusCounters"]["Stopped"] == len(stopped)
    assert tuning["ObjectiveStatusCounters"]["Succeeded"] == 3  # a stopped child still reported its objective
    for child in stopped:
        earlier = [s for s in summaries if s["TrainingJobName"][-12:-9] < child["TrainingJobName"][-12:-9]]
        # quality decides the curve: a child stops only behind a better earlier one, before its last epoch
        assert any(float(s["TunedHyperParameters"]["quality"]) > float(child["TunedHyperParameters"]["quality"]) for s in earlier)
        described = sagemaker_client.describe_training_job(TrainingJobName=child["TrainingJobName"])
        assert "Stopped early by the hyperparameter tuning job: Hyperband" in described["SecondaryStatusTransitions"][-1]["StatusMessage"]
    assert_best_is_best_child(sagemaker_client, tuning)
    assert tuning["BestTrainingJob"]["TrainingJobStatus"] == "Completed"


@pytest.mark.slow
def test_early_stopping_auto_stops_a_child_below_the_median(sagemaker_client, tune_source_uri):
    ranges = {"CategoricalParameterRanges": [{"Name": "quality", "Values": ["0.9", "0.8", "0.85", "0.1"]}]}
    request = tuning_request("unit-tune-median", tune_source_uri, "Grid", ranges, max_jobs=None, parallel=2,
                             early_stopping="Auto", epochs=6, epoch_seconds=0.4)
    sagemaker_client.create_hyper_parameter_tuning_job(**request)
    tuning = wait_for_tuning(sagemaker_client, "unit-tune-median")
    assert tuning["HyperParameterTuningJobStatus"] == "Completed", tuning.get("FailureReason")
    assert tuning["TrainingJobStatusCounters"] == {"Completed": 3, "InProgress": 0, "RetryableError": 0, "NonRetryableError": 0, "Stopped": 1}
    weak = next(s for s in children(sagemaker_client, "unit-tune-median") if s["TunedHyperParameters"]["quality"] == "0.1")
    assert weak["TrainingJobStatus"] == "Stopped" and weak["ObjectiveStatus"] == "Succeeded"
    assert weak["FinalHyperParameterTuningJobObjectiveMetric"]["Value"] < 0.1  # stopped before its last epoch
    assert tuning["BestTrainingJob"]["TunedHyperParameters"] == {"quality": "0.9"}


# --- stopping and failing -----------------------------------------------------------------------


@pytest.mark.slow
def test_stop_tuning_job_stops_its_running_children(sagemaker_client, tune_source_uri):
    ranges = {"CategoricalParameterRanges": [{"Name": "optimizer", "Values": ["sgd", "adam"]}]}
    request = tuning_request("unit-tune-stop", tune_source_uri, "Grid", ranges, max_jobs=None, parallel=2, epochs=100, epoch_seconds=1)
    sagemaker_client.create_hyper_parameter_tuning_job(**request)
    deadline = time.monotonic() + 120
    while not any(s["TrainingJobStatus"] == "InProgress" and "TrainingStartTime" in s for s in children(sagemaker_client, "unit-tune-stop")):
        assert time.monotonic() < deadline
        time.sleep(0.5)
    sagemaker_client.stop_hyper_parameter_tuning_job(HyperParameterTuningJobName="unit-tune-stop")
    tuning = wait_for_tuning(sagemaker_client, "unit-tune-stop", timeout=60)
    assert tuning["HyperParameterTuningJobStatus"] == "Stopped"
    assert {s["TrainingJobStatus"] for s in children(sagemaker_client, "unit-tune-stop")} == {"Stopped"}
    with pytest.raises(ClientError) as error:
        sagemaker_client.stop_hyper_parameter_tuning_job(HyperParameterTuningJobName="unit-tune-stop")
    assert error.value.response["Error"]["Code"] == "ValidationException"


def test_tuning_job_whose_children_all_fail_fails(sagemaker_client, tune_source_uri):
    ranges = {"CategoricalParameterRanges": [{"Name": "optimizer", "Values": ["sgd", "adam"]}]}
    request = tuning_request("unit-tune-all-fail", tune_source_uri, "Grid", ranges, max_jobs=None, parallel=2,
                             image="example.com/not-runnable:1")
    sagemaker_client.create_hyper_parameter_tuning_job(**request)
    tuning = wait_for_tuning(sagemaker_client, "unit-tune-all-fail", timeout=60)
    assert tuning["HyperParameterTuningJobStatus"] == "Failed"
    assert tuning["FailureReason"].startswith("No training job succeeded after 2 attempts.")
    assert tuning["TrainingJobStatusCounters"]["NonRetryableError"] == 2
    assert "BestTrainingJob" not in tuning
    with pytest.raises(ClientError) as error:
        sagemaker_client.create_hyper_parameter_tuning_job(**request)
    assert error.value.response["Error"]["Code"] == "ResourceInUse"


# --- requests SageMaker refuses -----------------------------------------------------------------


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda r: r["TrainingJobDefinition"]["AlgorithmSpecification"].update(MetricDefinitions=[]),
         "A metric is required for this hyperparameter tuning job objective. Provide a metric in the metric definitions."),
        (lambda r: r["HyperParameterTuningJobConfig"].update(Strategy="Hyperband", TrainingJobEarlyStoppingType="Auto"),
         "TrainingJobEarlyStoppingType must be Off with the Hyperband strategy"),
        (lambda r: r["HyperParameterTuningJobConfig"].update(Strategy="Grid"), "The Grid strategy supports only CategoricalParameterRanges"),
        (lambda r: r["HyperParameterTuningJobConfig"]["ParameterRanges"]["ContinuousParameterRanges"][0].update(ScalingType="Logarithmic"),
         "'shift': Logarithmic scaling needs a range entirely above 0"),
        (lambda r: r["HyperParameterTuningJobConfig"]["ParameterRanges"]["IntegerParameterRanges"][0].update(MinValue="one"),
         "'layers': MinValue 'one' is not an integer"),
        (lambda r: r["HyperParameterTuningJobConfig"]["ParameterRanges"]["IntegerParameterRanges"][0].update(ScalingType="ReverseLogarithmic"),
         "ReverseLogarithmic scaling works only for continuous ranges"),
        (lambda r: r["TrainingJobDefinition"]["StaticHyperParameters"].update(shift="0.5"), "shift cannot be both a StaticHyperParameter and a tuned range"),
        (lambda r: r["HyperParameterTuningJobConfig"]["ResourceLimits"].pop("MaxNumberOfTrainingJobs"),
         "MaxNumberOfTrainingJobs is required with the Random strategy"),
        (lambda r: r["HyperParameterTuningJobConfig"].update(Strategy="Hyperband"), "HyperbandStrategyConfig.MaxResource is missing"),
        (lambda r: r.update(Tags=[{"Key": "emulator:fault", "Value": "spot-interruption:later"}]), "spot-interruption:later"),
    ],
)
def test_invalid_tuning_request_is_refused_with_the_reason(sagemaker_client, tune_source_uri, change, message):
    request = tuning_request("unit-tune-invalid", tune_source_uri, "Random", NUMERIC_RANGES, max_jobs=2, parallel=1)
    change(request)
    with pytest.raises(ClientError) as error:
        sagemaker_client.create_hyper_parameter_tuning_job(**request)
    assert error.value.response["Error"]["Code"] == "ValidationException"
    assert message in error.value.response["Error"]["Message"]


def test_describe_unknown_tuning_job_is_resource_not_found(sagemaker_client):
    with pytest.raises(ClientError) as error:
        sagemaker_client.describe_hyper_parameter_tuning_job(HyperParameterTuningJobName="no-such-tuning")
    assert error.value.response["Error"]["Code"] == "ResourceNotFound"


def test_scaling_types_sample_within_their_ranges():
    import math

    from include.emulator.tuning.space import SearchSpace

    space = SearchSpace.from_ranges({
        "ContinuousParameterRanges": [
            {"Name": "momentum", "MinValue": "0.9", "MaxValue": "0.999", "ScalingType": "ReverseLogarithmic"},
            {"Name": "lr", "MinValue": "1e-5", "MaxValue": "1e-1", "ScalingType": "Auto"},
            {"Name": "dropout", "MinValue": "0", "MaxValue": "0.5", "ScalingType": "Auto"},
        ],
    }, "ParameterRanges")
    momentum, lr, dropout = space.parameters
    assert (lr.scaling, dropout.scaling) == ("Logarithmic", "Linear")  # Auto: log across orders of magnitude
    assert momentum.value(momentum.distribution().low) == repr(0.999)
    assert momentum.value(momentum.distribution().high) == repr(0.9)
    # halfway in search coordinates is the geometric middle of 1 - x, not the arithmetic one
    middle = (momentum.distribution().low + momentum.distribution().high) / 2
    assert float(momentum.value(middle)) == pytest.approx(1 - math.sqrt(0.1 * 0.001))
