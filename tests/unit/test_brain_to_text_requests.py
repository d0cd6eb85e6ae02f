"""The Brain-to-Text workload's requests for both profiles: a streamed training job, a registered model version,
and the batch decode of a held-out session, each valid for SageMaker (builders validate against botocore)."""
import json

import pytest

from include.pipelines import images, requests
from include.pipelines.config import ConfigError, load_workload, load_workload_file
from include.pipelines.steps import plan_requests
from include.pipelines.tasks import plan, transform_config

REGION = "us-east-1"
SOURCE = "s3://bucket/sagemaker-pipelines/brain-to-text/source/0123/sourcedir.tar.gz"
RUN_ID = "manual__2026-01-01T00:00:00+00:00"


@pytest.fixture(params=["local", "aws"])
def cfg(request):
    return load_workload("brain_to_text", request.param)


def _settings(cfg) -> dict:
    role = "arn:aws:iam::111122223333:role/SageMakerExecutionRole"
    return {"workload": "brain_to_text", "profile": cfg.profile, "region": REGION, "bucket": "my-bucket",
            "prefix": cfg.s3_prefix, "role_arn": role}


def test_training_streams_the_sessions_instead_of_downloading_them(cfg):
    request = requests.build_training_request(cfg, job_name="b2t-train-1", image_uri=images.training_image_uri(cfg, REGION),
                                              source_uri=SOURCE, channels=cfg.channel_uris())
    assert "InputDataConfig" not in request  # SageMaker downloads nothing before the job starts
    assert request["HyperParameters"]["data-s3-uri"] == cfg.data_uri
    assert request["HyperParameters"]["sagemaker_program"] == json.dumps("train.py")
    assert request.get("Environment") == ({"OMP_NUM_THREADS": "1"} if cfg.profile == "local" else None)
    names = [m["Name"] for m in request["AlgorithmSpecification"]["MetricDefinitions"]]
    assert names == ["train:loss", "train:grad_norm", "validation:der", "validation:ctc_loss", "validation:best_der"]


def test_aws_training_is_the_diphone_configuration_on_a_g5_with_spot_and_checkpoints():
    cfg = load_workload("brain_to_text", "aws")
    request = requests.build_training_request(cfg, job_name="b2t-train-1", image_uri=images.training_image_uri(cfg, REGION),
                                              source_uri=SOURCE, channels=cfg.channel_uris())
    hp = request["HyperParameters"]
    assert {k: hp[k] for k in ("n-classes", "n-units", "batch-size", "rnn-dropout", "num-training-batches", "lr-max",
                               "weight-decay")} == {"n-classes": "1681", "n-units": "1024", "batch-size": "48",
                                                    "rnn-dropout": "0.5", "num-training-batches": "150000",
                                                    "lr-max": "0.004", "weight-decay": "0.002"}
    assert request["ResourceConfig"]["InstanceType"] == "ml.g5.2xlarge"
    assert "gpu" in request["AlgorithmSpecification"]["TrainingImage"]
    assert request["EnableManagedSpotTraining"] is True
    stopping = request["StoppingCondition"]
    assert stopping["MaxRuntimeInSeconds"] >= 25 * 3600 and stopping["MaxWaitTimeInSeconds"] >= stopping["MaxRuntimeInSeconds"]
    assert request["CheckpointConfig"] == {"S3Uri": cfg.s3_uri("checkpoints", "b2t-train-1"), "LocalPath": "/opt/ml/checkpoints"}
    assert hp["data-s3-uri"] == "s3://replace-me-sagemaker-bucket/datasets/brain-to-text/hdf5_data_final"


def test_local_training_is_a_tiny_decoder_on_the_cpu():
    cfg = load_workload("brain_to_text", "local")
    request = requests.build_training_request(cfg, job_name="b2t-train-1", image_uri=images.training_image_uri(cfg, REGION),
                                              source_uri=SOURCE, channels=cfg.channel_uris())
    hp = request["HyperParameters"]
    assert (hp["n-units"], hp["n-layers"], hp["num-training-batches"]) == ("32", "1", "300")
    assert request["ResourceConfig"]["InstanceType"] == "ml.m5.xlarge" and "cpu" in request["AlgorithmSpecification"]["TrainingImage"]
    assert "EnableManagedSpotTraining" not in request and "CheckpointConfig" not in request


def test_the_planned_model_version_carries_the_container_content_types(cfg):
    planned = plan_requests(_settings(cfg), source_uri=SOURCE, channels=cfg.channel_uris(), run_id=RUN_ID)
    request = planned["promotion"]["model_package"]
    assert request["ModelPackageGroupName"] == "brain-to-text-diphone-decoder"
    # every version starts pending: the promotion decision approves or rejects it
    assert request["ModelApprovalStatus"] == "PendingManualApproval"
    specification = request["InferenceSpecification"]
    container = specification["Containers"][0]
    assert "pytorch-inference" in container["Image"] and container["Environment"]["SAGEMAKER_PROGRAM"] == "inference.py"
    assert specification["SupportedContentTypes"] == ["application/x-hdf5"]
    assert specification["SupportedResponseMIMETypes"] == ["application/jsonlines"]
    assert specification["SupportedTransformInstanceTypes"] == [cfg.transform.instance_type]
    # no endpoint: the promotion approves the version, the batch decode runs the approved champion
    assert planned["promotion"]["endpoint_name"] is None and planned["promotion"]["standing"] is None
    assert planned["promotion"]["policy"]["direction"] == "minimize"


def test_plan_has_training_and_the_batch_decode_of_the_held_out_session_and_no_endpoint(cfg):
    settings = _settings(cfg)
    planned = plan_requests(settings, source_uri=SOURCE, channels=cfg.channel_uris(), run_id=RUN_ID)
    assert "endpoint" not in planned and "endpoint_name" not in planned
    transform = planned["transform"]
    held_out = "t15.2025.01.20" if cfg.profile == "local" else "t15.2025.04.13"
    assert transform["TransformInput"]["DataSource"]["S3DataSource"]["S3Uri"].endswith(f"/{held_out}/data_test.hdf5")
    assert transform["TransformInput"]["ContentType"] == "application/x-hdf5" and transform["TransformInput"]["SplitType"] == "None"
    assert transform["TransformOutput"]["Accept"] == "application/jsonlines"
    assert transform["MaxPayloadInMB"] == (6 if cfg.profile == "local" else 100)
    # the transform's model is its own, never one an endpoint teardown could delete under it
    assert transform["ModelName"] == planned["batch_model"]["ModelName"] != planned["model"]["ModelName"]

    # the transform runs the registered version, not a model of its own
    config = transform_config.function(transform, planned["batch_model"], {
        "model_package_arn": "arn:aws:sagemaker:us-east-1:111122223333:model-package/brain-to-text-diphone-decoder/1"})
    assert config["Model"]["PrimaryContainer"] == {
        "ModelPackageName": "arn:aws:sagemaker:us-east-1:111122223333:model-package/brain-to-text-diphone-decoder/1"}
    assert config["Model"]["ModelName"] == transform["ModelName"] and config["Transform"] == transform


def test_the_quick_test_preset_shortens_training_and_explicit_overrides_still_win(cfg):
    settings = _settings(cfg)
    quick = plan_requests(settings, source_uri=SOURCE, channels=cfg.channel_uris(), run_id=RUN_ID, preset="quick-test",
                          hyperparameters={"batches-per-val-step": 7})
    hp = quick["training"]["HyperParameters"]
    assert hp["num-training-batches"] == str(cfg.presets["quick-test"]["num-training-batches"])
    assert int(hp["num-training-batches"]) < int(cfg.training.hyperparameters["num-training-batches"])
    assert hp["batches-per-val-step"] == "7"
    with pytest.raises(ValueError, match="has no preset 'tiny'; its presets: quick-test"):
        plan_requests(settings, source_uri=SOURCE, channels=cfg.channel_uris(), run_id=RUN_ID, preset="tiny")


@pytest.mark.parametrize("edit, field, message", [
    ("presets:\n  quick-test:\n    num-training-batch: 5\n", "presets.quick-test.num-training-batch",
     "did you mean 'num-training-batches'"),
    ("presets:\n  Quick Test:\n    num-training-batches: 5\n", "presets.Quick Test", "lowercase letters"),
])
def test_a_preset_must_override_known_hyperparameters(tmp_path, edit, field, message):
    from include.pipelines.config import WORKLOADS_DIR

    text = (WORKLOADS_DIR / "brain_to_text.yaml").read_text()
    start = text.index("presets:")
    end = text.index("evaluation:", start)
    path = tmp_path / "brain_to_text.yaml"
    path.write_text(text[:start] + edit + "\n" + text[end:])
    with pytest.raises(ConfigError) as caught:
        load_workload_file(path, "local")
    assert field in str(caught.value) and message in str(caught.value)


def test_a_streamed_channel_must_be_a_channel(tmp_path):
    from include.pipelines.config import WORKLOADS_DIR

    text = (WORKLOADS_DIR / "brain_to_text.yaml").read_text().replace("    train: data-s3-uri", "    training: data-s3-uri")
    path = tmp_path / "brain_to_text.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=r"data.streamed.training: is not one of channels \(train\)"):
        load_workload_file(path, "local")


def test_the_trigger_form_offers_the_presets_and_no_epochs():
    from brain_to_text_pipeline import brain_to_text_pipeline  # dags/ is on sys.path (tests/conftest.py)

    params = brain_to_text_pipeline().params
    assert "epochs" not in params and params["preset"] == "full"
    assert params.get_param("preset").schema["enum"] == ["full", "quick-test"]


@pytest.mark.parametrize("preset, batches", [("full", "300"), ("quick-test", "100")])
def test_the_plan_task_applies_the_chosen_preset(preset, batches):
    cfg = load_workload("brain_to_text", "local")
    planned = plan.function(_settings(cfg), cfg.channel_uris(), SOURCE, params={"preset": preset, "hyperparameters": {}},
                            run_id=RUN_ID)
    assert planned["training"]["HyperParameters"]["num-training-batches"] == batches
