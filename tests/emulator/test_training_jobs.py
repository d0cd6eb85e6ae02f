"""Training jobs on the local SageMaker: real runs of a tiny script through AWS's training toolkit."""
from __future__ import annotations

import datetime as dt
import io
import json
import tarfile
import textwrap
import time

import pytest
from botocore.exceptions import ClientError

from include.emulator.jobs.failures import MAX_FAILURE_REASON, algorithm_failure_reason, recorded_exception
from tests.conftest import TEST_BUCKET, TEST_REGION, TEST_ROLE_ARN

IMAGE = "763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-training:2.5.1-cpu-py311-ubuntu22.04-sagemaker"
PREFIX = "training-tests"
LOG_GROUP = "/aws/sagemaker/TrainingJobs"
TERMINAL = {"Completed", "Failed", "Stopped"}

# The script a job runs: pure Python, a second or two. Log lines match METRICS below.
TRAIN_PY = textwrap.dedent(
    """
    import argparse, json, os, sys, time

    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--learning-rate", type=float, default=0.1)
    parser.add_argument("--sleep", type=float, default=0.0)
    parser.add_argument("--empty-batch", type=int, default=0)
    args = parser.parse_args()

    class EmptyBatch(Exception):  # a name no log parser could know for an exception
        pass

    if args.learning_rate > 1:
        raise ValueError(f"bad lr {args.learning_rate}: must be at most 1")
    if args.empty_batch:
        try:
            {}["samples"]
        except KeyError as missing:
            raise EmptyBatch(f"batch {args.empty_batch} holds no samples") from missing

    model_dir = os.environ["SM_MODEL_DIR"]
    train_dir = os.environ["SM_CHANNEL_TRAIN"]
    channel_files = sorted(
        os.path.relpath(os.path.join(root, name), train_dir)
        for root, _, names in os.walk(train_dir) for name in names
    )
    print(f"found {len(channel_files)} training files", flush=True)
    if args.sleep:
        with open(os.path.join(model_dir, "partial.txt"), "w") as f:
            f.write("saved before the long sleep")
        print("sleeping now", flush=True)
        time.sleep(args.sleep)
    for epoch in range(1, args.epochs + 1):
        print(f"epoch={epoch} loss={1 / epoch:.4f} accuracy={epoch / args.epochs:.4f}", flush=True)
    with open(os.path.join(model_dir, "model.json"), "w") as f:
        json.dump({"argv": sys.argv[1:], "channel_files": channel_files, "lr": args.learning_rate}, f)
    os.makedirs(os.environ["SM_OUTPUT_DATA_DIR"], exist_ok=True)
    with open(os.path.join(os.environ["SM_OUTPUT_DATA_DIR"], "report.txt"), "w") as f:
        f.write("done")
    """
)
METRICS = [
    {"Name": "train:loss", "Regex": r"loss=([0-9.]+)"},
    {"Name": "train:accuracy", "Regex": r"accuracy=([0-9.]+)"},
    {"Name": "never:seen", "Regex": r"val_f1=([0-9.]+)"},
]


@pytest.fixture(scope="module")
def source_uri(s3_client):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        data = TRAIN_PY.encode()
        info = tarfile.TarInfo("train.py")
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data))
    s3_client.put_object(Bucket=TEST_BUCKET, Key=f"{PREFIX}/source/sourcedir.tar.gz", Body=buffer.getvalue())
    return f"s3://{TEST_BUCKET}/{PREFIX}/source/sourcedir.tar.gz"


@pytest.fixture(scope="module")
def train_channel_uri(s3_client):
    s3_client.put_object(Bucket=TEST_BUCKET, Key=f"{PREFIX}/data/train/a.csv", Body=b"x,y\n1,2\n")
    s3_client.put_object(Bucket=TEST_BUCKET, Key=f"{PREFIX}/data/train/nested/b.txt", Body=b"hello")
    return f"s3://{TEST_BUCKET}/{PREFIX}/data/train"


def training_request(name: str, source_uri: str, channel_uri: str, *, image: str = IMAGE, max_runtime: int = 600, **hyperparameters) -> dict:
    """A request as the SageMaker SDK and our pipeline builders send it."""
    return {
        "TrainingJobName": name,
        "AlgorithmSpecification": {"TrainingImage": image, "TrainingInputMode": "File", "MetricDefinitions": METRICS},
        "RoleArn": TEST_ROLE_ARN,
        "HyperParameters": {
            **{key.replace("_", "-"): str(value) for key, value in hyperparameters.items()},
            "sagemaker_program": json.dumps("train.py"),
            "sagemaker_submit_directory": json.dumps(source_uri),
            "sagemaker_container_log_level": "20",
            "sagemaker_region": json.dumps(TEST_REGION),
        },
        "InputDataConfig": [
            {
                "ChannelName": "train",
                "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": channel_uri, "S3DataDistributionType": "FullyReplicated"}},
            }
        ],
        "OutputDataConfig": {"S3OutputPath": f"s3://{TEST_BUCKET}/{PREFIX}/output"},
        "ResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 5},
        "StoppingCondition": {"MaxRuntimeInSeconds": max_runtime},
        "Environment": {"WORKLOAD": "unit-test"},
        "Tags": [{"Key": "project", "Value": "tests"}],
    }


def wait_until_done(sagemaker_client, name: str, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        description = sagemaker_client.describe_training_job(TrainingJobName=name)
        if description["TrainingJobStatus"] in TERMINAL:
            return description
        assert time.monotonic() < deadline, f"{name} still {description['TrainingJobStatus']} after {timeout} s"
        time.sleep(0.3)


def wait_for_log_line(logs_client, job_name: str, text: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in "\n".join(job_log(logs_client, job_name)):
            return
        time.sleep(0.3)
    raise AssertionError(f"'{text}' never appeared in the log of {job_name}")


def job_log(logs_client, job_name: str) -> list[str]:
    try:
        streams = logs_client.describe_log_streams(logGroupName=LOG_GROUP, logStreamNamePrefix=f"{job_name}/")["logStreams"]
    except logs_client.exceptions.ResourceNotFoundException:
        return []
    lines = []
    for stream in streams:
        events = logs_client.get_log_events(logGroupName=LOG_GROUP, logStreamName=stream["logStreamName"], startFromHead=True)["events"]
        lines.extend(event["message"] for event in events)
    return lines


def read_tarball(s3_client, uri: str) -> dict[str, bytes]:
    bucket, key = uri[len("s3://"):].split("/", 1)
    body = s3_client.get_object(Bucket=bucket, Key=key)["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(body), mode="r:gz") as archive:
        return {member.name: archive.extractfile(member).read() for member in archive.getmembers() if member.isfile()}


# --- one successful job, looked at from every side ---------------------------------------------


@pytest.fixture(scope="module")
def completed_job(sagemaker_client, source_uri, train_channel_uri):
    name = "unit-train-ok"
    sagemaker_client.create_training_job(**training_request(name, source_uri, train_channel_uri, epochs=3, learning_rate=0.25))
    return wait_until_done(sagemaker_client, name)


@pytest.mark.slow
def test_successful_job_completes_with_sagemaker_timestamps(completed_job):
    job = completed_job
    assert job["TrainingJobStatus"] == "Completed", job.get("FailureReason")
    assert job["SecondaryStatus"] == "Completed"
    assert job["CreationTime"] <= job["TrainingStartTime"] <= job["TrainingEndTime"] <= job["LastModifiedTime"]
    assert job["TrainingTimeInSeconds"] >= 1
    assert job["BillableTimeInSeconds"] == job["TrainingTimeInSeconds"] * 1
    assert "FailureReason" not in job
    assert job["TrainingJobArn"] == f"arn:aws:sagemaker:{TEST_REGION}:123456789012:training-job/unit-train-ok"


@pytest.mark.slow
def test_successful_job_walks_through_secondary_statuses(completed_job):
    transitions = completed_job["SecondaryStatusTransitions"]
    assert [t["Status"] for t in transitions] == ["Starting", "Downloading", "Training", "Uploading", "Completed"]
    assert all("StartTime" in t and "EndTime" in t and t["StatusMessage"] for t in transitions)
    assert transitions[-1]["StatusMessage"] == "Training job completed"


@pytest.mark.slow
def test_describe_echoes_the_request_with_defaults(completed_job, source_uri):
    job = completed_job
    assert job["HyperParameters"]["sagemaker_submit_directory"] == json.dumps(source_uri)
    assert job["AlgorithmSpecification"]["TrainingImage"] == IMAGE
    assert job["ResourceConfig"]["InstanceCount"] == 1
    assert job["StoppingCondition"]["MaxRuntimeInSeconds"] == 600
    assert job["Environment"] == {"WORKLOAD": "unit-test"}
    assert job["RoleArn"] == TEST_ROLE_ARN
    assert job["EnableManagedSpotTraining"] is False
    assert job["OutputDataConfig"]["CompressionType"] == "GZIP"


@pytest.mark.slow
def test_final_metrics_hold_the_last_logged_value(completed_job):
    metrics = {m["MetricName"]: m["Value"] for m in completed_job["FinalMetricDataList"]}
    assert metrics == {"train:loss": pytest.approx(0.3333), "train:accuracy": pytest.approx(1.0)}
    assert all("Timestamp" in m for m in completed_job["FinalMetricDataList"])


@pytest.mark.slow
def test_every_metric_value_is_kept_for_tuning(emulator, completed_job):
    from include.emulator.sagemaker.training import TrainingJobStore

    series = emulator.emulator.store(TrainingJobStore).metric_series("unit-train-ok", TEST_REGION)
    assert [point.value for point in series["train:loss"]] == pytest.approx([1.0, 0.5, 0.3333])
    assert series["never:seen"] == []


@pytest.mark.slow
def test_script_output_is_in_cloudwatch_logs(logs_client, completed_job):
    streams = logs_client.describe_log_streams(logGroupName=LOG_GROUP, logStreamNamePrefix="unit-train-ok/")["logStreams"]
    assert len(streams) == 1
    assert streams[0]["logStreamName"].startswith("unit-train-ok/algo-1-")
    lines = job_log(logs_client, "unit-train-ok")
    assert "epoch=3 loss=0.3333 accuracy=1.0000" in lines
    assert "found 2 training files" in lines


@pytest.mark.slow
def test_model_tarball_holds_what_the_script_saved(s3_client, completed_job):
    uri = completed_job["ModelArtifacts"]["S3ModelArtifacts"]
    assert uri == f"s3://{TEST_BUCKET}/{PREFIX}/output/unit-train-ok/output/model.tar.gz"
    saved = json.loads(read_tarball(s3_client, uri)["model.json"])
    # hyperparameters arrive as --flags; the channel's objects sit under SM_CHANNEL_TRAIN
    assert saved["argv"][saved["argv"].index("--epochs") + 1] == "3"
    assert saved["lr"] == 0.25
    assert saved["channel_files"] == ["a.csv", "nested/b.txt"]
    output = read_tarball(s3_client, f"s3://{TEST_BUCKET}/{PREFIX}/output/unit-train-ok/output/output.tar.gz")
    assert output == {"report.txt": b"done"}


@pytest.mark.slow
def test_tags_are_recorded(sagemaker_client, completed_job):
    tags = sagemaker_client.list_tags(ResourceArn=completed_job["TrainingJobArn"])["Tags"]
    assert {"Key": "project", "Value": "tests"} in tags


@pytest.mark.slow
def test_list_training_jobs_filters_and_pages(sagemaker_client, completed_job, failed_job):
    def names(**kwargs):
        return [s["TrainingJobName"] for s in sagemaker_client.list_training_jobs(**kwargs)["TrainingJobSummaries"]]

    assert names(NameContains="UNIT-TRAIN-OK") == ["unit-train-ok"]
    assert "unit-train-bad-lr" in names(StatusEquals="Failed")
    assert "unit-train-ok" not in names(StatusEquals="Failed")
    created = completed_job["CreationTime"]
    assert "unit-train-ok" in names(CreationTimeAfter=created - dt.timedelta(seconds=1), CreationTimeBefore=created + dt.timedelta(seconds=1))
    assert "unit-train-ok" not in names(CreationTimeAfter=created + dt.timedelta(seconds=1), MaxResults=100)
    assert names(CreationTimeBefore=created - dt.timedelta(hours=1)) == []
    ascending = names(SortBy="Name", SortOrder="Ascending", MaxResults=100)
    assert ascending == sorted(ascending)

    first = sagemaker_client.list_training_jobs(SortBy="Name", SortOrder="Ascending", MaxResults=1)
    assert len(first["TrainingJobSummaries"]) == 1 and "NextToken" in first
    second = sagemaker_client.list_training_jobs(SortBy="Name", SortOrder="Ascending", MaxResults=1, NextToken=first["NextToken"])
    assert [s["TrainingJobName"] for s in first["TrainingJobSummaries"] + second["TrainingJobSummaries"]] == ascending[:2]
    summary = second["TrainingJobSummaries"][0]
    assert {"TrainingJobArn", "CreationTime", "TrainingJobStatus", "SecondaryStatus", "LastModifiedTime"} <= set(summary)


# --- jobs that do not complete ------------------------------------------------------------------


@pytest.fixture(scope="module")
def failed_job(sagemaker_client, source_uri, train_channel_uri):
    name = "unit-train-bad-lr"
    sagemaker_client.create_training_job(**training_request(name, source_uri, train_channel_uri, learning_rate=5))
    return wait_until_done(sagemaker_client, name)


@pytest.mark.slow
def test_failing_script_fails_the_job_with_its_own_error(failed_job):
    assert failed_job["TrainingJobStatus"] == "Failed"
    assert failed_job["SecondaryStatus"] == "Failed"
    reason = failed_job["FailureReason"]
    assert "ValueError: bad lr 5.0: must be at most 1" in reason
    assert reason.startswith("AlgorithmError: ")
    assert len(reason) <= MAX_FAILURE_REASON
    assert "ModelArtifacts" not in failed_job


@pytest.mark.slow
def test_the_failure_reason_names_the_exception_the_script_died_of_whatever_its_class(
        sagemaker_client, source_uri, train_channel_uri):
    name = "unit-train-empty-batch"
    sagemaker_client.create_training_job(**training_request(name, source_uri, train_channel_uri, empty_batch=3))
    job = wait_until_done(sagemaker_client, name)
    assert job["TrainingJobStatus"] == "Failed"
    # as Python prints it (no module for __main__), whether or not the toolkit's relay split the line
    assert "EmptyBatch: batch 3 holds no samples" in job["FailureReason"], job["FailureReason"]


@pytest.mark.slow
def test_max_runtime_stops_the_job(sagemaker_client, source_uri, train_channel_uri):
    name = "unit-train-timeout"
    sagemaker_client.create_training_job(**training_request(name, source_uri, train_channel_uri, max_runtime=4, sleep=120))
    started = time.monotonic()
    job = wait_until_done(sagemaker_client, name)
    assert time.monotonic() - started < 30
    assert job["TrainingJobStatus"] == "Stopped"
    assert job["SecondaryStatus"] == "MaxRuntimeExceeded"
    assert "Stopping" in [t["Status"] for t in job["SecondaryStatusTransitions"]]


@pytest.mark.slow
def test_stop_training_job_stops_and_keeps_the_saved_model(sagemaker_client, logs_client, s3_client, source_uri, train_channel_uri):
    name = "unit-train-stop"
    sagemaker_client.create_training_job(**training_request(name, source_uri, train_channel_uri, sleep=120))
    wait_for_log_line(logs_client, name, "sleeping now")
    sagemaker_client.stop_training_job(TrainingJobName=name)
    assert sagemaker_client.describe_training_job(TrainingJobName=name)["TrainingJobStatus"] in ("Stopping", "Stopped")
    job = wait_until_done(sagemaker_client, name, timeout=30)
    assert (job["TrainingJobStatus"], job["SecondaryStatus"]) == ("Stopped", "Stopped")
    assert read_tarball(s3_client, job["ModelArtifacts"]["S3ModelArtifacts"]) == {"partial.txt": b"saved before the long sleep"}
    with pytest.raises(ClientError) as error:
        sagemaker_client.stop_training_job(TrainingJobName=name)
    assert error.value.response["Error"]["Code"] == "ValidationException"
    assert "status Stopped" in error.value.response["Error"]["Message"]


def test_unsupported_image_fails_the_job_with_a_clear_reason(sagemaker_client, source_uri, train_channel_uri):
    name = "unit-train-xgboost"
    image = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:1.7-1"
    sagemaker_client.create_training_job(**training_request(name, source_uri, train_channel_uri, image=image))
    job = wait_until_done(sagemaker_client, name, timeout=10)
    assert job["TrainingJobStatus"] == "Failed"
    assert "sagemaker-xgboost" in job["FailureReason"] and "cannot run on the local SageMaker" in job["FailureReason"]
    assert "TrainingStartTime" not in job  # it never started, as on SageMaker


def test_missing_channel_data_fails_with_sagemakers_message(sagemaker_client, source_uri):
    name = "unit-train-no-data"
    sagemaker_client.create_training_job(**training_request(name, source_uri, f"s3://{TEST_BUCKET}/{PREFIX}/nothing-here"))
    job = wait_until_done(sagemaker_client, name, timeout=20)
    assert job["TrainingJobStatus"] == "Failed"
    assert job["FailureReason"].startswith("ClientError: No S3 objects found under S3 URL")


@pytest.mark.slow
def test_jobs_beyond_the_slots_wait_and_shutdown_leaves_no_process(tmp_path, s3_client, source_uri, train_channel_uri):
    import os

    from include.emulator.state import Settings
    from include.emulator.gateway import EmulatorServer
    from include.emulator.sagemaker.training import TrainingJobStore

    # a second emulator with one slot, sharing nothing with the session's but the code
    server = EmulatorServer(Settings(port=0, state_dir=tmp_path, max_concurrent_jobs=1)).start()
    try:
        client = server.emulator.client("sagemaker")
        s3 = server.emulator.client("s3")
        s3.create_bucket(Bucket=TEST_BUCKET)
        for key, body in ((f"{PREFIX}/source/sourcedir.tar.gz", None), (f"{PREFIX}/data/train/a.csv", b"1")):
            body = body or s3_client.get_object(Bucket=TEST_BUCKET, Key=key)["Body"].read()
            s3.put_object(Bucket=TEST_BUCKET, Key=key, Body=body)
        for name in ("slot-holder", "slot-waiter"):
            client.create_training_job(**training_request(name, source_uri, train_channel_uri, sleep=120))
        wait_for_log_line(server.emulator.client("logs"), "slot-holder", "sleeping now")
        waiter = client.describe_training_job(TrainingJobName="slot-waiter")
        assert (waiter["TrainingJobStatus"], waiter["SecondaryStatus"]) == ("InProgress", "Starting")
        assert "Waiting for a free job slot" in waiter["SecondaryStatusTransitions"][-1]["StatusMessage"]
        pid = server.emulator.store(TrainingJobStore).get("slot-holder").runner.pid
    finally:
        server.stop()
    with pytest.raises(ProcessLookupError):
        os.killpg(pid, 0)  # the whole process group is gone
    jobs = server.emulator.store(TrainingJobStore)
    assert {jobs.get(name).status for name in ("slot-holder", "slot-waiter")} == {"Stopped"}


def test_channel_download_follows_sagemakers_layout(s3_client, tmp_path):
    from include.emulator.jobs import staging

    for key in ("layout/data/x.csv", "layout/data/sub/y.csv", "layout/database.txt", "layout/keep/z.bin"):
        s3_client.put_object(Bucket=TEST_BUCKET, Key=key, Body=key.encode())
    manifest = [{"prefix": f"s3://{TEST_BUCKET}/layout/"}, "data/x.csv", "keep/z.bin"]
    s3_client.put_object(Bucket=TEST_BUCKET, Key="layout/manifest.json", Body=json.dumps(manifest).encode())

    def download(uri, data_type="S3Prefix", host_index=0, host_count=1, **kwargs):
        target = tmp_path / f"channel-{len(list(tmp_path.iterdir()))}"
        channel = {"ChannelName": "c", "DataSource": {"S3DataSource": {"S3DataType": data_type, "S3Uri": uri, **kwargs}}}
        staging.download_channel(
            s3_client, channel, target, region=TEST_REGION, role_arn=TEST_ROLE_ARN, host_index=host_index, host_count=host_count
        )
        return sorted(path.relative_to(target).as_posix() for path in target.rglob("*") if path.is_file())

    # S3Prefix is a key prefix, not a folder: layout/data also matches layout/database.txt
    assert download(f"s3://{TEST_BUCKET}/layout/data") == ["database.txt", "sub/y.csv", "x.csv"]
    assert download(f"s3://{TEST_BUCKET}/layout/data/") == ["sub/y.csv", "x.csv"]
    assert download(f"s3://{TEST_BUCKET}/layout/data/x.csv") == ["x.csv"]
    assert download(f"s3://{TEST_BUCKET}/layout/manifest.json", "ManifestFile") == ["data/x.csv", "keep/z.bin"]
    sharded = {"S3DataDistributionType": "ShardedByS3Key"}
    assert download(f"s3://{TEST_BUCKET}/layout/data/", **sharded) == ["sub/y.csv", "x.csv"]
    assert download(f"s3://{TEST_BUCKET}/layout/data/", host_index=1, host_count=2, **sharded) == ["x.csv"]
    assert download(f"s3://{TEST_BUCKET}/layout/data/", host_index=1, host_count=2) == ["sub/y.csv", "x.csv"]
    for empty in (f"s3://{TEST_BUCKET}/layout/missing/", "s3://no-such-bucket-here/data/"):
        with pytest.raises(staging.StagingError, match="No S3 objects found"):
            download(empty)


# --- the control plane's errors -----------------------------------------------------------------


def test_duplicate_name_is_refused(sagemaker_client, source_uri, train_channel_uri):
    request = training_request("unit-train-duplicate", source_uri, train_channel_uri, image="example.com/not-runnable:1")
    sagemaker_client.create_training_job(**request)
    with pytest.raises(ClientError) as error:
        sagemaker_client.create_training_job(**request)
    assert error.value.response["Error"]["Code"] == "ResourceInUse"
    assert "a training job with this name already exists" in error.value.response["Error"]["Message"]


def test_describe_unknown_job_is_a_validation_error(sagemaker_client):
    with pytest.raises(ClientError) as error:
        sagemaker_client.describe_training_job(TrainingJobName="no-such-job")
    assert error.value.response["Error"]["Code"] == "ValidationException"
    assert error.value.response["Error"]["Message"] == "Requested resource not found."


@pytest.mark.parametrize(
    "change, field",
    [
        (lambda r: r["ResourceConfig"].update(InstanceType="ml.bogus.large"), "resourceConfig.instanceType"),
        (lambda r: r.update(TrainingJobName="bad_name!"), "trainingJobName"),
        (lambda r: r["AlgorithmSpecification"].update(TrainingInputMode="Stream"), "algorithmSpecification.trainingInputMode"),
        (lambda r: r.pop("ResourceConfig"), "resourceConfig"),
    ],
)
def test_invalid_request_names_the_field(sagemaker_client, source_uri, train_channel_uri, change, field):
    request = training_request("unit-train-invalid", source_uri, train_channel_uri)
    change(request)
    with pytest.raises(ClientError) as error:
        sagemaker_client.create_training_job(**request)
    assert error.value.response["Error"]["Code"] == "ValidationException"
    assert f"at '{field}'" in error.value.response["Error"]["Message"]


def test_invalid_metric_regex_is_refused(sagemaker_client, source_uri, train_channel_uri):
    request = training_request("unit-train-bad-regex", source_uri, train_channel_uri)
    request["AlgorithmSpecification"]["MetricDefinitions"] = [{"Name": "loss", "Regex": "loss=([0-9."}]
    with pytest.raises(ClientError) as error:
        sagemaker_client.create_training_job(**request)
    assert "metric 'loss'" in error.value.response["Error"]["Message"]


# --- FailureReason building, without a job ------------------------------------------------------


def test_failure_reason_keeps_the_scripts_exception_when_capped():
    log = ["Traceback (most recent call last):", '  File "train.py", line 3', "RuntimeError: out of patience"]
    reason = algorithm_failure_reason("x" * 5000, log, exit_code=1)
    assert len(reason) == MAX_FAILURE_REASON
    assert reason.endswith("RuntimeError: out of patience")


def test_failure_reason_restores_the_exception_line_the_toolkit_mangles():
    toolkit_failure = 'ExecuteUserScriptError:\nExitCode 1\nErrorMessage "ValueError\n bad lr"\nCommand "python train.py"'
    log = ["Traceback (most recent call last):", 'File "train.py", line 3', "ValueError", ":", "bad lr", "ValueError", " bad lr"]
    reason = algorithm_failure_reason(toolkit_failure, log, exit_code=1)
    assert reason.startswith("AlgorithmError: ExecuteUserScriptError:")
    assert "ValueError: bad lr" in reason and reason.endswith(", exit code: 1")


def test_the_recorded_exception_outranks_a_log_line_the_toolkit_split(tmp_path):
    # the toolkit relays output in read() chunks: a chunk can end in the middle of any line
    log = ["Traceback (most recent call last):", '  File "train.py", line 9', "dataset.TrialDataError:",
           " s3://b/data_val.hdf5: trial_0002 lacks the dataset 'seq_class_ids'"]
    for index, text in enumerate([
        "dataset.TrialDataError: s3://b/data_val.hdf5: trial_0002 lacks the dataset 'seq_class_ids'",  # rank 0, first
        "RuntimeError: Connection closed by peer",  # rank 1, after rank 0 died
        "torch.distributed.elastic.multiprocessing.errors.ChildFailedError: train.py FAILED",
    ]):
        (tmp_path / f"{index:020d}-{100 + index}.txt").write_text(text)
    recorded = recorded_exception(tmp_path)
    assert recorded == "dataset.TrialDataError: s3://b/data_val.hdf5: trial_0002 lacks the dataset 'seq_class_ids'"
    reason = algorithm_failure_reason('ExecuteUserScriptError:\nExitCode 1\nErrorMessage ""', log, 1, recorded)
    assert recorded in reason
    assert recorded_exception(tmp_path / "absent") is None


def test_a_torchrun_wrapper_alone_is_not_taken_for_the_scripts_exception(tmp_path):
    (tmp_path / "1-1.txt").write_text("torch.distributed.elastic.multiprocessing.errors.ChildFailedError: train.py FAILED")
    assert recorded_exception(tmp_path) is None


def test_failure_reason_without_failure_file_quotes_the_last_traceback():
    log = ["epoch=1", "Traceback (most recent call last):", '  File "train.py", line 9', "KeyError: 'label'"]
    reason = algorithm_failure_reason(None, log, exit_code=1)
    assert reason.startswith("AlgorithmError: Traceback")
    assert "KeyError: 'label'" in reason and reason.endswith("exit code: 1")


# --- the Airflow provider against the emulator --------------------------------------------------


@pytest.fixture
def provider_env(emulator, monkeypatch):
    # the provider's hooks with aws_conn_id=None use boto3's own resolution, endpoint included
    monkeypatch.setenv("AWS_ENDPOINT_URL", emulator.endpoint_url)


@pytest.mark.slow
def test_provider_training_operator_waits_and_reads_the_log(provider_env, completed_job, source_uri, train_channel_uri, capsys):
    from airflow.providers.amazon.aws.hooks.sagemaker import LogState, SageMakerHook
    from airflow.providers.amazon.aws.operators.sagemaker import SageMakerTrainingOperator

    config = training_request("unit-train-airflow", source_uri, train_channel_uri, epochs=2)
    operator = SageMakerTrainingOperator(
        task_id="train", config=config, aws_conn_id=None, region_name=TEST_REGION,
        wait_for_completion=True, print_log=False, check_interval=1, action_if_job_exists="fail",
    )
    result = operator.execute({})
    assert result["Training"]["TrainingJobStatus"] == "Completed"

    # the log path the operator takes with print_log=True (describe_log_streams + get_log_events)
    hook = SageMakerHook(aws_conn_id=None, region_name=TEST_REGION)
    capsys.readouterr()
    state, _, _ = hook.describe_training_job_with_log(
        "unit-train-airflow", {}, [], 1, LogState.COMPLETE, completed_job, time.monotonic()
    )
    assert state == LogState.COMPLETE
    printed = capsys.readouterr()  # the hook logs each event through Airflow's structlog
    assert "epoch=2 loss=0.5000 accuracy=1.0000" in printed.out + printed.err
    finished = hook.describe_training_job("unit-train-airflow")
    assert SageMakerHook.count_billable_seconds(finished["TrainingStartTime"], finished["TrainingEndTime"], 1) >= 1


@pytest.mark.slow
def test_provider_deferrable_operator_trigger_reports_success(provider_env, source_uri, train_channel_uri):
    import asyncio

    from airflow.sdk.exceptions import TaskDeferred
    from airflow.providers.amazon.aws.operators.sagemaker import SageMakerTrainingOperator

    # still running when the operator first describes it, or it returns instead of deferring
    config = training_request("unit-train-deferred", source_uri, train_channel_uri, sleep=3)
    operator = SageMakerTrainingOperator(
        task_id="train", config=config, aws_conn_id=None, region_name=TEST_REGION,
        deferrable=True, check_interval=1, print_log=True,
    )
    with pytest.raises(TaskDeferred) as deferred:
        operator.execute({})

    async def first_event():
        async for event in deferred.value.trigger.run():
            return event

    event = asyncio.run(first_event())
    assert event.payload["status"] == "success", event.payload
    result = operator.execute_complete({}, event.payload)
    assert result["Training"]["TrainingJobStatus"] == "Completed"


def test_a_chained_exception_is_reported_by_the_exception_the_script_raised_last():
    log = [
        "Traceback (most recent call last):",
        '  File "dataset.py", line 1, in _file',
        "OSError: Unable to synchronously open file (truncated file)",
        "",
        "The above exception was the direct cause of the following exception:",
        "",
        "Traceback (most recent call last):",
        '  File "train.py", line 9, in <module>',
        "dataset.TrialDataError: s3://b/data_train.hdf5: cannot be opened as HDF5",
        "Traceback (most recent call last):",
        '  File "sagemaker_training/trainer.py", line 1, in train',
        "sagemaker_training.errors.ExecuteUserScriptError: ExecuteUserScriptError:",
        'ErrorMessage "OSError: Unable to synchronously open file (truncated file)"',
    ]
    toolkit_failure = 'ExecuteUserScriptError:\nExitCode 1\nErrorMessage "OSError: Unable to synchronously open file' + " x" * 600
    reason = algorithm_failure_reason(toolkit_failure, log, exit_code=1)
    assert len(reason) <= MAX_FAILURE_REASON
    assert "dataset.TrialDataError: s3://b/data_train.hdf5: cannot be opened as HDF5" in reason
