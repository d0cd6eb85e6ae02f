"""evaluate.py as the pipeline's processing job runs it: a subprocess with --challenger, --champion, --test-data
and --output, scoring model.tar.gz archives packed from what train.py wrote to SM_MODEL_DIR."""
import json
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from include.datasets import brain_to_text as generator
from include.pipelines.config import load_workload
from tests.source_modules import with_shared_modules
from tests.unit.test_brain_to_text_dataset import SOURCE_DIR
from tests.unit.test_brain_to_text_training import HELD_OUT, profile_flags, run_training

EVALUATE = SOURCE_DIR / "evaluate.py"
CATEGORY, METRIC = "sequence_metrics", "diphone_error_rate"
# one batch without the output-bias start: its decode is noise, so its DER is an uneven figure above 1
# (with the bias start a barely trained model decodes only blanks, DER exactly 1.0)
WEAK = {"num-training-batches": 1, "batches-per-val-step": 1, "init-output-bias": False}


def pack(model_dir: Path, folder: Path) -> Path:
    """model.tar.gz as SageMaker packs SM_MODEL_DIR: its contents at the archive's top."""
    folder.mkdir(parents=True, exist_ok=True)
    with tarfile.open(folder / "model.tar.gz", "w:gz") as tar:
        for entry in sorted(model_dir.iterdir()):
            tar.add(entry, arcname=entry.name)
    return folder


def run_evaluate(workdir: Path, challenger: Path, test_data: Path, champion: Path | None = None):
    """(the finished process, the output folder); by path, from another folder, as a job's entrypoint runs it."""
    output = workdir / "evaluation"
    command = [sys.executable, str(EVALUATE), "--challenger", str(challenger), "--test-data", str(test_data),
               "--output", str(output)]
    if champion is not None:
        command += ["--champion", str(champion)]
    result = subprocess.run(command, cwd=workdir, env=with_shared_modules({"PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"}),
                            capture_output=True, text=True, timeout=600)
    return result, output


def reports(output: Path) -> dict[str, dict]:
    return {path.name: json.loads(path.read_text()) for path in sorted(output.glob("*.json"))}


def der(report: dict) -> float:
    return report[CATEGORY][METRIC]["value"]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    kwargs = load_workload("brain_to_text", "local").data.generator_kwargs  # 3 sessions, 8 labelled test trials each
    return generator.generate(tmp_path_factory.mktemp("b2t"), **kwargs)


@pytest.fixture(scope="module")
def weak(tmp_path_factory, data_dir):
    job_dir = tmp_path_factory.mktemp("weak-job")
    result = run_training(job_dir, data_dir, *profile_flags(**WEAK))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return pack(job_dir / "model", job_dir / "archive")


@pytest.fixture(scope="module")
def alone(tmp_path_factory, weak, data_dir):
    """The weak model scored with no champion: --champion names the empty folder of a first run's input."""
    workdir = tmp_path_factory.mktemp("alone")
    (workdir / "champion").mkdir()
    result, output = run_evaluate(workdir, weak, data_dir, champion=workdir / "champion")
    assert result.returncode == 0, result.stdout + result.stderr
    return result, output


def test_challenger_alone_writes_evaluation_json_in_the_pipelines_convention(alone):
    result, output = alone
    written = reports(output)
    assert list(written) == ["evaluation.json"]
    report = written["evaluation.json"]
    assert set(report) == {CATEGORY, "samples"} and set(report[CATEGORY]) == {METRIC}
    assert report["samples"] == 3 * 8  # every session's data_test.hdf5
    assert isinstance(der(report), float) and der(report) > 1  # noise: more edits than labels
    assert "champion: none" in result.stdout and f"{HELD_OUT} test DER" in result.stdout


def test_the_same_model_as_challenger_and_champion_gets_identical_reports(tmp_path, alone, weak, data_dir):
    champion = shutil.copytree(weak, tmp_path / "champion")
    result, output = run_evaluate(tmp_path, weak, data_dir, champion=champion)
    assert result.returncode == 0, result.stdout + result.stderr
    written = reports(output)
    assert list(written) == ["champion_evaluation.json", "evaluation.json"]
    # and another process scoring it again gets the very same figure
    assert written["champion_evaluation.json"] == written["evaluation.json"] == reports(alone[1])["evaluation.json"]


def test_a_session_file_downloaded_alone_is_scored_by_its_trials_session(tmp_path, alone, weak, data_dir):
    """The processing input may be one object (<session>/data_test.hdf5) landing at the top of --test-data."""
    (tmp_path / "test").mkdir()
    shutil.copy(data_dir / HELD_OUT / "data_test.hdf5", tmp_path / "test" / "data_test.hdf5")
    result, output = run_evaluate(tmp_path, weak, tmp_path / "test")
    assert result.returncode == 0, result.stdout + result.stderr
    assert reports(output)["evaluation.json"]["samples"] == 8
    assert f"challenger: {HELD_OUT} test DER" in result.stdout
    alone_line = re.search(rf"^challenger: {re.escape(HELD_OUT)} test DER: .*$", alone[0].stdout, re.M)
    assert alone_line and alone_line.group(0) in result.stdout.splitlines()  # the same session, the same figure


@pytest.mark.slow
def test_a_trained_model_scores_below_an_untrained_one_and_as_train_py_validated(tmp_path, weak, data_dir):
    job_dir = tmp_path / "job"
    trained = run_training(job_dir, data_dir, *profile_flags())  # the local profile: 300 batches
    assert trained.returncode == 0, trained.stdout[-3000:] + trained.stderr[-3000:]
    challenger = pack(job_dir / "model", tmp_path / "challenger")
    result, output = run_evaluate(tmp_path, challenger, data_dir, champion=weak)
    assert result.returncode == 0, result.stdout + result.stderr
    written = reports(output)
    gate = load_workload("brain_to_text", "local").evaluation
    assert der(written["evaluation.json"]) <= gate.threshold < 1 < der(written["champion_evaluation.json"]), result.stdout

    # on the validation trials, evaluate.py finds the very DER train.py reported for the model it kept
    validation = tmp_path / "validation"
    for session_dir in sorted(p for p in data_dir.iterdir() if p.is_dir()):
        (validation / session_dir.name).mkdir(parents=True)
        shutil.copy(session_dir / "data_val.hdf5", validation / session_dir.name / "data_test.hdf5")
    (tmp_path / "on-validation").mkdir()
    result, output = run_evaluate(tmp_path / "on-validation", challenger, validation)
    assert result.returncode == 0, result.stdout + result.stderr
    reported = json.loads((job_dir / "model" / "checkpoint" / "val_metrics.json").read_text())["avg_DER"]
    assert der(reports(output)["evaluation.json"]) == pytest.approx(reported, abs=1e-12)


def _broken_archives(folder: Path) -> dict[str, Path]:
    garbage = folder / "garbage"
    garbage.mkdir()
    (garbage / "model.tar.gz").write_bytes(b"\x1f\x8b\x08\x00 truncated gzip")
    no_checkpoint = folder / "no-checkpoint"
    no_checkpoint.mkdir()
    (folder / "training_log").write_text("a model.tar.gz without checkpoint/\n")
    with tarfile.open(no_checkpoint / "model.tar.gz", "w:gz") as tar:
        tar.add(folder / "training_log", arcname="training_log")
    return {"garbage": garbage, "no-checkpoint": no_checkpoint}


@pytest.mark.parametrize("role, kind, message", [
    ("challenger", "garbage", "is not a readable model.tar.gz"),
    ("champion", "no-checkpoint", "checkpoint/args.yaml is missing"),
])
def test_a_broken_archive_fails_naming_it(tmp_path, weak, data_dir, role, kind, message):
    broken = _broken_archives(tmp_path)[kind]
    challenger, champion = (broken, weak) if role == "challenger" else (weak, broken)
    result, output = run_evaluate(tmp_path, challenger, data_dir, champion=champion)
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]  # the exception line, which becomes the job's FailureReason
    assert last.startswith("ModelArchiveError: ") and str(broken / "model.tar.gz") in last and message in last, result.stderr
    assert not output.exists()


def test_a_challenger_folder_without_an_archive_fails_naming_it(tmp_path, data_dir):
    (tmp_path / "challenger").mkdir()
    result, _ = run_evaluate(tmp_path, tmp_path / "challenger", data_dir)
    assert result.returncode != 0
    assert f"ModelArchiveError: No model.tar.gz in the challenger folder {tmp_path / 'challenger'}" in result.stderr


def test_test_data_in_the_wrong_layout_fails_naming_what_is_there(tmp_path, weak, data_dir):
    wrong = tmp_path / "wrong"
    # no test file, and no labelled validation file to fall back on (the published test files are unlabelled)
    shutil.copytree(data_dir / HELD_OUT, wrong / HELD_OUT, ignore=shutil.ignore_patterns("data_test.hdf5", "data_val.hdf5"))
    result, _ = run_evaluate(tmp_path, weak, wrong)
    assert result.returncode != 0
    assert f"HeldOutDataError: No data_test.hdf5 in the test data {wrong}" in result.stderr
    assert f"{HELD_OUT}/data_train.hdf5" in result.stderr


def test_unlabelled_test_files_fail_naming_the_file(tmp_path, weak):
    unlabelled = generator.generate(tmp_path / "published", sessions=1, train_trials=1, val_trials=1, test_trials=2,
                                    test_labels=False)  # the benchmark's published test layout
    result, _ = run_evaluate(tmp_path, weak, unlabelled)
    assert result.returncode != 0
    path = next(unlabelled.glob("*/data_test.hdf5"))
    assert f"HeldOutDataError: {path}: 2 of its 2 trials (trial_0000, ...) carry no labels" in result.stderr


def test_a_session_the_model_has_no_day_layer_for_fails_naming_it(tmp_path, weak, data_dir):
    test_data = tmp_path / "test"
    (test_data / "t15.2099.01.01").mkdir(parents=True)
    shutil.copy(data_dir / HELD_OUT / "data_test.hdf5", test_data / "t15.2099.01.01" / "data_test.hdf5")
    result, _ = run_evaluate(tmp_path, weak, test_data)
    assert result.returncode != 0
    assert "HeldOutDataError: " in result.stderr and "session(s) t15.2099.01.01 have no day-specific input layer" in result.stderr
