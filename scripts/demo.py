"""`make demo`: the CIFAR-10 pipeline end to end on the local SageMaker, with a summary a person can read.

Starts the local SageMaker on 127.0.0.1, runs `airflow dags test cifar10_pipeline` against it (real
training, a real endpoint, a real smoke test, teardown), prints what happened, stops the server.
Exits non-zero if any part of the pipeline did not succeed.
"""
from __future__ import annotations

import json
import os
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from include.local_airflow import airflow_environment, dags_test, migrate_db, task_states, xcom  # noqa: E402

DAG_ID = "cifar10_pipeline"
WORKDIR = ROOT / ".demo"


def _free_port(preferred: int) -> int:
    with socket.socket() as sock:
        if sock.connect_ex(("127.0.0.1", preferred)) != 0:
            return preferred
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _start_emulator(port: int, log_path: Path) -> subprocess.Popen:
    log = open(log_path, "w")
    process = subprocess.Popen(
        [sys.executable, "-m", "include.emulator", "--port", str(port), "--state-dir", str(WORKDIR / "emulator")],
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the local SageMaker did not start; see {log_path}")
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/_emulator/health", timeout=1)
            return process
        except OSError:
            time.sleep(0.3)
    process.terminate()
    raise SystemExit(f"the local SageMaker did not answer within 60 s; see {log_path}")


def _summary(env: dict, endpoint_url: str) -> bool:
    import boto3

    sagemaker = boto3.client(
        "sagemaker", endpoint_url=endpoint_url, region_name="us-east-1",
        aws_access_key_id="emulator", aws_secret_access_key="emulator",
    )
    states = task_states(env, DAG_ID)
    print("\n=== CIFAR-10 pipeline on the local SageMaker ===")
    for task_id, state in states.items():
        print(f"  {task_id:<24} {state}")
    tunings = sagemaker.list_hyper_parameter_tuning_jobs(NameContains="cifar10")["HyperParameterTuningJobSummaries"]
    if tunings:
        tuning = sagemaker.describe_hyper_parameter_tuning_job(
            HyperParameterTuningJobName=tunings[0]["HyperParameterTuningJobName"])
        best = tuning.get("BestTrainingJob", {})
        objective = best.get("FinalHyperParameterTuningJobObjectiveMetric", {})
        print(f"\nTuning job    {tuning['HyperParameterTuningJobName']} "
              f"({tuning['HyperParameterTuningJobConfig']['Strategy']}): {tuning['HyperParameterTuningJobStatus']}, "
              f"{tuning['TrainingJobStatusCounters']['Completed']} jobs completed")
        if best:
            print(f"  best {best['TrainingJobName']}: {objective.get('MetricName')} = {objective.get('Value', 0):.4f} "
                  f"with {best['TunedHyperParameters']}")
    jobs = [j for j in sagemaker.list_training_jobs(NameContains="cifar10-train", SortBy="CreationTime",
                                                    SortOrder="Descending")["TrainingJobSummaries"]]
    if jobs:
        job = sagemaker.describe_training_job(TrainingJobName=jobs[0]["TrainingJobName"])
        seconds = job.get("TrainingTimeInSeconds", "?")
        hosts = job["ResourceConfig"]["InstanceCount"]
        spot = ", spot" if job.get("EnableManagedSpotTraining") else ""
        print(f"\nTraining job  {job['TrainingJobName']}: {job['TrainingJobStatus']} in {seconds} s "
              f"on {hosts} instance{'s' if hosts > 1 else ''}{spot}")
        for metric in job.get("FinalMetricDataList", []):
            print(f"  {metric['MetricName']:<28} {metric['Value']:.4f}")
        print(f"  model: {job.get('ModelArtifacts', {}).get('S3ModelArtifacts', '-')}")
    smoke = xcom(env, DAG_ID, "smoke_test")
    if smoke:
        print(f"\nEndpoint {smoke['endpoint']} answered {smoke['requests']} real images:")
        for prediction in smoke["predictions"]:
            print(f"  a {prediction['true_class']:<10} -> {prediction['predicted_class']:<10} (p={prediction['confidence']:.2f})")
    scores = xcom(env, DAG_ID, "check_batch_output")
    if scores:
        print(f"\nBatch transform: {scores['records']} test images scored, accuracy {scores['accuracy']:.4f}")
        print(f"  output: {scores['output']}")
    remaining = [e["EndpointName"] for e in sagemaker.list_endpoints()["Endpoints"]]
    print(f"\nEndpoints left running: {remaining or 'none (torn down)'}")
    return all(state in ("success", "skipped") for state in states.values()) and not remaining and bool(smoke)


def main() -> int:
    WORKDIR.mkdir(exist_ok=True)
    port = _free_port(int(os.environ.get("EMULATOR_PORT", "4566")))
    endpoint_url = f"http://127.0.0.1:{port}"
    print(f"Starting the local SageMaker on {endpoint_url} (log: .demo/emulator.log)")
    emulator = _start_emulator(port, WORKDIR / "emulator.log")
    try:
        env = airflow_environment(WORKDIR / "airflow", endpoint_url)
        print("Preparing Airflow's metadata database (.demo/airflow)")
        migrate_db(env)
        print(f"Running `airflow dags test {DAG_ID}` (full log: .demo/dag-run.log); this trains for real, a few minutes")
        started = time.monotonic()
        result = dags_test(DAG_ID, env)
        (WORKDIR / "dag-run.log").write_text(result.stdout + result.stderr)
        print(f"DAG run finished in {time.monotonic() - started:.0f} s with exit code {result.returncode}")
        ok = _summary(env, endpoint_url) and result.returncode == 0
    finally:
        emulator.terminate()
        try:
            emulator.wait(timeout=30)
        except subprocess.TimeoutExpired:
            emulator.kill()
        print("Local SageMaker stopped.")
    print("\nDemo " + ("succeeded." if ok else "FAILED: see .demo/dag-run.log and .demo/emulator.log"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
