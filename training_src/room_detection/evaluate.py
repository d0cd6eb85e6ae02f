r"""Score YOLOv8 room detectors on the held-out floor plans: the challenger, and the champion when there is one.

Runs as a SageMaker Processing job in the workload's own training image (CPU), with the workload's
files and training_src/shared's files unpacked side by side, so evaluation_report is a sibling
module as sagemaker_hyperparameters is to train.py. The command line is evaluation_report's:

    python evaluate.py --challenger /opt/ml/processing/challenger --champion /opt/ml/processing/champion \
        --test-data /opt/ml/processing/test --output /opt/ml/processing/evaluation

By hand from the repository root, after train.py's docstring example (which writes the synthetic set
to data/room_detection and the model to model/): pack model/ as SageMaker does, then score it on
the set's test split (run from the repository, it finds the shared modules in training_src/shared):

    mkdir -p challenger && tar -czf challenger/model.tar.gz -C model .
    python training_src/room_detection/evaluate.py --challenger challenger --test-data data/room_detection \
        --output evaluation

Models: each folder holds a model.tar.gz exactly as train.py leaves SM_MODEL_DIR (best.pt at its
top). The archive is unpacked with evaluation_report.extract_model (plain files only) and best.pt is
loaded with ULTRALYTICS_SAFE_LOAD (torch.load(weights_only=True) and ultralytics' allow-list): a
champion's archive is input, not code. Each model is scored at the image size it was trained and is
served at (model_info.json's imgsz).

Test data, any of:
    <test-data>/dataset.yaml, images/<split>/, labels/<split>/   the whole YOLO set (or only its test
        split's two folders beside dataset.yaml): the test split is scored; a set without one falls
        back to val (never trained on, though it picked best.pt's epoch), and the log says so
    <test-data>/images/, labels/   one split's images and labels directly
So the job's test input is the data location itself (the synthetic set has a test split: 8 plans in
the local profile), or, to leave the training images in S3, two inputs: <data>/images/test/ to
<test-data>/images/test and <data>/labels/test/ to <test-data>/labels/test. A prefix such as
images/test alone brings no labels, and is refused.
Class names come from dataset.yaml when it is there, otherwise from the challenger; a model whose
class names differ from them is refused, as is a label line that is not "class x y w h" in 0-1.

Metric (report category object_detection_metrics, in evaluation.json and champion_evaluation.json):
    map50      mAP at IoU 0.5, higher is better: what ultralytics' validator reports as
               metrics/mAP50(B), the figure train.py logs as best_mAP50 / test_mAP50
    map50_95   mAP averaged over IoU 0.5-0.95 (metrics/mAP50-95(B))
    samples    how many test images were scored
Deterministic: CPU, data loading in this process (workers 0), a fixed batch of 16 with rectangular
batches, ultralytics' validation thresholds (conf 0.001, NMS IoU 0.7, 300 boxes), a fixed thread
count, no augmentation: the same model on the same data scores the same figure on every run.

Nothing reaches the network (YOLO_OFFLINE, no font fetch, no telemetry) and nothing is written but
the reports: ultralytics' settings, its label cache and its validation folders go to a temporary
folder that is removed at the end (the test data is read through links from there, never written).

Evidence (2 CPU cores shared with other jobs, torch 2.14.1, ultralytics 8.4.190): about 4 s of CPU per
run, mostly importing torch and ultralytics; scoring one YOLOv8n on 8 plans at imgsz 64 takes ~1 s.
A model trained by train.py scores exactly the test_mAP50 / test_mAP50-95 it logged (0.2286 / 0.0476
for a 15-epoch model), whatever the thread count (1, 2, 4 and 8 gave byte-identical reports).
The container's training image lacks ultralytics, as for training: the script pip-installs
requirements.txt first when the image lacks what it pins (the local SageMaker has it installed).

Errors (a missing or unreadable model.tar.gz, no best.pt in it, data in the wrong layout, a bad label
line) exit with status 1 and a message naming the file.
"""
from __future__ import annotations

import importlib.util
import json
import math
import os
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

# In the container the shared modules sit beside this file; run from the repository, as
# `python training_src/room_detection/evaluate.py`, they are in training_src/shared (as train.py finds them).
if importlib.util.find_spec("evaluation_report") is None:
    sys.path.insert(1, str(Path(__file__).resolve().parents[1] / "shared"))

from evaluation_report import extract_model, install_requirements, metric_report, model_archive, parse_args, write_reports

# the training image lacks ultralytics: install it as the training toolkit does (nothing when present)
install_requirements(Path(__file__).resolve().parent / "requirements.txt")

CATEGORY = "object_detection_metrics"
BATCH = 16  # images per validation batch; rect batching pads per batch, so this stays fixed for every model
THREADS = 4  # torch CPU threads; fixed, since the summation order of a convolution follows the thread count
CONFIDENCE = 0.001  # ultralytics' validation defaults, pinned
NMS_IOU = 0.7
MAX_DETECTIONS = 300
WEIGHTS = "best.pt"
IMAGE_SUFFIXES = (".bmp", ".jpeg", ".jpg", ".png", ".tif", ".tiff", ".webp")  # as train.py counts them
SPLITS = ("test", "val")  # the split scored, in order of preference
# ultralytics' box metrics -> the report's names
METRICS = {"map50": "metrics/mAP50(B)", "map50_95": "metrics/mAP50-95(B)"}


class EvaluationError(Exception):
    """A problem with the inputs, told in a message that names the file; the job exits 1."""


def log(*parts) -> None:
    print(*parts, flush=True)


# -----------------------------------------------------------------------------
# models: model.tar.gz -> best.pt


@dataclass
class Model:
    role: str  # challenger or champion
    archive: Path
    weights: Path  # best.pt, unpacked
    info: dict  # model_info.json, {} when the archive has none


def find_archive(role: str, folder: Path | None, *, required: bool) -> Path | None:
    """The role's model.tar.gz; None for an absent or empty champion folder (no champion yet)."""
    archive = model_archive(folder)
    if archive is not None:
        return archive
    if not required and (folder is None or not folder.is_dir() or not any(folder.iterdir())):
        return None
    if folder is None or not folder.exists():
        raise EvaluationError(f"The {role} folder {folder} does not exist: it must hold the model.tar.gz that the "
                              "training job wrote.")
    if not folder.is_dir():
        raise EvaluationError(f"The {role} path {folder} is not a folder: give the folder holding model.tar.gz.")
    found = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())[:10]
    raise EvaluationError(f"No model.tar.gz in the {role} folder {folder} (found {found or 'nothing'}): it must hold "
                          "the model.tar.gz that the training job wrote.")


def unpack_model(role: str, archive: Path, destination: Path) -> Model:
    """Unpack the archive (plain files only) and find best.pt at its top, where train.py puts it."""
    try:
        extract_model(archive, destination)
    except (tarfile.TarError, EOFError, OSError, ValueError) as error:
        raise EvaluationError(f"The {role} archive {archive} is not a readable model.tar.gz: {error}") from error
    weights = destination / WEIGHTS
    if not weights.is_file():
        found = sorted(p.relative_to(destination).as_posix() for p in destination.rglob("*") if p.is_file())[:10]
        raise EvaluationError(f"The {role} archive {archive} holds no {WEIGHTS} at its top (found {found or 'no files'}): "
                              "expected model.tar.gz as train.py writes it.")
    info = {}
    info_path = destination / "model_info.json"
    if info_path.is_file():
        try:
            info = json.loads(info_path.read_text())
        except ValueError as error:
            raise EvaluationError(f"model_info.json in the {role} archive {archive} is not valid JSON: {error}") from error
        if not isinstance(info, dict):
            raise EvaluationError(f"model_info.json in the {role} archive {archive} is not a JSON object")
    return Model(role, archive, weights, info)


# -----------------------------------------------------------------------------
# test data: one split of a YOLO detection set


@dataclass
class TestSplit:
    name: str  # test, val, or the folder's name for a bare images/ + labels/ pair
    images_dir: Path
    labels_dir: Path
    images: list[Path]  # relative to images_dir, sorted
    class_names: list[str] | None  # from dataset.yaml, None without one
    boxes: int


def _image_files(folder: Path) -> list[Path]:
    return sorted(p.relative_to(folder) for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _read_dataset_yaml(root: Path) -> dict:
    path = root / "dataset.yaml"
    if not path.is_file():
        return {}
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise EvaluationError(f"{path} is not valid YAML: {error}") from error
    if not isinstance(data, dict):
        raise EvaluationError(f"{path} must be a mapping (names, train, val, test), got {type(data).__name__}")
    return data


def _class_names(data: dict, source: Path) -> list[str] | None:
    names = data.get("names")
    if names is None:
        return None
    if isinstance(names, dict):
        try:
            keys = sorted(int(key) for key in names)
        except (TypeError, ValueError) as error:
            raise EvaluationError(f"{source}: names must map class ids 0, 1, ... to names, got {names!r}") from error
        if keys != list(range(len(keys))):
            raise EvaluationError(f"{source}: names must map class ids 0, 1, ... to names, got ids {keys}")
        lookup = {int(key): value for key, value in names.items()}
        return [str(lookup[key]) for key in keys]
    if isinstance(names, list):
        return [str(name) for name in names]
    raise EvaluationError(f"{source}: names must be a list or a mapping of class ids, got {names!r}")


def _labels_for(images_dir: Path) -> Path:
    """ultralytics' rule: the labels folder is the images folder with its last 'images' part read as 'labels'."""
    parts = list(images_dir.parts)
    if "images" not in parts:
        return images_dir.parent / "labels"
    at = len(parts) - 1 - parts[::-1].index("images")
    parts[at] = "labels"
    return Path(*parts)


def find_test_split(root: Path) -> TestSplit:
    """The split to score under `root`, with its labels checked; EvaluationError names what is wrong."""
    if not root.is_dir():
        raise EvaluationError(f"The test data folder {root} does not exist or is not a folder.")
    data = _read_dataset_yaml(root)
    class_names = _class_names(data, root / "dataset.yaml")
    candidates = []  # (split, images folder)
    for split in SPLITS:
        entry = data.get(split)
        if isinstance(entry, str) and entry and not Path(entry).is_absolute():
            candidates.append((split, root / entry))  # the yaml's own relative path (its `path:` is the trainer's)
        candidates.append((split, root / "images" / split))
    chosen = next(((split, folder) for split, folder in candidates if folder.is_dir() and _image_files(folder)), None)
    bare = root / "images"  # one split's images/ and labels/ at the top: images directly in images/
    if chosen is None and bare.is_dir() and any(p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES for p in bare.iterdir()):
        chosen = (root.name, bare)
    if chosen is None:
        found = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())[:10]
        raise EvaluationError(
            f"No test images under {root}: expected a YOLO detection set (dataset.yaml beside images/test/ and "
            f"labels/test/, or images/val/ and labels/val/), or images/ and labels/ of one split; found "
            f"{found or 'no files'}.")
    split, images_dir = chosen
    if split == "val":
        log(f"data: {root} has no test split; scoring the val split (not trained on, though it picked the best epoch)")
    labels_dir = _labels_for(images_dir)
    images = _image_files(images_dir)
    check_images(images_dir, images)
    boxes = check_labels(images_dir, labels_dir, images, class_names)
    return TestSplit(split, images_dir, labels_dir, images, class_names, boxes)


def check_images(images_dir: Path, images: list[Path]) -> None:
    """Every image decodes (ultralytics would skip a broken one and score the rest)."""
    from PIL import Image

    for image in images:
        try:
            with Image.open(images_dir / image) as opened:
                opened.verify()
        except Exception as error:  # noqa: BLE001 - PIL raises many kinds for a bad file
            raise EvaluationError(f"Image {images_dir / image} is not a readable image: {error}") from error


def check_labels(images_dir: Path, labels_dir: Path, images: list[Path], class_names: list[str] | None) -> int:
    """Every label file parses as YOLO lines; returns the number of boxes. An image without one has no rooms."""
    if not labels_dir.is_dir():
        raise EvaluationError(f"No labels folder {labels_dir} for the images in {images_dir}: each image needs a "
                              "label file there, <name>.txt with one 'class x_center y_center width height' line per room.")
    boxes = labelled = 0
    for image in images:
        label = labels_dir / image.with_suffix(".txt")
        if not label.is_file():
            continue
        labelled += 1
        try:
            lines = label.read_text().splitlines()
        except (OSError, UnicodeDecodeError) as error:
            raise EvaluationError(f"Label file {label} is not readable text: {error}") from error
        for number, line in enumerate(lines, 1):
            fields = line.split()
            if not fields:
                continue
            try:
                values = [float(field) for field in fields]
            except ValueError:
                values = [math.nan]
            if not all(math.isfinite(v) for v in values):
                problem = "holds something that is not a number"
            elif not (len(values) == 5 or (len(values) >= 7 and len(values) % 2 == 1)):
                problem = f"has {len(values)} fields, not 5 (class x_center y_center width height)"
            elif values[0] != int(values[0]) or values[0] < 0:
                problem = f"class {fields[0]!r} is not a class id"
            elif class_names is not None and int(values[0]) >= len(class_names):
                problem = f"class {int(values[0])} is not one of the data set's {len(class_names)} classes {class_names}"
            elif not all(0.0 <= v <= 1.0 for v in values[1:]):
                problem = "has coordinates outside 0-1 (they are fractions of the image's width and height)"
            else:
                problem = None
            if problem:
                raise EvaluationError(f"Label file {label}, line {number} ({line.strip()!r}) {problem}.")
            boxes += 1
    if not labelled:
        raise EvaluationError(f"No label files in {labels_dir} for the {len(images)} images in {images_dir} "
                              f"(expected e.g. {labels_dir / images[0].with_suffix('.txt')}).")
    if not boxes:
        raise EvaluationError(f"The label files in {labels_dir} hold no boxes: mAP needs at least one labelled room.")
    return boxes


def stage_split(split: TestSplit, class_names: list[str], staging: Path) -> Path:
    """A data yaml in `staging` that reads the split through links, so ultralytics' label cache lands in staging."""
    name = split.name if split.name in SPLITS else "test"
    (staging / "images").mkdir(parents=True)
    (staging / "labels").mkdir(parents=True)
    (staging / "images" / name).symlink_to(split.images_dir.resolve(), target_is_directory=True)
    (staging / "labels" / name).symlink_to(split.labels_dir.resolve(), target_is_directory=True)
    listing = staging / f"{name}.txt"  # exactly the images counted here, in a fixed order
    listing.write_text("".join(f"{staging / 'images' / name / image}\n" for image in split.images))
    data_yaml = staging / "data.yaml"
    data_yaml.write_text(yaml.safe_dump({
        "path": str(staging), "train": listing.name, "val": listing.name, "test": listing.name,
        "nc": len(class_names), "names": dict(enumerate(class_names)),
    }, sort_keys=False))
    return data_yaml


# -----------------------------------------------------------------------------
# ultralytics: offline, settings in a temporary folder, deterministic on the CPU


def configure_ultralytics(config_dir: Path) -> None:
    """Before ultralytics is imported (it reads these at import): offline, safe checkpoint loading, no trackers.

    As train.py keeps a training job offline, since evaluation never downloads anything.
    """
    os.environ["YOLO_CONFIG_DIR"] = str(config_dir)  # settings.json goes there, not to ~/.config
    os.environ["MPLCONFIGDIR"] = str(config_dir / "matplotlib")  # matplotlib's font cache likewise
    os.environ["YOLO_OFFLINE"] = "1"  # no connectivity probe: no update check, telemetry or hub calls
    os.environ["ULTRALYTICS_SAFE_LOAD"] = "1"  # best.pt with torch.load(weights_only=True) and the allow-list
    from ultralytics import settings

    settings.update({key: False for key in ("sync", "clearml", "comet", "dvc", "mlflow", "raytune", "tensorboard",
                                            "wandb", "vscode_msg", "openvino_msg") if key in settings})
    import ultralytics.data.utils as data_utils

    # checking a data set fetches Arial.ttf for plots even with plots off; nothing is plotted here
    data_utils.check_font = lambda *args, **kwargs: None

    import torch

    torch.set_num_threads(THREADS)
    torch.use_deterministic_algorithms(True, warn_only=True)


def load_detector(model: Model):
    """best.pt as an ultralytics YOLO detector (weights-only loading, see configure_ultralytics)."""
    from ultralytics import YOLO

    try:
        yolo = YOLO(str(model.weights), task="detect")
    except Exception as error:  # noqa: BLE001 - whatever stops it loading, the archive is at fault
        raise EvaluationError(f"{WEIGHTS} in the {model.role} archive {model.archive} does not load as a YOLO "
                              f"checkpoint: {type(error).__name__}: {error}") from error
    if yolo.task != "detect":
        raise EvaluationError(f"{WEIGHTS} in the {model.role} archive {model.archive} is a {yolo.task!r} model, "
                              "not a detector")
    return yolo


def _model_class_names(yolo) -> list[str]:
    names = yolo.names
    return [str(names[k]) for k in sorted(names)] if isinstance(names, dict) else [str(n) for n in names]


def score(model: Model, data_yaml: Path, split: TestSplit, runs_dir: Path, class_names: list[str]) -> dict:
    """One model's report: ultralytics' validator on the staged split, with the settings pinned above."""
    yolo = load_detector(model)
    model_names = _model_class_names(yolo)
    if model_names != class_names:
        raise EvaluationError(f"The {model.role} ({model.archive}) detects classes {model_names}, the test data's "
                              f"are {class_names}: it cannot be scored on this data.")
    imgsz = int(model.info.get("imgsz") or yolo.overrides.get("imgsz") or 640)
    seen = []
    yolo.add_callback("on_val_end", lambda validator: seen.append(int(validator.seen)))
    started = time.perf_counter()
    metrics = yolo.val(
        data=str(data_yaml), split="test", imgsz=imgsz, batch=BATCH, device="cpu", workers=0,
        conf=CONFIDENCE, iou=NMS_IOU, max_det=MAX_DETECTIONS, rect=True, augment=False, single_cls=False,
        plots=False, save_json=False, save_txt=False, verbose=False,
        project=str(runs_dir), name=model.role, exist_ok=True,
    ).results_dict
    seconds = time.perf_counter() - started
    samples = seen[-1] if seen else len(split.images)
    if samples != len(split.images):
        raise EvaluationError(f"ultralytics scored {samples} of the {len(split.images)} images in {split.images_dir} "
                              "(it skips unreadable images and labels: see its warnings above)")
    values = {name: float(metrics[key]) for name, key in METRICS.items()}
    log(f"{model.role}: " + " ".join(f"{name}={value:.4f}" for name, value in values.items())
        + f" on {samples} images of the {split.name} split at imgsz {imgsz} in {seconds:.1f} s ({model.archive})")
    return metric_report(CATEGORY, values, samples=samples)


# -----------------------------------------------------------------------------
# main


def evaluate(argv: list[str] | None = None) -> list[Path]:
    args = parse_args(argv, description="Score the challenger (and the champion) YOLOv8 room detector on held-out data.")
    challenger_archive = find_archive("challenger", args.challenger, required=True)
    champion_archive = find_archive("champion", args.champion, required=False)
    split = find_test_split(args.test_data)
    log(f"data: {split.name} split, {len(split.images)} images, {split.boxes} boxes ({split.images_dir}, {split.labels_dir})")
    if champion_archive is None:
        log(f"champion: none ({args.champion or 'not given'}): only the challenger is scored")

    with tempfile.TemporaryDirectory(prefix="room-detection-evaluate-") as temporary:
        work = Path(temporary)
        challenger = unpack_model("challenger", challenger_archive, work / "challenger")
        champion = unpack_model("champion", champion_archive, work / "champion") if champion_archive else None
        class_names = split.class_names
        if class_names is None:
            class_names = [str(name) for name in challenger.info.get("class_names") or []] or None
        configure_ultralytics(work / "config")
        if class_names is None:  # no dataset.yaml and no model_info.json: the challenger's own names
            class_names = _model_class_names(load_detector(challenger))
        data_yaml = stage_split(split, class_names, work / "data")
        reports = [score(model, data_yaml, split, work / "runs", class_names) if model else None
                   for model in (challenger, champion)]
    written = write_reports(args.output, reports[0], reports[1])
    log("wrote " + ", ".join(str(path) for path in written))
    return written


def main(argv: list[str] | None = None) -> int:
    try:
        evaluate(argv)
    except EvaluationError as error:
        print(f"evaluate.py: error: {error}", file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
