"""Acoustic shield: endpoint latency against calling the model directly, for 1 s and 5 s clips, side by side in one run.

    .venv/bin/python benchmarks/endpoint_latency_acoustic_shield.py [--requests 50]

By default it is self-contained and offline: it trains a small model with training_src/acoustic_shield/
train.py (offline-tiny, one epoch on synthetic clips, --max-audio-length 80000 so a 5 s clip is 5 s of
work), starts the local SageMaker on a free port of 127.0.0.1, deploys the model as the DAG does
(same request builders, Hugging Face inference image, code/inference.py), and tears it down at the end.
  --model-dir DIR        use an unpacked model.tar.gz instead of training one
  --endpoint-name NAME   measure an endpoint that already runs (real AWS with your credentials, or
                         another local SageMaker with --endpoint-url); needs --model-dir, the same model
Both sides get the same WAV bodies (16 kHz mono PCM, from include/datasets/acoustic_shield.py):
  direct:   input_fn -> predict_fn -> output_fn of code/inference.py in this process (the model's own work);
  endpoint: boto3 invoke_endpoint round trips (HTTP, SageMaker's front end, the model server, the same handlers).
Each side is warmed up, then timed request by request; it prints p50 and p95 in ms and endpoint/direct
ratios, with the CPU count and torch threads, since both sides share this machine's cores.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SOURCE_DIR = ROOT / "training_src" / "acoustic_shield"
SHARED_SOURCE_DIR = ROOT / "training_src" / "shared"
CLIP_SECONDS = (1.0, 5.0)
REGION = "us-east-1"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def train_small_model(work: Path) -> Path:
    """A real model from train.py: offline-tiny, one epoch, kept to 5 s clips."""
    from include.datasets.acoustic_shield import generate

    data = generate(work / "data", clips_per_class=4, validation_per_class=1, max_seconds=1.0)
    model_dir = work / "model"
    env = {**os.environ, "SM_MODEL_DIR": str(model_dir), "SM_OUTPUT_DATA_DIR": str(work / "output"), "SM_NUM_GPUS": "0",
           "SM_CHANNEL_TRAIN": str(data / "train"), "SM_CHANNEL_VALIDATION": str(data / "validation"),
           "PYTHONPATH": str(SHARED_SOURCE_DIR)}  # beside train.py in the container's sourcedir
    flags = ["--model-name-or-path", "offline-tiny", "--epochs", "1", "--max-audio-length", "80000",
             "--freeze-feature-encoder", "false", "--num-workers", "0", "--learning-rate", "0.003", "--warmup-steps", "1"]
    result = subprocess.run([sys.executable, "train.py", *flags], cwd=SOURCE_DIR, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"train.py failed:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}")
    return model_dir


def direct_handlers(model_dir: Path):
    """code/inference.py imported as the container imports it (code/ on sys.path), and its loaded model."""
    import importlib

    sys.path.insert(0, str(model_dir / "code"))
    inference = importlib.import_module("inference")
    return inference, inference.model_fn(str(model_dir))


def model_archive(model_dir: Path) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for path in sorted(model_dir.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                tar.add(path, arcname=path.relative_to(model_dir).as_posix())
    return buffer.getvalue()


def deploy_locally(model_dir: Path, state_dir: Path):
    """Start the local SageMaker and deploy the model as the DAG does; returns (server, runtime client, cleanup)."""
    import boto3

    from include.emulator.state import Settings
    from include.emulator.gateway import EmulatorServer
    from include.pipelines import requests as rq
    from include.pipelines.config import load_workload
    from include.pipelines.images import inference_image_uri

    server = EmulatorServer(Settings(port=0, state_dir=state_dir)).start()
    client = lambda service: boto3.client(service, endpoint_url=server.endpoint_url, region_name=REGION,  # noqa: E731
                                          aws_access_key_id="benchmark", aws_secret_access_key="benchmark")
    cfg = load_workload("acoustic_shield", "local")
    s3, sagemaker = client("s3"), client("sagemaker")
    s3.create_bucket(Bucket=cfg.bucket)
    key = f"{cfg.s3_prefix}/benchmark/model.tar.gz"
    s3.put_object(Bucket=cfg.bucket, Key=key, Body=model_archive(model_dir))
    names = {"model": "acoustic-shield-benchmark-model", "config": "acoustic-shield-benchmark-epc",
             "endpoint": "acoustic-shield-benchmark"}
    sagemaker.create_model(**rq.build_model_request(cfg, model_name=names["model"], image_uri=inference_image_uri(cfg, REGION),
                                                    model_data_url=f"s3://{cfg.bucket}/{key}"))
    sagemaker.create_endpoint_config(**rq.build_endpoint_config_request(cfg, config_name=names["config"], model_name=names["model"]))
    sagemaker.create_endpoint(**rq.build_endpoint_request(cfg, endpoint_name=names["endpoint"], config_name=names["config"]))
    sagemaker.get_waiter("endpoint_in_service").wait(EndpointName=names["endpoint"], WaiterConfig={"Delay": 2, "MaxAttempts": 150})

    def cleanup():
        sagemaker.delete_endpoint(EndpointName=names["endpoint"])
        server.stop()

    return names["endpoint"], client("sagemaker-runtime"), cleanup


def time_calls(call, body: bytes, requests: int, warmup: int) -> list[float]:
    for _ in range(warmup):
        call(body)
    timings = []
    for _ in range(requests):
        started = time.perf_counter()
        call(body)
        timings.append((time.perf_counter() - started) * 1000)
    return timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=50, help="timed requests per clip length and side")
    parser.add_argument("--warmup", type=int, default=3, help="untimed requests first, per clip length and side")
    parser.add_argument("--model-dir", type=Path, help="an unpacked model.tar.gz (default: train a small one)")
    parser.add_argument("--endpoint-name", help="measure this running endpoint instead of deploying one locally")
    parser.add_argument("--endpoint-url", help="with --endpoint-name: a local SageMaker's URL (default: real AWS)")
    args = parser.parse_args()
    if args.endpoint_name and not args.model_dir:
        parser.error("--endpoint-name needs --model-dir: the direct side must run the same model")

    from include.datasets.acoustic_shield import sample_clip

    with tempfile.TemporaryDirectory(prefix="acoustic-benchmark-") as tmp:
        work = Path(tmp)
        model_dir = args.model_dir or train_small_model(work)
        inference, model = direct_handlers(model_dir)
        if args.endpoint_name:
            import boto3

            endpoint_name, cleanup = args.endpoint_name, lambda: None
            runtime = boto3.client("sagemaker-runtime", endpoint_url=args.endpoint_url)
        else:
            endpoint_name, runtime, cleanup = deploy_locally(model_dir, work / "emulator")

        def direct(body: bytes):
            return inference.output_fn(inference.predict_fn(inference.input_fn(body, "audio/wav"), model), "application/json")

        def endpoint(body: bytes):
            response = runtime.invoke_endpoint(EndpointName=endpoint_name, Body=body, ContentType="audio/wav",
                                               Accept="application/json")
            return response["Body"].read()

        try:
            import torch

            print(f"acoustic shield latency: {args.requests} requests per row after {args.warmup} warm-up; "
                  f"{os.cpu_count()} CPUs, torch {torch.__version__} with {torch.get_num_threads()} threads; "
                  f"model max_audio_length {model.max_audio_length}; endpoint {endpoint_name}")
            print(f"{'clip':>5} {'side':<9} {'p50 ms':>9} {'p95 ms':>9}")
            for seconds in CLIP_SECONDS:
                body = sample_clip("TireSkid", seconds=seconds, sample_rate=16000)
                same = json.loads(direct(body))["label"] == json.loads(endpoint(body))["label"]
                rows = {"direct": time_calls(direct, body, args.requests, args.warmup),
                        "endpoint": time_calls(endpoint, body, args.requests, args.warmup)}
                for side, timings in rows.items():
                    print(f"{seconds:>4.0f}s {side:<9} {percentile(timings, 50):>9.1f} {percentile(timings, 95):>9.1f}")
                ratio50 = percentile(rows["endpoint"], 50) / percentile(rows["direct"], 50)
                ratio95 = percentile(rows["endpoint"], 95) / percentile(rows["direct"], 95)
                print(f"{seconds:>4.0f}s {'ratio':<9} {ratio50:>8.2f}x {ratio95:>8.2f}x"
                      f"   (endpoint / direct; same label both ways: {same})")
            print("p95 by nearest rank; a ratio above 1 is what HTTP, the front end and the model server add")
        finally:
            cleanup()


if __name__ == "__main__":
    main()
