"""Score CIFAR-10 models on the held-out test_batch: the evaluation.json the pipeline's champion gate reads.

Runs as a SageMaker Processing job in the workload's training image (CPU is enough), from the
unpacked source folder: this file, inference.py, model.py, cifar_batches.py and the shared modules
(evaluation_report.py, inference_errors.py, ...) side by side. It scores the challenger (the
model.tar.gz this run trained, as train.py writes SM_MODEL_DIR) and, when one is given, the
champion (the model serving now) with the same code on the same images, and writes

    <output>/evaluation.json            {"multiclass_classification_metrics": {"accuracy": {"value": 0.93}, ...},
    <output>/champion_evaluation.json    "samples": 10000}   (the champion's: only with --champion)

accuracy (higher is better; the gate's metric), weighted_f1 (per-class F1 weighted by each class's
share of the test images) and cross_entropy (mean -log p(true class), lower is better).

Each model is scored as its endpoint would answer: inference.py's model_fn loads model.pth with
torch.load(weights_only=True), the test images go through the same pixels_from_array as an
application/x-npy request, and predict_fn gives the class probabilities. The same model on the same
data gives the same figures every run.

--test-data is a folder holding CIFAR-10's python `test_batch` (at its top or anywhere below it:
one and only one), or the test_batch file itself.

By hand, from the repository root (as train.py, it finds the shared modules in training_src/shared
when they are not beside it):

    python -m include.datasets.cifar10 data/cifar10
    python training_src/cifar10/train.py --train data/cifar10 --epochs 2 \\
        --batch-size 32 --num-workers 0 --model-dir model
    mkdir -p challenger && tar -czf challenger/model.tar.gz -C model .
    python training_src/cifar10/evaluate.py --challenger challenger \\
        --test-data data/cifar10 --output evaluation

(add `--champion <folder holding another model.tar.gz>` to score a champion too). A missing or
unreadable model archive, or test data in the wrong layout, stops it with an exception naming the file.
"""
from __future__ import annotations

import importlib.util
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

# In the container the packager puts training_src/shared's modules beside this file; run from the
# repository, as `python training_src/cifar10/evaluate.py`, they are in training_src/shared.
if importlib.util.find_spec("evaluation_report") is None:
    sys.path.insert(1, str(Path(__file__).resolve().parents[1] / "shared"))

from cifar_batches import read_batch_arrays
from evaluation_report import extract_model, install_requirements, metric_report, model_archive, parse_args, write_reports

# a processing job installs nothing: what the image lacks of requirements.txt, as the training toolkit would
install_requirements(Path(__file__).resolve().parent / "requirements.txt")

CATEGORY = "multiclass_classification_metrics"
METRIC = "accuracy"  # maximize
TEST_FILE = "test_batch"


class ModelArchiveError(ValueError):
    """A model.tar.gz that is missing, unreadable, or does not hold a model train.py wrote."""


class HeldOutDataError(ValueError):
    """Test data that is missing or not a CIFAR-10 python test_batch."""


def _one_line(error: BaseException) -> str:
    """An exception's message on one line (FailureReason shows the exception line of the log)."""
    return " ".join(str(error).split())


def find_test_batch(test_data: Path) -> Path:
    """The one test_batch file in `test_data` (a folder, searched below too, or the file itself)."""
    if test_data.is_file():
        return test_data
    if not test_data.is_dir():
        raise HeldOutDataError(f"The test data {test_data} does not exist: expected a folder holding "
                               f"CIFAR-10's {TEST_FILE}")
    found = sorted(p for p in test_data.rglob(TEST_FILE) if p.is_file())
    if not found:
        present = sorted(p.relative_to(test_data).as_posix() for p in test_data.rglob("*") if p.is_file())[:10]
        raise HeldOutDataError(f"No {TEST_FILE} in the test data {test_data}: expected CIFAR-10's python {TEST_FILE} "
                               f"file (cifar-10-batches-py/{TEST_FILE}); found {', '.join(present) or 'no files'}")
    if len(found) > 1:
        raise HeldOutDataError(f"More than one {TEST_FILE} in the test data {test_data} "
                               f"({', '.join(str(p) for p in found)}); pass the folder of the one to score on")
    return found[0]


def load_test_set(test_data: Path) -> tuple[np.ndarray, np.ndarray, Path]:
    """(uint8 images [N, 3, 32, 32], int64 labels [N], the file they came from)."""
    path = find_test_batch(test_data)
    try:
        images, labels = read_batch_arrays(path)
    except (OSError, ValueError) as error:
        message = _one_line(error)
        raise HeldOutDataError(message if str(path) in message else f"{path}: {message}") from error
    if not len(labels):
        raise HeldOutDataError(f"{path} holds no images")
    return images, labels, path


def unpack(archive: Path, scratch: Path) -> Path:
    """The archive unpacked into `scratch` (before any model loads: a broken archive fails at once)."""
    try:
        return extract_model(archive, scratch)
    except Exception as error:  # tarfile.TarError, EOFError, zlib.error, a member outside the archive, ...
        raise ModelArchiveError(f"{archive} is not a readable model.tar.gz "
                                f"({type(error).__name__}: {_one_line(error)})") from error


def load_model(archive: Path, model_dir: Path):
    """inference.model_fn on the unpacked archive; every failure names the archive."""
    import inference

    try:
        return inference.model_fn(str(model_dir))
    except Exception as error:  # missing model.pth, weights of another architecture, a pickle weights_only refuses
        inner = _one_line(error).replace(str(model_dir), "<archive>")
        raise ModelArchiveError(f"{archive} does not hold a CIFAR-10 model train.py wrote "
                                "(model.pth and model_info.json at its top): "
                                f"{type(error).__name__}: {inner}") from error


def classification_metrics(probabilities: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """accuracy, weighted_f1 and cross_entropy of class probabilities [N, C] against labels [N]."""
    predicted = probabilities.argmax(1)
    n = len(labels)
    weighted_f1 = 0.0
    for c in np.unique(labels):
        tp = int(np.sum((predicted == c) & (labels == c)))
        fp = int(np.sum((predicted == c) & (labels != c)))
        fn = int(np.sum((predicted != c) & (labels == c)))
        weighted_f1 += (2 * tp / (2 * tp + fp + fn)) * (tp + fn) / n
    true_class = np.clip(probabilities[np.arange(n), labels].astype(np.float64), 1e-12, None)
    return {
        "accuracy": int(np.sum(predicted == labels)) / n,
        "weighted_f1": round(weighted_f1, 10),
        # rounded: the figure is a float sum, and the report must not change in its last bits
        "cross_entropy": round(float(-np.log(true_class).mean()), 6),
    }


def score(model, archive: Path, images: np.ndarray, labels: np.ndarray, test_file: Path, role: str) -> dict:
    """One model's report: its probabilities for every test image, as its endpoint would compute them."""
    import inference

    started = time.perf_counter()
    pixels = inference.pixels_from_array(images, f"{test_file} images")  # as an application/x-npy request
    probabilities = inference.predict_fn(pixels, model).probabilities
    metrics = classification_metrics(probabilities, labels)
    print(f"{role}: {archive}: " + " ".join(f"{name}={value:.4f}" for name, value in metrics.items())
          + f" on {len(labels)} images of {test_file} ({time.perf_counter() - started:.1f} s)", flush=True)
    return metric_report(CATEGORY, metrics, samples=len(labels))


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv, description="Score CIFAR-10 models (challenger, and champion if given) on test_batch.")
    challenger = model_archive(args.challenger)
    if challenger is None:
        raise ModelArchiveError(f"No model.tar.gz in the challenger folder {args.challenger}"
                                + ("" if args.challenger.is_dir() else " (the folder does not exist)"))
    archives = {"challenger": challenger, "champion": model_archive(args.champion)}
    archives = {role: archive for role, archive in archives.items() if archive is not None}
    images, labels, test_file = load_test_set(args.test_data)
    print(f"test data: {len(labels)} images from {test_file}; champion: {archives.get('champion', 'none')}", flush=True)
    with tempfile.TemporaryDirectory(prefix="evaluate-") as scratch:
        # every archive unpacked and loaded before any scoring: a broken one fails the job at once
        folders = {role: unpack(archive, Path(scratch, role)) for role, archive in archives.items()}
        models = {role: load_model(archives[role], folder) for role, folder in folders.items()}
    for role, model in models.items():
        classes = len(model.class_names)
        if int(labels.min()) < 0 or int(labels.max()) >= classes:
            raise HeldOutDataError(f"{test_file}: labels run {int(labels.min())}..{int(labels.max())}, but the {role} "
                                   f"model {archives[role]} has {classes} classes (0..{classes - 1})")
    found = {role: score(model, archives[role], images, labels, test_file, role) for role, model in models.items()}
    for path in write_reports(args.output, found["challenger"], found.get("champion")):
        print(f"wrote {path}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
