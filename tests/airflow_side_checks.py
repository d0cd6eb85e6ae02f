"""Run inside a venv that holds only requirements.txt (tests/test_airflow_side_requirements.py builds it):
parse the DAGs and run the aws-profile tasks' logic, as an Airflow on MWAA, Astronomer or the official
image would, with no torch and no local SageMaker stack.

    python -m tests.airflow_side_checks REPORT.json [CHECK ...]   (S3: the local SageMaker at $AIRFLOW_SIDE_S3_ENDPOINT)

Each check's result, or its traceback, goes into REPORT.json under the check's name; the test asserts
on them. Without CHECK names, every check of the Airflow side runs; `local_profile_data`, for a venv
with requirements-synthetic-data.txt too, runs only when named.
"""
from __future__ import annotations

import dataclasses
import functools
import http.server
import importlib.util
import io
import json
import os
import sys
import tarfile
import tempfile
import threading
import traceback
import wave
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORKLOADS = tuple(sorted(path.stem for path in (ROOT / "include" / "workloads").glob("*.yaml")))
# what the Airflow side must never need (the training stack and the local SageMaker's), and what the
# before-stop check forbids at DAG parse time
ABSENT = ("torch", "torchvision", "transformers", "ultralytics", "h5py", "soundfile", "PIL", "s3fs", "moto",
          "imageio_ffmpeg", "sagemaker_training", "sagemaker_inference", "sagemaker.train")
HEAVY_AT_PARSE = ("torch", "transformers", "ultralytics", "sagemaker", "h5py", "s3fs", "torchvision")
TEST_BUCKET = "airflow-side-bucket"
TEST_ROLE_ARN = "arn:aws:iam::123456789012:role/SageMakerExecutionRole"
TEST_REGION = "us-east-1"
RUN_ID = "manual__2026-01-01T00:00:00+00:00"
CHECKS = {}  # the Airflow side's, run by default
LOCAL_PROFILE_CHECKS = {}  # an Airflow that runs the local profile: requirements-synthetic-data.txt


def check(function):
    CHECKS[function.__name__] = function
    return function


def local_profile_check(function):
    LOCAL_PROFILE_CHECKS[function.__name__] = function
    return function


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # a dotted name whose parent is missing
        return False


def _settings(workload: str) -> dict:
    from include.pipelines.config import load_workload

    cfg = load_workload(workload, "aws")
    return {"workload": workload, "profile": "aws", "region": TEST_REGION, "bucket": TEST_BUCKET,
            "prefix": cfg.s3_prefix, "role_arn": TEST_ROLE_ARN}


def _finished_training(job: str, model_data: str, metrics: dict[str, float]) -> dict:
    return {"TrainingJobName": job, "ModelArtifacts": {"S3ModelArtifacts": model_data},
            "FinalMetricDataList": [{"MetricName": name, "Value": value} for name, value in metrics.items()]}


@functools.lru_cache(maxsize=1)
def _s3():
    from include.pipelines.steps import _aws_hook, ensure_bucket

    client = _aws_hook("aws_default", "s3").get_conn()
    ensure_bucket(client, TEST_BUCKET, TEST_REGION)
    return client


@check
def dags() -> dict:
    """Every DAG file through Airflow's DagBag, as the dag-processor parses it."""
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(ROOT / "dags"))
    by_file: dict[str, list[str]] = {}
    for dag in bag.dags.values():
        by_file.setdefault(Path(dag.fileloc).name, []).append(dag.dag_id)
    return {"import_errors": {Path(f).name: str(e) for f, e in bag.import_errors.items()},
            "dag_ids_by_file": {name: sorted(ids) for name, ids in sorted(by_file.items())},
            "files": sorted(p.name for p in (ROOT / "dags").glob("*.py")),
            "heavy_modules_loaded": sorted(m for m in HEAVY_AT_PARSE if m in sys.modules)}


@check
def environment() -> dict:
    """Which of the packages the Airflow side must not need are importable (after `dags`: find_spec imports parents)."""
    return {"importable": sorted(m for m in ABSENT if _importable(m)),
            "numpy": _importable("numpy"), "sagemaker.core": _importable("sagemaker.core")}


@check
def plans() -> dict:
    """plan_requests for every workload's aws profile (and each preset): every request built and validated."""
    from include.pipelines.config import load_workload
    from include.pipelines.steps import plan_requests

    planned = {}
    for workload in WORKLOADS:
        cfg = load_workload(workload, "aws").with_overrides(bucket=TEST_BUCKET)
        source_uri = f"s3://{TEST_BUCKET}/{cfg.s3_prefix}/source/0123456789abcdef/sourcedir.tar.gz"
        for preset in (None, *cfg.presets):
            plan = plan_requests(_settings(workload), source_uri=source_uri, channels=cfg.channel_uris(),
                                 run_id=RUN_ID, preset=preset)
            planned[workload if preset is None else f"{workload}:{preset}"] = {
                "requests": sorted(plan),
                "training_image": plan["training"]["AlgorithmSpecification"]["TrainingImage"],
                "instance_type": plan["training"]["ResourceConfig"]["InstanceType"],
                "has_endpoint": cfg.endpoint is not None, "has_tuning": cfg.tuning is not None,
                "has_transform": bool(cfg.transform and cfg.transform.input)}
    return planned


@check
def promotions() -> dict:
    """Each workload's planned promotion: the evaluation job, the version's request, the standing endpoint's
    requests for version 1, the batch model of a version, and the decision on each side of its threshold."""
    from include.pipelines.config import load_workload
    from include.pipelines.promotion import decide
    from include.pipelines.requests import package_model_request, standing_version_requests
    from include.pipelines.steps import plan_requests

    results = {}
    for workload in WORKLOADS:
        cfg = load_workload(workload, "aws").with_overrides(bucket=TEST_BUCKET)
        source_uri = f"s3://{TEST_BUCKET}/{cfg.s3_prefix}/source/0123456789abcdef/sourcedir.tar.gz"
        plan = plan_requests(_settings(workload), source_uri=source_uri, channels=cfg.channel_uris(), run_id=RUN_ID)
        promotion = plan["promotion"]
        arn = f"arn:aws:sagemaker:{TEST_REGION}:123456789012:model-package/{promotion['model_package_group']}/1"
        policy = promotion["policy"]
        better, worse = (0.01, -0.01) if policy["direction"] == "maximize" else (-0.01, 0.01)
        standing = promotion["standing"] and standing_version_requests(promotion["standing"], version=1,
                                                                       model_package_arn=arn)
        results[workload] = {
            "group": promotion["model_package_group"],
            "evaluation_job": promotion["evaluation_request"]["ProcessingJobName"],
            "version_status": promotion["model_package"]["ModelApprovalStatus"],
            "decisions": [decide(policy, policy["threshold"] + delta, None).promote for delta in (better, worse)],
            "standing_config": standing and standing["endpoint_config_name"],
            "batch_model": "batch_model" in plan and package_model_request(plan["batch_model"], arn)["ModelName"],
        }
    return results


@check
def gates() -> dict:
    """evaluate_gate on a metric just on each side of every workload's aws threshold, as the run plans it."""
    import dataclasses

    from include.pipelines.config import load_workload
    from include.pipelines.steps import evaluate_gate

    results = {}
    for workload in WORKLOADS:
        gate = load_workload(workload, "aws").evaluation
        better, worse = (0.01, -0.01) if gate.direction == "maximize" else (-0.01, 0.01)
        results[workload] = [
            evaluate_gate(_finished_training("job", "s3://b/m.tar.gz", {gate.metric: gate.threshold + delta}),
                          dataclasses.asdict(gate))
            for delta in (better, worse)]
    return results


@check
def source_packages() -> dict:
    """Each workload's sourcedir.tar.gz twice (the same bytes), then uploaded once under its content hash."""
    from include.pipelines import packaging
    from include.pipelines.config import load_workload

    result = {}
    for workload in WORKLOADS:
        cfg = load_workload(workload, "aws")
        first, second = (packaging.package_source(cfg.source_path, packaging.SHARED_SOURCE_DIR) for _ in range(2))
        with tarfile.open(fileobj=io.BytesIO(first)) as archive:
            members = archive.getnames()
        uris = [packaging.upload_source(_s3(), TEST_BUCKET, cfg.s3_prefix, cfg.source_path) for _ in range(2)]
        result[workload] = {"reproducible": first == second, "has_train_py": "train.py" in members,
                            "uploads": uris}
    return result


@check
def resolve_and_upload_source() -> dict:
    """The first two tasks of a run as Airflow runs them: settings from the connection and Variables, then the source."""
    from include.pipelines.steps import resolve_settings, upload_source

    settings = resolve_settings("cifar10", requested_profile="aws")
    return {"settings": settings, "source_uri": upload_source(settings)}


def _serve(directory: Path):
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@check
def cifar10_data_and_batch_transform() -> dict:
    """CIFAR-10 on AWS: the published archive (served here from 127.0.0.1) synced to S3, then the batch
    transform's input written from its test_batch and a transform's output scored, all without torch."""
    from include.datasets.cifar10 import generate
    from include.pipelines.config import load_workload
    from include.pipelines.data import upload_training_data
    from include.pipelines.steps import check_cifar10_batch_output, prepare_cifar10_batch_input

    settings = _settings("cifar10")
    cfg = load_workload("cifar10", "aws").with_overrides(bucket=TEST_BUCKET)
    with tempfile.TemporaryDirectory() as tmp:
        site = Path(tmp) / "site"
        generate(Path(tmp) / "cifar-10-batches-py", train_per_class=2, test_per_class=2)
        site.mkdir()
        with tarfile.open(site / "cifar-10-python.tar.gz", "w:gz") as archive:
            archive.add(Path(tmp) / "cifar-10-batches-py", arcname="cifar-10-batches-py")
        server = _serve(site)
        try:
            url = f"http://127.0.0.1:{server.server_address[1]}/cifar-10-python.tar.gz"
            synced = upload_training_data(_s3(), dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, source_uri=url)),
                                          Path(tmp) / "work")
        finally:
            server.shutdown()
    written = prepare_cifar10_batch_input(settings)
    lines = _s3().get_object(Bucket=TEST_BUCKET, Key=written["input"].removeprefix(f"s3://{TEST_BUCKET}/"))["Body"].read()
    first = json.loads(lines.splitlines()[0])
    output = f"s3://{TEST_BUCKET}/transform-output/cifar10-transform-abc"
    answers = "\n".join(json.dumps({"predicted_index": 0}) for _ in range(written["records"]))
    _s3().put_object(Bucket=TEST_BUCKET, Key=f"{output.removeprefix(f's3://{TEST_BUCKET}/')}/test_batch.jsonl.out",
                     Body=answers.encode())
    scores = check_cifar10_batch_output(settings, {"TransformJobName": "cifar10-transform-abc",
                                                   "TransformOutput": {"S3OutputPath": output}})
    return {"uploaded": synced["uploaded"], "channels": synced["channels"], "records": written["records"],
            "image_shape": [len(first), len(first[0]), len(first[0][0])], "scores": scores}


@check
def synthetic_data_refused_on_aws() -> dict:
    """A workload whose aws profile named the local generator fails with what to do instead."""
    from include.pipelines.config import load_workload
    from include.pipelines.data import upload_training_data

    messages = {}
    for workload in WORKLOADS:
        local, aws = load_workload(workload, "local"), load_workload(workload, "aws").with_overrides(bucket=TEST_BUCKET)
        misconfigured = dataclasses.replace(aws, data=local.data)
        with tempfile.TemporaryDirectory() as tmp:
            try:
                upload_training_data(_s3(), misconfigured, Path(tmp))
            except Exception as error:  # noqa: BLE001 - the type and message are what the test checks
                messages[workload] = f"{type(error).__name__}: {error}"
            else:
                messages[workload] = "no error"
    return messages


@check
def smoke_request_bodies() -> dict:
    """The bodies the smoke tests send, built here: PNG and WAV with no imaging or audio library."""
    from include.datasets.acoustic_shield import sample_clip
    from include.datasets.cifar10 import sample_images
    from include.datasets.room_detection import sample_plans
    from include.pipelines.smoke import png_bytes
    from include.pipelines.smoke import meld_sentiment, room_detection

    label, image = sample_images(1)[0]
    with wave.open(io.BytesIO(sample_clip("TireSkid", seconds=0.5, sample_rate=44100, channels=2))) as clip:
        wav = [clip.getframerate(), clip.getnchannels(), clip.getsampwidth(), clip.getnframes()]
    result = {"cifar10_png": png_bytes(image)[:8].hex(), "room_png": png_bytes(sample_plans(1, size=256)[0].image)[:8].hex(),
              "acoustic_wav": wav}
    for name, call in (("room_jpeg", lambda: room_detection.jpeg_bytes(image)),
                       ("meld_clips", lambda: meld_sentiment.smoke_test("no-endpoint"))):
        try:
            call()
            result[name] = "no error"
        except Exception as error:  # noqa: BLE001
            result[name] = f"{type(error).__name__}: {error}"
    return result


@local_profile_check
def local_profile_data() -> dict:
    """Every workload's synthetic data set written as the local profile's upload_data task writes it, and
    the smoke-test bodies that need an encoder, with requirements-synthetic-data.txt and still no torch."""
    from include.datasets.meld_sentiment import sample_clips
    from include.datasets.room_detection import sample_plans
    from include.pipelines.config import load_workload
    from include.pipelines.data import generate_locally
    from include.pipelines.smoke.room_detection import jpeg_bytes

    files = {}
    for workload in WORKLOADS:
        with tempfile.TemporaryDirectory() as tmp:
            written = generate_locally(load_workload(workload, "local"), Path(tmp) / "data")
            files[workload] = sum(1 for path in written.rglob("*") if path.is_file())
    return {"files": files, "jpeg": jpeg_bytes(sample_plans(1)[0].image)[:3].hex(),
            "mp4_clips": [clip["clip"][4:8].decode() for clip in sample_clips(2)],
            "heavy_modules_loaded": sorted(m for m in ("torch", "torchvision", "transformers", "ultralytics")
                                           if m in sys.modules)}


def main(report_path: str, *names: str) -> None:
    os.environ.setdefault("AIRFLOW_CONN_AWS_DEFAULT", json.dumps({
        "conn_type": "aws", "login": "testing", "password": "testing",
        "extra": {"region_name": TEST_REGION, "endpoint_url": os.environ["AIRFLOW_SIDE_S3_ENDPOINT"]}}))
    os.environ.setdefault("AIRFLOW_VAR_SAGEMAKER_BUCKET", TEST_BUCKET)
    os.environ.setdefault("AIRFLOW_VAR_SAGEMAKER_ROLE_ARN", TEST_ROLE_ARN)
    report = {}
    chosen = {name: {**CHECKS, **LOCAL_PROFILE_CHECKS}[name] for name in names} if names else CHECKS
    for name, function in chosen.items():
        try:
            report[name] = {"result": function()}
        except Exception:  # noqa: BLE001 - reported per check, so one failure does not hide the others
            report[name] = {"error": traceback.format_exc()}
    Path(report_path).write_text(json.dumps(report, indent=2, default=str))


if __name__ == "__main__":
    main(*sys.argv[1:])
