"""The MELD workload's SageMaker requests for both profiles: strict botocore validation, the seed's AWS
settings (ml.p3.2xlarge, pretrained encoders, TensorBoard output), the local profile's small CPU run."""
from __future__ import annotations

import json

import pytest

from include.aws_shapes import validate_request
from include.pipelines import requests as rq
from include.pipelines.config import ConfigError, load_workload
from include.pipelines.images import inference_image_uri, training_image_uri

REGION = "us-east-1"
SOURCE_URI = "s3://bucket/sagemaker-pipelines/meld_sentiment/source/0123456789abcdef/sourcedir.tar.gz"
JOB = "meld-sentiment-train-3f9a1c2b7d"


def _configured(profile: str):
    cfg = load_workload("meld_sentiment", profile)
    # the aws profile's role and bucket are placeholders until the Airflow Variables set them
    return cfg.with_overrides(role_arn="arn:aws:iam::111122223333:role/SageMakerExecutionRole", bucket="ml-team-bucket")


def _requests(cfg) -> dict:
    training = rq.build_training_request(cfg, job_name=JOB, image_uri=training_image_uri(cfg, REGION),
                                         source_uri=SOURCE_URI, channels=cfg.channel_uris())
    model = rq.build_model_request(cfg, model_name="meld-model-1", image_uri=inference_image_uri(cfg, REGION),
                                   model_data_url=rq.model_artifact_uri(training))
    config = rq.build_endpoint_config_request(cfg, config_name="meld-epc-1", model_name="meld-model-1")
    endpoint = rq.build_endpoint_request(cfg, endpoint_name="meld-endpoint-1", config_name="meld-epc-1")
    return {"CreateTrainingJob": training, "CreateModel": model, "CreateEndpointConfig": config, "CreateEndpoint": endpoint}


@pytest.mark.parametrize("profile", ["local", "aws"])
def test_every_request_passes_strict_validation(profile):
    for operation, request in _requests(_configured(profile)).items():
        validate_request("sagemaker", operation, request, strict=True)


@pytest.mark.parametrize("profile", ["local", "aws"])
def test_both_channels_and_tensorboard_output_per_job(profile):
    cfg = _configured(profile)
    training = _requests(cfg)["CreateTrainingJob"]
    assert [c["ChannelName"] for c in training["InputDataConfig"]] == ["train", "validation"]
    assert training["TensorBoardOutputConfig"] == {
        "S3OutputPath": "s3://ml-team-bucket/sagemaker-pipelines/meld_sentiment/tensorboard",  # SageMaker appends <job>/tensorboard-output/
        "LocalPath": "/opt/ml/output/tensorboard"}
    assert training["HyperParameters"]["class-weights"] == "balanced"
    assert training["AlgorithmSpecification"]["MetricDefinitions"][-1]["Name"] == "best:validation:emotion_weighted_f1"
    assert cfg.evaluation.metric == "best:validation:emotion_weighted_f1" and cfg.evaluation.direction == "maximize"


def test_aws_profile_carries_the_seed_s_settings():
    cfg = _configured("aws")
    requests = _requests(cfg)
    training = requests["CreateTrainingJob"]
    assert training["ResourceConfig"] == {"InstanceType": "ml.p3.2xlarge", "InstanceCount": 1, "VolumeSizeInGB": 50}
    assert training["AlgorithmSpecification"]["TrainingImage"].endswith("/pytorch-training:2.6.0-gpu-py312")
    hp = training["HyperParameters"]
    assert (hp["text-model"], hp["freeze-text-encoder"], hp["video-backbone"], hp["video-pretrained"]) == (
        "bert-base-uncased", "true", "r3d_18", "true")
    assert (hp["epochs"], hp["batch-size"], hp["num-frames"], hp["frame-size"]) == ("20", "16", "16", "112")
    assert json.loads(hp["sagemaker_program"]) == "train.py"
    assert [c["DataSource"]["S3DataSource"]["S3Uri"] for c in training["InputDataConfig"]] == [
        "s3://replace-me-sagemaker-bucket/datasets/meld/train", "s3://replace-me-sagemaker-bucket/datasets/meld/dev"]
    assert "Environment" not in training  # the GPU instance keeps torch's own threading
    variant = requests["CreateEndpointConfig"]["ProductionVariants"][0]
    assert variant["InstanceType"] == "ml.g4dn.xlarge"
    assert requests["CreateModel"]["PrimaryContainer"]["Image"].endswith("/pytorch-inference:2.6.0-gpu-py312")
    assert cfg.evaluation.threshold == 0.5


def test_local_profile_trains_small_encoders_from_scratch_on_the_cpu():
    cfg = _configured("local")
    training = _requests(cfg)["CreateTrainingJob"]
    assert training["ResourceConfig"]["InstanceType"] == "ml.m5.xlarge"
    assert training["AlgorithmSpecification"]["TrainingImage"].endswith("/pytorch-training:2.6.0-cpu-py312")
    hp = training["HyperParameters"]
    assert (hp["text-model"], hp["freeze-text-encoder"], hp["video-backbone"], hp["video-pretrained"]) == (
        "scratch", "false", "conv3d", "false")
    assert int(hp["epochs"]) <= 4 and training["Environment"] == {"OMP_NUM_THREADS": "1"}
    assert cfg.data.generator == "include.datasets.meld_sentiment:generate"
    assert cfg.data.generator_kwargs["clips_without_audio"] == cfg.data.generator_kwargs["unreadable_clips"] == 1


def test_aws_profile_refuses_its_placeholders():
    with pytest.raises(ConfigError, match="role_arn, bucket: still a placeholder"):
        load_workload("meld_sentiment", "aws").require_real_settings()
