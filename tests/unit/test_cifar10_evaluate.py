"""evaluate.py as the pipeline's processing job runs it: a subprocess with --challenger, --champion, --test-data
and --output, scoring model.tar.gz archives packed from what train.py wrote to SM_MODEL_DIR."""
import json
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from include.datasets import cifar10
from tests.source_modules import with_shared_modules
from tests.unit.test_cifar10_inference import SOURCE_DIR
from tests.unit.test_cifar10_training import FAST_FLAGS, run_training

EVALUATE = SOURCE_DIR / "evaluate.py"
CATEGORY, METRIC = "multiclass_classification_metrics", "accuracy"
TEST_PER_CLASS = 10  # 100 test images: every class, and quick to score


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
    result = subprocess.run(command, cwd=workdir, env=with_shared_modules({"PATH": "/usr/bin:/bin"}),
                            capture_output=True, text=True, timeout=600)
    return result, output


def reports(output: Path) -> dict[str, dict]:
    return {path.name: json.loads(path.read_text()) for path in sorted(output.glob("*.json"))}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return cifar10.generate(tmp_path_factory.mktemp("cifar10"), test_per_class=TEST_PER_CLASS)


@pytest.fixture(scope="module")
def weak(tmp_path_factory, data_dir):
    """A model train.py wrote after a single step on 32 images: about chance."""
    job_dir = tmp_path_factory.mktemp("weak-job")
    result = run_training(job_dir, data_dir, "--epochs", "1", "--max-train-samples", "32", *FAST_FLAGS)
    assert result.returncode == 0, result.stdout + result.stderr
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
    assert report["samples"] == 10 * TEST_PER_CLASS
    metrics = report[CATEGORY]
    assert set(metrics) >= {"accuracy", "weighted_f1", "cross_entropy"}
    assert all(set(entry) == {"value"} and isinstance(entry["value"], float) for entry in metrics.values())
    assert 0 <= metrics[METRIC]["value"] <= 1 and metrics["cross_entropy"]["value"] > 0
    assert "champion: none" in result.stdout


def test_the_same_model_as_challenger_and_champion_gets_identical_reports(tmp_path, alone, weak, data_dir):
    champion = shutil.copytree(weak, tmp_path / "champion")
    result, output = run_evaluate(tmp_path, weak, data_dir, champion=champion)
    assert result.returncode == 0, result.stdout + result.stderr
    written = reports(output)
    assert list(written) == ["champion_evaluation.json", "evaluation.json"]
    # and another process scoring it again gets the very same figures
    assert written["champion_evaluation.json"] == written["evaluation.json"] == reports(alone[1])["evaluation.json"]


@pytest.mark.slow
def test_a_trained_model_scores_above_a_barely_trained_one(tmp_path, weak, data_dir):
    job_dir = tmp_path / "job"
    trained = run_training(job_dir, data_dir, "--epochs", "1", *FAST_FLAGS)
    assert trained.returncode == 0, trained.stdout + trained.stderr
    result, output = run_evaluate(tmp_path, pack(job_dir / "model", tmp_path / "challenger"), data_dir, champion=weak)
    assert result.returncode == 0, result.stdout + result.stderr
    written = reports(output)
    challenger = written["evaluation.json"][CATEGORY][METRIC]["value"]
    champion = written["champion_evaluation.json"][CATEGORY][METRIC]["value"]
    assert challenger >= 0.5 and challenger > champion + 0.3, result.stdout  # measured ~0.8 against ~0.1
    # train.py validated on the same test_batch: the endpoint's code path finds the same accuracy
    info = json.loads((job_dir / "model" / "model_info.json").read_text())
    assert challenger == pytest.approx(info["best_metric"]["value"], abs=1.01 / (10 * TEST_PER_CLASS))


def _broken_archives(folder: Path) -> dict[str, Path]:
    garbage = folder / "garbage"
    garbage.mkdir()
    (garbage / "model.tar.gz").write_bytes(b"not a tarball")
    no_weights = folder / "no-weights"
    no_weights.mkdir()
    (folder / "readme.txt").write_text("a model.tar.gz without model.pth\n")
    with tarfile.open(no_weights / "model.tar.gz", "w:gz") as tar:
        tar.add(folder / "readme.txt", arcname="readme.txt")
    return {"garbage": garbage, "no-weights": no_weights}


@pytest.mark.parametrize("role, kind, message", [
    ("challenger", "garbage", "is not a readable model.tar.gz"),
    ("champion", "no-weights", "model.pth is missing"),
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


def test_test_data_in_the_wrong_layout_fails_naming_what_is_there(tmp_path, weak):
    wrong = tmp_path / "test"
    wrong.mkdir()
    (wrong / "test.csv").write_text("label,pixels\n")
    result, _ = run_evaluate(tmp_path, weak, wrong)
    assert result.returncode != 0
    assert f"HeldOutDataError: No test_batch in the test data {wrong}" in result.stderr and "test.csv" in result.stderr

    (wrong / "test_batch").write_bytes(b"\x80\x04not a pickle")
    result, _ = run_evaluate(tmp_path, weak, wrong)
    assert result.returncode != 0
    assert f"HeldOutDataError: {wrong / 'test_batch'} is not a CIFAR-10 python batch file" in result.stderr
