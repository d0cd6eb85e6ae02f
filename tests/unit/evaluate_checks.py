"""What the tests of the acoustic_shield and meld_sentiment evaluate.py share: the Processing job's code folder,
a training run's model.tar.gz folder, evaluate.py run as the job runs it, and the checks both evaluations pass."""
import io
import json
import subprocess
import sys
import tarfile
from pathlib import Path

from include.pipelines.packaging import SHARED_SOURCE_DIR, package_source

CATEGORY = "multiclass_classification_metrics"


def unpack_sourcedir(source_dir: Path, directory: Path) -> Path:
    """/opt/ml/processing/input/code: sourcedir.tar.gz of `source_dir` as the pipeline packs it, unpacked in `directory`."""
    with tarfile.open(fileobj=io.BytesIO(package_source(source_dir, SHARED_SOURCE_DIR)), mode="r:gz") as tar:
        tar.extractall(directory, filter="data")
    return directory


def model_folder(job_dir: Path) -> Path:
    """A folder holding model.tar.gz of SM_MODEL_DIR, tarred as SageMaker tars it (members relative to the folder)."""
    folder = job_dir / "artifact"
    folder.mkdir()
    with tarfile.open(folder / "model.tar.gz", "w:gz") as tar:
        for path in sorted((job_dir / "model").rglob("*")):
            tar.add(path, arcname=path.relative_to(job_dir / "model").as_posix(), recursive=False)
    return folder


def trained_model(job_dir: Path, training: subprocess.CompletedProcess) -> Path:
    """The model folder (model_folder) of a train.py run in `job_dir`, which must have succeeded."""
    assert training.returncode == 0, training.stdout + training.stderr
    return model_folder(job_dir)


def evaluate(code_dir: Path, output: Path, challenger: Path, test_data: Path, champion: Path | None = None):
    """python3 /opt/ml/processing/input/code/evaluate.py with the job's arguments, in the job's bare environment
    (OMP_NUM_THREADS=1: the local profile's Environment, which the evaluation job gets too)."""
    arguments = ["--challenger", str(challenger), "--test-data", str(test_data), "--output", str(output)]
    if champion is not None:
        arguments[2:2] = ["--champion", str(champion)]
    env = {"PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, str(code_dir / "evaluate.py"), *arguments], cwd=output.parent, env=env,
                          capture_output=True, text=True, timeout=300)


def value(report: dict, metric: str) -> float:
    return report[CATEGORY][metric]["value"]


def evaluate_without_champion(output: Path, code_dir: Path, trained: Path, test_data: Path):
    """(output, result) of evaluating `trained` alone, which must succeed."""
    result = evaluate(code_dir, output, trained, test_data)
    assert result.returncode == 0, result.stdout + result.stderr
    return output, result


def check_only_evaluation_json(without_champion, metrics: set[str], samples: int) -> dict:
    """Without a champion: evaluation.json alone, with exactly `metrics` (each in [0, 1]) over `samples`; the report."""
    output, result = without_champion
    assert sorted(p.name for p in output.iterdir()) == ["evaluation.json"]
    report = json.loads((output / "evaluation.json").read_text())
    assert set(report) == {CATEGORY, "samples"} and set(report[CATEGORY]) == metrics
    assert report["samples"] == samples
    assert all(0 <= value(report, metric) <= 1 for metric in metrics)
    assert "champion none (no champion yet)" in result.stdout
    return report


def check_same_model_scores_the_same(code_dir: Path, trained: Path, test_data: Path, without_champion, tmp_path: Path):
    """The same model as challenger and champion: both reports, equal, and equal to the run without a champion."""
    result = evaluate(code_dir, tmp_path / "evaluation", trained, test_data, champion=trained)
    assert result.returncode == 0, result.stdout + result.stderr
    assert sorted(p.name for p in (tmp_path / "evaluation").iterdir()) == ["champion_evaluation.json", "evaluation.json"]
    challenger = json.loads((tmp_path / "evaluation" / "evaluation.json").read_text())
    champion = json.loads((tmp_path / "evaluation" / "champion_evaluation.json").read_text())
    assert challenger == champion
    # and the same figure as the run without a champion, in another process: deterministic
    assert challenger == json.loads((without_champion[0] / "evaluation.json").read_text())


def weak_and_strong(code_dir: Path, untrained: Path, trained: Path, test_data: Path, tmp_path: Path,
                    metric: str) -> tuple[float, float]:
    """`metric` of the untrained model as challenger and of the trained one as champion, scored in one job."""
    result = evaluate(code_dir, tmp_path / "evaluation", untrained, test_data, champion=trained)
    assert result.returncode == 0, result.stdout + result.stderr
    weak = value(json.loads((tmp_path / "evaluation" / "evaluation.json").read_text()), metric)
    strong = value(json.loads((tmp_path / "evaluation" / "champion_evaluation.json").read_text()), metric)
    return weak, strong


def check_a_cut_short_archive_fails_naming_it(code_dir: Path, trained: Path, test_data: Path, tmp_path: Path, role: str):
    """`role`'s model.tar.gz cut short (the other role the trained model): status 1, a last line naming the archive,
    and no report written."""
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "model.tar.gz").write_bytes((trained / "model.tar.gz").read_bytes()[:300])  # cut short
    folders = {"challenger": trained, "champion": trained, role: broken}
    result = evaluate(code_dir, tmp_path / "evaluation", folders["challenger"], test_data, champion=folders["champion"])
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith(
        f"EvaluationError: the {role} archive {broken / 'model.tar.gz'} is not a readable model.tar.gz"), result.stderr
    assert not (tmp_path / "evaluation").exists()
