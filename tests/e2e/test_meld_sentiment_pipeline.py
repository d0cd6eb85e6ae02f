"""The MELD sentiment DAG, whole, in a real Airflow (scheduler, triggerer, tasks in parallel) against the local SageMaker.

The first run (no champion yet): real training on synthetic MELD clips (two of them damaged), TensorBoard
scalars, the challenger scored on the held-out dev utterances, registered as version 1 and approved, the
standing endpoint `meld-sentiment` created on it and answering utterances (clip as base64 and from S3),
refusing a broken clip with a 4xx while it keeps serving, a run report in S3. A second run trained too
weakly to learn is rejected, and the champion serves on untouched."""
from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest

from include.datasets.meld_sentiment import EMOTIONS, SENTIMENTS
from include.pipelines.config import load_workload
from tests.e2e.promotion_checks import (
    PROMOTION_TASKS,
    ROLLOUT_TASKS,
    SETUP_TASKS,
    assert_first_promotion,
    assert_rejected_at_the_gate,
    assert_report,
    assert_standing_endpoint_created,
    assert_tasks,
    final_metrics,
    serving_config,
    training_job,
)
from tests.source_modules import import_source
from tests.unit.test_meld_sentiment_media import read_event_file

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

DAG_ID = "meld_sentiment_pipeline"
SOURCE_DIR = Path(__file__).resolve().parents[2] / "training_src" / "meld_sentiment"
WORKLOAD = load_workload("meld_sentiment", "local")
ENDPOINT = WORKLOAD.promotion.endpoint_name
GROUP = WORKLOAD.registry.model_package_group
# one epoch at rates far too small to move the weights: training takes seconds and learns nothing
TOO_WEAK = {"epochs": 1, "hyperparameters": {"learning-rate": 1e-7, "encoder-learning-rate": 1e-7}}


@pytest.fixture(scope="module")
def run(airflow):
    """The first run, default settings: it finds no champion. Shared by the tests below."""
    return airflow.run(DAG_ID, timeout=1500)


@pytest.fixture(scope="module")
def weak(run, airflow):
    """A second run, after the first, with a challenger too weak to learn."""
    return airflow.run(DAG_ID, conf=TOO_WEAK, timeout=1500)


def _job_log(logs_client, job_name: str) -> str:
    events = logs_client.filter_log_events(logGroupName="/aws/sagemaker/TrainingJobs", logStreamNamePrefix=job_name)
    return "\n".join(e["message"] for e in events["events"])


def test_every_task_succeeds(run):
    assert run.succeeded, run.report()
    assert_tasks(run, {"success": (*SETUP_TASKS, *PROMOTION_TASKS, "approve_version", *ROLLOUT_TASKS, "run_report"),
                       "skipped": ("await_approval", "reject_version", "reject_failed_rollout")})


def test_training_really_ran_and_cleared_the_gate(run, sagemaker_client, s3_client):
    job = training_job(run, sagemaker_client)
    assert job["TrainingJobStatus"] == "Completed"
    assert [c["ChannelName"] for c in job["InputDataConfig"]] == ["train", "validation"]
    metrics = final_metrics(job)
    assert metrics["best:validation:emotion_weighted_f1"] >= WORKLOAD.evaluation.threshold, metrics  # always-"neutral" scores ~0.30
    assert 0 <= metrics["validation:sentiment_accuracy"] <= 1, metrics

    bucket, key = job["ModelArtifacts"]["S3ModelArtifacts"].removeprefix("s3://").split("/", 1)
    archive = s3_client.get_object(Bucket=bucket, Key=key)["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        names = set(tar.getnames())
        info = json.load(tar.extractfile("model_info.json"))
    assert {"model.pth", "model_info.json", "text_encoder/config.json", "text_encoder/tokenizer.json",
            "code/inference.py", "code/inference_errors.py", "code/model.py", "code/media.py", "code/requirements.txt"} <= names, names
    assert info["best_metric"]["value"] == pytest.approx(metrics["best:validation:emotion_weighted_f1"], abs=1e-4)
    assert info["emotions"] == list(EMOTIONS) and info["sentiments"] == list(SENTIMENTS)


def test_the_job_log_shows_parameters_class_weights_and_the_damaged_clips(run, sagemaker_client, logs_client):
    log = _job_log(logs_client, training_job(run, sagemaker_client)["TrainingJobName"])
    assert "trainable_parameters text_encoder=" in log and "class_weights (balanced) emotion: neutral=" in log
    assert "media train: clips=96 clips_without_audio=1 unreadable_clips=1" in log
    assert "no audio track; using a silent spectrogram" in log
    assert "using black frames and a silent spectrogram" in log


def test_tensorboard_scalars_reached_the_output_config_s_s3_path(run, sagemaker_client, s3_client, tmp_path):
    job = training_job(run, sagemaker_client)
    assert job["TensorBoardOutputConfig"]["LocalPath"] == "/opt/ml/output/tensorboard"
    # SageMaker uploads LocalPath to <S3OutputPath>/<job>/tensorboard-output/
    uri = f"{job['TensorBoardOutputConfig']['S3OutputPath'].rstrip('/')}/{job['TrainingJobName']}/tensorboard-output/"
    bucket, prefix = uri.removeprefix("s3://").split("/", 1)
    keys = [o["Key"] for o in s3_client.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])]
    [events_key] = [key for key in keys if key[len(prefix):].startswith("events.out.tfevents.")]
    events_file = tmp_path / events_key.rsplit("/", 1)[1]
    s3_client.download_file(bucket, events_key, str(events_file))
    records = read_event_file(import_source("tensorboard_events", SOURCE_DIR), events_file)
    per_epoch = [r for r in records if r["scalars"]]
    assert [r["step"] for r in per_epoch] == [1, 2, 3, 4]
    assert per_epoch[-1]["scalars"]["loss/train"] < per_epoch[0]["scalars"]["loss/train"]


def test_a_first_promotion_approves_version_1_and_creates_the_standing_endpoint(run, sagemaker_client, s3_client):
    assert_first_promotion(run, sagemaker_client, s3_client, GROUP)
    decision = run.xcom("decide")
    assert decision["metric"] == "weighted_f1" and decision["challenger"] >= WORKLOAD.promotion.threshold, decision
    assert_standing_endpoint_created(run, sagemaker_client, ENDPOINT)
    report = assert_report(run, s3_client, "promoted")
    assert report["endpoint"]["name"] == ENDPOINT and report["endpoint"]["config"] == f"{ENDPOINT}-v1", report
    # no endpoint of the run's own: the standing one is the workload's only endpoint
    endpoints = [e["EndpointName"] for e in sagemaker_client.list_endpoints()["Endpoints"]]
    assert [name for name in endpoints if name.startswith("meld-sentiment")] == [ENDPOINT], endpoints


def test_endpoint_answered_utterances_and_refused_a_broken_clip(run):
    smoke = run.xcom("smoke_test")
    assert [u["clip_by"] for u in smoke["utterances"]] == ["base64", "base64", "base64", "s3"]
    assert all(u["emotion"] in EMOTIONS and u["sentiment"] in SENTIMENTS for u in smoke["utterances"])
    assert smoke["bad_input"]["error"] == "ModelError" and smoke["bad_input"]["status"] == 400, smoke
    assert "is not a readable mp4 clip" in smoke["bad_input"]["message"], smoke
    assert smoke["served_after_bad_input"] is True


def test_a_challenger_too_weak_to_learn_is_rejected_and_the_champion_serves_on(weak, sagemaker_client, s3_client):
    assert weak.succeeded, weak.report()  # a rejection is a normal outcome, not a failure
    job = training_job(weak, sagemaker_client)
    assert job["HyperParameters"]["epochs"] == "1" and float(job["HyperParameters"]["learning-rate"]) == 1e-7
    metrics = final_metrics(job)
    assert metrics["best:validation:emotion_weighted_f1"] < WORKLOAD.evaluation.threshold, metrics
    # it is stopped at the gate, on the job's own validation metric: never evaluated, never registered
    assert_rejected_at_the_gate(weak, sagemaker_client, s3_client, GROUP, versions_before=1)
    assert_tasks(weak, {"skipped": ROLLOUT_TASKS})
    assert serving_config(sagemaker_client, ENDPOINT) == f"{ENDPOINT}-v1"
    from include.pipelines.promotion import latest_approved_version

    assert latest_approved_version(sagemaker_client, GROUP)["version"] == 1


def test_a_channel_of_unreadable_clips_fails_the_job_with_a_reason_naming_them(emulator, sagemaker_client, s3_client,
                                                                               tmp_path):
    """Not a DAG run: the job alone, on a data set where 3 of 14 training clips are broken (a bad upload)."""
    import time

    from include.datasets.meld_sentiment import generate
    from include.pipelines import packaging
    from include.pipelines.images import training_image_uri
    from include.pipelines.requests import build_training_request
    from tests.conftest import TEST_BUCKET, TEST_REGION

    cfg = load_workload("meld_sentiment", "local").with_overrides(bucket=TEST_BUCKET)
    data = generate(tmp_path / "data", train_utterances=14, validation_utterances=14, unreadable_clips=3)
    packaging.sync_directory(s3_client, data, TEST_BUCKET, "meld-broken/data")
    source_uri = packaging.upload_source(s3_client, TEST_BUCKET, "meld-broken", cfg.source_path)
    channels = {name: f"s3://{TEST_BUCKET}/meld-broken/data/{name}" for name in ("train", "validation")}
    request = build_training_request(cfg, job_name="meld-sentiment-broken-clips", image_uri=training_image_uri(cfg, TEST_REGION),
                                     source_uri=source_uri, channels=channels, hyperparameter_overrides={"epochs": 1})
    sagemaker_client.create_training_job(**request)
    deadline = time.monotonic() + 600
    while (job := sagemaker_client.describe_training_job(TrainingJobName="meld-sentiment-broken-clips"))[
            "TrainingJobStatus"] in ("InProgress", "Stopping") and time.monotonic() < deadline:
        time.sleep(3)
    assert job["TrainingJobStatus"] == "Failed", job
    reason = job["FailureReason"]
    assert "3 of 14 clips in the train channel cannot be read" in reason and "Check the upload" in reason, reason
    assert "dia" in reason.split("e.g.")[1], reason  # names the clips
