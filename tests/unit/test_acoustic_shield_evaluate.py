"""evaluate.py of the acoustic shield as its Processing job runs it: unpacked from sourcedir.tar.gz (the workload's
files and the shared modules side by side), given model.tar.gz folders and the held-out clips by arguments."""
import subprocess
import sys
from pathlib import Path

import pytest

from include.datasets import acoustic_shield
from tests.source_modules import with_shared_modules
from tests.unit.evaluate_checks import (check_a_cut_short_archive_fails_naming_it, check_only_evaluation_json,
                                        check_same_model_scores_the_same, evaluate, evaluate_without_champion,
                                        trained_model, unpack_sourcedir, value, weak_and_strong)
from tests.unit.test_acoustic_shield_training import LOCAL_FLAGS, SOURCE_DIR

pytestmark = pytest.mark.slow
METRIC = "macro_f1"


def run_training(job_dir: Path, channels: dict[str, Path], *flags: str) -> subprocess.CompletedProcess:
    """train.py as test_acoustic_shield_training runs it (SM_* paths and channels, flags as strings), on one
    thread: two threads on two busy cores take five times as long."""
    env = {
        "PATH": "/usr/bin:/bin",
        "SM_MODEL_DIR": str(job_dir / "model"),
        "SM_OUTPUT_DATA_DIR": str(job_dir / "output" / "data"),
        "SM_NUM_GPUS": "0",
        "HF_HUB_OFFLINE": "1",
        "OMP_NUM_THREADS": "1",
        **{f"SM_CHANNEL_{name.upper()}": str(path) for name, path in channels.items()},
    }
    return subprocess.run([sys.executable, "train.py", *flags], cwd=SOURCE_DIR, env=with_shared_modules(env),
                          capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def code_dir(tmp_path_factory):
    """/opt/ml/processing/input/code: sourcedir.tar.gz as the pipeline packs it, unpacked."""
    return unpack_sourcedir(SOURCE_DIR, tmp_path_factory.mktemp("code"))


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    # the generator writes train/ and validation/; validation/ is the split train.py never trains on
    return acoustic_shield.generate(tmp_path_factory.mktemp("clips"), clips_per_class=24, validation_per_class=6,
                                    max_seconds=1.2)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, data_dir):
    """The local profile's model: 4 epochs on 96 clips."""
    job_dir = tmp_path_factory.mktemp("trained")
    channels = {"train": data_dir / "train", "validation": data_dir / "validation"}
    return trained_model(job_dir, run_training(job_dir, channels, "--epochs", "4", *LOCAL_FLAGS))


@pytest.fixture(scope="module")
def untrained(tmp_path_factory):
    """A model trained with settings too weak to learn: one epoch on 2 clips a class, at a learning rate of 1e-9."""
    job_dir = tmp_path_factory.mktemp("untrained")
    data = acoustic_shield.generate(job_dir / "clips", clips_per_class=2, max_seconds=0.9, seed=5)
    flags = list(LOCAL_FLAGS)
    flags[flags.index("--learning-rate") + 1] = "1e-9"
    return trained_model(job_dir, run_training(job_dir, {"train": data / "train"}, "--epochs", "1", *flags))


@pytest.fixture(scope="module")
def without_champion(tmp_path_factory, code_dir, trained, data_dir):
    return evaluate_without_champion(tmp_path_factory.mktemp("no-champion") / "evaluation", code_dir, trained,
                                     data_dir / "validation")


def test_without_a_champion_only_evaluation_json_is_written(without_champion):
    report = check_only_evaluation_json(without_champion, {METRIC, "accuracy"}, samples=24)
    assert 0.5 <= value(report, METRIC)  # the local gate; chance is 0.25


def test_the_same_model_as_challenger_and_champion_scores_the_same_every_run(code_dir, trained, data_dir,
                                                                              without_champion, tmp_path):
    check_same_model_scores_the_same(code_dir, trained, data_dir / "validation", without_champion, tmp_path)


def test_a_model_too_weak_to_learn_scores_below_a_trained_one(code_dir, trained, untrained, data_dir, tmp_path):
    weak, strong = weak_and_strong(code_dir, untrained, trained, data_dir / "validation", tmp_path, METRIC)
    # an untrained network answers (nearly) one class: macro-F1 about 0.1; the trained one clears the gate, 0.5
    assert weak < 0.5 <= strong, (weak, strong)


def test_a_broken_archive_fails_naming_it(code_dir, trained, data_dir, tmp_path):
    check_a_cut_short_archive_fails_naming_it(code_dir, trained, data_dir / "validation", tmp_path, "champion")

    empty = tmp_path / "empty"
    empty.mkdir()
    result = evaluate(code_dir, tmp_path / "evaluation", empty, data_dir / "validation")
    assert result.returncode == 1 and f"EvaluationError: no model.tar.gz in --challenger {empty}" in result.stderr


def test_test_data_in_another_layout_fails_naming_the_folder(code_dir, trained, data_dir, tmp_path):
    flat = tmp_path / "flat"
    flat.mkdir()
    (flat / "clip.wav").write_bytes(acoustic_shield.sample_clip("Normal"))
    result = evaluate(code_dir, tmp_path / "evaluation", trained, flat)
    assert result.returncode == 1 and "EvaluationError: --test-data: No <Label>/*.wav files" in result.stderr, result.stderr
    assert str(flat) in result.stderr

    # the whole data location instead of one split of it
    result = evaluate(code_dir, tmp_path / "evaluation", trained, data_dir)
    assert result.returncode == 1, result.stderr
    assert f"EvaluationError: --test-data {data_dir} holds the split folders train, validation" in result.stderr
