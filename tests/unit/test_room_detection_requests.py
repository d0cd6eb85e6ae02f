"""The room detection workload: both profiles load, and every request built from them passes SageMaker's model."""
from __future__ import annotations

import json

import pytest

from include.aws_shapes import validate_request
from include.pipelines import requests as rq
from include.pipelines.config import load_workload
from include.pipelines.images import inference_image_uri, training_image_uri
from include.pipelines.steps import plan_requests

REGION = "us-east-1"
SOURCE_URI = "s3://bucket/sagemaker-pipelines/room-detection/source/0123456789abcdef/sourcedir.tar.gz"
RUN_ID = "manual__2026-03-01T12:00:00+00:00"


@pytest.fixture(params=["local", "aws"])
def cfg(request):
    return load_workload("room_detection", request.param)


def settings_for(cfg) -> dict:
    return {"workload": "room_detection", "profile": cfg.profile, "region": REGION, "bucket": cfg.bucket,
            "prefix": cfg.s3_prefix, "role_arn": cfg.role_arn}


@pytest.fixture
def planned(cfg):
    return plan_requests(settings_for(cfg), source_uri=SOURCE_URI, channels=cfg.channel_uris(), run_id=RUN_ID)


def _standing(planned) -> dict:
    arn = "arn:aws:sagemaker:us-east-1:123456789012:model-package/room-detection/2"
    return rq.standing_version_requests(planned["promotion"]["standing"], version=2, model_package_arn=arn)


def test_every_request_of_a_run_passes_strict_validation(planned):
    validate_request("sagemaker", "CreateTrainingJob", planned["training"], strict=True)
    validate_request("sagemaker", "CreateModel", planned["model"], strict=True)
    validate_request("sagemaker", "CreateProcessingJob", planned["promotion"]["evaluation_request"], strict=True)
    standing = _standing(planned)
    validate_request("sagemaker", "CreateModel", standing["model"], strict=True)
    validate_request("sagemaker", "CreateEndpointConfig", standing["endpoint_config"], strict=True)
    assert standing["endpoint_name"] == "room-detection"


def test_a_serverless_standing_endpoint_updates_all_at_once(planned):
    # SageMaker allows only blue/green ALL_AT_ONCE for serverless variants; the alarms still roll it back
    routing = planned["promotion"]["standing"]["deployment_config"]["BlueGreenUpdatePolicy"]["TrafficRoutingConfiguration"]
    assert routing["Type"] == "ALL_AT_ONCE" and "CanarySize" not in routing
    assert [a["MetricName"] for a in planned["promotion"]["standing"]["alarms"]] == ["Invocation5XXErrors", "ModelLatency"]


def test_training_runs_train_py_on_the_whole_data_set(cfg, planned):
    training = planned["training"]
    [channel] = training["InputDataConfig"]
    assert channel["ChannelName"] == "train"
    assert channel["DataSource"]["S3DataSource"]["S3Uri"] == cfg.data_uri
    hp = training["HyperParameters"]
    assert hp["sagemaker_program"] == '"train.py"' and hp["sagemaker_submit_directory"] == json.dumps(SOURCE_URI)
    assert {k for k in hp if not k.startswith("sagemaker_")} == {
        "model-size", "pretrained", "epochs", "batch", "imgsz", "patience", "lr0", "optimizer", "workers", "seed"} | (
        {"nbs"} if cfg.profile == "local" else set())
    assert training["AlgorithmSpecification"]["MetricDefinitions"][0] == {"Name": "epoch", "Regex": r"\bepoch=([0-9]+)"}
    assert any(m["Name"] == cfg.evaluation.metric for m in training["AlgorithmSpecification"]["MetricDefinitions"])


def test_local_profile_is_small_offline_and_on_cpu():
    cfg = load_workload("room_detection", "local")
    request = plan_requests(settings_for(cfg), source_uri=SOURCE_URI, channels=cfg.channel_uris(), run_id=RUN_ID)["training"]
    assert request["ResourceConfig"] == {"InstanceType": "ml.m5.xlarge", "InstanceCount": 1, "VolumeSizeInGB": 30}
    assert request["AlgorithmSpecification"]["TrainingImage"].endswith("pytorch-training:2.5.1-cpu-py311")
    hp = request["HyperParameters"]
    assert hp["pretrained"] == "false" and hp["model-size"] == "n" and hp["imgsz"] == "128"  # built from yolov8n.yaml
    assert int(hp["epochs"]) <= 30
    assert "EnableManagedSpotTraining" not in request and "CheckpointConfig" not in request
    assert cfg.data.generator == "include.datasets.room_detection:generate"
    assert cfg.data.generator_kwargs["image_size"] == int(hp["imgsz"])
    assert cfg.evaluation.threshold > 0  # an untrained model scores 0


def test_aws_profile_carries_the_seed_settings():
    cfg = load_workload("room_detection", "aws")
    request = plan_requests(settings_for(cfg), source_uri=SOURCE_URI, channels=cfg.channel_uris(), run_id=RUN_ID)["training"]
    assert request["ResourceConfig"]["InstanceType"] == "ml.p3.2xlarge"
    assert request["AlgorithmSpecification"]["TrainingImage"] == (
        "763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-training:2.5.1-gpu-py311")
    hp = request["HyperParameters"]
    assert (hp["model-size"], hp["pretrained"], hp["epochs"], hp["batch"], hp["imgsz"]) == ('n', "true", "100", "16", "640")
    assert hp["lr0"] == "0.01" and hp["optimizer"] == "SGD" and hp["workers"] == "8" and "patience" in hp
    # spot with a max wait, and checkpoints per job so an interrupted job resumes where it stopped
    assert request["EnableManagedSpotTraining"] is True
    stopping = request["StoppingCondition"]
    assert stopping["MaxWaitTimeInSeconds"] >= stopping["MaxRuntimeInSeconds"]
    assert request["CheckpointConfig"] == {
        "S3Uri": f"s3://{cfg.bucket}/sagemaker-pipelines/room-detection/checkpoints/{request['TrainingJobName']}",
        "LocalPath": "/opt/ml/checkpoints"}
    assert cfg.data.source_uri.startswith("s3://") and cfg.data_uri == cfg.data.source_uri
    assert cfg.placeholder_settings() == ["role_arn", "bucket"]  # refused until the user sets them


def test_endpoint_is_serverless_on_the_cpu_inference_image(cfg, planned):
    [variant] = _standing(planned)["endpoint_config"]["ProductionVariants"]
    assert variant["ServerlessConfig"] == {"MemorySizeInMB": 4096, "MaxConcurrency": 5}
    assert "InstanceType" not in variant and "InitialInstanceCount" not in variant
    assert planned["model"]["PrimaryContainer"]["Image"] == (
        "763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-inference:2.5.1-cpu-py311")
    environment = planned["model"]["PrimaryContainer"]["Environment"]
    assert environment["SAGEMAKER_PROGRAM"] == "inference.py" and environment["SAGEMAKER_SUBMIT_DIRECTORY"] == "/opt/ml/model/code"
    assert planned["model"]["PrimaryContainer"]["ModelDataUrl"] == rq.model_artifact_uri(planned["training"])


def test_images_come_from_the_sdk_table(cfg):
    assert training_image_uri(cfg, "eu-west-1").startswith("763104351884.dkr.ecr.eu-west-1.amazonaws.com/pytorch-training:2.5.1-")
    assert inference_image_uri(cfg, "eu-west-1") == "763104351884.dkr.ecr.eu-west-1.amazonaws.com/pytorch-inference:2.5.1-cpu-py311"


def test_every_resource_carries_the_cost_tags(planned):
    expected = [{"Key": "cost-center", "Value": "ml-platform"}, {"Key": "project", "Value": "sagemaker-pipelines"},
                {"Key": "workload", "Value": "room_detection"}]
    for name in ("training", "model"):
        assert planned[name]["Tags"] == expected, name
    assert planned["promotion"]["evaluation_request"]["Tags"] == expected
    standing = _standing(planned)
    assert {t["Key"] for t in standing["endpoint_tags"]} == {"cost-center", "project", "workload", "endpoint-role"}
    assert {t["Key"] for t in standing["endpoint_config"]["Tags"]} >= {"cost-center", "model-package-version"}


def test_gate_reads_best_validation_map50(cfg):
    assert (cfg.evaluation.metric, cfg.evaluation.direction) == ("best:validation:mAP50", "maximize")
    assert 0 < cfg.evaluation.threshold < 1
