"""train.py as SageMaker's training toolkit runs it: a subprocess with SM_* variables and --flags, offline."""
import json
import re
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from include.aws_shapes import request_problems
from include.datasets import room_detection
from include.pipelines.config import load_workload
from tests.source_modules import import_source, with_shared_modules
from tests.unit.test_room_detection_inference import SOURCE_DIR

# tiny and quick: the mechanics of the script, not accuracy (the e2e run's gate checks learning)
FAST_FLAGS = ["--pretrained", "false", "--imgsz", "64", "--batch", "8", "--nbs", "8", "--workers", "0",
              "--optimizer", "AdamW", "--lr0", "0.002"]

# Records every attempt to reach the network from the training process (Python's audit hooks see
# each DNS lookup and socket connect, even those a library wraps in try/except).
NETWORK_GUARD = textwrap.dedent("""
    import os, sys

    def _record(event, args):
        if event in ("socket.getaddrinfo", "socket.connect", "socket.gethostbyname", "urllib.Request"):
            with open(os.environ["NETWORK_GUARD_LOG"], "a") as log:
                log.write(f"{event} {args!r}\\n")

    sys.addaudithook(_record)
""")


@pytest.fixture(scope="module")
def train_module():
    return import_source("train", SOURCE_DIR)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return room_detection.generate(tmp_path_factory.mktemp("rooms"), train=16, val=4, test=2, image_size=64)


@pytest.fixture(scope="module")
def network_guard(tmp_path_factory):
    folder = tmp_path_factory.mktemp("guard")
    (folder / "sitecustomize.py").write_text(NETWORK_GUARD)
    return folder


def job_environment(job_dir: Path, train_dir: Path, guard: Path, **extra: str) -> dict:
    return with_shared_modules({
        "PATH": "/usr/bin:/bin",
        "HOME": str(job_dir / "home"),  # nothing of the developer's own ~/.config/Ultralytics
        "PYTHONPATH": str(guard),
        "NETWORK_GUARD_LOG": str(job_dir / "network.log"),
        "SM_CHANNEL_TRAIN": str(train_dir),
        "SM_MODEL_DIR": str(job_dir / "model"),
        "SM_OUTPUT_DATA_DIR": str(job_dir / "output" / "data"),
        "SM_NUM_GPUS": "0",
        "SAGEMAKER_BASE_DIR": str(job_dir),
        **extra,
    })


def run_training(job_dir: Path, train_dir: Path, guard: Path, *flags: str, **env: str) -> subprocess.CompletedProcess:
    """Run train.py in job_dir the way the toolkit does: SM_* paths, SAGEMAKER_BASE_DIR, flags as strings."""
    job_dir.mkdir(parents=True, exist_ok=True)
    return subprocess.run([sys.executable, "train.py", *flags], cwd=SOURCE_DIR, env=job_environment(job_dir, train_dir, guard, **env),
                          capture_output=True, text=True, timeout=600)


def network_attempts(job_dir: Path) -> list[str]:
    log = job_dir / "network.log"
    return log.read_text().splitlines() if log.exists() else []


def metric_names() -> list[str]:
    return [definition.name for definition in load_workload("room_detection").training.metric_definitions]


def metric_values(log: str) -> dict[str, list[float]]:
    """What SageMaker's MetricDefinitions extract from the log, line by line."""
    values = {}
    for line in log.splitlines():
        for definition in load_workload("room_detection").training.metric_definitions:
            match = re.search(definition.regex, line)
            if match:
                values.setdefault(definition.name, []).append(float(match.group(1)))
    return values


@pytest.fixture(scope="module")
def trained(tmp_path_factory, data_dir, network_guard):
    job_dir = tmp_path_factory.mktemp("job")
    result = run_training(job_dir, data_dir, network_guard, "--epochs", "2", *FAST_FLAGS)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return job_dir, result.stdout


@pytest.mark.slow
def test_training_logs_metric_lines_for_sagemaker(trained):
    job_dir, log = trained
    epoch_lines = [line for line in log.splitlines() if line.startswith("epoch=")]
    number = r"\d+\.\d{4}"
    assert len(epoch_lines) == 2 and all(re.fullmatch(
        rf"epoch=\d+ box_loss={number} cls_loss={number} dfl_loss={number} precision={number} recall={number} "
        rf"mAP50={number} mAP50-95={number} learning_rate=\d+\.\d{{6}} epoch_seconds=\d+\.\d", line) for line in epoch_lines), epoch_lines
    assert re.search(rf"^best_epoch=\d+ best_precision={number} best_recall={number} best_mAP50={number} "
                     rf"best_mAP50-95={number}$", log, re.M)
    assert re.search(rf"^test_precision={number} test_recall={number} test_mAP50={number} test_mAP50-95={number}$", log, re.M)

    # every metric from exactly the lines meant for it: never from ultralytics' own output, nor best_ / test_ lines
    metrics = metric_values(log)
    assert metrics["epoch"] == [1, 2]
    assert {name: len(values) for name, values in metrics.items()} == {
        name: 1 if name.startswith(("best:", "test:")) else 2 for name in metric_names()}

    # and each is the number train.py measured (training_metrics.json keeps them unrounded)
    measured = json.loads((job_dir / "model" / "training_metrics.json").read_text())
    history, box_metrics = measured["history"], ("precision", "recall", "mAP50", "mAP50-95")
    expected = {"epoch": ([entry["epoch"] for entry in history], 0),
                "learning_rate": ([entry["lr"] for entry in history], 5e-7),
                "epoch_seconds": ([entry["epoch_seconds"] for entry in history], 0.05),
                **{f"train:{name}": ([entry[name] for entry in history], 5e-5) for name in ("box_loss", "cls_loss", "dfl_loss")},
                **{f"validation:{name}": ([entry[name] for entry in history], 5e-5) for name in box_metrics},
                **{f"best:validation:{name}": ([measured["best"][name]], 5e-5) for name in box_metrics},
                **{f"test:{name}": ([measured["test"][name]], 5e-5) for name in box_metrics}}
    assert set(expected) == set(metric_names())  # a new regex needs its value here
    assert metrics == {name: pytest.approx(values, abs=tolerance) for name, (values, tolerance) in expected.items()}


@pytest.mark.slow
def test_training_never_touches_the_network(trained):
    job_dir, log = trained
    assert network_attempts(job_dir) == []
    assert "offline" in log


@pytest.mark.slow
def test_training_writes_only_to_its_job_folders(trained):
    """Nothing lands in the working directory (the source folder here, /opt/ml/code on SageMaker)."""
    assert not (SOURCE_DIR / "runs").exists() and not (SOURCE_DIR / "weights").exists()
    assert not (SOURCE_DIR.parents[1] / "runs").exists()


@pytest.mark.slow
def test_model_dir_holds_checkpoints_weights_metrics_and_serving_code(trained):
    import torch

    job_dir, log = trained
    model_dir = job_dir / "model"
    assert sorted(p.name for p in model_dir.iterdir()) == [
        "best.pt", "code", "last.pt", "model.pth", "model_info.json", "training_metrics.json", "yolov8n.yaml"]
    assert sorted(p.name for p in (model_dir / "code").iterdir()) == ["inference.py", "inference_errors.py", "requirements.txt"]

    state = torch.load(model_dir / "model.pth", weights_only=True)
    assert all(v.dtype == torch.float32 for v in state.values() if v.is_floating_point())
    assert yaml.safe_load((model_dir / "yolov8n.yaml").read_text())["nc"] == 1

    info = json.loads((model_dir / "model_info.json").read_text())
    assert info["class_names"] == ["room"] and info["imgsz"] == 64 and info["architecture"] == "yolov8n"
    assert info["metric"]["name"] == "validation:mAP50"
    assert f"best_mAP50={info['metric']['value']:.4f}" in log

    metrics = json.loads((model_dir / "training_metrics.json").read_text())
    assert [entry["epoch"] for entry in metrics["history"]] == [1, 2]
    assert set(metrics["best"]) == set(metrics["test"]) == {"precision", "recall", "mAP50", "mAP50-95"}
    assert metrics["images"] == {"train": 16, "val": 4, "test": 2}
    assert metrics["hyperparameters"]["imgsz"] == 64 and metrics["started_from"] == "yolov8n.yaml (random init)"
    assert (job_dir / "output" / "data" / "results.csv").is_file()
    progress = json.loads((job_dir / "checkpoints" / "progress.json").read_text())
    assert progress["finished"] and len(progress["history"]) == 2


@pytest.mark.slow
def test_trained_model_serves_through_its_own_code(trained):
    """code/inference.py, as the inference container loads it from model.tar.gz, answers a floor plan."""
    from tests.unit.test_room_detection_inference import encode

    job_dir, _ = trained
    inference = import_source("inference", job_dir / "model" / "code")
    model = inference.model_fn(str(job_dir / "model"))
    plan = room_detection.sample_plans(1, seed=11, size=64)[0]
    body = encode(plan.image, "PNG")
    answer = json.loads(inference.output_fn(inference.predict_fn(inference.input_fn(body, "image/png"), model), "application/json"))
    assert answer["image"] == {"width": 64, "height": 64} and isinstance(answer["boxes"], list)


@pytest.mark.slow
def test_pretrained_weights_load_through_the_aws_path_offline(trained, data_dir, network_guard, tmp_path):
    """--pretrained true with --weights: the path real AWS jobs take (there with yolov8n.pt), here with our own best.pt
    from the weights channel, so nothing is downloaded."""
    job_dir, _ = trained
    weights_channel = tmp_path / "weights"
    weights_channel.mkdir()
    shutil.copy(job_dir / "model" / "best.pt", weights_channel / "best.pt")
    flags = [f for f in FAST_FLAGS if f != "false"]
    flags[flags.index("--pretrained") + 1:flags.index("--pretrained") + 1] = ["true"]
    result = run_training(tmp_path / "job", data_dir, network_guard, "--epochs", "1", "--weights", "best.pt", *flags,
                          SM_CHANNEL_WEIGHTS=str(weights_channel))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert f"model: {weights_channel / 'best.pt'} (pretrained)" in result.stdout
    assert "offline" in result.stdout and network_attempts(tmp_path / "job") == []
    metrics = json.loads((tmp_path / "job" / "model" / "training_metrics.json").read_text())
    assert metrics["started_from"] == str(weights_channel / "best.pt")


@pytest.mark.slow
def test_a_stopped_job_resumes_from_its_checkpoint(data_dir, network_guard, tmp_path):
    """A spot interruption: the job is killed after its first epoch; the restarted job resumes at the second."""
    job_dir = tmp_path / "job"
    job_dir.mkdir()
    command = [sys.executable, "train.py", "--epochs", "3", *FAST_FLAGS]
    with subprocess.Popen(command, cwd=SOURCE_DIR, env=job_environment(job_dir, data_dir, network_guard),
                          stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True) as first:
        for line in first.stdout:
            if line.startswith("epoch=1 "):
                first.send_signal(signal.SIGKILL)
                break
    assert first.wait(timeout=60) == -signal.SIGKILL
    assert not (job_dir / "model").exists()

    second = run_training(job_dir, data_dir, network_guard, "--epochs", "3", *FAST_FLAGS)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    assert "resuming from" in second.stdout and "1 epoch(s) done of 3" in second.stdout
    assert [line.split()[0] for line in second.stdout.splitlines() if line.startswith("epoch=")] == ["epoch=2", "epoch=3"]
    metrics = json.loads((job_dir / "model" / "training_metrics.json").read_text())
    assert [entry["epoch"] for entry in metrics["history"]] == [1, 2, 3]


@pytest.mark.slow
def test_a_finished_checkpoint_is_packaged_without_training(trained, data_dir, network_guard, tmp_path):
    job_dir, _ = trained
    shutil.copytree(job_dir / "checkpoints", tmp_path / "checkpoints")  # as SageMaker restores CheckpointConfig
    result = run_training(tmp_path, data_dir, network_guard, "--epochs", "2", *FAST_FLAGS)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "holds a finished run of 2 epoch(s): packaging it without training" in result.stdout
    assert not [line for line in result.stdout.splitlines() if line.startswith("epoch=")]
    assert (tmp_path / "model" / "best.pt").read_bytes() == (job_dir / "model" / "best.pt").read_bytes()
    assert "best_mAP50=" in result.stdout and "test_mAP50=" in result.stdout


@pytest.mark.slow
def test_bad_hyperparameters_fail_the_job_with_a_clear_message(tmp_path, data_dir, network_guard):
    result = run_training(tmp_path, data_dir, network_guard, "--epochs", "0", "--imgsz", "100", "--model-size", "q")
    assert result.returncode != 0
    assert "--epochs must be at least 1 (got 0)" in result.stderr
    assert "--imgsz must be a positive multiple of 32" in result.stderr
    assert "--model-size must be one of n, s, m, l, x (got 'q')" in result.stderr
    assert not (tmp_path / "model").exists()


@pytest.mark.slow
def test_a_channel_without_dataset_yaml_fails_naming_what_it_found(tmp_path, network_guard):
    (tmp_path / "train" / "images").mkdir(parents=True)
    (tmp_path / "train" / "images" / "a.png").write_bytes(b"")
    result = run_training(tmp_path / "job", tmp_path / "train", network_guard, "--epochs", "1", *FAST_FLAGS)
    assert result.returncode != 0
    assert f"No dataset.yaml in the train channel {tmp_path / 'train'}" in result.stderr
    assert "images/a.png" in result.stderr


# ---- in-process: settings and data, no training


def test_flags_arrive_in_either_spelling_with_string_booleans(train_module, monkeypatch):
    monkeypatch.setenv("SM_CHANNEL_TRAIN", "/data/train")
    monkeypatch.setenv("SAGEMAKER_BASE_DIR", "/job")
    hp, paths = train_module.parse_args(["--model-size", "s", "--pretrained", "False", "--epochs", "3", "--batch", "-1",
                                         "--lr0", "0.02", "--model_size", "m", "--_tuning_objective_metric", "x"])
    assert (hp.model_size, hp.pretrained, hp.epochs, hp.batch, hp.lr0) == ("m", False, 3, -1, 0.02)
    assert (hp.imgsz, hp.patience, hp.workers, hp.optimizer, hp.nbs) == (640, 100, 8, "auto", 64)
    assert paths.train == "/data/train" and hp.checkpoint_dir == "/job/checkpoints"


def test_the_workload_flags_reach_the_script_as_sagemaker_passes_them(train_module, tmp_path, monkeypatch):
    """The toolkit's own decoding of both profiles' hyperparameters parses and validates."""
    from sagemaker_training import environment, mapping, params

    from include.pipelines import requests

    for profile in ("local", "aws"):
        cfg = load_workload("room_detection", profile)
        request = requests.build_training_request(
            cfg, job_name="room-detection-train-1", source_uri="s3://b/source/sourcedir.tar.gz",
            image_uri="763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-training:2.5.1-gpu-py311",
            channels=cfg.channel_uris())
        hyperparameters_file = tmp_path / f"{profile}.json"
        hyperparameters_file.write_text(json.dumps(request["HyperParameters"]))
        monkeypatch.setattr(environment, "hyperparameters_file_dir", str(hyperparameters_file))
        decoded = environment.read_hyperparameters()
        split = mapping.split_by_criteria(decoded, keys=params.SAGEMAKER_HYPERPARAMETERS, prefix=params.SAGEMAKER_PREFIX)
        hp, _ = train_module.parse_args(mapping.to_cmd_args(split.excluded))
        train_module.validate(hp)
        expected = cfg.training.hyperparameters
        assert (hp.model_size, hp.pretrained, hp.epochs, hp.batch, hp.imgsz) == (
            expected["model-size"], expected["pretrained"], expected["epochs"], expected["batch"], expected["imgsz"])


@pytest.mark.parametrize("argv, message", [
    (["--epoch", "3"], "unrecognized hyperparameter(s) --epoch"),
    (["--pretrained", "maybe"], "expected true or false, got 'maybe'"),
    (["--imgsz", "big"], "invalid int value: 'big'"),
])
def test_unknown_or_malformed_flags_are_refused(train_module, capsys, argv, message):
    with pytest.raises(SystemExit):
        train_module.parse_args(argv)
    assert message in capsys.readouterr().err


def test_validation_names_every_bad_hyperparameter(train_module):
    hp, _ = train_module.parse_args(["--batch", "0", "--lr0", "nan", "--optimizer", "Lion", "--pretrained", "false",
                                     "--weights", "x.pt", "--patience", "0", "--nbs", "0", "--workers", "-1"])
    with pytest.raises(ValueError) as caught:
        train_module.validate(hp)
    for phrase in ("--batch must be -1 (AutoBatch, on a GPU) or at least 1 (got 0)", "--lr0 must be a positive number",
                   "--optimizer must be one of auto, SGD", "--weights 'x.pt' applies only with --pretrained true",
                   "--patience must be at least 1", "--nbs must be at least 1", "--workers must be 0 or more"):
        assert phrase in str(caught.value)


def test_weights_resolve_to_the_hub_a_path_or_the_weights_channel(train_module, tmp_path):
    hp, paths = train_module.parse_args(["--model-size", "s"])
    assert train_module.resolve_weights(hp, paths) == ("yolov8s.pt", True)  # downloaded by ultralytics: online
    hp.pretrained = False
    assert train_module.resolve_weights(hp, paths) == ("yolov8s.yaml", False)
    (tmp_path / "mine.pt").write_bytes(b"x")
    hp.pretrained, hp.weights, paths.weights_channel = True, "mine.pt", str(tmp_path)
    assert train_module.resolve_weights(hp, paths) == (str(tmp_path / "mine.pt"), False)
    hp.weights = "missing.pt"
    with pytest.raises(FileNotFoundError, match="--weights 'missing.pt' is not a file"):
        train_module.resolve_weights(hp, paths)


def test_metric_definitions_fit_the_sagemaker_api():
    definitions = [{"Name": m.name, "Regex": m.regex} for m in load_workload("room_detection", "aws").training.metric_definitions]
    request = {
        "TrainingJobName": "rooms", "RoleArn": "arn:aws:iam::123456789012:role/SageMakerExecutionRole",
        "AlgorithmSpecification": {"TrainingImage": "763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-training:2.5.1-gpu-py311",
                                   "TrainingInputMode": "File", "MetricDefinitions": definitions},
        "OutputDataConfig": {"S3OutputPath": "s3://bucket/out"},
        "ResourceConfig": {"InstanceType": "ml.p3.2xlarge", "InstanceCount": 1, "VolumeSizeInGB": 30},
        "StoppingCondition": {"MaxRuntimeInSeconds": 3600},
    }
    assert request_problems("sagemaker", "CreateTrainingJob", request) == []


def test_metric_regexes_tell_the_epoch_best_and_test_lines_apart():
    epoch = "epoch=3 box_loss=1.2345 cls_loss=0.5000 dfl_loss=1.0000 precision=0.8123 recall=0.7012 mAP50=0.8000 mAP50-95=0.5000 learning_rate=0.001000 epoch_seconds=2.5"
    best = "best_epoch=3 best_precision=0.8100 best_recall=0.7000 best_mAP50=0.8200 best_mAP50-95=0.5100"
    test = "test_precision=0.7000 test_recall=0.6000 test_mAP50=0.7500 test_mAP50-95=0.4000"
    values = metric_values("\n".join([epoch, best, test]))
    assert values["validation:mAP50"] == [0.8] and values["validation:mAP50-95"] == [0.5]
    assert values["validation:precision"] == [0.8123] and values["validation:recall"] == [0.7012]
    assert values["best:validation:mAP50"] == [0.82] and values["best:validation:mAP50-95"] == [0.51]
    assert values["test:mAP50"] == [0.75] and values["test:precision"] == [0.7]
    assert values["epoch"] == [3] and values["learning_rate"] == [0.001]


def test_dataset_yaml_is_pointed_at_the_channel(train_module, data_dir, tmp_path):
    channel = tmp_path / "channel"
    shutil.copytree(data_dir, channel)
    config = yaml.safe_load((channel / "dataset.yaml").read_text())
    (channel / "dataset.yaml").write_text(yaml.safe_dump({**config, "path": "/Users/someone/datasets/rooms"}))
    effective, info = train_module.prepare_dataset(str(channel), tmp_path / "work")
    written = yaml.safe_load(effective.read_text())
    assert written["path"] == str(channel.resolve()) and written["train"] == "images/train"
    assert info == {"class_names": ["room"], "images": {"train": 16, "val": 4, "test": 2}}


@pytest.mark.parametrize("change, message", [
    ({"val": None}, "lacks val"),
    ({"names": None, "train": None}, "lacks train, names"),
    ({"val": "images/missing"}, "The val split of"),
])
def test_broken_dataset_yaml_is_refused_clearly(train_module, data_dir, tmp_path, change, message):
    channel = tmp_path / "channel"
    shutil.copytree(data_dir, channel)
    config = yaml.safe_load((channel / "dataset.yaml").read_text())
    config.update(change)
    (channel / "dataset.yaml").write_text(yaml.safe_dump({k: v for k, v in config.items() if v is not None}))
    with pytest.raises(ValueError, match=re.escape(message)):
        train_module.prepare_dataset(str(channel), tmp_path / "work")


class _RunsCodeWhenUnpickled:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_a_checkpoint_that_would_run_code_when_unpickled_is_not_resumed(train_module, tmp_path):
    import torch

    weights_dir, marker = tmp_path / "run" / "weights", tmp_path / "unpickled"
    weights_dir.mkdir(parents=True)
    torch.save({"model": None, "epoch": 1, "payload": _RunsCodeWhenUnpickled(marker)}, weights_dir / "last.pt")
    with pytest.raises(RuntimeError, match=r"last\.pt does not load with torch\.load\(weights_only=True\)"):
        train_module.check_checkpoints_are_weights_only(weights_dir)
    assert not marker.exists()


