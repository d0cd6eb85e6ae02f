"""No process outlives the local SageMaker, and none sees more of its environment than a container would.

The emulator runs here as users run it, ``python -m include.emulator`` in a process of its own, so
it can be killed (SIGKILL, SIGTERM) the way a terminal, make or docker kills it.
"""
from __future__ import annotations

import io
import json
import os
import signal
import socket
import subprocess
import sys
import tarfile
import textwrap
import time
from pathlib import Path

import boto3
import psutil
import pytest

from include.emulator.jobs.failures import algorithm_failure_reason
from tests.conftest import ROOT, TEST_BUCKET, TEST_REGION, TEST_ROLE_ARN
from tests.emulator.hosting_fixtures import create_config, create_model, deploy, instance_variant, invoke_json
from tests.emulator.test_training_jobs import IMAGE as TRAINING_IMAGE
from tests.emulator.test_training_jobs import wait_until_done

TEST_SECRET = "EMULATOR_TEST_SECRET"
GONE_WITHIN_S = 10

# what a job's or model's code reports of its process: the secret, PYTHONPATH, and whether the
# project's own packages import
REPORT_PY = textwrap.dedent(
    """
    import os, sys, tempfile

    def report():
        scratch = tempfile.NamedTemporaryFile(delete=False, prefix="left-behind-")  # as torchrun's folders are
        scratch.close()
        try:
            import include  # noqa: F401  (the project's package: no container holds it)
            imports_project = True
        except ImportError:
            imports_project = False
        return {"secret": os.environ.get("EMULATOR_TEST_SECRET"), "imports_project": imports_project,
                "pythonpath": os.environ.get("PYTHONPATH", ""), "sys_path": sys.path,
                "environment": sorted(os.environ), "scratch_file": scratch.name}
    """
)
TRAIN_PY = REPORT_PY + textwrap.dedent(
    """
    import argparse, json, time
    parser = argparse.ArgumentParser()
    parser.add_argument("--sleep", type=float, default=0)
    args = parser.parse_args()
    with open(os.path.join(os.environ["SM_MODEL_DIR"], "report.json"), "w") as f:
        json.dump(report(), f)
    time.sleep(args.sleep)  # silently: a job that prints nothing must still end with the emulator
    """
)
PROCESS_PY = REPORT_PY + textwrap.dedent(
    """
    import json, pathlib
    out = pathlib.Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(report()))
    """
)
INFERENCE_PY = REPORT_PY + textwrap.dedent(
    """
    def model_fn(model_dir):
        return None

    def transform_fn(model, body, content_type, accept):
        import json
        return json.dumps(report()), "application/json"
    """
)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class EmulatorProcess:
    """``python -m include.emulator`` on a free port with its own state directory."""

    def __init__(self, state_dir: Path, extra_env: dict[str, str] | None = None):
        self.state_dir = state_dir
        self.port = _free_port()
        self.endpoint_url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, **(extra_env or {})}
        self.log = open(state_dir.parent / f"{state_dir.name}.log", "wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "include.emulator", "--port", str(self.port), "--state-dir", str(state_dir)],
            cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    break
            except OSError:
                assert self.process.poll() is None, self.output()
                assert time.monotonic() < deadline, "the emulator did not start listening"
                time.sleep(0.2)

    def client(self, service: str):
        return boto3.client(service, endpoint_url=self.endpoint_url, region_name=TEST_REGION,
                            aws_access_key_id="testing", aws_secret_access_key="testing")

    def output(self) -> str:
        self.log.flush()
        return (self.state_dir.parent / f"{self.state_dir.name}.log").read_text(errors="replace")[-3000:]

    def processes(self) -> list[psutil.Process]:
        """Every process but the emulator itself that runs in, or names, the state directory."""
        found = []
        for process in psutil.process_iter(["pid", "cmdline", "cwd"]):
            if process.info["pid"] == self.process.pid:
                continue
            text = " ".join(process.info["cmdline"] or []) + " " + (process.info["cwd"] or "")
            if str(self.state_dir) in text:
                found.append(process)
        return found

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        for process in self.processes():  # never leave a test's leftovers running, whatever failed
            try:
                process.kill()
            except psutil.Error:
                pass
        self.log.close()


@pytest.fixture
def make_emulator(tmp_path):
    started = []

    def make(extra_env=None) -> EmulatorProcess:
        started.append(EmulatorProcess(tmp_path / f"state-{len(started)}", extra_env))
        return started[-1]

    yield make
    for emulator in started:
        emulator.close()


def _upload(s3, key: str, body: bytes) -> str:
    s3.put_object(Bucket=TEST_BUCKET, Key=key, Body=body)
    return f"s3://{TEST_BUCKET}/{key}"


def _start_training_job(emulator: EmulatorProcess, name: str, sleep: float = 0) -> None:
    s3 = emulator.client("s3")
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        data = TRAIN_PY.encode()
        info = tarfile.TarInfo("train.py")
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data))
    source = _upload(s3, f"{name}/sourcedir.tar.gz", buffer.getvalue())
    channel = _upload(s3, f"{name}/data/a.csv", b"1,2\n")
    emulator.client("sagemaker").create_training_job(
        TrainingJobName=name,
        AlgorithmSpecification={"TrainingImage": TRAINING_IMAGE, "TrainingInputMode": "File"},
        RoleArn=TEST_ROLE_ARN,
        HyperParameters={"sleep": str(sleep), "sagemaker_program": json.dumps("train.py"),
                         "sagemaker_submit_directory": json.dumps(source)},
        InputDataConfig=[{"ChannelName": "train", "DataSource": {"S3DataSource": {
            "S3DataType": "S3Prefix", "S3Uri": channel.rsplit("/", 1)[0], "S3DataDistributionType": "FullyReplicated"}}}],
        OutputDataConfig={"S3OutputPath": f"s3://{TEST_BUCKET}/{name}/output"},
        ResourceConfig={"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 1},
        StoppingCondition={"MaxRuntimeInSeconds": 600},
    )


def _deploy_reporting_endpoint(emulator: EmulatorProcess, name: str) -> dict:
    sagemaker, s3 = emulator.client("sagemaker"), emulator.client("s3")
    create_model(sagemaker, s3, name, {"code/inference.py": INFERENCE_PY})
    create_config(sagemaker, name, [instance_variant(name)])
    return deploy(sagemaker, name, name)


def _wait_until(condition, timeout: float, message: str):
    deadline = time.monotonic() + timeout
    while not (result := condition()):
        assert time.monotonic() < deadline, message() if callable(message) else message
        time.sleep(0.2)
    return result


def _assert_no_process_left(emulator: EmulatorProcess) -> None:
    _wait_until(lambda: not emulator.processes(), GONE_WITHIN_S,
                lambda: f"still running: {[(p.pid, p.info['cmdline']) for p in emulator.processes()]}")


def _assert_sees_no_more_than_a_container(report: dict, where: str) -> None:
    assert report["secret"] is None, f"{where} saw the emulator's {TEST_SECRET}"
    assert report["imports_project"] is False, f"{where} could import the project's include package: {report['sys_path']}"
    assert str(ROOT) not in report["pythonpath"].split(os.pathsep), f"{where}: PYTHONPATH {report['pythonpath']}"


def _assert_its_tmp_went_with_it(report: dict, job_dir: Path, where: str) -> None:
    """A job's temporary files were the job's own (not the machine's /tmp), and went when it ended."""
    scratch = Path(report["scratch_file"])
    assert job_dir in scratch.parents, f"{where} wrote its temporary file to {scratch}, outside its job"
    assert not scratch.exists(), f"{where}'s temporary file {scratch} outlived the job"


@pytest.mark.slow
def test_jobs_and_model_servers_see_a_minimal_environment_and_sigterm_removes_the_instance_folders(make_emulator):
    # the operator's thread settings do pass (a machine shared by every process wants them honoured)
    emulator = make_emulator({TEST_SECRET: "hunter2", "PYTHONPATH": str(ROOT), "OMP_WAIT_POLICY": "PASSIVE"})
    sagemaker, s3 = emulator.client("sagemaker"), emulator.client("s3")
    s3.create_bucket(Bucket=TEST_BUCKET)

    _start_training_job(emulator, "env-report")
    script = _upload(s3, "env-proc/code/report.py", PROCESS_PY.encode())
    sagemaker.create_processing_job(
        ProcessingJobName="env-proc", RoleArn=TEST_ROLE_ARN,
        AppSpecification={"ImageUri": "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3",
                          "ContainerEntrypoint": ["python3", "/opt/ml/processing/input/code/report.py"],
                          "ContainerArguments": ["/opt/ml/processing/report"]},
        ProcessingResources={"ClusterConfig": {"InstanceCount": 1, "InstanceType": "ml.m5.large", "VolumeSizeInGB": 5}},
        ProcessingInputs=[{"InputName": "code", "S3Input": {"S3Uri": script, "LocalPath": "/opt/ml/processing/input/code",
                                                            "S3DataType": "S3Prefix"}}])
    assert _deploy_reporting_endpoint(emulator, "env-endpoint")["EndpointStatus"] == "InService"
    served, _ = invoke_json(emulator.client("sagemaker-runtime"), "env-endpoint", {})
    _assert_sees_no_more_than_a_container(served, "the model server")
    assert emulator.state_dir / "endpoints" / "env-endpoint" in Path(served["scratch_file"]).parents
    assert {"AWS_ENDPOINT_URL", "SAGEMAKER_PROGRAM", "OMP_WAIT_POLICY"} <= set(served["environment"])

    job = wait_until_done(sagemaker, "env-report", timeout=120)
    assert job["TrainingJobStatus"] == "Completed", job.get("FailureReason")
    trained = json.loads((emulator.state_dir / "training-jobs/env-report/algo-1/model/report.json").read_text())
    _assert_sees_no_more_than_a_container(trained, "the training script")
    _assert_its_tmp_went_with_it(trained, emulator.state_dir / "training-jobs/env-report", "the training script")
    assert {"SM_MODEL_DIR", "AWS_REGION", "AWS_ENDPOINT_URL", "PATH", "OMP_WAIT_POLICY"} <= set(trained["environment"])

    _wait_until(lambda: sagemaker.describe_processing_job(ProcessingJobName="env-proc")["ProcessingJobStatus"]
                in ("Completed", "Failed", "Stopped"), 60, "the processing job did not end")
    processed = sagemaker.describe_processing_job(ProcessingJobName="env-proc")
    assert processed["ProcessingJobStatus"] == "Completed", processed.get("FailureReason")
    report_file = emulator.state_dir / "processing-jobs/env-proc/algo-1/opt/ml/processing/report/report.json"
    _assert_sees_no_more_than_a_container(json.loads(report_file.read_text()), "the processing script")
    _assert_its_tmp_went_with_it(json.loads(report_file.read_text()), emulator.state_dir / "processing-jobs/env-proc",
                                 "the processing script")

    instance_dirs = list((emulator.state_dir / "endpoints" / "env-endpoint").iterdir())
    assert instance_dirs and emulator.processes()  # the endpoint's instance serves
    emulator.process.send_signal(signal.SIGTERM)
    assert emulator.process.wait(timeout=60) == 0, emulator.output()
    assert not (emulator.state_dir / "endpoints" / "env-endpoint").exists()  # as docs/emulator.md says
    _assert_no_process_left(emulator)


@pytest.mark.slow
def test_kill_9_of_the_emulator_ends_its_model_servers_and_silent_training_jobs(make_emulator):
    emulator = make_emulator()
    emulator.client("s3").create_bucket(Bucket=TEST_BUCKET)
    assert _deploy_reporting_endpoint(emulator, "orphan-endpoint")["EndpointStatus"] == "InService"
    _start_training_job(emulator, "silent-sleeper", sleep=600)
    job_dir = emulator.state_dir / "training-jobs" / "silent-sleeper"
    # the script itself runs: its process works in the job's code folder
    _wait_until(lambda: (job_dir / "algo-1/model/report.json").exists(), 120, "the training script never started")
    assert len(emulator.processes()) >= 3  # the model server's, and the toolkit's and the script's

    emulator.process.kill()
    emulator.process.wait()
    _assert_no_process_left(emulator)


def test_a_killed_training_process_fails_the_job_saying_so():
    environment_dump = [f'    "SM_SOMETHING_{index}": "{"x" * 60}",' for index in range(40)]
    reason = algorithm_failure_reason(None, environment_dump, -9)
    assert reason == "AlgorithmError: the training process was killed by signal 9 (SIGKILL)"
    toolkit = 'ExecuteUserScriptError:\nExitCode -15\nErrorMessage ""\nCommand "/usr/bin/python3 train.py"'
    assert algorithm_failure_reason(toolkit, [], 1).startswith(
        "AlgorithmError: the training script was killed by signal 15 (SIGTERM)\nExecuteUserScriptError:")


def test_a_jobs_rendezvous_store_listens_on_loopback_only(tmp_path):
    """torch's TCPStore server listens on every interface; in a job it is bound to 127.0.0.1."""
    probe = textwrap.dedent(
        """
        import datetime, os, psutil
        import torch.distributed as dist
        store = dist.TCPStore("127.0.0.1", 0, 1, True, datetime.timedelta(seconds=10), multi_tenant=True)
        listening = [c.laddr.ip for c in psutil.Process().net_connections("tcp") if c.status == "LISTEN" and c.laddr.port == store.port]
        print(",".join(listening))
        """
    )
    from include.emulator.jobs.network import JOB_SITE_DIR

    env = {**os.environ, "PYTHONPATH": str(JOB_SITE_DIR), "EMULATOR_JOB_HOSTS": "algo-1,algo-2"}
    result = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "127.0.0.1"
