"""Batch transform on the local SageMaker: real model servers score every record of an S3 prefix."""
from __future__ import annotations

import gzip
import json
import textwrap
import time

import pytest
from botocore.exceptions import ClientError

from include.emulator.jobs.transform_data import (
    DataProcessing,
    RecordError,
    assemble,
    compile_filter,
    mini_batches,
    split_records,
)
from include.emulator.serving.fleet import ModelServerFleet
from tests.conftest import TEST_BUCKET, TEST_REGION
from tests.emulator.hosting_fixtures import create_model, unique, upload

# Scores CSV lines: "<sum of the values * scale>,<records in this request>", one line per input line.
# A line holding "bad" is rejected with 400, as a model rejects a record it cannot read.
SUMMER_PY = textwrap.dedent(
    """
    import json, os, time

    class BadRequest(Exception):
        status_code = 400

    def model_fn(model_dir):
        with open(os.path.join(model_dir, "model.json")) as f:
            return json.load(f)

    def transform_fn(model, body, content_type, accept):
        if content_type != "text/csv":
            raise BadRequest(f"unsupported content type {content_type}")
        lines = [line for line in body.splitlines() if line.strip()]
        scored = []
        for line in lines:
            if "bad" in line:
                raise BadRequest(f"cannot score record {line!r}")
            scored.append(f"{sum(float(v) for v in line.split(',')) * model['scale']:g},{len(lines)}")
        time.sleep(model.get("sleep", 0))
        return "\\n".join(scored), accept
    """
)


def _summer_model(sagemaker_client, s3_client, *, scale: float = 10, sleep: float = 0, model_fn_sleep: float = 0) -> str:
    files = {"model.json": json.dumps({"scale": scale, "sleep": sleep}), "code/inference.py": SUMMER_PY}
    if model_fn_sleep:
        files["code/inference.py"] = SUMMER_PY.replace("def model_fn(model_dir):",
                                                       f"def model_fn(model_dir):\n    time.sleep({model_fn_sleep})")
    return create_model(sagemaker_client, s3_client, unique("summer"), files)


def _transform_request(job: str, model: str, input_uri: str, output_uri: str, **overrides) -> dict:
    request = {
        "TransformJobName": job,
        "ModelName": model,
        "TransformInput": {"DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": input_uri}},
                           "ContentType": "text/csv", "SplitType": "Line"},
        "TransformOutput": {"S3OutputPath": output_uri, "Accept": "text/csv", "AssembleWith": "Line"},
        "TransformResources": {"InstanceType": "ml.m5.large", "InstanceCount": 1},
    }
    request.update(overrides)
    return request


def _wait(sagemaker_client, job: str, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        described = sagemaker_client.describe_transform_job(TransformJobName=job)
        if described["TransformJobStatus"] in ("Completed", "Failed", "Stopped"):
            return described
        assert time.monotonic() < deadline, f"transform job {job} still {described['TransformJobStatus']}"
        time.sleep(0.3)


def _read(s3_client, uri: str) -> str:
    bucket, key = uri[len("s3://"):].split("/", 1)
    return s3_client.get_object(Bucket=bucket, Key=key)["Body"].read().decode()


def _keys(s3_client, prefix: str) -> list[str]:
    return sorted(item["Key"] for item in s3_client.list_objects_v2(Bucket=TEST_BUCKET, Prefix=prefix).get("Contents", []))


def _error(excinfo) -> tuple[str, str]:
    return excinfo.value.response["Error"]["Code"], excinfo.value.response["Error"]["Message"]


# --- records: splitting, batching, filters (no server) -------------------------------------------------

def test_line_split_drops_empty_lines_and_carriage_returns():
    assert split_records(b"1,2\r\n\n3,4\n", "Line") == [b"1,2", b"3,4"]
    assert split_records(b"1,2\n3,4\n", "None") == [b"1,2\n3,4\n"]
    with pytest.raises(RecordError, match="SplitType RecordIO is not supported"):
        split_records(b"x", "RecordIO")


def test_multi_record_fills_each_request_up_to_max_payload():
    records = [b"a" * 4, b"b" * 4, b"c" * 4]
    assert mini_batches(records, "SingleRecord", 100) == [[r] for r in records]
    assert mini_batches(records, "MultiRecord", 100) == [records]
    assert mini_batches(records, "MultiRecord", 9) == [records[:2], records[2:]]  # 4 + newline + 4 fits in 9
    assert mini_batches(records, "MultiRecord", None) == [records]  # MaxPayloadInMB 0: no limit
    with pytest.raises(RecordError, match="larger than MaxPayloadInMB"):
        mini_batches([b"x" * 10], "MultiRecord", 9)


def test_assemble_with_line_ends_every_response_with_one_newline():
    assert assemble([b"1", b"2\n", b"3"], "Line") == b"1\n2\n3\n"
    assert assemble([b"1", b"2"], "None") == b"12"


def test_jsonpath_filters_of_the_documented_forms():
    row = ["id7", "1", "2", "3"]
    assert compile_filter("$", "InputFilter")(row) == row
    assert compile_filter("$[1:]", "InputFilter")(row) == ["1", "2", "3"]
    assert compile_filter("$[0,2:]", "OutputFilter")(row) == ["id7", "2", "3"]
    assert compile_filter("$[-1]", "OutputFilter")(row) == ["3"]
    assert compile_filter("$.features", "InputFilter")({"features": [1, 2], "id": 3}) == [1, 2]
    assert compile_filter("$['id','SageMakerOutput']", "OutputFilter")(
        {"id": 1, "x": 2, "SageMakerOutput": 3}) == {"id": 1, "SageMakerOutput": 3}
    with pytest.raises(RecordError, match="not a JSONPath the local SageMaker understands"):
        compile_filter("$..deep", "InputFilter")


def test_join_source_input_appends_csv_output_and_wraps_json():
    csv_processing = DataProcessing({"InputFilter": "$[1:]", "JoinSource": "Input", "OutputFilter": "$[0,-1]"},
                                    "text/csv", "text/csv")
    assert csv_processing.filter_input(b"id7,1,2") == b"1,2"
    assert csv_processing.finish_output(b"id7,1,2", b"30") == b"id7,30"
    json_processing = DataProcessing({"JoinSource": "Input"}, "application/jsonlines", "application/json")
    assert json.loads(json_processing.finish_output(b'{"id": 1}', b"[0.5]")) == {"id": 1, "SageMakerOutput": [0.5]}
    assert json.loads(json_processing.finish_output(b"[1, 2]", b"0.5")) == [1, 2, 0.5]


# --- the API without a model server ---------------------------------------------------------------------

def test_create_refuses_unknown_model_and_bad_limits(sagemaker_client):
    request = _transform_request(unique("tj"), "no-such-model", f"s3://{TEST_BUCKET}/in/", f"s3://{TEST_BUCKET}/out/")
    with pytest.raises(ClientError) as excinfo:
        sagemaker_client.create_transform_job(**request)
    assert _error(excinfo) == ("ValidationException",
                               f'Could not find model "arn:aws:sagemaker:{TEST_REGION}:123456789012:model/no-such-model".')

    with pytest.raises(ClientError) as excinfo:
        sagemaker_client.create_transform_job(**{**request, "MaxPayloadInMB": 50, "MaxConcurrentTransforms": 4})
    assert "MaxConcurrentTransforms * MaxPayloadInMB must not exceed 100 MB" in _error(excinfo)[1]

    with pytest.raises(ClientError) as excinfo:
        sagemaker_client.describe_transform_job(TransformJobName="no-such-job")
    assert _error(excinfo) == ("ValidationException", "Could not find requested job with name no-such-job")


def test_unsupported_split_type_fails_the_job_with_a_clear_reason(sagemaker_client, s3_client):
    model = _summer_model(sagemaker_client, s3_client)
    job = unique("recordio")
    request = _transform_request(job, model, f"s3://{TEST_BUCKET}/in/", f"s3://{TEST_BUCKET}/out/")
    request["TransformInput"]["SplitType"] = "RecordIO"
    sagemaker_client.create_transform_job(**request)
    described = _wait(sagemaker_client, job)
    assert described["TransformJobStatus"] == "Failed"
    assert described["FailureReason"] == ("ClientError: SplitType RecordIO is not supported by the local SageMaker; "
                                          "use None or Line.")

    with pytest.raises(ClientError) as excinfo:  # the name is taken, even by a failed job
        sagemaker_client.create_transform_job(**request)
    assert _error(excinfo)[0] == "ResourceInUse"


def test_empty_input_prefix_fails_before_any_server_starts(sagemaker_client, s3_client):
    model = _summer_model(sagemaker_client, s3_client)
    job = unique("tj-empty")
    input_uri = f"s3://{TEST_BUCKET}/{unique('nothing-here')}/"
    sagemaker_client.create_transform_job(**_transform_request(job, model, input_uri, f"s3://{TEST_BUCKET}/out/"))
    described = _wait(sagemaker_client, job)
    assert described["TransformJobStatus"] == "Failed"
    assert described["FailureReason"].startswith(f'ClientError: No S3 objects found under S3 URL "{input_uri}"')


def test_bad_jsonpath_is_refused_at_create(sagemaker_client, s3_client):
    model = _summer_model(sagemaker_client, s3_client)
    request = _transform_request(unique("jp"), model, f"s3://{TEST_BUCKET}/in/", f"s3://{TEST_BUCKET}/out/",
                                 DataProcessing={"InputFilter": "$..x"})
    with pytest.raises(ClientError) as excinfo:
        sagemaker_client.create_transform_job(**request)
    assert _error(excinfo)[0] == "ValidationException" and "InputFilter '$..x'" in _error(excinfo)[1]


# --- real runs -------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_transform_over_a_prefix_writes_one_output_line_per_input_line(sagemaker_client, s3_client, logs_client):
    model = _summer_model(sagemaker_client, s3_client, scale=10)
    prefix = unique("tj-in")
    inputs = {"a.csv": "1,2\n3,4\n", "b.csv": "5\n\n6\n7\n", "nested/c.csv": "0.5,0.5"}
    for name, text in inputs.items():
        upload(s3_client, f"{prefix}/{name}", text.encode())
    input_uri = f"s3://{TEST_BUCKET}/hosting-tests/{prefix}"
    output_uri = f"s3://{TEST_BUCKET}/{unique('tj-out')}"
    job = unique("tj")

    request = _transform_request(job, model, input_uri, output_uri, BatchStrategy="SingleRecord")
    request["TransformResources"]["InstanceCount"] = 2
    arn = sagemaker_client.create_transform_job(**request)["TransformJobArn"]
    assert arn == f"arn:aws:sagemaker:{TEST_REGION}:123456789012:transform-job/{job.lower()}"
    assert sagemaker_client.describe_transform_job(TransformJobName=job)["TransformJobStatus"] == "InProgress"
    sagemaker_client.get_waiter("transform_job_completed_or_stopped").wait(
        TransformJobName=job, WaiterConfig={"Delay": 1, "MaxAttempts": 120})

    described = sagemaker_client.describe_transform_job(TransformJobName=job)
    assert described["TransformJobStatus"] == "Completed", described.get("FailureReason")
    assert described["CreationTime"] <= described["TransformStartTime"] <= described["TransformEndTime"]
    assert described["MaxPayloadInMB"] == 6 and described["MaxConcurrentTransforms"] == 1
    assert described["TransformInput"]["CompressionType"] == "None"
    assert "FailureReason" not in described

    # one output object per input object, its relative path kept, one line per non-empty input line
    expected = {"a.csv": ["30,1", "70,1"], "b.csv": ["50,1", "60,1", "70,1"], "nested/c.csv": ["10,1"]}
    for name, lines in expected.items():
        assert _read(s3_client, f"{output_uri}/{name}.out") == "".join(f"{line}\n" for line in lines)
    assert [job_summary["TransformJobName"] for job_summary in
            sagemaker_client.list_transform_jobs(NameContains=job)["TransformJobSummaries"]] == [job]

    group = "/aws/sagemaker/TransformJobs"
    streams = [s["logStreamName"] for s in logs_client.describe_log_streams(
        logGroupName=group, logStreamNamePrefix=f"{job}/")["logStreams"]]
    server_streams = [stream for stream in streams if not stream.endswith("/data-log")]
    assert len(server_streams) == 2 and all(stream.split("/")[1].startswith("i-") for stream in server_streams)
    assert sorted(f"{stream}/data-log" for stream in server_streams) == sorted(s for s in streams if s.endswith("/data-log"))
    for stream in server_streams:  # the objects were spread over both instances
        messages = [e["message"] for e in logs_client.get_log_events(logGroupName=group, logStreamName=stream)["events"]]
        assert any("POST /invocations 200" in message for message in messages), stream


@pytest.mark.slow
def test_multi_record_batches_and_joins_the_input_back(sagemaker_client, s3_client):
    """MultiRecord sends the whole file in one request; the id column is filtered out, then joined back."""
    model = _summer_model(sagemaker_client, s3_client, scale=1)
    prefix = unique("tj-join")
    upload(s3_client, f"{prefix}/rows.csv", b"r1,1,2\nr2,3,4\nr3,5,6\n")
    output_uri = f"s3://{TEST_BUCKET}/{unique('tj-join-out')}/"
    job = unique("tj-join")
    sagemaker_client.create_transform_job(**_transform_request(
        job, model, f"s3://{TEST_BUCKET}/hosting-tests/{prefix}/rows.csv", output_uri,
        BatchStrategy="MultiRecord", MaxPayloadInMB=1,
        DataProcessing={"InputFilter": "$[1:]", "JoinSource": "Input", "OutputFilter": "$[0,-2,-1]"}))
    described = _wait(sagemaker_client, job)
    assert described["TransformJobStatus"] == "Completed", described.get("FailureReason")
    assert described["DataProcessing"] == {"InputFilter": "$[1:]", "JoinSource": "Input", "OutputFilter": "$[0,-2,-1]"}
    # each request carried all 3 records; each output row is the id, the score and the batch size
    assert _read(s3_client, f"{output_uri}rows.csv.out") == "r1,3,3\nr2,7,3\nr3,11,3\n"


@pytest.mark.slow
def test_manifest_file_lists_gzipped_objects(sagemaker_client, s3_client):
    model = _summer_model(sagemaker_client, s3_client, scale=1)
    prefix = unique("tj-manifest")
    upload(s3_client, f"{prefix}/data/one.csv.gz", gzip.compress(b"1,1\n2,2\n"))
    upload(s3_client, f"{prefix}/data/skipped.csv.gz", gzip.compress(b"9\n"))
    upload(s3_client, f"{prefix}/data/deeper/two.csv.gz", gzip.compress(b"3,3\n"))
    manifest = [{"prefix": f"s3://{TEST_BUCKET}/hosting-tests/{prefix}/data/"}, "one.csv.gz", "deeper/two.csv.gz"]
    manifest_uri = upload(s3_client, f"{prefix}/input.manifest", json.dumps(manifest).encode())
    out_prefix = unique("tj-manifest-out")
    job = unique("tj-manifest")
    request = _transform_request(job, model, manifest_uri, f"s3://{TEST_BUCKET}/{out_prefix}")
    request["TransformInput"].update(DataSource={"S3DataSource": {"S3DataType": "ManifestFile", "S3Uri": manifest_uri}},
                                     CompressionType="Gzip")
    sagemaker_client.create_transform_job(**request)
    described = _wait(sagemaker_client, job)
    assert described["TransformJobStatus"] == "Completed", described.get("FailureReason")
    assert _keys(s3_client, out_prefix) == [f"{out_prefix}/deeper/two.csv.gz.out", f"{out_prefix}/one.csv.gz.out"]
    assert _read(s3_client, f"s3://{TEST_BUCKET}/{out_prefix}/one.csv.gz.out") == "2,2\n4,2\n"


@pytest.mark.slow
def test_rejected_record_fails_the_job_naming_the_file(sagemaker_client, s3_client, logs_client):
    model = _summer_model(sagemaker_client, s3_client)
    prefix = unique("tj-bad")
    upload(s3_client, f"{prefix}/a-good.csv", b"1\n2\n")
    upload(s3_client, f"{prefix}/b-broken.csv", b"3\nbad\n4\n")
    out_prefix = unique("tj-bad-out")
    job = unique("tj-bad")
    sagemaker_client.create_transform_job(**_transform_request(
        job, model, f"s3://{TEST_BUCKET}/hosting-tests/{prefix}/", f"s3://{TEST_BUCKET}/{out_prefix}"))
    described = _wait(sagemaker_client, job)

    assert described["TransformJobStatus"] == "Failed"
    reason = described["FailureReason"]
    assert reason.startswith("ClientError: See job logs for more information.")
    assert f"{TEST_BUCKET}/hosting-tests/{prefix}/b-broken.csv" in reason
    assert "400" in reason and "cannot score record 'bad'" in reason
    # the object that succeeded keeps its output; the failed one has none
    assert _keys(s3_client, out_prefix) == [f"{out_prefix}/a-good.csv.out"]
    data_log = next(s["logStreamName"] for s in logs_client.describe_log_streams(
        logGroupName="/aws/sagemaker/TransformJobs", logStreamNamePrefix=f"{job}/")["logStreams"]
        if s["logStreamName"].endswith("/data-log"))
    messages = [e["message"] for e in logs_client.get_log_events(
        logGroupName="/aws/sagemaker/TransformJobs", logStreamName=data_log)["events"]]
    assert any("[sagemaker logs]" in m and "b-broken.csv: ClientError: 400" in m for m in messages), messages


@pytest.mark.slow
def test_stop_transform_job_stops_its_model_server(emulator, sagemaker_client, s3_client):
    model = _summer_model(sagemaker_client, s3_client, model_fn_sleep=30)
    prefix = unique("tj-stop")
    upload(s3_client, f"{prefix}/x.csv", b"1\n")
    out_prefix = unique("tj-stop-out")
    job = unique("tj-stop")
    fleet = emulator.emulator.store(ModelServerFleet)
    before = set(fleet.running_pids())
    sagemaker_client.create_transform_job(**_transform_request(
        job, model, f"s3://{TEST_BUCKET}/hosting-tests/{prefix}/", f"s3://{TEST_BUCKET}/{out_prefix}"))
    deadline = time.monotonic() + 20
    while not set(fleet.running_pids()) - before:  # its server is up, loading the model
        assert time.monotonic() < deadline, "the transform job's model server never started"
        time.sleep(0.1)

    sagemaker_client.stop_transform_job(TransformJobName=job)
    assert sagemaker_client.describe_transform_job(TransformJobName=job)["TransformJobStatus"] in ("Stopping", "Stopped")
    described = _wait(sagemaker_client, job, timeout=30)
    assert described["TransformJobStatus"] == "Stopped"
    assert not set(fleet.running_pids()) - before
    assert _keys(s3_client, out_prefix) == []
    with pytest.raises(ClientError) as excinfo:
        sagemaker_client.stop_transform_job(TransformJobName=job)
    assert "is in status Stopped" in _error(excinfo)[1]


@pytest.mark.slow
def test_airflow_transform_operator_runs_a_job(emulator, sagemaker_client, s3_client, monkeypatch):
    """The provider's SageMakerTransformOperator, as the DAGs use it, against the local SageMaker."""
    from airflow.providers.amazon.aws.operators.sagemaker import SageMakerTransformOperator

    monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", json.dumps({
        "conn_type": "aws", "login": "testing", "password": "testing",
        "extra": {"region_name": TEST_REGION, "endpoint_url": emulator.endpoint_url}}))
    model = _summer_model(sagemaker_client, s3_client, scale=2)
    prefix = unique("tj-af")
    upload(s3_client, f"{prefix}/test.csv", b"1\n2\n3\n")
    output_uri = f"s3://{TEST_BUCKET}/{unique('tj-af-out')}"
    job = unique("tj-af")
    operator = SageMakerTransformOperator(
        task_id="batch_transform", check_interval=1, max_ingestion_time=120,
        config={"Transform": _transform_request(job, model, f"s3://{TEST_BUCKET}/hosting-tests/{prefix}/", output_uri,
                                                BatchStrategy="SingleRecord")})
    result = operator.execute({})
    assert result["Transform"]["TransformJobStatus"] == "Completed"
    assert _read(s3_client, f"{output_uri}/test.csv.out") == "2,1\n4,1\n6,1\n"
