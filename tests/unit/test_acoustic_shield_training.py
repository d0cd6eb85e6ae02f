"""train.py as SageMaker's training toolkit runs it (a subprocess with SM_* variables and --flags), and its
pieces in-process: validation of hyperparameters, the audiofolder reader, the split, the metrics."""
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from include.datasets import acoustic_shield
from include.datasets.acoustic_shield import LABELS
from include.pipelines.config import load_workload
from tests.source_modules import import_source, with_shared_modules

SOURCE_DIR = Path(__file__).resolve().parents[2] / "training_src" / "acoustic_shield"
# the local profile's settings: a small model from a config, learning from scratch on 1 s clips
LOCAL_FLAGS = ["--model-name-or-path", "offline-tiny", "--freeze-feature-encoder", "false", "--learning-rate", "0.003",
               "--warmup-steps", "5", "--max-audio-length", "16000", "--num-workers", "0"]


@pytest.fixture(scope="module")
def train():
    return import_source("train", SOURCE_DIR)


def run_training(job_dir: Path, channels: dict[str, Path], *flags: str) -> subprocess.CompletedProcess:
    """Run train.py in job_dir the way the toolkit does: SM_* paths and channels, flags as strings."""
    env = {
        "PATH": "/usr/bin:/bin",
        "SM_MODEL_DIR": str(job_dir / "model"),
        "SM_OUTPUT_DATA_DIR": str(job_dir / "output" / "data"),
        "SM_NUM_GPUS": "0",
        "HF_HUB_OFFLINE": "1",  # nothing here may reach the hub
        **{f"SM_CHANNEL_{name.upper()}": str(path) for name, path in channels.items()},
    }
    return subprocess.run([sys.executable, "train.py", *flags], cwd=SOURCE_DIR, env=with_shared_modules(env),
                          capture_output=True, text=True, timeout=600)


def metric_definitions() -> list:
    """SageMaker's MetricDefinitions of the job: the workload YAML's, the one place they are written."""
    return load_workload("acoustic_shield", "local").training.metric_definitions


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
def data_dir(tmp_path_factory):
    return acoustic_shield.generate(tmp_path_factory.mktemp("clips"), clips_per_class=24, validation_per_class=6, max_seconds=1.2)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, data_dir):
    job_dir = tmp_path_factory.mktemp("job")
    result = run_training(job_dir, {"train": data_dir / "train", "validation": data_dir / "validation"},
                          "--epochs", "4", *LOCAL_FLAGS)
    assert result.returncode == 0, result.stdout + result.stderr
    return job_dir, result.stdout


@pytest.mark.slow
def test_training_logs_one_metric_line_per_epoch_and_the_best(trained):
    job_dir, log = trained
    epoch_lines = [line for line in log.splitlines() if line.startswith("epoch=")]
    line_format = (r"epoch=\d+ train_loss=\d+\.\d{4} val_loss=\d+\.\d{4} val_accuracy=[01]\.\d{4} "
                   r"val_macro_f1=[01]\.\d{4} lr=\d\.\d{2}e[-+]\d{2} epoch_seconds=\d+\.\d")
    assert len(epoch_lines) == 4 and all(re.fullmatch(line_format, line) for line in epoch_lines), epoch_lines
    metrics = metric_values(log)
    assert set(metrics) == {definition.name for definition in metric_definitions()}  # every regex finds its line
    assert metrics["epoch"] == [1, 2, 3, 4]
    for name in ("train:loss", "validation:loss", "validation:accuracy", "validation:macro_f1", "learning_rate"):
        assert len(metrics[name]) == 4, name  # once per epoch, never from the best_ line
    assert metrics["best:validation:macro_f1"] == [max(metrics["validation:macro_f1"])]
    best_epoch = metrics["validation:macro_f1"].index(max(metrics["validation:macro_f1"]))
    assert metrics["best:validation:accuracy"] == [metrics["validation:accuracy"][best_epoch]]
    assert metrics["learning_rate"][-1] == 0  # linear decay ends at zero

    # the numbers the regexes read are the ones train.py measured (metrics.json keeps them unrounded)
    history = json.loads((job_dir / "output" / "data" / "metrics.json").read_text())["history"]
    printed = {"train:loss": ("train_loss", 5e-5), "validation:loss": ("val_loss", 5e-5),
               "validation:accuracy": ("val_accuracy", 5e-5), "validation:macro_f1": ("val_macro_f1", 5e-5),
               "epoch_seconds": ("epoch_seconds", 0.05)}
    for name, (key, tolerance) in printed.items():
        assert metrics[name] == pytest.approx([entry[key] for entry in history], abs=tolerance), name
    assert metrics["learning_rate"] == pytest.approx([entry["lr"] for entry in history], rel=5e-3)  # lr=2.50e-05


@pytest.mark.slow
def test_training_learns_the_synthetic_classes(trained):
    _, log = trained
    metrics = metric_values(log)
    assert metrics["train:loss"][-1] < metrics["train:loss"][0]
    assert metrics["best:validation:macro_f1"][0] >= 0.5  # the local gate; chance is 0.25


@pytest.mark.slow
def test_model_artifacts_are_what_the_endpoint_loads(trained, data_dir):
    job_dir, log = trained
    model_dir = job_dir / "model"
    assert {"model.safetensors", "config.json", "preprocessor_config.json", "label_info.json"} <= {p.name for p in model_dir.iterdir()}
    assert sorted(p.name for p in (model_dir / "code").iterdir()) == ["audio.py", "inference.py", "inference_errors.py", "requirements.txt"]
    info = json.loads((model_dir / "label_info.json").read_text())
    assert info["labels"] == sorted(LABELS)
    assert info["max_audio_length"] == 16000 and info["sampling_rate"] == 16000
    assert f"best_val_macro_f1={info['best_metric']['value']:.4f}" in log
    metrics = json.loads((job_dir / "output" / "data" / "metrics.json").read_text())
    assert len(metrics["history"]) == 4

    # the saved model classifies clips it never saw, through the serving code
    inference = import_source("inference", model_dir / "code")
    loaded = inference.model_fn(str(model_dir))
    answers = [json.loads(inference.output_fn(inference.predict_fn(
        inference.input_fn(acoustic_shield.sample_clip(label, sample_rate=44100, channels=2, seed=900 + i), "audio/wav"),
        loaded), "application/json"))["label"] for i, label in enumerate(LABELS * 2)]
    assert sum(answer == label for answer, label in zip(answers, LABELS * 2)) >= 5, answers  # chance: 2 of 8


@pytest.mark.slow
def test_without_a_validation_channel_a_stratified_tenth_is_held_out(tmp_path):
    data = acoustic_shield.generate(tmp_path / "clips", clips_per_class=10, max_seconds=0.9)
    result = run_training(tmp_path / "job", {"train": data / "train"}, "--epochs", "1", "--batch-size", "16", *LOCAL_FLAGS)
    assert result.returncode == 0, result.stdout + result.stderr
    counts = ", ".join(f"{label}=9/1" for label in sorted(LABELS))
    assert f"labels (train/validation clips): {counts}; validation from a stratified 10% of the train channel" in result.stdout


@pytest.mark.slow
def test_starts_from_a_pretrained_model_folder(tmp_path, train):
    """The path AWS takes with facebook/wav2vec2-base, through a save_pretrained folder: the frozen
    feature encoder must come out exactly as it went in, and the new head must fit our labels."""
    import torch
    from safetensors.torch import load_file

    torch.manual_seed(7)
    pretrained, extractor = train.build_model(train.OFFLINE_TINY, ["a", "b", "c"])  # another task's labels
    pretrained.save_pretrained(tmp_path / "pretrained")
    extractor.save_pretrained(tmp_path / "pretrained")
    data = acoustic_shield.generate(tmp_path / "clips", clips_per_class=3, validation_per_class=1, max_seconds=0.9)
    flags = [flag if flag != "offline-tiny" else str(tmp_path / "pretrained") for flag in LOCAL_FLAGS]
    flags[flags.index("--freeze-feature-encoder") + 1] = "true"
    result = run_training(tmp_path / "job", {"train": data / "train", "validation": data / "validation"}, "--epochs", "1", *flags)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"model {tmp_path / 'pretrained'}:" in result.stdout

    before = load_file(tmp_path / "pretrained" / "model.safetensors")
    after = load_file(tmp_path / "job" / "model" / "model.safetensors")
    encoder = [name for name in before if ".feature_extractor." in name]
    assert encoder and all(torch.equal(before[name], after[name]) for name in encoder)
    assert after["classifier.weight"].shape[0] == len(LABELS)
    assert json.loads((tmp_path / "job" / "model" / "config.json").read_text())["id2label"] == {
        str(i): label for i, label in enumerate(sorted(LABELS))}


@pytest.mark.slow
def test_a_model_the_job_cannot_load_fails_with_what_to_do(tmp_path):
    data = acoustic_shield.generate(tmp_path / "clips", clips_per_class=2, max_seconds=0.9)
    result = run_training(tmp_path / "job", {"train": data / "train"}, "--model-name-or-path", str(tmp_path / "missing"),
                          "--num-workers", "0")
    assert result.returncode != 0
    assert "Cannot load --model-name-or-path" in result.stderr and "offline-tiny" in result.stderr


# --- in-process: settings, data, metrics ---------------------------------------------------------

def test_flags_arrive_as_the_toolkit_passes_them(train):
    hp, paths = train.parse_args(["--epochs", "4", "--learning-rate", "3e-05", "--freeze-feature-encoder", "False",
                                  "--model-name-or-path", "facebook/wav2vec2-base", "--train", "/data/train"])
    assert (hp.epochs, hp.learning_rate, hp.freeze_feature_encoder, hp.model_name_or_path) == (4, 3e-5, False, "facebook/wav2vec2-base")
    assert paths.train == "/data/train"


def test_defaults_are_the_seed_settings(train):
    hp, _ = train.parse_args([])
    assert (hp.epochs, hp.learning_rate, hp.batch_size, hp.warmup_steps, hp.max_audio_length) == (4, 3e-5, 8, 500, 80000)
    assert hp.model_name_or_path == "facebook/wav2vec2-base"


def test_a_misspelt_flag_is_an_error(train, capsys):
    with pytest.raises(SystemExit):
        train.parse_args(["--epoch", "3"])
    assert "unrecognized hyperparameter(s) --epoch" in capsys.readouterr().err


@pytest.mark.parametrize("flags, message", [
    (["--learning-rate", "-1"], "--learning-rate must be a positive number"),
    (["--epochs", "0"], "--epochs must be at least 1"),
    (["--max-audio-length", "100"], "--max-audio-length must be at least 1600"),
    (["--gradient-accumulation-steps", "0"], "--gradient-accumulation-steps"),
    (["--validation-split", "1.5"], "--validation-split"),
])
def test_bad_hyperparameters_fail_early_naming_the_flag(train, flags, message):
    hp, _ = train.parse_args(flags)
    with pytest.raises(ValueError, match=re.escape(message)):
        train.validate(hp)


def test_audiofolder_reader_and_its_errors(train, tmp_path):
    data = acoustic_shield.generate(tmp_path / "clips", clips_per_class=2, max_seconds=0.9)
    clips = train.find_clips(str(data / "train"), "train")
    assert sorted(clips) == sorted(LABELS) and all(len(files) == 2 for files in clips.values())
    with pytest.raises(FileNotFoundError, match="does not exist"):
        train.find_clips(str(tmp_path / "nowhere"), "train")
    (tmp_path / "flat").mkdir()
    (tmp_path / "flat" / "clip.wav").write_bytes(acoustic_shield.sample_clip("Normal"))
    with pytest.raises(FileNotFoundError, match="audiofolder layout"):
        train.find_clips(str(tmp_path / "flat"), "train")


def test_stratified_split_holds_out_each_class_reproducibly(train):
    clips = {"a": [Path(f"a{i}.wav") for i in range(20)], "b": [Path(f"b{i}.wav") for i in range(5)], "c": [Path("c0.wav")]}
    kept, held = train.stratified_split(clips, 0.1, seed=1)
    assert {label: len(files) for label, files in held.items()} == {"a": 2, "b": 1}  # a lone clip stays in training
    assert {label: len(files) for label, files in kept.items()} == {"a": 18, "b": 4, "c": 1}
    assert train.stratified_split(clips, 0.1, seed=1) == (kept, held)
    with pytest.raises(ValueError, match="at least two clips"):
        train.stratified_split({"a": [Path("a.wav")]}, 0.1, seed=1)


def test_macro_f1_matches_its_definition(train):
    y_true = np.array([0, 0, 1, 1, 2, 2])
    y_pred = np.array([0, 1, 1, 1, 2, 0])
    # per class F1: 0 -> 2*1/(2+1+1) = 0.5, 1 -> 2*2/(4+1+0) = 0.8, 2 -> 2*1/(2+0+1) = 2/3
    assert train.macro_f1(y_true, y_pred) == pytest.approx((0.5 + 0.8 + 2 / 3) / 3)
    assert train.macro_f1(y_true, y_true) == 1.0


def test_learning_rate_warms_up_then_decays_to_zero(train):
    factors = [train.lr_factor(step, 4, 12) for step in range(12)]
    assert factors[:4] == [0.25, 0.5, 0.75, 1.0]
    assert factors[4:] == sorted(factors[4:], reverse=True) and train.lr_factor(12, 4, 12) == 0


def test_metric_definitions_fit_the_sagemaker_api():
    from include.aws_shapes import request_problems

    request = {
        "TrainingJobName": "acoustic-shield", "RoleArn": "arn:aws:iam::123456789012:role/SageMakerExecutionRole",
        "AlgorithmSpecification": {"TrainingImage": "763104351884.dkr.ecr.us-east-1.amazonaws.com/huggingface-pytorch-training:2.1.0-transformers4.36.0-cpu-py310-ubuntu22.04", "TrainingInputMode": "File",
                                   "MetricDefinitions": [{"Name": m.name, "Regex": m.regex} for m in metric_definitions()]},
        "OutputDataConfig": {"S3OutputPath": "s3://bucket/out"},
        "ResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 10},
        "StoppingCondition": {"MaxRuntimeInSeconds": 3600},
    }
    assert request_problems("sagemaker", "CreateTrainingJob", request) == []


def test_metric_regexes_tell_the_epoch_and_best_lines_apart():
    log = ("epoch=2 train_loss=1.2345 val_loss=1.1000 val_accuracy=0.6012 val_macro_f1=0.5871 lr=2.50e-05 epoch_seconds=12.3\n"
           "best_epoch=2 best_val_macro_f1=0.5900 best_val_accuracy=0.6100")
    assert metric_values(log) == {
        "epoch": [2], "train:loss": [1.2345], "validation:loss": [1.1], "validation:accuracy": [0.6012],
        "validation:macro_f1": [0.5871], "learning_rate": [2.5e-05], "epoch_seconds": [12.3],
        "best:validation:macro_f1": [0.59], "best:validation:accuracy": [0.61]}
