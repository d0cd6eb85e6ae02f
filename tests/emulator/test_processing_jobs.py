"""Processing jobs on the local SageMaker: the job's own entrypoint runs, inputs in, outputs out."""
from __future__ import annotations

import json
import os
import textwrap
import time

import pytest
from botocore.exceptions import ClientError

from tests.conftest import TEST_BUCKET, TEST_REGION, TEST_ROLE_ARN
from tests.emulator.hosting_fixtures import unique

SKLEARN_IMAGE = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3"
PREFIX = "processing-tests"

# Splits every CSV row of its input folder into train/test by the ratio argument; paths come from the
# arguments and the environment, as the SageMaker SDK's processors pass them.
SPLIT_PY = textwrap.dedent(
    """
    import argparse, json, os, pathlib, sys

    parser = argparse.ArgumentParser()
    parser.add_argument("--train-ratio", type=float, required=True)
    parser.add_argument("--input", required=True)
    parser.add_argument("--output", required=True)
    parser.add_argument("--message-file")
    parser.add_argument("--config")
    args = parser.parse_args()
    if not 0 < args.train_ratio < 1:
        if args.message_file:
            pathlib.Path(args.message_file).write_text(f"train ratio {args.train_ratio} is not in (0, 1)")
        raise ValueError(f"bad train ratio {args.train_ratio}")

    host = json.loads(pathlib.Path(args.config).read_text())["current_host"] if args.config else "?"
    rows = []
    for path in sorted(pathlib.Path(args.input).rglob("*.csv")):
        rows += [line for line in path.read_text().splitlines() if line]
    cut = int(len(rows) * args.train_ratio)
    for folder, part in ((args.output, rows[:cut]), (os.environ["TEST_OUTPUT_DIR"], rows[cut:])):
        pathlib.Path(folder).mkdir(parents=True, exist_ok=True)
        (pathlib.Path(folder) / f"{host}.csv").write_text("".join(row + "\\n" for row in part))
    print(f"split {len(rows)} rows on {host}: {cut} train, {len(rows) - cut} test; label={os.environ['LABEL']}")
    """
)
SLEEPY_PY = "import time\nprint('working', flush=True)\ntime.sleep(60)\n"


def _upload(s3_client, key: str, body: str | bytes) -> str:
    s3_client.put_object(Bucket=TEST_BUCKET, Key=f"{PREFIX}/{key}", Body=body)
    return f"s3://{TEST_BUCKET}/{PREFIX}/{key}"


def _s3_input(name: str, uri: str, local_path: str, **extra) -> dict:
    return {"InputName": name, "S3Input": {"S3Uri": uri, "LocalPath": local_path, "S3DataType": "S3Prefix", **extra}}


def _s3_output(name: str, uri: str, local_path: str) -> dict:
    return {"OutputName": name, "S3Output": {"S3Uri": uri, "LocalPath": local_path, "S3UploadMode": "EndOfJob"}}


def _request(job: str, script_uri: str, arguments: list[str], *, inputs=(), outputs=(), instance_count: int = 1,
             **overrides) -> dict:
    request = {
        "ProcessingJobName": job,
        "RoleArn": TEST_ROLE_ARN,
        "AppSpecification": {"ImageUri": SKLEARN_IMAGE,
                             "ContainerEntrypoint": ["python3", f"/opt/ml/processing/input/code/{script_uri.rsplit('/', 1)[1]}"]},
        "ProcessingResources": {"ClusterConfig": {"InstanceCount": instance_count, "InstanceType": "ml.m5.large",
                                                  "VolumeSizeInGB": 5}},
        "ProcessingInputs": [_s3_input("code", script_uri, "/opt/ml/processing/input/code"), *inputs],
    }
    if arguments:
        request["AppSpecification"]["ContainerArguments"] = arguments
    if outputs:
        request["ProcessingOutputConfig"] = {"Outputs": list(outputs)}
    request.update(overrides)
    return request


def _wait(sagemaker_client, job: str, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        described = sagemaker_client.describe_processing_job(ProcessingJobName=job)
        if described["ProcessingJobStatus"] in ("Completed", "Failed", "Stopped"):
            return described
        assert time.monotonic() < deadline, f"processing job {job} still {described['ProcessingJobStatus']}"
        time.sleep(0.2)


def _read(s3_client, key: str) -> str:
    return s3_client.get_object(Bucket=TEST_BUCKET, Key=key)["Body"].read().decode()


def _keys(s3_client, prefix: str) -> list[str]:
    return sorted(item["Key"] for item in s3_client.list_objects_v2(Bucket=TEST_BUCKET, Prefix=prefix).get("Contents", []))


def _error(excinfo) -> tuple[str, str]:
    return excinfo.value.response["Error"]["Code"], excinfo.value.response["Error"]["Message"]


def _split_job(s3_client, job: str, *, ratio: str = "0.5", instance_count: int = 1, distribution: str = "FullyReplicated"):
    script = _upload(s3_client, f"{job}/code/split.py", SPLIT_PY)
    for index in range(4):
        _upload(s3_client, f"{job}/data/part-{index}.csv", f"{2 * index},a\n{2 * index + 1},b\n")
    out = f"{PREFIX}/{job}/out"
    return out, _request(
        job, script,
        ["--train-ratio", ratio, "--input", "/opt/ml/processing/input/data", "--output=/opt/ml/processing/train",
         "--message-file", "/opt/ml/output/message", "--config", "/opt/ml/config/resourceconfig.json"],
        inputs=[_s3_input("data", f"s3://{TEST_BUCKET}/{PREFIX}/{job}/data/", "/opt/ml/processing/input/data",
                          S3DataDistributionType=distribution)],
        outputs=[_s3_output("train", f"s3://{TEST_BUCKET}/{out}/train", "/opt/ml/processing/train"),
                 _s3_output("test", f"s3://{TEST_BUCKET}/{out}/test", "/opt/ml/processing/test")],
        instance_count=instance_count,
        Environment={"LABEL": "y", "TEST_OUTPUT_DIR": "/opt/ml/processing/test"},
    )


def test_processing_job_runs_its_entrypoint_and_uploads_outputs(sagemaker_client, s3_client, logs_client):
    job = unique("proc")
    out, request = _split_job(s3_client, job)
    arn = sagemaker_client.create_processing_job(**request, Tags=[{"Key": "team", "Value": "ml"}])["ProcessingJobArn"]
    assert arn == f"arn:aws:sagemaker:{TEST_REGION}:123456789012:processing-job/{job.lower()}"
    _wait(sagemaker_client, job)
    # boto3's own waiter agrees the job is over (it polls every second at best; _wait is quicker)
    sagemaker_client.get_waiter("processing_job_completed_or_stopped").wait(
        ProcessingJobName=job, WaiterConfig={"Delay": 1, "MaxAttempts": 5})

    described = sagemaker_client.describe_processing_job(ProcessingJobName=job)
    assert described["ProcessingJobStatus"] == "Completed", described.get("FailureReason")
    assert described["CreationTime"] <= described["ProcessingStartTime"] <= described["ProcessingEndTime"]
    # the request comes back with SageMaker's defaults filled in
    data_input = described["ProcessingInputs"][1]
    assert data_input["AppManaged"] is False
    assert data_input["S3Input"]["S3InputMode"] == "File"
    assert data_input["S3Input"]["S3CompressionType"] == "None"
    assert described["ProcessingOutputConfig"]["Outputs"][0]["S3Output"]["S3UploadMode"] == "EndOfJob"
    assert described["StoppingCondition"] == {"MaxRuntimeInSeconds": 86400}
    assert described["AppSpecification"] == request["AppSpecification"]
    assert "FailureReason" not in described and "ExitMessage" not in described

    assert _read(s3_client, f"{out}/train/algo-1.csv") == "0,a\n1,b\n2,a\n3,b\n"
    assert _read(s3_client, f"{out}/test/algo-1.csv") == "4,a\n5,b\n6,a\n7,b\n"
    assert sagemaker_client.list_tags(ResourceArn=arn)["Tags"] == [{"Key": "team", "Value": "ml"}]
    listed = sagemaker_client.list_processing_jobs(NameContains=job, StatusEquals="Completed")["ProcessingJobSummaries"]
    assert [summary["ProcessingJobName"] for summary in listed] == [job]

    group = "/aws/sagemaker/ProcessingJobs"
    (stream,) = logs_client.describe_log_streams(logGroupName=group, logStreamNamePrefix=f"{job}/")["logStreams"]
    assert stream["logStreamName"].startswith(f"{job}/algo-1-")
    messages = [e["message"] for e in logs_client.get_log_events(logGroupName=group, logStreamName=stream["logStreamName"])["events"]]
    assert "split 8 rows on algo-1: 4 train, 4 test; label=y" in messages


def test_failing_script_reports_its_error_and_exit_message(sagemaker_client, s3_client):
    job = unique("proc-fail")
    out, request = _split_job(s3_client, job, ratio="2")
    sagemaker_client.create_processing_job(**request)
    described = _wait(sagemaker_client, job)
    assert described["ProcessingJobStatus"] == "Failed"
    assert described["FailureReason"].startswith("AlgorithmError: ")
    assert "ValueError: bad train ratio 2.0" in described["FailureReason"]
    assert described["FailureReason"].endswith("exit code: 1")
    assert described["ExitMessage"] == "train ratio 2.0 is not in (0, 1)"
    assert _keys(s3_client, out) == []  # a failed job uploads no outputs


def test_two_instances_share_sharded_input(sagemaker_client, s3_client):
    job = unique("proc-shard")
    out, request = _split_job(s3_client, job, instance_count=2, distribution="ShardedByS3Key")
    sagemaker_client.create_processing_job(**request)
    described = _wait(sagemaker_client, job)
    assert described["ProcessingJobStatus"] == "Completed", described.get("FailureReason")
    # algo-1 got part-0 and part-2, algo-2 part-1 and part-3; each uploaded its own files
    assert _read(s3_client, f"{out}/train/algo-1.csv") == "0,a\n1,b\n"
    assert _read(s3_client, f"{out}/test/algo-2.csv") == "6,a\n7,b\n"
    assert len(_keys(s3_client, out)) == 4


def test_shell_entrypoint_with_container_paths_runs_like_the_sdk_runproc(sagemaker_client, s3_client, logs_client):
    """The SDK's FrameworkProcessor runs `/bin/bash runproc.sh`, which cds to /opt/ml paths and calls python3."""
    job = unique("proc-sh")
    _upload(s3_client, f"{job}/code/hello.py", "import sys, os\nprint('hello from', os.getcwd().split('/opt/ml/')[1], sys.argv[1:])\n")
    runproc = "#!/bin/bash\nset -e\ncd /opt/ml/processing/input/code/\npython3 hello.py \"$@\"\n"
    _upload(s3_client, f"{job}/entrypoint/runproc.sh", runproc)
    out = f"{PREFIX}/{job}/out"
    request = _request(job, f"s3://{TEST_BUCKET}/{PREFIX}/{job}/code/hello.py", ["--flag", "1"],
                       inputs=[_s3_input("entrypoint", f"s3://{TEST_BUCKET}/{PREFIX}/{job}/entrypoint/",
                                         "/opt/ml/processing/input/entrypoint")])
    request["AppSpecification"]["ContainerEntrypoint"] = ["/bin/bash", "/opt/ml/processing/input/entrypoint/runproc.sh"]
    sagemaker_client.create_processing_job(**request)
    described = _wait(sagemaker_client, job)
    assert described["ProcessingJobStatus"] == "Completed", described.get("FailureReason")
    assert _keys(s3_client, out) == []
    group = "/aws/sagemaker/ProcessingJobs"
    (stream,) = logs_client.describe_log_streams(logGroupName=group, logStreamNamePrefix=f"{job}/")["logStreams"]
    messages = [e["message"] for e in logs_client.get_log_events(logGroupName=group, logStreamName=stream["logStreamName"])["events"]]
    assert "hello from processing/input/code ['--flag', '1']" in messages


def test_stop_and_max_runtime_end_the_script(sagemaker_client, s3_client):
    script = _upload(s3_client, "sleepy/sleepy.py", SLEEPY_PY)
    stopped, timed_out = unique("proc-stop"), unique("proc-timeout")
    sagemaker_client.create_processing_job(**_request(stopped, script, []))
    sagemaker_client.create_processing_job(**_request(timed_out, script, [], StoppingCondition={"MaxRuntimeInSeconds": 1}))
    deadline = time.monotonic() + 20
    while sagemaker_client.describe_processing_job(ProcessingJobName=stopped).get("ProcessingStartTime") is None:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    time.sleep(0.5)
    sagemaker_client.stop_processing_job(ProcessingJobName=stopped)
    assert sagemaker_client.describe_processing_job(ProcessingJobName=stopped)["ProcessingJobStatus"] in ("Stopping", "Stopped")

    described = _wait(sagemaker_client, stopped, timeout=30)
    assert described["ProcessingJobStatus"] == "Stopped"
    described = _wait(sagemaker_client, timed_out, timeout=30)
    assert described["ProcessingJobStatus"] == "Stopped"
    assert "MaxRuntimeInSeconds (1 s)" in described["FailureReason"]
    with pytest.raises(ClientError) as excinfo:
        sagemaker_client.stop_processing_job(ProcessingJobName=stopped)
    assert "is in status Stopped" in _error(excinfo)[1]


def test_requests_the_local_sagemaker_cannot_run_fail_clearly(sagemaker_client, s3_client):
    script = _upload(s3_client, "sleepy/sleepy.py", SLEEPY_PY)
    with pytest.raises(ClientError) as excinfo:
        sagemaker_client.create_processing_job(**_request(unique("p"), script, [], inputs=[
            _s3_input("data", script, "/tmp/data")]))
    assert _error(excinfo) == ("ValidationException",
                               "ProcessingInputs.2.S3Input.LocalPath '/tmp/data' must be an absolute path under /opt/ml/processing/.")
    with pytest.raises(ClientError) as excinfo:
        sagemaker_client.create_processing_job(**_request(unique("p"), script, [], inputs=[
            _s3_input("code", script, "/opt/ml/processing/other")]))
    assert "InputName values must be unique; repeated: code" in _error(excinfo)[1]
    with pytest.raises(ClientError) as excinfo:
        sagemaker_client.describe_processing_job(ProcessingJobName="no-such-job")
    assert _error(excinfo) == ("ValidationException", "Could not find requested job with name no-such-job")

    custom = unique("p-image")
    request = _request(custom, script, [])
    request["AppSpecification"]["ImageUri"] = "123456789012.dkr.ecr.us-east-1.amazonaws.com/my-spark:1"
    sagemaker_client.create_processing_job(**request)
    described = _wait(sagemaker_client, custom)
    assert described["ProcessingJobStatus"] == "Failed"
    assert "cannot run a processing job on the local SageMaker" in described["FailureReason"]

    no_entrypoint = unique("p-entry")
    request = _request(no_entrypoint, script, [])
    del request["AppSpecification"]["ContainerEntrypoint"]
    sagemaker_client.create_processing_job(**request)
    described = _wait(sagemaker_client, no_entrypoint)
    assert described["ProcessingJobStatus"] == "Failed"
    assert "ContainerEntrypoint is required" in described["FailureReason"]


@pytest.mark.slow
def test_airflow_processing_operator_runs_a_job(emulator, sagemaker_client, s3_client, monkeypatch):
    from airflow.providers.amazon.aws.operators.sagemaker import SageMakerProcessingOperator

    monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", json.dumps({
        "conn_type": "aws", "login": "testing", "password": "testing",
        "extra": {"region_name": TEST_REGION, "endpoint_url": emulator.endpoint_url}}))
    job = unique("proc-af")
    out, request = _split_job(s3_client, job)
    operator = SageMakerProcessingOperator(task_id="preprocess", config=request, check_interval=1, max_ingestion_time=60)
    result = operator.execute({})
    assert result["Processing"]["ProcessingJobStatus"] == "Completed"
    assert _read(s3_client, f"{out}/train/algo-1.csv") == "0,a\n1,b\n2,a\n3,b\n"
    assert os.environ.get("AWS_ENDPOINT_URL") is None  # the operator reached the emulator through its connection only
