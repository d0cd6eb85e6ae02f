"""What a training job on the local SageMaker costs over running the same script by hand.

    .venv/bin/python benchmarks/training_overhead.py [--seconds 30] [--repeats 3] [--work busy|sleep]
                                                     [--no-requirements] [--json PATH]

Starts the local SageMaker on a free port of 127.0.0.1 (in this process, as the tests do) and, side
by side in the same run, for

  (a) a no-op training script (it parses its arguments and writes a one-line model file), and
  (b) the same script working for about ``--seconds`` seconds,

measures a training job (CreateTrainingJob until DescribeTrainingJob answers Completed, asked with
boto3 the moment the emulator finishes the job rather than polled, so that no requests compete with
the script; and the job's own CreationTime -> Completed from its SecondaryStatusTransitions)
against the same script run by hand: ``python train.py --<hyperparameter> <value> ...`` in a fresh
interpreter, with the hyperparameters the training toolkit passes it. The runs alternate (by hand,
job, by hand, job, ...) so that a change in the machine's load hits both sides alike, and the
medians are compared. It prints the no-op's fixed overhead in seconds, the ratio for the working
script, the CPU seconds each side burnt (the job's: its processes, and this process, which holds the
emulator and the polling client), where the no-op job's time goes (each secondary status, and the
toolkit's start before and after the script, from the script's own timestamps in the job's log),
the machine's CPU count, and whether the goal of issue 13 (at most 1.10x for a 30 s script) is met.

The job is what the DAGs send (``include/pipelines/requests.py``): the PyTorch training image
``pytorch-training:2.5.1-cpu-py311`` (the workloads' framework path: AWS's sagemaker-training
toolkit, then sagemaker-pytorch-training's entry point), ``sagemaker_program`` /
``sagemaker_submit_directory`` (a sourcedir.tar.gz in S3, unpacked by the emulator) holding the
script and, as every workload's does, a requirements.txt (``--no-requirements`` leaves it out), one
File channel, MetricDefinitions scraped from the log, ml.m5.xlarge, one instance. The first job
after the server starts is run once before measuring (reported as "first job"): it also creates the
emulator's first S3 client and builds the host-name library of ``include/emulator/jobs/host_names.py``,
which a long-running server does once.

Work: ``busy`` (the default) is a pure-Python loop of a fixed number of iterations, calibrated once
at the start to take ``--seconds`` on this machine. It is the honest measure: the script needs the
CPU for the whole run, so whatever the emulator does meanwhile (relaying and scraping the log,
polling, syncing) competes with it for the cores and shows in the ratio, as it does for a real
training job. ``sleep`` (``time.sleep(seconds)``) needs no CPU and so only shows the fixed costs
around the script; use it to tell the two apart.

Noise: other work on the machine slows both sides, unevenly; the median of ``--repeats`` runs damps
it, the "pair" column compares each job with the run by hand just before it, and the CPU columns
hardly move with the load (the report says when the runs by hand spread widely). Wall times are
taken on the monotonic clock; the job clock and the split around the script are wall-clock
timestamps, which a clock step during the run skews.
"""
from __future__ import annotations

import argparse
import datetime as dt
import io
import json
import os
import resource
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

GOAL_RATIO = 1.10
GOAL_SECONDS = 30.0
REGION = "us-east-1"
BUCKET = "training-overhead-benchmark"
ROLE_ARN = "arn:aws:iam::123456789012:role/SageMakerExecutionRole"
# what include.pipelines.images.training_image_uri answers for the PyTorch workloads on a CPU instance
IMAGE = "763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-training:2.5.1-cpu-py311-ubuntu22.04-sagemaker"
INSTANCE_TYPE = "ml.m5.xlarge"
LOG_GROUP = "/aws/sagemaker/TrainingJobs"
POLL_SECONDS = 0.05
MARK = "overhead-benchmark"

SCRIPT = f'''\
import argparse, os, time
started, started_monotonic = time.time(), time.monotonic()
parser = argparse.ArgumentParser()
parser.add_argument("--work", choices=["none", "busy", "sleep"], default="none")
parser.add_argument("--seconds", type=float, default=0.0)
parser.add_argument("--iterations", type=int, default=0)
args, _ = parser.parse_known_args()  # the job's other hyperparameters, as a workload's script gets them
print(f"{MARK} script-start={{started:.6f}} script-start-monotonic={{started_monotonic:.6f}}", flush=True)
if args.work == "busy":
    total = 0
    for step in range(args.iterations):
        total += step & 7
elif args.work == "sleep":
    time.sleep(args.seconds)
with open(os.path.join(os.environ.get("SM_MODEL_DIR") or ".", "model.txt"), "w") as model:
    model.write("done")
print(f"{MARK} script-end={{time.time():.6f}} script-end-monotonic={{time.monotonic():.6f}} loss=0.5", flush=True)
'''


# --- by hand ----------------------------------------------------------------------------------------

def cmd_args(hyperparameters: dict[str, str]) -> list[str]:
    """What the toolkit passes the script (sagemaker_training.mapping.to_cmd_args): --name value, sorted,
    the toolkit's own sagemaker_* names left out."""
    args = []
    for name in sorted(hyperparameters):
        if not name.startswith("sagemaker_"):
            args += [f"--{name}", hyperparameters[name]]
    return args


def run_by_hand(script: Path, hyperparameters: dict[str, str], work_dir: Path) -> dict:
    """The script in a fresh interpreter, as a person would run it: wall time from start to exit."""
    model_dir = work_dir / "model"
    model_dir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "SM_MODEL_DIR": str(model_dir)}
    cpu = cpu_seconds(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run([sys.executable, str(script), *cmd_args(hyperparameters)], cwd=work_dir, env=env,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True)
    wall = time.perf_counter() - started
    cpu = cpu_seconds(resource.RUSAGE_CHILDREN) - cpu
    if done.returncode != 0:
        raise RuntimeError(f"the script failed by hand ({done.returncode}): {done.stderr[-2000:]}")
    marks = script_marks(done.stdout.splitlines())
    return {"wall_s": wall, "cpu_s": cpu, "script_s": marks["script-end-monotonic"] - marks["script-start-monotonic"]}


def cpu_seconds(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def script_marks(lines: list[str]) -> dict[str, float]:
    marks = {}
    for line in lines:
        if MARK in line:
            for word in line.split():
                name, _, value = word.partition("=")
                if name.startswith(("script-start", "script-end")):
                    marks[name] = float(value)
    return marks


def calibrate(script: Path, seconds: float, work_dir: Path) -> int:
    """Loop iterations that take ``seconds`` of the script's own time on this machine, now."""
    probe = 3_000_000
    for _ in range(2):  # a second probe near the target's order of magnitude corrects the first guess
        measured = run_by_hand(script, {"work": "busy", "iterations": str(probe)}, work_dir)["script_s"]
        rate = probe / max(measured, 1e-3)
        probe = int(rate * min(seconds, 2.0))
    return max(1, int(rate * seconds))


# --- as a training job ------------------------------------------------------------------------------

# every workload's sourcedir (training_src/<workload>/) ships one, so the toolkit runs pip before the script
REQUIREMENTS = "# as the workloads' requirements.txt: a package the image already ships\nnumpy\n"


def source_tarball(requirements: bool) -> bytes:
    buffer = io.BytesIO()
    files = {"train.py": SCRIPT, **({"requirements.txt": REQUIREMENTS} if requirements else {})}
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(data), int(time.time()), 0o644
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def training_request(name: str, source_uri: str, channel_uri: str, hyperparameters: dict[str, str]) -> dict:
    """CreateTrainingJob as include/pipelines/requests.py builds it for a PyTorch workload (one instance, on demand)."""
    return {
        "TrainingJobName": name,
        "AlgorithmSpecification": {
            "TrainingImage": IMAGE, "TrainingInputMode": "File",
            "MetricDefinitions": [{"Name": "train:loss", "Regex": r"\bloss=([0-9.]+)"}],
        },
        "RoleArn": ROLE_ARN,
        "HyperParameters": {
            **hyperparameters,
            "sagemaker_program": json.dumps("train.py"),
            "sagemaker_submit_directory": json.dumps(source_uri),
            "sagemaker_region": json.dumps(REGION),
            "sagemaker_container_log_level": "20",
            "sagemaker_job_name": json.dumps(name),
        },
        "InputDataConfig": [{
            "ChannelName": "train",
            "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": channel_uri,
                                            "S3DataDistributionType": "FullyReplicated"}},
        }],
        "OutputDataConfig": {"S3OutputPath": f"s3://{BUCKET}/output"},
        "ResourceConfig": {"InstanceType": INSTANCE_TYPE, "InstanceCount": 1, "VolumeSizeInGB": 30},
        "StoppingCondition": {"MaxRuntimeInSeconds": 3600},
        "Tags": [{"Key": "project", "Value": "training-overhead-benchmark"}],
    }


def _seconds(later: dt.datetime, earlier: dt.datetime) -> float:
    return (later - earlier).total_seconds()


def run_job(emulator, sm, logs, name: str, source_uri: str, channel_uri: str, hyperparameters: dict[str, str]) -> dict:
    """One job, watched as a client watches it; returns the client's wall time and the job's own figures.

    No polling while it runs: requests at 10 Hz would compete with the script for the CPU (the DAGs ask
    every 10 s). This process waits for the emulator's record to be done, then asks DescribeTrainingJob,
    which must answer a terminal status: the earliest moment any client could see the job end."""
    from include.emulator.sagemaker.training import TrainingJobStore

    request = training_request(name, source_uri, channel_uri, hyperparameters)
    # the job's processes (reaped by the emulator before the job completes) and this process's
    # threads: the emulator's own work, and this client's polling
    cpu = cpu_seconds(resource.RUSAGE_CHILDREN) + cpu_seconds(resource.RUSAGE_SELF)
    started = time.perf_counter()
    sm.create_training_job(**request)
    emulator.store(TrainingJobStore).get(name, REGION).done.wait(3600)
    while True:
        description = sm.describe_training_job(TrainingJobName=name)
        if description["TrainingJobStatus"] in ("Completed", "Failed", "Stopped"):
            break
        time.sleep(POLL_SECONDS)  # not expected: the record is done
    client_wall = time.perf_counter() - started
    cpu = cpu_seconds(resource.RUSAGE_CHILDREN) + cpu_seconds(resource.RUSAGE_SELF) - cpu
    if description["TrainingJobStatus"] != "Completed":
        raise RuntimeError(f"{name} ended {description['TrainingJobStatus']}: {description.get('FailureReason')}")
    created = description["CreationTime"]
    transitions = description["SecondaryStatusTransitions"]
    phases = {}
    for transition in transitions:
        if transition["Status"] != "Completed" and transition.get("EndTime"):
            phases[transition["Status"]] = phases.get(transition["Status"], 0.0) + _seconds(transition["EndTime"], transition["StartTime"])
    result = {
        "client_wall_s": client_wall,
        "cpu_s": cpu,
        "job_wall_s": _seconds(transitions[-1]["StartTime"], created),
        "phases_s": phases,
    }
    marks = script_marks(job_log(logs, name))
    training = next((t for t in transitions if t["Status"] == "Training"), None)
    if training is not None and len(marks) == 4:
        result["script_s"] = marks["script-end-monotonic"] - marks["script-start-monotonic"]
        result["before_script_s"] = marks["script-start"] - training["StartTime"].timestamp()
        result["after_script_s"] = training["EndTime"].timestamp() - marks["script-end"]
    return result


def job_log(logs, name: str) -> list[str]:
    lines = []
    streams = logs.describe_log_streams(logGroupName=LOG_GROUP, logStreamNamePrefix=f"{name}/")["logStreams"]
    for stream in streams:
        token = None
        while True:
            kwargs = {"nextToken": token} if token else {}
            page = logs.get_log_events(logGroupName=LOG_GROUP, logStreamName=stream["logStreamName"],
                                       startFromHead=True, **kwargs)
            lines += [event["message"] for event in page["events"]]
            if not page["events"] or page.get("nextForwardToken") == token:
                break
            token = page.get("nextForwardToken")
    return lines


# --- the run ------------------------------------------------------------------------------------------

def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def measure(seconds: float, repeats: int, work: str, requirements: bool = True) -> dict:
    import boto3

    from include.emulator.gateway import EmulatorServer
    from include.emulator.state import Settings

    cpus = os.cpu_count()
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else cpus
    with tempfile.TemporaryDirectory(prefix="training-overhead-") as scratch:
        scratch = Path(scratch)
        script = scratch / "train.py"
        script.write_text(SCRIPT)
        hand_dir = scratch / "by-hand"
        hand_dir.mkdir()
        # the hyperparameters as the toolkit hands them on (strings; the workloads' own look alike)
        noop = {"epochs": "1", "learning-rate": "0.1", "work": "none"}
        working = {"epochs": "1", "learning-rate": "0.1", "work": work, "seconds": str(seconds)}
        if work == "busy":
            working["iterations"] = str(calibrate(script, seconds, hand_dir))

        server = EmulatorServer(Settings(port=0, state_dir=scratch / "state", region=REGION)).start()
        try:
            def client(service):
                return boto3.client(service, endpoint_url=server.endpoint_url, region_name=REGION,
                                    aws_access_key_id="testing", aws_secret_access_key="testing")

            sm, s3, logs = client("sagemaker"), client("s3"), client("logs")
            s3.create_bucket(Bucket=BUCKET)
            s3.put_object(Bucket=BUCKET, Key="source/sourcedir.tar.gz", Body=source_tarball(requirements))
            s3.put_object(Bucket=BUCKET, Key="data/train/train.csv", Body=b"x,y\n1,2\n3,4\n")
            source_uri, channel_uri = f"s3://{BUCKET}/source/sourcedir.tar.gz", f"s3://{BUCKET}/data/train"
            stamp = time.strftime("%H%M%S")

            first = run_job(server.emulator, sm, logs, f"overhead-{stamp}-first", source_uri, channel_uri, noop)
            runs = {"noop": {"hand": [], "job": []}, "work": {"hand": [], "job": []}}
            for repeat in range(repeats):
                for kind, hyperparameters in (("noop", noop), ("work", working)):
                    runs[kind]["hand"].append(run_by_hand(script, hyperparameters, hand_dir))
                    runs[kind]["job"].append(run_job(server.emulator, sm, logs, f"overhead-{stamp}-{kind}-{repeat}", source_uri,
                                                     channel_uri, hyperparameters))
                    print(f"  repeat {repeat + 1}/{repeats} {kind:<4}: by hand {runs[kind]['hand'][-1]['wall_s']:6.2f} s, "
                          f"job {runs[kind]['job'][-1]['client_wall_s']:6.2f} s", flush=True)
        finally:
            server.stop()

    def summary(kind: str) -> dict:
        hand, job = runs[kind]["hand"], runs[kind]["job"]
        phases = sorted({phase for run in job for phase in run["phases_s"]})
        return {
            "hand_wall_s": median([run["wall_s"] for run in hand]),
            "hand_cpu_s": median([run["cpu_s"] for run in hand]),
            "job_cpu_s": median([run["cpu_s"] for run in job]),
            # each job against the run by hand just before it: the load on the machine changes slowly
            "pair_ratio": median([j["client_wall_s"] / h["wall_s"] for h, j in zip(hand, job)]),
            "hand_script_s": median([run["script_s"] for run in hand]),
            "job_client_wall_s": median([run["client_wall_s"] for run in job]),
            "job_wall_s": median([run["job_wall_s"] for run in job]),
            "job_script_s": median([run["script_s"] for run in job if "script_s" in run]),
            "before_script_s": median([run["before_script_s"] for run in job if "before_script_s" in run]),
            "after_script_s": median([run["after_script_s"] for run in job if "after_script_s" in run]),
            "phases_s": {phase: median([run["phases_s"].get(phase, 0.0) for run in job]) for phase in phases},
            "runs": {"hand": hand, "job": job},
        }

    result = {"cpu_count": cpus, "usable_cpus": usable, "seconds": seconds, "repeats": repeats, "work": work,
              "requirements_txt": requirements,
              "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None,
              "first_job": first, "noop": summary("noop"), "work_script": summary("work")}
    noop, working_summary = result["noop"], result["work_script"]
    result["noop_overhead_s"] = noop["job_client_wall_s"] - noop["hand_wall_s"]
    result["noop_overhead_job_clock_s"] = noop["job_wall_s"] - noop["hand_wall_s"]
    result["work_ratio"] = working_summary["job_client_wall_s"] / working_summary["hand_wall_s"]
    result["work_ratio_job_clock"] = working_summary["job_wall_s"] / working_summary["hand_wall_s"]
    result["goal_ratio"] = GOAL_RATIO
    result["goal_met"] = result["work_ratio"] <= GOAL_RATIO
    return result


def report(result: dict) -> None:
    noop, work = result["noop"], result["work_script"]
    print()
    print(f"machine: {result['cpu_count']} CPUs ({result['usable_cpus']} usable by this process), "
          f"load average {' '.join(f'{x:.2f}' for x in result['load_average'] or ())}")
    print(f"medians of {result['repeats']} run(s). job s: CreateTrainingJob -> DescribeTrainingJob answering Completed "
          "(asked as the emulator finishes it, no polling meanwhile); job clock s: the job's CreationTime -> Completed; "
          "pair: each job over the run by hand just before it; CPU s: the job's processes plus this process "
          "(the emulator and the client)")
    print(f"first job after the server started: {result['first_job']['client_wall_s']:.2f} s (no-op script); "
          f"sourcedir {'with' if result['requirements_txt'] else 'without'} a requirements.txt")
    print()
    print(f"{'':<24} {'by hand s':>9} {'job s':>7} {'job clock s':>11} {'overhead s':>10} {'ratio':>7} {'pair':>7} "
          f"{'CPU hand s':>10} {'CPU job s':>9}")
    for label, row in (("no-op script", noop), (f"{result['work']} {result['seconds']:g} s script", work)):
        print(f"{label:<24} {row['hand_wall_s']:>9.2f} {row['job_client_wall_s']:>7.2f} {row['job_wall_s']:>11.2f} "
              f"{row['job_client_wall_s'] - row['hand_wall_s']:>10.2f} {row['job_client_wall_s'] / row['hand_wall_s']:>7.3f} "
              f"{row['pair_ratio']:>7.3f} {row['hand_cpu_s']:>10.2f} {row['job_cpu_s']:>9.2f}")
    print()
    print("where the no-op job's time goes (job clock, medians):")
    for phase, seconds in noop["phases_s"].items():
        print(f"  {phase:<26} {seconds:6.2f} s")
    print(f"    of Training: toolkit before the script {noop['before_script_s']:.2f} s, script {noop['job_script_s']:.3f} s, "
          f"after the script {noop['after_script_s']:.2f} s")
    print(f"  script by hand: interpreter and script {noop['hand_wall_s']:.2f} s (script itself {noop['hand_script_s']:.3f} s)")
    print(f"  {result['work']} script's own time: by hand {work['hand_script_s']:.2f} s, in the job {work['job_script_s']:.2f} s")
    spread = [run["wall_s"] for run in work["runs"]["hand"]]
    if len(spread) > 1 and max(spread) > 1.2 * min(spread):
        print(f"  NOTE: the same script by hand took {min(spread):.1f} to {max(spread):.1f} s: the machine's load changed "
              "during the run, and the ratio carries that noise (compare the CPU columns, or run again)")
    print()
    print(f"no-op fixed overhead: {result['noop_overhead_s']:.2f} s")
    print(f"{result['seconds']:g} s script ratio: {result['work_ratio']:.3f}x "
          f"(pairwise {work['pair_ratio']:.3f}x, job clock {result['work_ratio_job_clock']:.3f}x)")
    if result["seconds"] >= GOAL_SECONDS:
        verdict = "met" if result["goal_met"] else "NOT met"
        print(f"goal (at most {GOAL_RATIO:.2f}x for a {GOAL_SECONDS:g} s script): {verdict}")
    else:
        verdict = "would be met" if result["goal_met"] else "would NOT be met"
        print(f"goal (at most {GOAL_RATIO:.2f}x for a {GOAL_SECONDS:g} s script): not judged, the script ran "
              f"{result['seconds']:g} s ({verdict} at this length)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=GOAL_SECONDS, help="how long the working script works (default 30)")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each kind; medians are reported (default 3)")
    parser.add_argument("--work", choices=["busy", "sleep"], default="busy",
                        help="busy: a CPU loop calibrated to --seconds (default); sleep: time.sleep")
    parser.add_argument("--no-requirements", action="store_true",
                        help="ship no requirements.txt in the sourcedir (every workload ships one; the default does too)")
    parser.add_argument("--json", type=Path, help="also write every figure to this file")
    args = parser.parse_args(argv)
    if args.seconds <= 0 or args.repeats < 1:
        parser.error("--seconds must be positive and --repeats at least 1")
    print(f"training overhead: no-op and {args.work} {args.seconds:g} s scripts, {args.repeats} repeat(s), "
          f"{os.cpu_count()} CPUs", flush=True)
    result = measure(args.seconds, args.repeats, args.work, requirements=not args.no_requirements)
    report(result)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
