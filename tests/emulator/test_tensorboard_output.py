"""TensorBoardOutputConfig: what a job writes to LocalPath reaches <S3OutputPath>/<job>/tensorboard-output/
while the job runs and once more at its end, as SageMaker uploads it."""
from __future__ import annotations

import io
import json
import tarfile
import textwrap

import pytest

from include.emulator.jobs.hosts import HostFolder
from include.emulator.jobs.tensorboard import tensorboard_sync, tensorboard_uri
from tests.conftest import TEST_BUCKET
from tests.emulator.test_training_jobs import training_request, wait_until_done

PREFIX = "tensorboard-tests"

# Finds LocalPath as smdebug does (input/config/tensorboardoutputconfig.json), writes an event file,
# waits until the job's own S3 upload has it, then appends to it and adds a nested one.
TENSORBOARD_TRAIN_PY = textwrap.dedent(
    """
    import argparse, json, os, time
    import boto3

    parser = argparse.ArgumentParser()
    parser.add_argument("--tensorboard-uri")
    args = parser.parse_args()
    with open(os.path.join(os.environ["SM_INPUT_CONFIG_DIR"], "tensorboardoutputconfig.json")) as f:
        log_dir = json.load(f)["LocalPath"]
    events = os.path.join(log_dir, "events.out.tfevents.1.algo-1")
    with open(events, "w") as f:
        f.write("step=1\\n")
    bucket, _, prefix = args.tensorboard_uri.removeprefix("s3://").partition("/")
    s3, deadline = boto3.client("s3"), time.monotonic() + 30
    while not s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("KeyCount"):
        if time.monotonic() > deadline:
            raise SystemExit("the TensorBoard file never reached S3 while the job ran")
        time.sleep(0.2)
    print("tensorboard events reached S3 while training", flush=True)
    with open(events, "a") as f:
        f.write("step=2\\n")
    os.makedirs(os.path.join(log_dir, "eval"))
    with open(os.path.join(log_dir, "eval", "events.out.tfevents.2.algo-1"), "w") as f:
        f.write("eval step=2\\n")
    open(os.path.join(os.environ["SM_MODEL_DIR"], "model.txt"), "w").close()
    """
)


@pytest.fixture(scope="module")
def tensorboard_source_uri(s3_client):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        data = TENSORBOARD_TRAIN_PY.encode()
        info = tarfile.TarInfo("train.py")
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data))
    s3_client.put_object(Bucket=TEST_BUCKET, Key=f"{PREFIX}/source/sourcedir.tar.gz", Body=buffer.getvalue())
    s3_client.put_object(Bucket=TEST_BUCKET, Key=f"{PREFIX}/data/train/a.csv", Body=b"1,2\n")
    return f"s3://{TEST_BUCKET}/{PREFIX}/source/sourcedir.tar.gz"


def tensorboard_request(name: str, source_uri: str, tensorboard_config: dict, **hyperparameters) -> dict:
    request = training_request(name, source_uri, f"s3://{TEST_BUCKET}/{PREFIX}/data/train", **hyperparameters)
    request["TensorBoardOutputConfig"] = tensorboard_config
    return request


def objects_under(s3_client, uri: str) -> dict[str, bytes]:
    bucket, _, prefix = uri.removeprefix("s3://").partition("/")
    keys = [item["Key"] for item in s3_client.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])]
    return {key[len(prefix):]: s3_client.get_object(Bucket=bucket, Key=key)["Body"].read() for key in keys}


@pytest.mark.slow
def test_event_files_reach_s3_while_the_job_runs_and_at_its_end(sagemaker_client, s3_client, logs_client, tensorboard_source_uri):
    from tests.emulator.test_training_jobs import job_log

    name = "tb-events-upload"
    s3_output_path = f"s3://{TEST_BUCKET}/{PREFIX}/tensorboard"
    uri = f"{s3_output_path}/{name}/tensorboard-output/"
    sagemaker_client.create_training_job(
        **tensorboard_request(name, tensorboard_source_uri, {"S3OutputPath": s3_output_path}, tensorboard_uri=uri))

    job = wait_until_done(sagemaker_client, name)

    assert job["TrainingJobStatus"] == "Completed", job.get("FailureReason")
    # the default LocalPath is filled in and echoed, as for CheckpointConfig
    assert job["TensorBoardOutputConfig"] == {"S3OutputPath": s3_output_path, "LocalPath": "/opt/ml/output/tensorboard"}
    assert "tensorboard events reached S3 while training" in job_log(logs_client, name)
    # the appended file went up again at the end, and the folder's layout is kept
    assert objects_under(s3_client, uri) == {
        "events.out.tfevents.1.algo-1": b"step=1\nstep=2\n",
        "eval/events.out.tfevents.2.algo-1": b"eval step=2\n",
    }


@pytest.mark.parametrize(
    ("config", "reason"),
    [
        ({"S3OutputPath": f"s3://{TEST_BUCKET}/{PREFIX}/tb", "LocalPath": "/tmp/tensorboard"},
         "TensorBoardOutputConfig.LocalPath '/tmp/tensorboard' is outside /opt/ml"),
        ({"S3OutputPath": f"https://{TEST_BUCKET}.s3.amazonaws.com/tb"},
         "TensorBoardOutputConfig.S3OutputPath 'https://test-sagemaker-bucket.s3.amazonaws.com/tb' is not an s3:// URI"),
    ],
    ids=["local-path-outside-opt-ml", "https-output-path"],
)
def test_a_config_the_local_sagemaker_cannot_honour_fails_the_job_before_it_runs(sagemaker_client, tensorboard_source_uri,
                                                                                  config, reason, request):
    name = f"tb-refused-{request.node.callspec.id}"
    sagemaker_client.create_training_job(**tensorboard_request(name, tensorboard_source_uri, config))

    job = wait_until_done(sagemaker_client, name, timeout=30)

    assert job["TrainingJobStatus"] == "Failed"
    assert job["FailureReason"].startswith(f"ClientError: {reason}"), job["FailureReason"]


def test_every_host_s_local_path_is_synced_to_one_prefix(emulator, s3_client, tmp_path):
    config = {"S3OutputPath": f"s3://{TEST_BUCKET}/{PREFIX}/hosts/", "LocalPath": "/opt/ml/tb"}
    hosts = [HostFolder(tmp_path / name, name) for name in ("algo-1", "algo-2")]
    for host in hosts:
        host.prepare(hyperparameters={}, resource_config={}, input_data_config={})

    sync = tensorboard_sync(emulator.emulator.client("s3"), config, "job-a", hosts)
    for host in hosts:
        (host.base / "tb" / f"events.{host.host}").write_text(host.host)
    uploaded_first, uploaded_again = sync.sync(), sync.sync()

    assert tensorboard_uri(config, "job-a") == f"s3://{TEST_BUCKET}/{PREFIX}/hosts/job-a/tensorboard-output/"
    assert (uploaded_first, uploaded_again) == (2, 0)  # unchanged files are not sent twice
    assert objects_under(s3_client, tensorboard_uri(config, "job-a")) == {"events.algo-1": b"algo-1", "events.algo-2": b"algo-2"}
    for host in hosts:
        assert json.loads((host.config_dir / "tensorboardoutputconfig.json").read_text()) == {"LocalPath": str(host.base / "tb")}
