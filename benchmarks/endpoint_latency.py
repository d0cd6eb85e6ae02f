"""Endpoint latency against calling the model's own handlers in-process, for every workload, side by side.

    .venv/bin/python benchmarks/endpoint_latency.py [--workloads cifar10,acoustic_shield] [--requests 20]
        [--concurrency 1,4] [--workers 1,4] [--threads 1] [--wait-policy PASSIVE] [--json results.json]

Self-contained and offline. For each workload it trains a tiny model with the workload's own train.py
(the YAML's local profile with the TINY overrides below: one epoch or a few batches on a small synthetic
set from include/datasets), starts the local SageMaker on a free port of 127.0.0.1 (once for the run, in a
process of its own as `make emulator` runs it) and deploys the model as the DAG does
(include/pipelines/requests.py's builders, the workload's inference image), once per --workers value as
the model's SAGEMAKER_MODEL_SERVER_WORKERS. Both sides get the same bodies, the kind the workload's
smoke test sends:
  in-process: the image's handler service (sagemaker-inference's contract, or the Hugging Face toolkit's)
              loading code/inference.py in this process: the model's own work, no HTTP;
  endpoint:   boto3 invoke_endpoint round trips: SageMaker's front end, the model server, one of its workers.
Each side is warmed up, then timed, --requests requests a row: with one client the two sides take turns,
call by call, so whatever else loads the machine loads both alike; with more (--concurrency) the endpoint
alone is sent that many requests at once. Printed: p50 and p95 in ms (nearest rank), the endpoint /
in-process ratio of p50 and the endpoint's requests/s. The goal (issue 13): endpoint p50 at most 1.10x
the in-process p50, for requests taking 100 ms or more; the single-client rows say whether they meet it.
Both sides share this machine's cores (the count and torch's threads are printed first), so more workers
than cores add throughput only where requests wait rather than compute; on a busy machine torch's default
of a thread per core in every process oversubscribes them and inflates both sides' tails (--threads 1).
Both sides run with OMP_WAIT_POLICY=PASSIVE unless --wait-policy says otherwise: by default the OpenMP
threads of a process that has just answered spin on, waiting for more work, and on the same cores that
steals time from the other side's next call (on 2 cores, measured: the in-process p50 of cifar10's 16
images moved between 72 and 110 ms and the endpoint's with it, and with ACTIVE both took 800 ms), which
is an artifact of timing both sides on one machine: on SageMaker the model has its instance's cores
to itself. The local SageMaker hands the policy to its model servers (child_processes.PASSED_THROUGH).

brain_to_text has no endpoint (the DAG batch-decodes with a transform job): its model, created as the DAG
creates it, is served on a one-instance endpoint config of the transform's instance type and sent the
transform's request (a held-out session's HDF5, application/jsonlines back): the handler path of its
batch decode, which a transform job reaches through the same model server.
"""
from __future__ import annotations

import argparse
import base64
import io
import json
import os
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

REGION = "us-east-1"
WORKERS_ENV = "SAGEMAKER_MODEL_SERVER_WORKERS"
GOAL_RATIO = 1.10
GOAL_MIN_MS = 100.0

# over each local profile: the generator's kwargs and train.py's hyperparameters, as small as trains at all
TINY = {
    "cifar10": ({"train_per_class": 4, "test_per_class": 2}, {"epochs": 1, "batch-size": 20}),
    # 30 s of audio kept per clip (the profile keeps 1 s), so a 30 s request is 30 s of work
    "acoustic_shield": ({"clips_per_class": 3, "validation_per_class": 1, "max_seconds": 0.9},
                        {"epochs": 1, "batch-size": 4, "max-audio-length": 480000}),
    "room_detection": ({"train": 4, "val": 2, "test": 2, "image_size": 64},
                       {"epochs": 1, "imgsz": 64, "batch": 4, "nbs": 4}),
    # no damaged clips: one in 14 is more than train.py's --max-unreadable-fraction
    "meld_sentiment": ({"train_utterances": 14, "validation_utterances": 14, "clips_without_audio": 0,
                        "unreadable_clips": 0}, {"epochs": 1}),
    # three sessions still (the transform's input is the third one's test file), with the profile's 8 test trials
    "brain_to_text": ({"train_trials": 8, "val_trials": 2},
                      {"num-training-batches": 4, "batches-per-val-step": 2, "batch-size": 4}),
}


@dataclass(frozen=True)
class Case:
    label: str
    body: bytes
    content_type: str
    accept: str = "application/json"


def cases(workload: str, cfg, data: Path) -> list[Case]:
    """What the workload's smoke test (or batch decode) sends."""
    from include.pipelines.smoke import png_bytes

    if workload == "cifar10":
        import numpy as np

        from include.datasets.cifar10 import sample_images

        images = [image for _, image in sample_images(16)]
        batch = io.BytesIO()
        np.save(batch, np.stack(images))
        return [Case("1 PNG image", png_bytes(images[0]), "image/png"),
                Case("16 images (npy)", batch.getvalue(), "application/x-npy")]
    if workload == "acoustic_shield":
        from include.datasets.acoustic_shield import sample_clip

        return [Case(f"{seconds:g} s WAV clip", sample_clip("TireSkid", seconds=seconds, sample_rate=16000), "audio/wav")
                for seconds in (1.0, 30.0)]
    if workload == "room_detection":
        from include.datasets.room_detection import sample_plans
        from include.pipelines.smoke.room_detection import IMAGE_SIZE

        plan = sample_plans(1, seed=7, size=IMAGE_SIZE)[0]
        return [Case(f"{IMAGE_SIZE} px PNG plan", png_bytes(plan.image), "image/png")]
    if workload == "meld_sentiment":
        from include.datasets.meld_sentiment import sample_clips

        utterances = [{"text": sample["text"], "video_base64": base64.b64encode(sample["clip"]).decode()}
                      for sample in sample_clips(8, seed=11)]
        return [Case("1 utterance, mp4 as base64", json.dumps(utterances[0]).encode(), "application/json"),
                Case("8 utterances (instances)", json.dumps({"instances": utterances}).encode(), "application/json")]
    if workload == "brain_to_text":
        session = (data / cfg.transform.input).read_bytes()
        return [Case("held-out session (HDF5)", session, cfg.transform.content_type, cfg.transform.accept)]
    raise ValueError(f"no requests for workload {workload!r}")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def train_tiny_model(workload: str, cfg, work: Path) -> tuple[Path, Path]:
    """(model dir, data dir): train.py run as the toolkit runs it (SM_* variables, hyperparameters as flags)."""
    import importlib

    from sagemaker_training import mapping

    data_kwargs, hyperparameters = TINY[workload]
    module, function = cfg.data.generator.split(":")
    generate = getattr(importlib.import_module(module), function)
    data = Path(generate(work / "data", **{**cfg.data.generator_kwargs, **data_kwargs}))
    model_dir = work / "model"
    env = {**os.environ, **cfg.training.environment, "SM_MODEL_DIR": str(model_dir), "SM_NUM_GPUS": "0",
           "SM_OUTPUT_DATA_DIR": str(work / "output"), "SAGEMAKER_BASE_DIR": str(work / "job"), "HF_HUB_OFFLINE": "1",
           **{f"SM_CHANNEL_{name.upper()}": str(data / path) for name, path in cfg.data.channels.items()}}
    flags = mapping.to_cmd_args({**cfg.training.hyperparameters, **hyperparameters})
    script = ROOT / cfg.source.dir / cfg.source.entry_point
    result = subprocess.run([sys.executable, str(script), *flags], cwd=work, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"{workload}: train.py failed:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}")
    return model_dir, data


def model_archive(model_dir: Path) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for path in sorted(model_dir.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                tar.add(path, arcname=path.relative_to(model_dir).as_posix())
    return buffer.getvalue()


def in_process_handlers(cfg, model_dir: Path, image: str):
    """The handler service the image's model server runs, loaded here: one call is the model's own work."""
    from include.emulator.images import inference_handler_service
    from include.emulator.serving.handlers import InferenceHandlers
    from include.emulator.serving.huggingface import HuggingFaceHandlers

    handlers_class = HuggingFaceHandlers if inference_handler_service(image) == "huggingface" else InferenceHandlers
    handlers = handlers_class(model_dir, program=cfg.source.inference_entry_point)
    handlers.load()
    return handlers


def forget_code(model_dir: Path) -> None:
    """Unload one model's code/ modules: the next workload's inference.py and model.py share their names."""
    code = str(model_dir / "code")
    sys.path[:] = [entry for entry in sys.path if entry != code]
    for name, module in list(sys.modules.items()):
        if (getattr(module, "__file__", None) or "").startswith(code):
            del sys.modules[name]


class LocalSageMaker:
    """``python -m include.emulator`` on a free port, as ``make emulator`` runs it (a process of its own: the
    clients here do not share its interpreter), and endpoints deployed on it as the DAG deploys them."""

    def __init__(self, state_dir: Path):
        import boto3
        from botocore.config import Config

        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        state_dir.mkdir(parents=True)
        self.log = state_dir.parent / "emulator.log"
        with self.log.open("wb") as log:
            self.process = subprocess.Popen([sys.executable, "-m", "include.emulator", "--port", str(port),
                                             "--state-dir", str(state_dir)], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 120
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise SystemExit(f"the local SageMaker did not start:\n{self.log.read_text()[-2000:]}")
                time.sleep(0.2)
        config = Config(max_pool_connections=64, retries={"total_max_attempts": 1}, read_timeout=120)
        self.client = lambda service: boto3.client(  # noqa: E731
            service, endpoint_url=f"http://127.0.0.1:{port}", region_name=REGION, config=config,
            aws_access_key_id="benchmark", aws_secret_access_key="benchmark")
        self.s3, self.sagemaker, self.runtime = self.client("s3"), self.client("sagemaker"), self.client("sagemaker-runtime")

    def deploy(self, cfg, image: str, model_data_url: str, workers: int) -> str:
        from include.pipelines import requests as rq

        name = f"bench-{cfg.name.replace('_', '-')}-w{workers}"
        model = rq.build_model_request(cfg, model_name=name, image_uri=image, model_data_url=model_data_url)
        model["PrimaryContainer"]["Environment"][WORKERS_ENV] = str(workers)
        self.sagemaker.create_model(**model)
        if cfg.endpoint is not None:
            config = rq.build_endpoint_config_request(cfg, config_name=name, model_name=name)
            endpoint = rq.build_endpoint_request(cfg, endpoint_name=name, config_name=name)
        else:  # batch only: one instance of the transform's type
            config = {"EndpointConfigName": name, "ProductionVariants": [{
                "VariantName": "AllTraffic", "ModelName": name, "InstanceType": cfg.transform.instance_type,
                "InitialInstanceCount": 1}]}
            endpoint = {"EndpointName": name, "EndpointConfigName": name}
        self.sagemaker.create_endpoint_config(**config)
        self.sagemaker.create_endpoint(**endpoint)
        self.sagemaker.get_waiter("endpoint_in_service").wait(EndpointName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 600})
        return name

    def delete(self, name: str) -> None:
        self.sagemaker.delete_endpoint(EndpointName=name)
        self.sagemaker.get_waiter("endpoint_deleted").wait(EndpointName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 120})
        self.sagemaker.delete_endpoint_config(EndpointConfigName=name)
        self.sagemaker.delete_model(ModelName=name)

    def stop(self) -> None:
        self.process.terminate()  # SIGTERM: its model servers stop with it
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def timed(call: Callable[[], object]) -> float:
    started = time.perf_counter()
    call()
    return (time.perf_counter() - started) * 1000


def alternately(first: Callable[[], object], second: Callable[[], object], requests: int,
                warmup: int) -> tuple[list[float], list[float]]:
    """Latencies in ms of both calls, taken in turn: whatever else loads the machine loads both sides alike."""
    for _ in range(warmup):
        first(), second()
    pairs = [(timed(first), timed(second)) for _ in range(requests)]
    return [a for a, _ in pairs], [b for _, b in pairs]


def concurrently(call: Callable[[], object], requests: int, clients: int, warmup: int) -> tuple[list[float], float]:
    """Latencies in ms of `requests` calls from `clients` threads at once, and their wall-clock seconds."""
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(lambda _: timed(call), range(warmup * clients)))
        started = time.perf_counter()
        latencies = list(pool.map(lambda _: timed(call), range(requests)))
        return latencies, time.perf_counter() - started


@dataclass
class Row:
    workload: str
    case: str
    workers: int
    clients: int
    p50_ms: float                      # the endpoint's
    p95_ms: float
    requests_per_s: float
    in_process_p50_ms: float | None = None  # single-client rows: in-process, timed in turn with the endpoint
    in_process_p95_ms: float | None = None
    ratio_p50: float | None = None
    goal: str = ""                     # single-client rows: "meets", "MISSES" or "n/a (<100 ms)"


def benchmark_workload(workload: str, sagemaker: LocalSageMaker, work: Path, args) -> list[Row]:
    from include.emulator.serving.handlers import InferenceContext
    from include.pipelines.config import load_workload
    from include.pipelines.images import inference_image_uri

    cfg = load_workload(workload, "local")
    model_dir, data = train_tiny_model(workload, cfg, work)
    image = inference_image_uri(cfg, REGION)
    bodies = cases(workload, cfg, data)
    sagemaker.s3.create_bucket(Bucket=cfg.bucket)
    key = f"{cfg.s3_prefix}/benchmark/model.tar.gz"
    sagemaker.s3.put_object(Bucket=cfg.bucket, Key=key, Body=model_archive(model_dir))
    handlers = in_process_handlers(cfg, model_dir, image)
    rows: list[Row] = []
    try:
        for workers in args.workers:
            endpoint = sagemaker.deploy(cfg, image, f"s3://{cfg.bucket}/{key}", workers)
            try:
                for case in bodies:
                    rows += measure_case(workload, case, endpoint, workers, sagemaker, handlers,
                                         InferenceContext(model_dir, {"Content-Type": case.content_type,
                                                                      "Accept": case.accept}), args)
            finally:
                sagemaker.delete(endpoint)
    finally:
        forget_code(model_dir)
    return rows


def measure_case(workload: str, case: Case, endpoint: str, workers: int, sagemaker: LocalSageMaker, handlers,
                 context, args) -> list[Row]:
    def in_process():
        return handlers.invoke(case.body, case.content_type, case.accept, context)

    def invoke():
        response = sagemaker.runtime.invoke_endpoint(EndpointName=endpoint, Body=case.body,
                                                     ContentType=case.content_type, Accept=case.accept)
        return response["Body"].read()

    rows = []
    for clients in args.concurrency:
        if clients == 1:
            direct, latencies = alternately(in_process, invoke, args.requests, args.warmup)
            wall = sum(latencies) / 1000
        else:
            direct, (latencies, wall) = None, concurrently(invoke, args.requests, clients, args.warmup)
        row = Row(workload, case.label, workers, clients, percentile(latencies, 50), percentile(latencies, 95),
                  args.requests / wall)
        if direct:
            row.in_process_p50_ms, row.in_process_p95_ms = percentile(direct, 50), percentile(direct, 95)
            row.ratio_p50 = row.p50_ms / row.in_process_p50_ms
            if row.in_process_p50_ms < GOAL_MIN_MS:
                row.goal = f"n/a (<{GOAL_MIN_MS:g} ms)"
            else:
                row.goal = "meets" if row.ratio_p50 <= GOAL_RATIO else "MISSES"
        rows.append(row)
    return rows


def print_rows(rows: list[Row]) -> None:
    print(f"{'workload':<16} {'request':<28} {'workers':>7} {'clients':>7} {'in-process p50':>14} {'p95':>8} "
          f"{'endpoint p50':>12} {'p95':>8} {'x p50':>6} {'req/s':>7}  goal (p50 <= {GOAL_RATIO:.2f}x, >= {GOAL_MIN_MS:g} ms)")
    for row in rows:
        direct = (f"{row.in_process_p50_ms:>14.1f} {row.in_process_p95_ms:>8.1f}" if row.in_process_p50_ms is not None
                  else f"{'':>14} {'':>8}")
        ratio = f"{row.ratio_p50:.3f}" if row.ratio_p50 is not None else ""
        print(f"{row.workload:<16} {row.case:<28} {row.workers:>7} {row.clients:>7} {direct} {row.p50_ms:>12.1f} "
              f"{row.p95_ms:>8.1f} {ratio:>6} {row.requests_per_s:>7.1f}  {row.goal}", flush=True)


def numbers(text: str) -> list[int]:
    values = [int(value) for value in text.split(",") if value.strip()]
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected whole numbers of at least 1 separated by commas, got {text!r}")
    return values


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workloads", default=",".join(TINY), help="comma-separated (default: all five)")
    parser.add_argument("--requests", type=int, default=20, help="timed requests per row")
    parser.add_argument("--warmup", type=int, default=2, help="untimed requests per client first")
    parser.add_argument("--concurrency", type=numbers, default=[1, 4], help="clients at once, e.g. 1,4")
    parser.add_argument("--workers", type=numbers, default=[1, 4], help=f"{WORKERS_ENV} values, e.g. 1,4")
    parser.add_argument("--threads", type=int, help="OMP_NUM_THREADS for both sides (default: torch's, one per core)")
    parser.add_argument("--wait-policy", default="PASSIVE", choices=["PASSIVE", "ACTIVE", "default"],
                        help="OMP_WAIT_POLICY for both sides (default PASSIVE; 'default': leave it unset)")
    parser.add_argument("--json", type=Path, help="also write every row to this file")
    args = parser.parse_args(argv)
    workloads = [name.strip() for name in args.workloads.split(",") if name.strip()]
    unknown = sorted(set(workloads) - set(TINY))
    if unknown:
        parser.error(f"unknown workloads {', '.join(unknown)}; known: {', '.join(TINY)}")
    if args.requests < 1:
        parser.error("--requests must be at least 1")

    # before torch loads; the model servers inherit both from the local SageMaker
    if args.threads:
        os.environ["OMP_NUM_THREADS"] = str(args.threads)
    if args.wait_policy == "default":
        os.environ.pop("OMP_WAIT_POLICY", None)
    else:
        os.environ["OMP_WAIT_POLICY"] = args.wait_policy
    import torch

    print(f"endpoint latency: {args.requests} requests per row after {args.warmup} warm-up per client; "
          f"{os.cpu_count()} CPUs, torch {torch.__version__} with {torch.get_num_threads()} threads, "
          f"OMP_WAIT_POLICY {os.environ.get('OMP_WAIT_POLICY', 'unset')}", flush=True)
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="endpoint-latency-") as tmp:
        sagemaker = LocalSageMaker(Path(tmp) / "emulator")
        try:
            for workload in workloads:
                started = time.perf_counter()
                workload_rows = benchmark_workload(workload, sagemaker, Path(tmp) / workload, args)
                print_rows(workload_rows)
                print(f"({workload}: {time.perf_counter() - started:.0f} s with training and deployments)\n", flush=True)
                rows += workload_rows
        finally:
            sagemaker.stop()
    if args.json:
        args.json.write_text(json.dumps([asdict(row) for row in rows], indent=1))
    print("ms; p95 by nearest rank; x p50: endpoint p50 / in-process p50, both timed in turn with one client; "
          "req/s: the endpoint's, with that many clients at once")
    return 0


if __name__ == "__main__":
    sys.exit(main())
