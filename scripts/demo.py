"""`make demo`: the CIFAR-10 pipeline end to end in a real Airflow on the local SageMaker, shown live.

Starts the local SageMaker and Airflow's api-server, scheduler, dag-processor and triggerer on
127.0.0.1, triggers `cifar10_pipeline` through the REST API, prints each task's state as it changes
and each training job's epochs as they finish, then a summary; stops everything it started.
Exits non-zero if any part of the pipeline did not succeed.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from include.local_airflow import LocalAirflow, free_port  # noqa: E402
from include.pipelines.config import load_workload  # noqa: E402

DAG_ID = "cifar10_pipeline"
STANDING_ENDPOINT = load_workload("cifar10").promotion.endpoint_name
WORKDIR = ROOT / ".demo"
TRAINING_LOGS = "/aws/sagemaker/TrainingJobs"
# train.py's per-epoch line (the MetricDefinitions read the same line), e.g.
# epoch=2 train_loss=0.41 train_accuracy=0.86 val_loss=0.30 val_accuracy=0.92 lr=0.0000 epoch_seconds=12.3
# README's quickstart promises the CIFAR-10 run in about 5 minutes on a quiet 2-core machine
DAG_TIME_BUDGET_S = 300
EPOCH_LINE = re.compile(r"\bepoch=\d+ .*val_accuracy=[0-9.]+")


def _start_emulator(port: int, log_path: Path) -> subprocess.Popen:
    log = open(log_path, "w")
    process = subprocess.Popen(
        [sys.executable, "-m", "include.emulator", "--port", str(port), "--state-dir", str(WORKDIR / "emulator")],
        cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONPATH": str(ROOT)},
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


def _client(service: str, endpoint_url: str):
    import boto3

    return boto3.client(service, endpoint_url=endpoint_url, region_name="us-east-1",
                        aws_access_key_id="emulator", aws_secret_access_key="emulator")


class Clock:
    def __init__(self):
        self.started = time.monotonic()
        self.lock = threading.Lock()

    def say(self, text: str) -> None:
        with self.lock:
            elapsed = int(time.monotonic() - self.started)
            print(f"[{elapsed // 60:2d}:{elapsed % 60:02d}] {text}", flush=True)


def follow_epochs(endpoint_url: str, clock: Clock, stop: threading.Event) -> None:
    """Print each training job's epoch lines from CloudWatch Logs as the jobs write them."""
    logs = _client("logs", endpoint_url)
    tokens: dict[str, str | None] = {}
    while not stop.wait(3):
        try:
            streams = logs.describe_log_streams(logGroupName=TRAINING_LOGS)["logStreams"]
        except Exception:  # the group exists once the first job logs
            continue
        for stream in streams:
            name = stream["logStreamName"]
            if "/algo-1-" not in name:
                continue  # one host's view of an epoch is enough
            kwargs = {"nextToken": tokens[name]} if tokens.get(name) else {"startFromHead": True}
            events = logs.get_log_events(logGroupName=TRAINING_LOGS, logStreamName=name, **kwargs)
            tokens[name] = events["nextForwardToken"]
            for event in events["events"]:
                match = EPOCH_LINE.search(event["message"])
                if match:
                    clock.say(f"    {name.split('/')[0]}: {match.group(0)}")


def _summary(airflow: LocalAirflow, run, endpoint_url: str) -> bool:
    sagemaker = _client("sagemaker", endpoint_url)
    took = f" in {run.seconds:.0f} s of DAG time (budget: {DAG_TIME_BUDGET_S // 60} min)" if run.seconds else ""
    print(f"\n=== {DAG_ID} on the local SageMaker: run {run.state}{took} ===")
    for task_id, state in run.states.items():
        print(f"  {task_id:<24} {state}")
    tuning = run.xcom("tune")
    if tuning:
        tuning = tuning["Tuning"]
        best = tuning.get("BestTrainingJob", {})
        objective = best.get("FinalHyperParameterTuningJobObjectiveMetric", {})
        print(f"\nTuning job    {tuning['HyperParameterTuningJobName']} "
              f"({tuning['HyperParameterTuningJobConfig']['Strategy']}): {tuning['HyperParameterTuningJobStatus']}")
        if best:
            print(f"  best {best['TrainingJobName']}: {objective.get('MetricName')} = {objective.get('Value', 0):.4f} "
                  f"with {best['TunedHyperParameters']}")
    training = run.xcom("train")
    if training:
        job = sagemaker.describe_training_job(TrainingJobName=training["Training"]["TrainingJobName"])
        hosts = job["ResourceConfig"]["InstanceCount"]
        spot = ", spot" if job.get("EnableManagedSpotTraining") else ""
        print(f"\nTraining job  {job['TrainingJobName']}: {job['TrainingJobStatus']} in "
              f"{job.get('TrainingTimeInSeconds', '?')} s on {hosts} instance{'s' if hosts > 1 else ''}{spot}")
        for metric in job.get("FinalMetricDataList", []):
            print(f"  {metric['MetricName']:<28} {metric['Value']:.4f}")
        print(f"  model: {job.get('ModelArtifacts', {}).get('S3ModelArtifacts', '-')}")
    smoke = run.xcom("smoke_test")
    if smoke:
        print(f"\nEndpoint {smoke['endpoint']} answered {smoke['requests']} real images:")
        for prediction in smoke["predictions"]:
            print(f"  a {prediction['true_class']:<10} -> {prediction['predicted_class']:<10} "
                  f"(p={prediction['confidence']:.2f})")
    scores = run.xcom("check_batch_output")
    if scores:
        print(f"\nBatch transform: {scores['records']} test images scored, accuracy {scores['accuracy']:.4f}")
        print(f"  output: {scores['output']}")
    decision, report = run.xcom("decide"), run.xcom("run_report")
    if decision:
        print(f"\nPromotion: {decision['reason']}")
    if report:
        print(f"  outcome: {report['outcome']}; cost on AWS prices: ${report['cost_usd']:.2f}; report: {report['report']}")
    endpoints = [e["EndpointName"] for e in sagemaker.list_endpoints()["Endpoints"]]
    standing = [name for name in endpoints if name == STANDING_ENDPOINT]
    print(f"\nEndpoints after the run: {', '.join(endpoints) or 'none'} "
          f"({'the standing endpoint serves the promoted model' if standing else 'no standing endpoint'})")
    print(f"Airflow UI while it ran: {airflow.url} (user admin, password in {airflow.home / 'passwords.json'})")
    # the run's only endpoint is the standing one it promoted to; anything else would be left behind
    return run.succeeded and endpoints == standing and bool(smoke) and report and report["outcome"] == "promoted"


def main() -> int:
    WORKDIR.mkdir(exist_ok=True)
    port = int(os.environ.get("EMULATOR_PORT", "0")) or free_port()
    endpoint_url = f"http://127.0.0.1:{port}"
    clock = Clock()
    clock.say(f"Starting the local SageMaker on {endpoint_url} (log: .demo/emulator.log)")
    emulator = _start_emulator(port, WORKDIR / "emulator.log")
    stop = threading.Event()
    try:
        airflow = LocalAirflow(WORKDIR / "airflow", endpoint_url)
        clock.say("Starting Airflow: api-server, scheduler, dag-processor, triggerer (logs: .demo/airflow/services/)")
        with airflow:
            clock.say(f"Airflow is up at {airflow.url}; triggering {DAG_ID} (this tunes and trains for real: minutes)")
            threading.Thread(target=follow_epochs, args=(endpoint_url, clock, stop), daemon=True).start()
            run = airflow.trigger(DAG_ID)
            airflow.wait(run, timeout=1800, on_change=lambda task, _old, new: clock.say(f"{task:<24} {new}"))
            stop.set()
            ok = _summary(airflow, run, endpoint_url)
            if not ok:
                print("\n" + run.report())
    finally:
        stop.set()
        emulator.terminate()
        try:
            emulator.wait(timeout=30)
        except subprocess.TimeoutExpired:
            emulator.kill()
        print("Airflow and the local SageMaker stopped.")
    print("\nDemo " + ("succeeded." if ok else "FAILED: see .demo/airflow/services/ and .demo/emulator.log"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
