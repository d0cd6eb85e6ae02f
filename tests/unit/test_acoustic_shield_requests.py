"""The acoustic shield workload file and the SageMaker requests built from it, for both profiles."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from include.aws_shapes import validate_request
from include.pipelines import requests as rq
from include.pipelines.config import load_workload
from include.pipelines.images import inference_image_uri, training_image_uri
from include.pipelines.steps import plan_requests
from tests.source_modules import import_source

SOURCE_DIR = Path(__file__).resolve().parents[2] / "training_src" / "acoustic_shield"
REGION = "us-east-1"
SOURCE_URI = "s3://bucket/sagemaker-pipelines/acoustic_shield/source/0123456789abcdef/sourcedir.tar.gz"


def _settings(cfg) -> dict:
    return {"workload": "acoustic_shield", "profile": cfg.profile, "region": REGION, "bucket": "my-bucket",
            "prefix": cfg.s3_prefix, "role_arn": "arn:aws:iam::111122223333:role/SageMakerExecutionRole"}


@pytest.fixture(params=["local", "aws"])
def cfg(request):
    return load_workload("acoustic_shield", request.param)


@pytest.fixture
def planned(cfg):
    return plan_requests(_settings(cfg), source_uri=SOURCE_URI, channels=cfg.channel_uris(), run_id="manual__2026-01-01")


def _standing(planned) -> dict:
    arn = "arn:aws:sagemaker:us-east-1:123456789012:model-package/acoustic-shield/3"
    return rq.standing_version_requests(planned["promotion"]["standing"], version=3, model_package_arn=arn)


def test_every_request_of_a_run_passes_strict_validation(planned):
    for operation, key in (("CreateTrainingJob", "training"), ("CreateModel", "model")):
        validate_request("sagemaker", operation, planned[key], strict=True)
    validate_request("sagemaker", "CreateProcessingJob", planned["promotion"]["evaluation_request"], strict=True)
    standing = _standing(planned)
    validate_request("sagemaker", "CreateModel", standing["model"], strict=True)
    validate_request("sagemaker", "CreateEndpointConfig", standing["endpoint_config"], strict=True)
    assert standing["endpoint_name"] == "acoustic-shield" and standing["endpoint_config_name"] == "acoustic-shield-v3"


def test_hugging_face_images_gpu_for_training_cpu_for_the_endpoint(cfg):
    training = training_image_uri(cfg, REGION)
    inference = inference_image_uri(cfg, REGION)
    assert "/huggingface-pytorch-training:2.3.0-transformers4.48.0-gpu-py311" in training
    assert "/huggingface-pytorch-inference:2.3.0-transformers4.48.0-cpu-py311" in inference


def test_aws_profile_carries_the_seed_settings():
    cfg = load_workload("acoustic_shield", "aws")
    assert cfg.training.instance_type == "ml.g4dn.xlarge"
    assert cfg.endpoint.instance_type == "ml.m5.xlarge" and cfg.endpoint.serverless is None
    hp = cfg.training.hyperparameters
    assert (hp["epochs"], hp["learning-rate"], hp["batch-size"], hp["warmup-steps"], hp["max-audio-length"]) == (
        4, 3e-5, 8, 500, 80000)
    assert hp["model-name-or-path"] == "facebook/wav2vec2-base"
    assert cfg.evaluation.metric == "best:validation:macro_f1"


def test_local_profile_builds_a_small_model_offline():
    cfg = load_workload("acoustic_shield", "local")
    hp = cfg.training.hyperparameters
    assert hp["model-name-or-path"] == "offline-tiny" and hp["freeze-feature-encoder"] is False
    assert cfg.data.generator == "include.datasets.acoustic_shield:generate"
    assert set(cfg.data.channels) == {"train", "validation"}


def test_training_request_shape(cfg, planned):
    request = planned["training"]
    assert request["ResourceConfig"]["InstanceType"] == "ml.g4dn.xlarge"
    assert {c["ChannelName"]: c["DataSource"]["S3DataSource"]["S3Uri"] for c in request["InputDataConfig"]} == cfg.channel_uris()
    assert request["HyperParameters"]["sagemaker_program"] == '"train.py"'
    assert "EnableManagedSpotTraining" not in request
    assert planned["model"]["PrimaryContainer"]["Environment"]["SAGEMAKER_PROGRAM"] == "inference.py"
    standing = _standing(planned)
    variant = standing["endpoint_config"]["ProductionVariants"][0]
    assert (variant["InstanceType"], variant["VariantName"]) == ("ml.m5.xlarge", "AllTraffic")
    # a standing endpoint has no expiry: the janitor never removes it
    tags = {t["Key"]: t["Value"] for t in standing["endpoint_tags"]}
    assert tags["endpoint-role"] == "standing" and rq.EXPIRY_TAG not in tags and {"workload", "project"} <= set(tags)


def test_the_script_accepts_what_the_toolkit_passes(cfg, planned, tmp_path, monkeypatch):
    """Decode the hyperparameters with sagemaker-training's own code, then parse them with train.py."""
    from sagemaker_training import environment, mapping, params

    hyperparameters_file = tmp_path / "hyperparameters.json"
    hyperparameters_file.write_text(json.dumps(planned["training"]["HyperParameters"]))
    monkeypatch.setattr(environment, "hyperparameters_file_dir", str(hyperparameters_file))
    split = mapping.split_by_criteria(environment.read_hyperparameters(), keys=params.SAGEMAKER_HYPERPARAMETERS,
                                      prefix=params.SAGEMAKER_PREFIX)
    train = import_source("train", SOURCE_DIR)
    hp, _ = train.parse_args(mapping.to_cmd_args(split.excluded))
    train.validate(hp)
    wanted = cfg.training.hyperparameters
    assert hp.epochs == wanted["epochs"] and hp.learning_rate == pytest.approx(wanted["learning-rate"])
    assert hp.model_name_or_path == wanted["model-name-or-path"]
    assert hp.freeze_feature_encoder is wanted["freeze-feature-encoder"]
    assert hp.max_audio_length == wanted["max-audio-length"]


