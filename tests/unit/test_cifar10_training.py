"""train.py as SageMaker's training toolkit runs it: a subprocess with SM_* variables and --flags."""
import json
import pickle
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from include.datasets import cifar10
from include.pipelines.config import load_workload
from tests.source_modules import with_shared_modules
from tests.unit.test_cifar10_inference import SOURCE_DIR, import_source

# what the tests train with: bs 32 gives ResNet-18 enough steps to learn the synthetic set in 2 epochs
FAST_FLAGS = ["--batch-size", "32", "--learning-rate", "0.1", "--num-workers", "0"]


@pytest.fixture(scope="module")
def train_module():
    return import_source("train")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return cifar10.generate(tmp_path_factory.mktemp("cifar10"))  # the default small set: 60 + 20 images per class


def run_training(job_dir: Path, train_dir: Path, *flags: str) -> subprocess.CompletedProcess:
    """Run train.py in job_dir the way the toolkit does: SM_* paths, SAGEMAKER_BASE_DIR, flags as strings."""
    env = {
        "PATH": "/usr/bin:/bin",
        "SM_CHANNEL_TRAIN": str(train_dir),
        "SM_MODEL_DIR": str(job_dir / "model"),
        "SM_OUTPUT_DATA_DIR": str(job_dir / "output" / "data"),
        "SM_NUM_GPUS": "0",
        "SAGEMAKER_BASE_DIR": str(job_dir),
    }
    return subprocess.run([sys.executable, "train.py", *flags], cwd=SOURCE_DIR, env=with_shared_modules(env),
                          capture_output=True, text=True, timeout=900)


def metric_definitions() -> list:
    """SageMaker's MetricDefinitions of the job: the workload YAML's, the one place they are written."""
    return load_workload("cifar10", "local").training.metric_definitions


def metric_values(log: str) -> dict[str, list[float]]:
    """What SageMaker's MetricDefinitions (the workload YAML's) extract from the log, line by line."""
    values = {}
    for line in log.splitlines():
        for definition in metric_definitions():
            match = re.search(definition.regex, line)
            if match:
                values.setdefault(definition.name, []).append(float(match.group(1)))
    return values


@pytest.fixture(scope="module")
def trained(tmp_path_factory, data_dir):
    job_dir = tmp_path_factory.mktemp("job")
    result = run_training(job_dir, data_dir, "--epochs", "2", *FAST_FLAGS)
    assert result.returncode == 0, result.stdout + result.stderr
    return job_dir, result.stdout


@pytest.mark.slow
def test_training_logs_one_metric_line_per_epoch(trained):
    _, log = trained
    epoch_lines = [line for line in log.splitlines() if line.startswith("epoch=")]
    assert len(epoch_lines) == 2
    line_format = (r"epoch=\d+ train_loss=\d+\.\d{4} train_accuracy=[01]\.\d{4} val_loss=\d+\.\d{4} "
                   r"val_accuracy=[01]\.\d{4} lr=\d+\.\d{4} epoch_seconds=\d+\.\d")
    assert all(re.fullmatch(line_format, line) for line in epoch_lines), epoch_lines
    assert re.search(r"^best_val_accuracy=[01]\.\d{4}$", log, re.M)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """Two epochs on 80 images: only the log and metrics.json matter here, not what the model learns."""
    data = cifar10.generate(tmp_path_factory.mktemp("cifar10-tiny"), train_per_class=8, test_per_class=2)
    job_dir = tmp_path_factory.mktemp("job-tiny")
    result = run_training(job_dir, data, "--epochs", "2", "--batch-size", "32", "--num-workers", "0")
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout, json.loads((job_dir / "output" / "data" / "metrics.json").read_text())


@pytest.mark.slow
def test_the_workload_yaml_metric_definitions_read_the_right_values(tiny_run):
    """Every regex SageMaker applies (the YAML's training.metric_definitions) finds its number in the log, once
    per epoch or once per job, and the number is the one train.py measured (metrics.json keeps it unrounded)."""
    log, measured = tiny_run
    history = measured["history"]
    per_epoch = {"train:loss": "train_loss", "train:accuracy": "train_accuracy", "validation:loss": "val_loss",
                 "validation:accuracy": "val_accuracy"}
    expected = {name: [entry[key] for entry in history] for name, key in per_epoch.items()}
    expected["best:validation:accuracy"] = [measured["value"]]
    assert {definition.name for definition in metric_definitions()} == set(expected)  # a new regex needs its value here
    # the log prints 4 decimals
    assert metric_values(log) == {name: pytest.approx(values, abs=5e-5) for name, values in expected.items()}
    assert measured["value"] == max(entry["val_accuracy"] for entry in history)


def test_validation_accuracy_is_not_read_from_the_best_line():
    values = metric_values("epoch=2 train_loss=2.1000 train_accuracy=0.2500 val_loss=2.2000 val_accuracy=0.3000 "
                           "lr=0.0000 epoch_seconds=1.0\nbest_val_accuracy=0.3500")
    assert values == {"train:loss": [2.1], "train:accuracy": [0.25], "validation:loss": [2.2],
                      "validation:accuracy": [0.3], "best:validation:accuracy": [0.35]}


@pytest.mark.slow
def test_training_learns_the_synthetic_classes(trained):
    _, log = trained
    metrics = metric_values(log)
    assert metrics["best:validation:accuracy"][0] >= 0.5, log  # chance is 0.1; measured ~0.85-0.95
    assert metrics["train:loss"][1] < metrics["train:loss"][0]


@pytest.mark.slow
def test_model_dir_holds_best_weights_info_and_serving_code(trained):
    import torch

    job_dir, log = trained
    model_dir = job_dir / "model"
    assert sorted(p.name for p in (model_dir / "code").iterdir()) == ["inference.py", "inference_errors.py", "model.py", "requirements.txt"]

    state = torch.load(model_dir / "model.pth", weights_only=True)
    fresh = import_source("model").build_model().state_dict()
    assert state.keys() == fresh.keys()
    assert any(not torch.equal(state[key], fresh[key]) for key in fresh if fresh[key].is_floating_point())

    info = json.loads((model_dir / "model_info.json").read_text())
    assert info["class_names"] == list(cifar10.LABEL_NAMES) and info["input_size"] == [3, 32, 32]
    assert info["architecture"] == "resnet18-cifar" and len(info["mean"]) == len(info["std"]) == 3
    assert info["best_metric"]["name"] == "validation:accuracy"
    assert f"best_val_accuracy={info['best_metric']['value']:.4f}" in log
    assert info["best_epoch"] in (1, 2) and info["hyperparameters"]["batch_size"] == 32

    metrics = json.loads((job_dir / "output" / "data" / "metrics.json").read_text())
    assert [entry["epoch"] for entry in metrics["history"]] == [1, 2]
    assert (job_dir / "checkpoints" / "checkpoint.pt").is_file()


@pytest.mark.slow
def test_trained_model_serves_through_its_own_code(trained):
    """code/inference.py, as the inference container would load it from model.tar.gz, classifies new images."""
    job_dir, _ = trained
    inference = import_source("inference", job_dir / "model" / "code")
    model = inference.model_fn(str(job_dir / "model"))
    samples = cifar10.sample_images(20, seed=123)
    body = json.dumps({"instances": [image.tolist() for _, image in samples]})
    answer = json.loads(inference.output_fn(inference.predict_fn(inference.input_fn(body, "application/json"), model), "application/json"))
    correct = sum(p["predicted_class"] == name for p, (name, _) in zip(answer["predictions"], samples))
    assert correct >= 10, answer


@pytest.mark.slow
def test_resume_continues_at_the_next_epoch(tmp_path, trained, data_dir):
    import torch

    job_dir, _ = trained
    shutil.copytree(job_dir / "checkpoints", tmp_path / "checkpoints")  # as SageMaker restores CheckpointConfig
    result = run_training(tmp_path, data_dir, "--epochs", "3", "--max-train-samples", "64", *FAST_FLAGS)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "resuming from" in result.stdout and "2 epoch(s) done" in result.stdout
    assert [line.split()[0] for line in result.stdout.splitlines() if line.startswith("epoch=")] == ["epoch=3"]
    checkpoint = torch.load(tmp_path / "checkpoints" / "checkpoint.pt", weights_only=True)
    assert checkpoint["epoch"] == 3 and [entry["epoch"] for entry in checkpoint["history"]] == [1, 2, 3]
    assert (tmp_path / "model" / "model.pth").is_file()


@pytest.mark.slow
def test_bad_hyperparameters_fail_the_job_with_a_clear_message(tmp_path, data_dir):
    result = run_training(tmp_path, data_dir, "--epochs", "0", "--learning-rate", "-1")
    assert result.returncode != 0
    assert "--epochs must be at least 1 (got 0)" in result.stderr
    assert "--learning-rate must be a positive number (got -1.0)" in result.stderr
    assert not (tmp_path / "model").exists()


@pytest.mark.slow
def test_empty_train_channel_fails_naming_the_folder_and_files(tmp_path):
    (tmp_path / "train").mkdir()
    (tmp_path / "train" / "readme.txt").write_text("wrong upload")
    result = run_training(tmp_path / "job", tmp_path / "train", "--epochs", "1")
    assert result.returncode != 0
    assert f"No CIFAR-10 training batches in the train channel {tmp_path / 'train'}" in result.stderr
    assert "data_batch_1 .. data_batch_5" in result.stderr and "readme.txt" in result.stderr


# ---- in-process: settings and data, no training


def test_flags_arrive_in_either_spelling_with_string_booleans(train_module, monkeypatch):
    monkeypatch.setenv("SM_CHANNEL_TRAIN", "/data/train")
    monkeypatch.setenv("SAGEMAKER_BASE_DIR", "/job")
    hp, paths = train_module.parse_args(["--epochs", "3", "--batch_size", "64", "--learning-rate", "0.05",
                                         "--augment", "False", "--amp", "true", "--label_smoothing", "0.1",
                                         "--_tuning_objective_metric", "validation:accuracy"])
    assert (hp.epochs, hp.batch_size, hp.learning_rate, hp.augment, hp.amp, hp.label_smoothing) == (3, 64, 0.05, False, True, 0.1)
    assert (hp.momentum, hp.weight_decay, hp.num_workers, hp.max_train_samples) == (0.9, 5e-4, 2, 0)
    assert paths.train == "/data/train" and hp.checkpoint_dir == "/job/checkpoints"


@pytest.mark.parametrize("argv, message", [
    (["--epoch", "3"], "unrecognized hyperparameter(s) --epoch"),
    (["--augment", "maybe"], "expected true or false, got 'maybe'"),
    (["--epochs", "two"], "invalid int value: 'two'"),
])
def test_unknown_or_malformed_flags_are_refused(train_module, capsys, argv, message):
    with pytest.raises(SystemExit):
        train_module.parse_args(argv)
    assert message in capsys.readouterr().err


def test_validation_names_every_bad_hyperparameter(train_module):
    hp, _ = train_module.parse_args(["--epochs", "0", "--momentum", "1.5", "--label-smoothing", "-0.1"])
    with pytest.raises(ValueError) as caught:
        train_module.validate(hp)
    for phrase in ("--epochs must be at least 1", "--momentum must be in [0, 1)", "--label-smoothing must be in [0, 1)"):
        assert phrase in str(caught.value)


def test_metric_definitions_fit_the_sagemaker_api():
    from include.aws_shapes import request_problems

    definitions = [{"Name": m.name, "Regex": m.regex} for m in metric_definitions()]
    request = {
        "TrainingJobName": "cifar10", "RoleArn": "arn:aws:iam::123456789012:role/SageMakerExecutionRole",
        "AlgorithmSpecification": {"TrainingImage": "763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-training:2.5-cpu-py311",
                                   "TrainingInputMode": "File", "MetricDefinitions": definitions},
        "OutputDataConfig": {"S3OutputPath": "s3://bucket/out"},
        "ResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 10},
        "StoppingCondition": {"MaxRuntimeInSeconds": 3600},
    }
    assert request_problems("sagemaker", "CreateTrainingJob", request) == []


def test_validation_comes_from_the_test_channel_when_given(train_module, data_dir, tmp_path):
    (tmp_path / "test").mkdir()
    cifar10.generate(tmp_path / "other", train_per_class=1, test_per_class=2, seed=9)
    shutil.copy(tmp_path / "other" / "test_batch", tmp_path / "test" / "test_batch")
    data = train_module.load_cifar10(str(data_dir), str(tmp_path / "test"))
    assert len(data["train_images"]) == 600 and tuple(data["train_images"].shape[1:]) == (3, 32, 32)
    assert len(data["val_images"]) == 20 and data["class_names"] == list(cifar10.LABEL_NAMES)
    assert len(train_module.load_cifar10(str(data_dir))["val_images"]) == 200


def test_batches_are_decoded_in_cifar_channel_order(train_module, tmp_path):
    image = np.zeros((1, 32, 32, 3), np.uint8)
    image[0, 2, 5] = (200, 100, 50)  # one pixel at row 2, column 5
    with open(tmp_path / "data_batch_1", "wb") as f:
        pickle.dump({b"data": cifar10.to_cifar_rows(image), b"labels": [4]}, f)
    images, labels = train_module.read_batch(tmp_path / "data_batch_1")
    assert images[0, :, 2, 5].tolist() == [200, 100, 50] and labels.tolist() == [4]


def test_a_batch_that_would_run_code_is_refused(train_module, tmp_path):
    class Exploit:
        def __reduce__(self):
            return (print, ("pwned",))

    with open(tmp_path / "data_batch_1", "wb") as f:
        pickle.dump({b"data": Exploit(), b"labels": []}, f)
    with pytest.raises(ValueError, match="refusing to load builtins.print"):
        train_module.read_batch(tmp_path / "data_batch_1")


def test_missing_test_batch_says_where_to_put_it(train_module, tmp_path):
    cifar10.generate(tmp_path, train_per_class=1, test_per_class=1)
    (tmp_path / "test_batch").unlink()
    with pytest.raises(FileNotFoundError, match="No test_batch for validation in .*SM_CHANNEL_TEST"):
        train_module.load_cifar10(str(tmp_path))


def test_augmentation_crops_and_flips_each_image(train_module):
    import torch

    images = torch.rand(64, 3, 32, 32)
    augmented = train_module.augment(images)
    assert augmented.shape == images.shape
    assert not torch.equal(augmented, images)
    # every output row is a shifted (and maybe mirrored) piece of the input or zero padding
    assert augmented.min() >= 0 and augmented.max() <= images.max()


def test_learning_rate_warms_up_then_decays_to_zero(train_module):
    factors = [train_module.lr_factor(step, 100) for step in range(100)]
    assert factors[0] < factors[4] == 1.0
    assert all(a >= b for a, b in zip(factors[4:], factors[5:])) and factors[-1] < 0.01
