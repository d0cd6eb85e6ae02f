"""Workload files: both profiles load, and every kind of mistake names the file and the field."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from include.pipelines.config import (
    REPO_ROOT,
    ConfigError,
    load_workload,
    load_workload_file,
    profile_for_endpoint_url,
)

CIFAR10 = REPO_ROOT / "include" / "workloads" / "cifar10.yaml"


def test_local_profile_loads_the_small_cpu_settings():
    cfg = load_workload("cifar10", "local")
    assert (cfg.name, cfg.profile, cfg.schedule) == ("cifar10", "local", "@weekly")
    assert cfg.training.instance_type == "ml.m5.xlarge" and cfg.training.instance_count == 2
    assert cfg.training.distribution == "torch_distributed" and cfg.tuning.instance_count == 1
    assert cfg.training.hyperparameters["epochs"] == 2 and cfg.training.hyperparameters["batch-size"] == 16
    assert set(cfg.training.hyperparameters) == {"epochs", "batch-size", "learning-rate", "momentum",
                                                 "weight-decay", "augment", "num-workers", "seed"}
    assert cfg.data.generator == "include.datasets.cifar10:generate"
    assert cfg.data.generator_kwargs == {"train_per_class": 64, "test_per_class": 16}
    assert cfg.data.source_uri is None
    assert (cfg.evaluation.metric, cfg.evaluation.threshold, cfg.evaluation.direction) == ("best:validation:accuracy", 0.5, "maximize")
    assert cfg.role_arn == "arn:aws:iam::123456789012:role/SageMakerExecutionRole"
    assert cfg.bucket == "sagemaker-pipelines-local"
    assert cfg.training.use_spot and cfg.training.checkpoint_s3_prefix == "checkpoints"  # spot resume rehearsed offline
    assert cfg.tags == {"project": "sagemaker-pipelines", "workload": "cifar10", "cost-center": "ml-platform"}
    assert cfg.placeholder_settings() == []
    assert cfg.source_path == REPO_ROOT / "training_src" / "cifar10"


def test_aws_profile_overrides_only_what_it_names():
    local, aws = load_workload("cifar10", "local"), load_workload("cifar10", "aws")
    assert aws.training.instance_type in ("ml.p3.2xlarge", "ml.g4dn.xlarge")
    assert aws.training.hyperparameters["epochs"] == 30 and aws.training.hyperparameters["batch-size"] == 128
    assert aws.training.hyperparameters["learning-rate"] == 0.1
    # merged key by key: untouched hyperparameters come from the common section
    assert aws.training.hyperparameters["momentum"] == local.training.hyperparameters["momentum"]
    assert aws.training.use_spot and aws.training.max_wait_seconds >= aws.training.max_runtime_seconds
    assert aws.training.checkpoint_s3_prefix
    assert aws.endpoint.instance_type == "ml.m5.xlarge" and aws.endpoint.initial_instance_count == 1
    assert aws.evaluation.threshold == 0.85
    assert aws.data.generator is None and aws.data.source_uri.startswith("https://")
    assert aws.training.metric_definitions == local.training.metric_definitions


def test_metric_regexes_read_the_training_log_format():
    cfg = load_workload("cifar10", "local")
    line = "epoch=3 train_loss=1.2345 train_accuracy=0.5123 val_loss=1.1000 val_accuracy=0.6012 lr=0.0500 epoch_seconds=12.3"
    final = "best_val_accuracy=0.7012"
    found = {m.name: [re.search(m.regex, text) for text in (line, final)] for m in cfg.training.metric_definitions}
    values = {name: [float(h.group(1)) if h else None for h in hits] for name, hits in found.items()}
    assert values == {
        "train:loss": [1.2345, None],
        "train:accuracy": [0.5123, None],
        "validation:loss": [1.1, None],
        "validation:accuracy": [0.6012, None],  # not fooled by best_val_accuracy
        "best:validation:accuracy": [None, 0.7012],
    }


def test_aws_placeholders_are_reported_and_overridable():
    aws = load_workload("cifar10", "aws")
    assert aws.placeholder_settings() == ["role_arn", "bucket"]
    with pytest.raises(ConfigError, match="sagemaker_role_arn") as err:
        aws.require_real_settings()
    assert "include/workloads/cifar10.yaml" in str(err.value)
    real = aws.with_overrides(role_arn="arn:aws:iam::210987654321:role/Training", bucket="my-ml-bucket")
    assert real.placeholder_settings() == [] and real.bucket == "my-ml-bucket"
    real.require_real_settings()
    with pytest.raises(ConfigError, match="bucket: must be an S3 bucket name"):
        aws.with_overrides(bucket="Not_A_Bucket")


def test_config_module_imports_no_aws_sdk():
    """DAG files load workloads at parse time: config must not pull in boto3, botocore or sagemaker."""
    code = ("import sys; import include.pipelines.config as c; c.load_workload('cifar10', 'aws'); "
            "heavy = [m for m in ('boto3', 'botocore', 'sagemaker', 'torch') if m in sys.modules]; "
            "print(','.join(heavy))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


@pytest.mark.parametrize("url, profile", [
    (None, "aws"),
    ("", "aws"),
    ("http://127.0.0.1:4566", "local"),
    ("http://localhost:5000/", "local"),
    ("http://emulator:8080", "local"),
    ("https://sagemaker.us-east-1.amazonaws.com", "aws"),
    ("https://s3.cn-north-1.amazonaws.com.cn", "aws"),
    ("https://sagemaker-fips.us-gov-west-1.amazonaws.com", "aws"),
    ("https://amazonaws.com.evil.example", "local"),
])
def test_profile_follows_the_connection_endpoint(url, profile):
    assert profile_for_endpoint_url(url) == profile


# --- broken files ------------------------------------------------------------------------------

def _document() -> dict:
    return yaml.safe_load(CIFAR10.read_text())


def _load(tmp_path: Path, document: dict | str, profile: str = "local"):
    path = tmp_path / "broken.yaml"
    path.write_text(document if isinstance(document, str) else yaml.safe_dump(document))
    return load_workload_file(path, profile)


def _error(tmp_path, document, profile="local") -> str:
    with pytest.raises(ConfigError) as err:
        _load(tmp_path, document, profile)
    message = str(err.value)
    assert message.startswith(str(tmp_path / "broken.yaml") + ":"), message
    return message


def test_the_unchanged_document_loads(tmp_path):
    assert _load(tmp_path, _document(), "aws").training.use_spot


def test_missing_field_is_named(tmp_path):
    doc = _document()
    del doc["training"]["max_runtime_seconds"]
    assert _error(tmp_path, doc).endswith("training.max_runtime_seconds: is required")


def test_missing_section_is_named(tmp_path):
    doc = _document()
    del doc["evaluation"]["metric"]
    assert "evaluation.metric: is required" in _error(tmp_path, doc)


def test_wrong_type_is_named_with_the_value(tmp_path):
    doc = _document()
    doc["profiles"]["local"]["training"]["instance_count"] = "two"
    message = _error(tmp_path, doc)
    assert message.endswith("training.instance_count: must be an integer >= 1, got 'two' (set in profiles.local)")


def test_negative_instance_count_is_refused(tmp_path):
    doc = _document()
    doc["profiles"]["local"]["training"]["instance_count"] = -1
    assert "training.instance_count: must be an integer >= 1, got -1 (set in profiles.local)" in _error(tmp_path, doc)


def test_unknown_key_suggests_the_right_one(tmp_path):
    doc = _document()
    doc["profiles"]["aws"]["training"]["instance_typ"] = "ml.p3.2xlarge"
    message = _error(tmp_path, doc, "aws")
    assert "training.instance_typ: unknown setting (did you mean 'instance_type'?)" in message
    assert "(set in profiles.aws)" in message


def test_unknown_top_level_key(tmp_path):
    doc = _document()
    doc["schedul"] = "@daily"
    assert "schedul: unknown setting (did you mean 'schedule'?)" in _error(tmp_path, doc)


def test_bad_enum_value(tmp_path):
    doc = _document()
    doc["evaluation"]["direction"] = "up"
    assert "evaluation.direction: must be one of 'maximize', 'minimize', got 'up'" in _error(tmp_path, doc)


def test_yaml_booleans_in_place_of_words_get_a_hint(tmp_path):
    doc = _document()
    doc["tuning"]["early_stopping"] = False  # what an unquoted `Off` parses to
    message = _error(tmp_path, doc)
    assert "tuning.early_stopping: must be one of 'Off', 'Auto', got False (quote it" in message


def test_bad_yaml_names_the_line(tmp_path):
    text = CIFAR10.read_text().replace("  entry_point: train.py", "  entry_point: [train.py")
    message = _error(tmp_path, text)
    assert "invalid YAML: line" in message


def test_not_a_mapping(tmp_path):
    assert "must be a mapping of settings at the top level" in _error(tmp_path, "- just\n- a list\n")


def test_unquoted_version_number_hints_at_quoting(tmp_path):
    doc = _document()
    doc["image"]["version"] = 2.5
    assert "image.version: must be a string, got 2.5 (quote it in the YAML)" in _error(tmp_path, doc)


def test_spot_needs_a_long_enough_wait(tmp_path):
    doc = _document()
    doc["profiles"]["aws"]["training"]["max_wait_seconds"] = 60
    message = _error(tmp_path, doc, "aws")
    assert "training.max_wait_seconds: must be >= max_runtime_seconds (7200), got 60" in message


def test_evaluation_metric_must_be_a_defined_metric(tmp_path):
    doc = _document()
    doc["evaluation"]["metric"] = "validation:acc"
    assert "evaluation.metric: 'validation:acc' is not one of training.metric_definitions" in _error(tmp_path, doc)


def test_metric_regex_needs_a_group(tmp_path):
    doc = _document()
    doc["training"]["metric_definitions"][0]["Regex"] = "train_loss=[0-9.]+"
    assert "training.metric_definitions[0].Regex: needs one capture group" in _error(tmp_path, doc)


def test_data_needs_exactly_one_source(tmp_path):
    doc = _document()
    doc["profiles"]["local"]["data"]["source_uri"] = "s3://bucket/cifar10"
    assert "data: set exactly one of generator" in _error(tmp_path, doc)


def test_bad_schedule_and_tag(tmp_path):
    doc = _document()
    doc["schedule"] = "every tuesday"
    assert "schedule: must be a cron expression" in _error(tmp_path, doc)
    doc = _document()
    doc["tags"]["aws:owner"] = "me"
    assert "tags.aws:owner: tag keys" in _error(tmp_path, doc)


def test_tuning_range_checks(tmp_path):
    doc = _document()
    doc["tuning"]["ranges"]["learning-rate"] = {"type": "continuous", "min": 0.2, "max": 0.01}
    assert "tuning.ranges.learning-rate.max: must be greater than min" in _error(tmp_path, doc, "aws")  # local overrides the range


def test_tuned_name_must_be_a_hyperparameter(tmp_path):
    doc = _document()
    doc["tuning"]["ranges"]["learning_rate"] = doc["tuning"]["ranges"].pop("learning-rate")
    message = _error(tmp_path, doc)
    assert "tuning.ranges.learning_rate: is not one of training.hyperparameters (did you mean 'learning-rate'?)" in message


def test_endpoint_needs_instance_type_or_serverless(tmp_path):
    doc = _document()
    doc["endpoint"]["serverless"] = {"memory_size_mb": 2048, "max_concurrency": 5}
    assert "endpoint: set exactly one of instance_type (real-time) or serverless" in _error(tmp_path, doc)


def test_unknown_and_missing_profiles(tmp_path):
    doc = _document()
    doc["profiles"]["staging"] = {}
    assert "profiles.staging: unknown profile" in _error(tmp_path, doc)
    doc = _document()
    del doc["profiles"]["aws"]
    assert "profiles: has no profile 'aws'" in _error(tmp_path, doc, "aws")


def test_load_workload_refuses_odd_names_and_profiles(tmp_path):
    with pytest.raises(ConfigError, match="workload names"):
        load_workload("../secrets")
    with pytest.raises(ConfigError, match="unknown profile 'prod'"):
        load_workload("cifar10", "prod")
    with pytest.raises(ConfigError, match="no such workload file"):
        load_workload("nope", directory=tmp_path)


def test_null_in_a_profile_clears_a_common_setting(tmp_path):
    doc = _document()
    doc["data"]["generator"] = "include.datasets.cifar10:generate"
    doc["profiles"]["aws"]["data"]["generator"] = None
    cfg = _load(tmp_path, doc, "aws")
    assert cfg.data.generator is None and cfg.data.source_uri


def test_placeholder_data_location_is_refused_before_running_on_aws():
    cfg = load_workload("room_detection", "aws").with_overrides(
        role_arn="arn:aws:iam::111122223333:role/Real", bucket="real-bucket")
    with pytest.raises(ConfigError, match="data.source_uri: still a placeholder"):
        cfg.require_real_settings()
