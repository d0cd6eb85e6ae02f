"""Request builders: strict botocore validation for both profiles, the SDK's encodings, spot, tags;
images from the SDK's offline table; the evaluation gate."""
from __future__ import annotations

import dataclasses
import json
from datetime import datetime, timezone

import pytest

from include.aws_shapes import RequestValidationError, validate_request
from include.pipelines import requests as rq
from include.pipelines.config import ServerlessConfig, TransformConfig, load_workload
from include.pipelines.evaluation import MetricNotFound, final_metric, passes_gate
from include.pipelines.steps import evaluate_gate
from include.pipelines.images import inference_image_uri, training_image_uri

PROFILES = ["local", "aws"]
REGION = "us-east-1"
TRAIN_IMAGE = "763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-training:2.5.1-cpu-py311"
INFER_IMAGE = "763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-inference:2.5.1-cpu-py311"
SOURCE_URI = "s3://bucket/sagemaker-pipelines/cifar10/source/0123456789abcdef/sourcedir.tar.gz"
JOB = "cifar10-train-3f9a1c2b7d"


def _training(cfg, **kwargs):
    return rq.build_training_request(cfg, job_name=JOB, image_uri=TRAIN_IMAGE, source_uri=SOURCE_URI,
                                     channels=cfg.channel_uris(), **kwargs)


@pytest.fixture(params=PROFILES)
def cfg(request):
    return load_workload("cifar10", request.param)


def test_every_builder_passes_strict_validation(cfg):
    training = _training(cfg)
    validate_request("sagemaker", "CreateTrainingJob", training, strict=True)
    tuning = rq.build_tuning_request(cfg, tuning_job_name="cifar10-tune-3f9a1c2b7d", image_uri=TRAIN_IMAGE,
                                     source_uri=SOURCE_URI, channels=cfg.channel_uris())
    validate_request("sagemaker", "CreateHyperParameterTuningJob", tuning, strict=True)
    model = rq.build_model_request(cfg, model_name="cifar10-model-1", image_uri=INFER_IMAGE,
                                   model_data_url=rq.model_artifact_uri(training))
    validate_request("sagemaker", "CreateModel", model, strict=True)
    config = rq.build_endpoint_config_request(cfg, config_name="cifar10-epc-1", model_name="cifar10-model-1")
    validate_request("sagemaker", "CreateEndpointConfig", config, strict=True)
    endpoint = rq.build_endpoint_request(cfg, endpoint_name="cifar10-endpoint-1", config_name="cifar10-epc-1")
    validate_request("sagemaker", "CreateEndpoint", endpoint, strict=True)


def test_training_request_shape(cfg):
    request = _training(cfg)
    assert request["TrainingJobName"] == JOB
    assert request["AlgorithmSpecification"]["TrainingImage"] == TRAIN_IMAGE
    assert request["AlgorithmSpecification"]["MetricDefinitions"] == [
        {"Name": m.name, "Regex": m.regex} for m in cfg.training.metric_definitions]
    assert request["RoleArn"] == cfg.role_arn
    assert request["ResourceConfig"] == {"InstanceType": cfg.training.instance_type, "InstanceCount": 2, "VolumeSizeInGB": 30}
    assert request["HyperParameters"]["sagemaker_torch_distributed_enabled"] == "true"
    assert request["OutputDataConfig"] == {"S3OutputPath": f"s3://{cfg.bucket}/sagemaker-pipelines/cifar10/training-output"}
    [channel] = request["InputDataConfig"]
    assert channel["ChannelName"] == "train"
    assert channel["DataSource"]["S3DataSource"]["S3Uri"] == cfg.channel_uris()["train"]
    assert request["StoppingCondition"]["MaxRuntimeInSeconds"] == cfg.training.max_runtime_seconds
    assert rq.model_artifact_uri(request) == (
        f"s3://{cfg.bucket}/sagemaker-pipelines/cifar10/training-output/{JOB}/output/model.tar.gz")


def test_hyperparameters_are_strings_encoded_as_the_sdk_does():
    cfg = load_workload("cifar10", "local")
    hp = _training(cfg)["HyperParameters"]
    assert all(isinstance(v, str) for v in hp.values())
    assert hp["epochs"] == "2" and hp["batch-size"] == "16" and hp["learning-rate"] == "0.1"
    assert hp["augment"] == "true"
    assert hp["sagemaker_program"] == json.dumps("train.py") == '"train.py"'
    assert hp["sagemaker_submit_directory"] == json.dumps(SOURCE_URI)
    assert hp["sagemaker_region"] == '"us-east-1"'
    assert hp["sagemaker_container_log_level"] == "20"
    assert hp["sagemaker_job_name"] == json.dumps(JOB)


def test_the_training_toolkit_turns_them_into_the_expected_flags(tmp_path, monkeypatch):
    """Decode with sagemaker-training's own code, as the job's container will."""
    from sagemaker_training import environment, mapping, params

    cfg = load_workload("cifar10", "local")
    hyperparameters_file = tmp_path / "hyperparameters.json"
    hyperparameters_file.write_text(json.dumps(_training(cfg, hyperparameter_overrides={"epochs": 3})["HyperParameters"]))
    monkeypatch.setattr(environment, "hyperparameters_file_dir", str(hyperparameters_file))
    decoded = environment.read_hyperparameters()
    split = mapping.split_by_criteria(decoded, keys=params.SAGEMAKER_HYPERPARAMETERS, prefix=params.SAGEMAKER_PREFIX)
    assert split.included["sagemaker_program"] == "train.py"
    assert split.included["sagemaker_submit_directory"] == SOURCE_URI
    args = mapping.to_cmd_args(split.excluded)
    flags = dict(zip(args[::2], args[1::2]))
    assert flags == {"--augment": "True", "--batch-size": "16", "--epochs": "3", "--learning-rate": "0.1",
                     "--momentum": "0.9", "--num-workers": "0", "--seed": "42", "--weight-decay": "0.0005"}


def test_overrides_cannot_set_the_toolkit_parameters():
    cfg = load_workload("cifar10", "local")
    with pytest.raises(ValueError, match="sagemaker_program"):
        _training(cfg, hyperparameter_overrides={"sagemaker_program": "evil.py"})


def test_spot_fields_only_when_configured():
    cfg = load_workload("cifar10", "local")
    on_demand = dataclasses.replace(cfg, training=dataclasses.replace(
        cfg.training, use_spot=False, max_wait_seconds=None, checkpoint_s3_prefix=None))
    local = _training(on_demand)
    assert "EnableManagedSpotTraining" not in local and "CheckpointConfig" not in local
    assert "MaxWaitTimeInSeconds" not in local["StoppingCondition"]

    aws_cfg = load_workload("cifar10", "aws")
    aws = _training(aws_cfg)
    assert aws["EnableManagedSpotTraining"] is True
    assert aws["StoppingCondition"] == {"MaxRuntimeInSeconds": 7200, "MaxWaitTimeInSeconds": 14400}
    assert aws["CheckpointConfig"] == {
        "S3Uri": f"s3://{aws_cfg.bucket}/sagemaker-pipelines/cifar10/checkpoints/{JOB}",
        "LocalPath": "/opt/ml/checkpoints",
    }


def test_every_resource_carries_the_cost_tags(cfg):
    expected = [{"Key": "cost-center", "Value": "ml-platform"}, {"Key": "project", "Value": "sagemaker-pipelines"},
                {"Key": "workload", "Value": "cifar10"}]
    assert _training(cfg)["Tags"] == expected
    assert rq.build_model_request(cfg, model_name="m", image_uri=INFER_IMAGE, model_data_url="s3://b/m.tar.gz")["Tags"] == expected
    assert rq.build_endpoint_config_request(cfg, config_name="c", model_name="m")["Tags"] == expected


def test_endpoint_carries_an_expiry_tag_for_the_janitor():
    cfg = load_workload("cifar10", "local")
    now = datetime(2025, 3, 1, 12, 0, 30, 123456, tzinfo=timezone.utc)
    request = rq.build_endpoint_request(cfg, endpoint_name="e", config_name="c", now=now)
    tags = {t["Key"]: t["Value"] for t in request["Tags"]}
    assert tags["expires-at"] == "2025-03-01T14:00:30Z"  # ttl_hours: 2
    assert tags["workload"] == "cifar10"
    assert rq.expiry_time(request["Tags"]) == datetime(2025, 3, 1, 14, 0, 30, tzinfo=timezone.utc)
    no_ttl = dataclasses.replace(cfg, endpoint=dataclasses.replace(cfg.endpoint, ttl_hours=None))
    assert rq.expiry_time(rq.build_endpoint_request(no_ttl, endpoint_name="e", config_name="c")["Tags"]) is None


def test_model_environment_points_at_code_inside_the_model_archive():
    cfg = load_workload("cifar10", "local")
    model = rq.build_model_request(cfg, model_name="m", image_uri=INFER_IMAGE, model_data_url="s3://b/k/model.tar.gz")
    assert model["ExecutionRoleArn"] == cfg.role_arn
    assert model["PrimaryContainer"]["ModelDataUrl"] == "s3://b/k/model.tar.gz"
    assert model["PrimaryContainer"]["Environment"] == {
        "SAGEMAKER_PROGRAM": "inference.py", "SAGEMAKER_SUBMIT_DIRECTORY": "/opt/ml/model/code",
        "SAGEMAKER_CONTAINER_LOG_LEVEL": "20", "SAGEMAKER_REGION": "us-east-1"}


def test_endpoint_config_variants():
    cfg = load_workload("cifar10", "local")
    [variant] = rq.build_endpoint_config_request(cfg, config_name="c", model_name="m")["ProductionVariants"]
    assert variant == {"VariantName": "AllTraffic", "ModelName": "m", "InstanceType": "ml.m5.xlarge",
                       "InitialInstanceCount": 1, "InitialVariantWeight": 1.0}
    serverless = dataclasses.replace(cfg, endpoint=dataclasses.replace(
        cfg.endpoint, instance_type=None, serverless=ServerlessConfig(memory_size_mb=3072, max_concurrency=5)))
    [variant] = rq.build_endpoint_config_request(serverless, config_name="c", model_name="m")["ProductionVariants"]
    assert variant == {"VariantName": "AllTraffic", "ModelName": "m",
                       "ServerlessConfig": {"MemorySizeInMB": 3072, "MaxConcurrency": 5}}


def test_tuning_request_moves_tuned_names_out_of_the_static_hyperparameters():
    cfg = load_workload("cifar10", "aws")
    request = rq.build_tuning_request(cfg, tuning_job_name="cifar10-tune-1", image_uri=TRAIN_IMAGE,
                                      source_uri=SOURCE_URI, channels=cfg.channel_uris())
    job_config = request["HyperParameterTuningJobConfig"]
    assert job_config["Strategy"] == "Bayesian"
    assert job_config["HyperParameterTuningJobObjective"] == {"Type": "Maximize", "MetricName": "best:validation:accuracy"}
    assert job_config["ResourceLimits"] == {"MaxNumberOfTrainingJobs": 20, "MaxParallelTrainingJobs": 4}
    # candidates train on one instance; the final job runs distributed
    assert request["TrainingJobDefinition"]["ResourceConfig"]["InstanceCount"] == 1
    assert {r["Name"] for r in job_config["ParameterRanges"]["ContinuousParameterRanges"]} == {"learning-rate", "weight-decay"}
    static = request["TrainingJobDefinition"]["StaticHyperParameters"]
    assert "learning-rate" not in static and static["epochs"] == "30"
    assert static["sagemaker_program"] == '"train.py"' and "sagemaker_job_name" not in static
    assert request["TrainingJobDefinition"]["EnableManagedSpotTraining"] is True


def test_autoscaling_requests_validate_against_application_autoscaling():
    cfg = load_workload("cifar10", "aws")
    register, policy = rq.build_autoscaling_requests(cfg, endpoint_name="cifar10-endpoint-1")
    assert register["ResourceId"] == policy["ResourceId"] == "endpoint/cifar10-endpoint-1/variant/AllTraffic"
    assert (register["MinCapacity"], register["MaxCapacity"]) == (1, 2)
    local = load_workload("cifar10", "local")
    without = dataclasses.replace(local, endpoint=dataclasses.replace(local.endpoint, autoscaling=None))
    with pytest.raises(ValueError, match="no endpoint.autoscaling"):
        rq.build_autoscaling_requests(without, endpoint_name="e")


def test_transform_request():
    cfg = load_workload("cifar10", "local")
    with_transform = dataclasses.replace(cfg, transform=TransformConfig(
        instance_type="ml.m5.xlarge", content_type="application/x-npy", split_type="None"))
    request = rq.build_transform_request(with_transform, job_name="cifar10-transform-1", model_name="m",
                                         input_uri="s3://b/in", output_uri="s3://b/out")
    assert request["TransformResources"] == {"InstanceType": "ml.m5.xlarge", "InstanceCount": 1}
    assert request["TransformInput"]["ContentType"] == "application/x-npy"
    with pytest.raises(ValueError, match="no transform section"):
        rq.build_transform_request(dataclasses.replace(cfg, transform=None), job_name="t", model_name="m",
                                   input_uri="s3://b/in", output_uri="s3://b/out")


def test_a_bad_value_is_refused_naming_the_field():
    cfg = load_workload("cifar10", "local")
    bad = dataclasses.replace(cfg, training=dataclasses.replace(cfg.training, instance_type="ml.m5.huge"))
    with pytest.raises(RequestValidationError) as err:
        _training(bad)
    assert "resourceConfig.instanceType" in str(err.value) and "ml.m5.huge" in str(err.value)
    assert str(err.value).startswith("CreateTrainingJob: 1 validation error detected")

    with pytest.raises(RequestValidationError, match="trainingJobName"):
        rq.build_training_request(cfg, job_name="has_underscores", image_uri=TRAIN_IMAGE, source_uri=SOURCE_URI,
                                  channels=cfg.channel_uris())
    with pytest.raises(RequestValidationError, match="inputDataConfig.1.member.dataSource.s3DataSource.s3Uri"):
        rq.build_training_request(cfg, job_name=JOB, image_uri=TRAIN_IMAGE, source_uri=SOURCE_URI,
                                  channels={"train": "not-an-s3-uri"})


def test_region_comes_from_the_image_unless_given():
    cfg = load_workload("cifar10", "local")
    eu_image = TRAIN_IMAGE.replace("us-east-1", "eu-west-1")
    hp = rq.build_training_request(cfg, job_name=JOB, image_uri=eu_image, source_uri=SOURCE_URI,
                                   channels=cfg.channel_uris())["HyperParameters"]
    assert hp["sagemaker_region"] == '"eu-west-1"'
    with pytest.raises(ValueError, match="pass region="):
        rq.build_training_request(cfg, job_name=JOB, image_uri="my-image:latest", source_uri=SOURCE_URI,
                                  channels=cfg.channel_uris())


# --- images --------------------------------------------------------------------------------------

@pytest.mark.parametrize("profile", PROFILES)
def test_images_resolve_offline_for_each_profile(profile):
    from include.emulator.images import check_inference_image, training_image

    cfg = load_workload("cifar10", profile)
    processor = "gpu" if profile == "aws" else "cpu"
    train = training_image_uri(cfg, REGION)
    assert train == f"763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-training:2.5.1-{processor}-py311"
    infer = inference_image_uri(cfg, REGION)
    assert infer == "763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-inference:2.5.1-cpu-py311"
    # and the local SageMaker knows how to run them
    assert training_image(train).repository == "pytorch-training"
    check_inference_image(infer)


def test_image_table_problem_is_reported_with_the_workload():
    cfg = load_workload("cifar10", "local")
    old = dataclasses.replace(cfg, image=dataclasses.replace(cfg.image, version="0.1.0"))
    with pytest.raises(ValueError, match="workload 'cifar10': no training image for pytorch 0.1.0"):
        training_image_uri(old, REGION)


# --- evaluation gate -----------------------------------------------------------------------------

DESCRIPTION = {
    "TrainingJobName": JOB,
    "FinalMetricDataList": [
        {"MetricName": "validation:accuracy", "Value": 0.61, "Timestamp": 0},
        {"MetricName": "train:loss", "Value": 1.2, "Timestamp": 0},
    ],
}


def test_final_metric_and_gate():
    cfg = load_workload("cifar10", "local")
    assert final_metric(DESCRIPTION, "validation:accuracy") == 0.61
    assert passes_gate(0.61, cfg.evaluation) and passes_gate(0.5, cfg.evaluation)
    assert not passes_gate(0.49, cfg.evaluation) and not passes_gate(float("nan"), cfg.evaluation)
    minimize = dataclasses.replace(cfg.evaluation, direction="minimize", threshold=1.0)
    assert passes_gate(0.5, minimize) and not passes_gate(1.5, minimize)
    # the gate reads the best epoch's accuracy: the epoch whose weights the model ships
    with_best = {**DESCRIPTION, "FinalMetricDataList": [
        *DESCRIPTION["FinalMetricDataList"], {"MetricName": "best:validation:accuracy", "Value": 0.64, "Timestamp": 0}]}
    planned = {"metric": "best:validation:accuracy", "threshold": 0.5, "direction": "maximize"}
    assert evaluate_gate(with_best, planned)
    assert not evaluate_gate(with_best, {**planned, "threshold": 0.65})


def test_missing_metric_names_it_and_lists_the_present_ones():
    with pytest.raises(MetricNotFound) as err:
        final_metric(DESCRIPTION, "best:validation:accuracy")
    message = str(err.value)
    assert "'best:validation:accuracy'" in message and "train:loss, validation:accuracy" in message and JOB in message
    with pytest.raises(MetricNotFound, match="metrics reported: none"):
        final_metric({"TrainingJobName": JOB}, "validation:accuracy")
