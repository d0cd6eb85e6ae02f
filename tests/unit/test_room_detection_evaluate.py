"""evaluate.py as the evaluation Processing job runs it: a subprocess with --challenger/--champion/--test-data/--output,
on a model.tar.gz that train.py really wrote, offline."""
import json
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from tests.source_modules import with_shared_modules
from tests.unit.test_room_detection_inference import SOURCE_DIR
# the training tests' tiniest real model (2 epochs, 64 px) and their network guard, reused as fixtures here
from tests.unit.test_room_detection_training import data_dir, network_attempts, network_guard, trained  # noqa: F401

EVALUATE = SOURCE_DIR / "evaluate.py"
CATEGORY = "object_detection_metrics"

pytestmark = pytest.mark.slow


def pack_model(model_dir: Path, folder: Path) -> Path:
    """model.tar.gz as SageMaker tars SM_MODEL_DIR: its contents at the archive's top."""
    folder.mkdir(parents=True, exist_ok=True)
    archive = folder / "model.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for path in sorted(model_dir.iterdir()):
            tar.add(path, arcname=path.name)
    return archive


def run_evaluate(work: Path, guard: Path, *args) -> subprocess.CompletedProcess:
    """evaluate.py in an empty working folder, with a home of its own and the network guard (see the training tests)."""
    for folder in (work / "cwd", work / "home"):
        folder.mkdir(parents=True, exist_ok=True)
    env = with_shared_modules({"PATH": "/usr/bin:/bin", "HOME": str(work / "home"), "PYTHONPATH": str(guard),
                               "NETWORK_GUARD_LOG": str(work / "network.log")})
    return subprocess.run([sys.executable, str(EVALUATE), *map(str, args)], cwd=work / "cwd", env=env,
                          capture_output=True, text=True, timeout=300)


def snapshot(folder: Path) -> dict:
    return {p.relative_to(folder).as_posix(): (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*")}


def values(report: dict) -> dict:
    return {name: entry["value"] for name, entry in report[CATEGORY].items()}


@pytest.fixture(scope="module")
def challenger(trained, tmp_path_factory):
    job_dir, _ = trained
    return pack_model(job_dir / "model", tmp_path_factory.mktemp("challenger")).parent


@pytest.fixture(scope="module")
def alone(challenger, data_dir, network_guard, tmp_path_factory):  # noqa: F811
    """No champion, on the training tests' data set (dataset.yaml, images/ and labels/ for train, val and test)."""
    work = tmp_path_factory.mktemp("alone")
    before = snapshot(data_dir)
    result = run_evaluate(work, network_guard, "--challenger", challenger, "--test-data", data_dir,
                          "--output", work / "evaluation")
    return work, result, before, snapshot(data_dir)


def test_without_champion_only_evaluation_json_with_the_figure_train_py_reports(alone, trained):
    work, result, _, _ = alone
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert sorted(p.name for p in (work / "evaluation").iterdir()) == ["evaluation.json"]
    report = json.loads((work / "evaluation" / "evaluation.json").read_text())
    assert set(report) == {CATEGORY, "samples"} and report["samples"] == 2
    assert set(report[CATEGORY]) == {"map50", "map50_95"}
    # the same validator, weights and test split as train.py's test_ line: the same numbers
    test = json.loads((trained[0] / "model" / "training_metrics.json").read_text())["test"]
    assert values(report) == pytest.approx({"map50": test["mAP50"], "map50_95": test["mAP50-95"]}, abs=1e-9)
    assert "champion: none" in result.stdout and "test split" in result.stdout


def test_evaluation_stays_offline_and_writes_only_its_reports(alone):
    work, _, before, after = alone
    assert network_attempts(work) == []
    assert before == after  # the test data is read, never written (ultralytics' label cache went to a temp folder)
    assert list((work / "cwd").iterdir()) == [] and list((work / "home").iterdir()) == []


def test_the_same_model_as_champion_scores_what_it_scores_as_challenger_on_every_run(alone, challenger, data_dir,
                                                                                    network_guard, tmp_path):  # noqa: F811
    both = run_evaluate(tmp_path, network_guard, "--challenger", challenger, "--champion", challenger,
                        "--test-data", data_dir, "--output", tmp_path / "evaluation")
    assert both.returncode == 0, both.stdout[-3000:] + both.stderr[-3000:]
    out = tmp_path / "evaluation"
    assert sorted(p.name for p in out.iterdir()) == ["champion_evaluation.json", "evaluation.json"]
    assert json.loads((out / "champion_evaluation.json").read_text()) == json.loads((out / "evaluation.json").read_text())
    # another process (the run without a champion), the same figures to the last bit
    assert (out / "evaluation.json").read_bytes() == (alone[0] / "evaluation" / "evaluation.json").read_bytes()
    assert network_attempts(tmp_path) == []


@pytest.mark.parametrize("damage", ["truncated", "no best.pt"])
def test_a_broken_challenger_archive_fails_naming_the_file(damage, challenger, data_dir, network_guard, tmp_path):  # noqa: F811
    broken = tmp_path / "broken"
    broken.mkdir()
    archive = broken / "model.tar.gz"
    if damage == "truncated":
        archive.write_bytes((challenger / "model.tar.gz").read_bytes()[:2000])
    else:
        (tmp_path / "model_info.json").write_text("{}")
        with tarfile.open(archive, "w:gz") as tar:
            tar.add(tmp_path / "model_info.json", arcname="model_info.json")
    result = run_evaluate(tmp_path, network_guard, "--challenger", broken, "--test-data", data_dir,
                          "--output", tmp_path / "evaluation")
    assert result.returncode != 0
    expected = "is not a readable model.tar.gz" if damage == "truncated" else "holds no best.pt"
    assert f"The challenger archive {archive} {expected}" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "evaluation").exists()


def test_a_broken_champion_fails_too_and_an_empty_champion_folder_means_none(challenger, data_dir, network_guard,
                                                                             tmp_path):  # noqa: F811
    broken = tmp_path / "champion"
    broken.mkdir()
    (broken / "model.tar.gz").write_bytes(b"not a tarball")
    result = run_evaluate(tmp_path, network_guard, "--challenger", challenger, "--champion", broken,
                          "--test-data", data_dir, "--output", tmp_path / "evaluation")
    assert result.returncode != 0 and f"The champion archive {broken / 'model.tar.gz'} is not a readable" in result.stderr

    missing = run_evaluate(tmp_path, network_guard, "--challenger", tmp_path / "nowhere", "--test-data", data_dir,
                           "--output", tmp_path / "evaluation")
    assert missing.returncode != 0 and f"The challenger folder {tmp_path / 'nowhere'} does not exist" in missing.stderr


@pytest.mark.parametrize("layout", ["no test images", "no labels", "bad label line"])
def test_data_in_the_wrong_layout_fails_naming_what_is_wrong(layout, challenger, data_dir, network_guard, tmp_path):  # noqa: F811
    data = tmp_path / "data"
    if layout == "no test images":
        shutil.copytree(data_dir / "images" / "train", data / "images" / "train")  # the train split only: never scored
        expected = f"No test images under {data}: expected a YOLO detection set"
    elif layout == "no labels":
        shutil.copytree(data_dir / "images" / "test", data / "images" / "test")
        expected = f"No labels folder {data / 'labels' / 'test'} for the images in {data / 'images' / 'test'}"
    else:
        shutil.copytree(data_dir, data)
        label = data / "labels" / "test" / "plan_00000.txt"
        label.write_text(label.read_text() + "0 0.5 0.5 1.7\n")
        expected = f"Label file {label}, line {len(label.read_text().splitlines())} ('0 0.5 0.5 1.7') has 4 fields"
    result = run_evaluate(tmp_path, network_guard, "--challenger", challenger, "--test-data", data,
                          "--output", tmp_path / "evaluation")
    assert result.returncode != 0
    assert expected in result.stderr, result.stderr[-2000:]
    assert not (tmp_path / "evaluation").exists()
