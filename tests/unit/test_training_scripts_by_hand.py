"""Every command a train.py docstring shows runs as written: from the repository root, with nothing on
PYTHONPATH (train.py finds training_src/shared itself when the shared modules are not its siblings, as
they are in the container's /opt/ml/code). Also the one way hyperparameters are declared and parsed
(training_src/shared/sagemaker_hyperparameters.py), as SageMaker's training toolkit passes them."""
from __future__ import annotations

import ast
import os
import re
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field, fields
from pathlib import Path

import pytest

from include.pipelines.config import load_workload
from tests.source_modules import SHARED_SOURCE, TRAINING_SRC, import_source

ROOT = TRAINING_SRC.parent
WORKLOADS = sorted(path.parent.name for path in TRAINING_SRC.glob("*/train.py"))

# Flags appended to each documented command (the last value of a flag wins) to make its real run tiny: the
# point is that the command works, not what it trains.
TINY = {
    "acoustic_shield": {"include.datasets.acoustic_shield": ["--clips-per-class", "3", "--validation-per-class", "1",
                                                             "--max-seconds", "0.9"],
                        "train.py": ["--epochs", "1", "--batch-size", "4"]},
    "brain_to_text": {"include.datasets.brain_to_text": ["--sessions", "2", "--train-trials", "8", "--val-trials", "2",
                                                         "--test-trials", "1"],
                      "train.py": ["--num-training-batches", "4", "--batches-per-val-step", "2", "--batch-size", "4",
                                   "--days-per-batch", "2"]},
    "cifar10": {"include.datasets.cifar10": ["--train-per-class", "4", "--test-per-class", "2"],
                "train.py": ["--epochs", "1", "--batch-size", "20", "--num-workers", "0"]},
    "meld_sentiment": {"include.datasets.meld_sentiment": ["--train-utterances", "14", "--validation-utterances", "14"],
                       "train.py": ["--epochs", "1", "--decode-workers", "2"]},
    "room_detection": {"include.datasets.room_detection": ["--train", "4", "--val", "2", "--test", "2", "--image-size", "64"],
                       "train.py": ["--epochs", "1", "--imgsz", "64", "--batch", "4", "--nbs", "4"]},
}


def documented_commands(workload: str) -> list[list[str]]:
    """The shell commands of train.py's docstring (its lines that start with `python`, `\\` continuations
    joined, `#` comments dropped), each as the argv a shell would run."""
    docstring = ast.get_docstring(ast.parse((TRAINING_SRC / workload / "train.py").read_text()), clean=False)
    text = docstring.replace("\\\n", " ")
    return [shlex.split(line, comments=True) for line in text.splitlines() if line.strip().startswith("python ")]


def train_command(workload: str) -> list[str]:
    (command,) = [argv for argv in documented_commands(workload) if argv[1:2] == [f"training_src/{workload}/train.py"]]
    return command


def by_hand_environment(home: Path) -> dict[str, str]:
    """A shell's environment with no PYTHONPATH and no SageMaker: what someone running the docstring has."""
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home), "OMP_NUM_THREADS": "1",
            "HF_HUB_OFFLINE": "1", "SM_NUM_GPUS": "0"}


def run(argv: list[str], cwd: Path, env: dict[str, str], timeout: float) -> subprocess.CompletedProcess:
    assert argv[0] == "python", argv  # the docstrings' `python` is the environment's: the tests' own
    return subprocess.run([sys.executable, *argv[1:]], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def test_every_workload_documents_how_to_run_its_script_by_hand():
    assert WORKLOADS == sorted(TINY)  # a new workload needs its tiny run here
    for workload in WORKLOADS:
        commands = documented_commands(workload)
        assert train_command(workload)[-2:] == ["--model-dir", "model"], workload
        # the data the script reads by hand comes from a documented generator command first
        generators = [argv for argv in commands if argv[1:3] == ["-m", f"include.datasets.{workload}"]]
        assert len(generators) == 1 and commands.index(generators[0]) < commands.index(train_command(workload)), workload


@pytest.mark.parametrize("workload", WORKLOADS)
def test_the_documented_commands_answer_help_from_the_repository_root(workload, tmp_path):
    """`python training_src/<workload>/train.py --help` from the repository root, nothing on PYTHONPATH: the
    shared modules are found; and every flag the docstring passes is one the script accepts."""
    env = by_hand_environment(tmp_path)
    for argv in documented_commands(workload):
        program = argv[:3] if argv[1] == "-m" else argv[:2]
        result = run([*program, "--help"], ROOT, env, timeout=300)
        assert result.returncode == 0, result.stdout + result.stderr
        assert result.stdout.startswith("usage: "), result.stdout
        accepted = set(re.findall(r"(?<![\w-])--[\w-]+", result.stdout))
        assert {arg for arg in argv if arg.startswith("--")} <= accepted, (argv, sorted(accepted))


@pytest.mark.slow
@pytest.mark.parametrize("workload", WORKLOADS)
def test_the_documented_commands_train_a_model_by_hand(workload, tmp_path):
    """The docstring's commands one after the other, as written plus TINY's flags, in a copy of the repository
    root (training_src/ and include/ linked, so data/, model/ and output/ land in tmp_path)."""
    for name in ("training_src", "include"):
        (tmp_path / name).symlink_to(ROOT / name, target_is_directory=True)
    env = {**by_hand_environment(tmp_path), "SAGEMAKER_BASE_DIR": str(tmp_path / "job")}  # checkpoints: never /opt/ml
    started, log = time.perf_counter(), ""
    for argv in documented_commands(workload):
        extra = TINY[workload]["train.py" if argv[1].endswith("/train.py") else argv[2]]
        result = run(argv + extra, tmp_path, env, timeout=600)
        assert result.returncode == 0, f"{shlex.join(argv + extra)}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        log = result.stdout
    elapsed = time.perf_counter() - started

    model_dir = tmp_path / "model"
    code = {path.name for path in (model_dir / "code").iterdir()}
    assert {"inference.py", "requirements.txt", "inference_errors.py"} <= code  # the shared module, from training_src/shared
    cfg = load_workload(workload, "local")
    gate = {m.name: m.regex for m in cfg.training.metric_definitions}[cfg.evaluation.metric]
    assert re.search(gate, log, re.M), f"no {cfg.evaluation.metric} ({gate}) in\n{log[-3000:]}"
    print(f"{workload}: documented commands, tiny, in {elapsed:.1f} s")


# --- one way to declare and parse hyperparameters ---------------------------------------------------------

@pytest.fixture(scope="module")
def hyperparameters_module():
    return import_source("sagemaker_hyperparameters", SHARED_SOURCE)


@pytest.mark.parametrize("workload", WORKLOADS)
def test_the_script_takes_its_defaults_back_as_the_toolkit_passes_them(workload):
    """Each hyperparameter's default, written as a workload YAML would (booleans as true/false) and turned
    into flags by sagemaker-training's own to_cmd_args (`--name value`, "True"/"False"), parses to itself;
    so does every boolean flipped."""
    from sagemaker_training import mapping

    train = import_source("train", TRAINING_SRC / workload)
    defaults, _ = train.parse_args([])
    names = [f.name for f in fields(defaults)]
    values = {name.replace("_", "-"): getattr(defaults, name) for name in names}
    parsed, _ = train.parse_args(mapping.to_cmd_args(values))
    assert parsed == defaults
    flipped = {name: not value if isinstance(value, bool) else value for name, value in values.items()}
    parsed, _ = train.parse_args(mapping.to_cmd_args(flipped))
    assert [getattr(parsed, name) for name in names] == list(flipped.values())


def test_a_one_letter_hyperparameter_arrives_as_a_single_dash_flag(hyperparameters_module):
    from sagemaker_training import mapping

    @dataclass
    class Settings:
        k: int = hyperparameters_module.setting(3, "neighbours")
        fast: bool = hyperparameters_module.setting(False, "go fast")

    argv = mapping.to_cmd_args({"k": 5, "fast": True})
    assert argv == ["--fast", "True", "-k", "5"]
    (settings,) = hyperparameters_module.parse_hyperparameters("test", (Settings,), argv)
    assert settings == Settings(k=5, fast=True)
    assert hyperparameters_module.parse_hyperparameters("test", (Settings,), ["--k", "7"])[0].k == 7


def test_env_and_job_folder_defaults_are_read_when_parsed(hyperparameters_module, monkeypatch, tmp_path):
    setting = hyperparameters_module.setting

    @dataclass
    class Settings:
        model_dir: str = setting("model", "artifacts", env="SM_MODEL_DIR")
        num_gpus: int = setting(0, "GPUs", env="SM_NUM_GPUS")
        checkpoint_dir: str = setting("checkpoints", "spot checkpoints", job_folder="checkpoints")

    monkeypatch.delenv("SM_MODEL_DIR", raising=False)
    monkeypatch.delenv("SM_NUM_GPUS", raising=False)
    monkeypatch.delenv("SAGEMAKER_BASE_DIR", raising=False)
    by_hand = hyperparameters_module.parse_hyperparameters("test", (Settings,), [])[0]
    assert by_hand.model_dir == "model" and by_hand.num_gpus == 0
    assert by_hand.checkpoint_dir in ("checkpoints", "/opt/ml/checkpoints")  # /opt/ml/: inside a SageMaker container
    monkeypatch.setenv("SM_MODEL_DIR", "/opt/ml/model")
    monkeypatch.setenv("SM_NUM_GPUS", "4")
    monkeypatch.setenv("SAGEMAKER_BASE_DIR", str(tmp_path))
    job = hyperparameters_module.parse_hyperparameters("test", (Settings,), [])[0]
    assert (job.model_dir, job.num_gpus, job.checkpoint_dir) == ("/opt/ml/model", 4, str(tmp_path / "checkpoints"))


def test_a_field_not_declared_with_setting_is_refused(hyperparameters_module):
    @dataclass
    class Settings:
        epochs: int = field(default=1, metadata={"help": "the other way"})

    with pytest.raises(TypeError, match=r"Settings\.epochs must be declared with setting\(\)"):
        hyperparameters_module.parse_hyperparameters("test", (Settings,), [])


def test_every_train_py_declares_its_settings_one_way():
    """Through sagemaker_hyperparameters.setting() only: no raw dataclasses.field, no second helper."""
    for workload in WORKLOADS:
        source = (TRAINING_SRC / workload / "train.py").read_text()
        assert "from sagemaker_hyperparameters import parse_hyperparameters, setting\n" in source, workload
        assert not re.search(r"\bfield\(", source), workload
        assert "METRIC_DEFINITIONS" not in source, workload  # the workload YAML's metric_definitions are the one copy
