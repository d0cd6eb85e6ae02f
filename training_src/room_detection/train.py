r"""Train YOLOv8 (ultralytics) to find rooms in floor-plan images, as SageMaker's PyTorch container runs it.

SageMaker runs `python train.py --model-size n --epochs 100 --batch 16 ...` with the hyperparameters
as flags and the paths in SM_* variables; by hand, the flags' defaults stand in for those variables:

    python -m include.datasets.room_detection data/room_detection        # a small synthetic set, 128 px
    python training_src/room_detection/train.py --train data/room_detection --pretrained false \
        --epochs 20 --imgsz 128 --batch 8 --nbs 8 --optimizer AdamW --lr0 0.002 --workers 0 --model-dir model

Data: the train channel holds a YOLO detection set: dataset.yaml (train, val, optional test, names)
beside images/<split>/ and labels/<split>/. The yaml's `path:` is set to wherever the channel landed,
so a dataset.yaml written on a laptop works unchanged.

Model: --pretrained true starts from yolov8<size>.pt (ultralytics downloads it on first use) or from
--weights, a checkpoint file (a path, or a file name in the optional `weights` channel);
--pretrained false builds yolov8<size>.yaml with random weights, which needs no network at all.
Whenever nothing must be downloaded, ultralytics is kept offline (YOLO_OFFLINE, no font fetch, no
update check, no telemetry) and its settings live in a private folder, not the user's home.

Log lines, stable for two readers (a person, and SageMaker's MetricDefinitions: the regexes of
training.metric_definitions in include/workloads/room_detection.yaml, their one copy):
    epoch=3 box_loss=1.2345 cls_loss=1.2345 dfl_loss=1.2345 precision=0.8123 recall=0.7012 mAP50=0.8000 mAP50-95=0.5000 learning_rate=0.001000 epoch_seconds=2.5
    best_epoch=3 best_precision=0.8123 best_recall=0.7012 best_mAP50=0.8000 best_mAP50-95=0.5000
    test_precision=0.8000 test_recall=0.7000 test_mAP50=0.7900 test_mAP50-95=0.4900
Losses are the epoch's mean training losses; precision .. mAP50-95 are on the val split. The best_
line re-validates best.pt (the epoch with the highest mAP50-95, as ultralytics picks it); the test_
line evaluates best.pt on the test split, when the data set has one.

Outputs in SM_MODEL_DIR (model.tar.gz): best.pt and last.pt (ultralytics checkpoints), model.pth
(best.pt's weights as a plain state_dict, loadable with torch.load(weights_only=True)),
yolov8<size>.yaml (the trained architecture, with its class count), model_info.json,
training_metrics.json, and code/ (inference.py, requirements.txt: the entry point of SageMaker's
PyTorch inference container). ultralytics writes last.pt to --checkpoint-dir every epoch; a run that
finds an unfinished one there resumes from it (spot training), and a finished one is only packaged.

Evidence (2 CPU cores shared with ~5 other jobs, no GPU, torch 2.14.1, ultralytics 8.4.190): the local
profile (64 synthetic 128 px plans; yolov8n from scratch, imgsz 128, batch 8, nbs 8, AdamW lr0 0.002,
20 epochs) reached val mAP50 0.994 and test mAP50 0.995 in 57 s of CPU time (174 s wall at load 9).
mAP50 stays near 0 for ~11 epochs, then climbs: with ultralytics' default nbs 64 (one optimizer step
per 8 batches) 30 epochs reached only 0.34-0.63, and SGD at lr0 0.01 0.09.
"""
import importlib.util
import json
import math
import os
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import yaml

# In the container the packager puts training_src/shared's modules beside this file (/opt/ml/code); run
# from the repository, as `python training_src/room_detection/train.py`, they are in training_src/shared.
if importlib.util.find_spec("sagemaker_hyperparameters") is None:
    sys.path.insert(1, str(Path(__file__).resolve().parents[1] / "shared"))

from sagemaker_hyperparameters import parse_hyperparameters, setting
from serving_code import copy_serving_code

MODEL_SIZES = ("n", "s", "m", "l", "x")
OPTIMIZERS = ("auto", "SGD", "MuSGD", "Adam", "Adamax", "AdamW", "NAdam", "RAdam", "RMSprop")
CODE_FILES = ("inference.py", "requirements.txt")  # what code/ in model.tar.gz needs to serve
IMAGE_SUFFIXES = (".bmp", ".jpeg", ".jpg", ".png", ".tif", ".tiff", ".webp")
RUN_NAME = "run"  # ultralytics' run folder inside the checkpoint dir: weights/last.pt, best.pt, results.csv
PROGRESS_FILE = "progress.json"  # beside the run: epochs done and the metric history, survives a spot restart
# ultralytics' keys for the box metrics, in the order the log lines print them
BOX_METRICS = {"precision": "metrics/precision(B)", "recall": "metrics/recall(B)",
               "mAP50": "metrics/mAP50(B)", "mAP50-95": "metrics/mAP50-95(B)"}


def log(*parts, **kwargs) -> None:
    print(*parts, flush=True, **kwargs)


# -----------------------------------------------------------------------------
# settings: hyperparameters arrive as --flags, paths as SM_* variables


@dataclass
class Hyperparameters:
    model_size: str = setting("n", f"YOLOv8 scale, one of {', '.join(MODEL_SIZES)}")
    pretrained: bool = setting(True, "start from pretrained weights (yolov8<size>.pt or --weights); false: random init from yolov8<size>.yaml")
    weights: str = setting("", "pretrained checkpoint: a path, or a file name in the weights channel; empty: yolov8<size>.pt")
    epochs: int = setting(100, "passes over the training images")
    batch: int = setting(16, "images per step; -1: the largest that fits the GPU (ultralytics AutoBatch)")
    imgsz: int = setting(640, "training and inference image size in pixels, a multiple of 32")
    nbs: int = setting(64, "nominal batch size: gradients add up over nbs/batch steps before each optimizer step (weight decay scales with it)")
    patience: int = setting(100, "stop after this many epochs without a better val mAP50-95")
    lr0: float = setting(0.01, "initial learning rate (ignored when --optimizer is auto, which picks its own)")
    optimizer: str = setting("auto", f"one of {', '.join(OPTIMIZERS)}; auto: AdamW for short runs, MuSGD for long ones")
    workers: int = setting(8, "data loader worker processes (per GPU); 0 = main process")
    seed: int = setting(0, "random seed for initialization, sampling and augmentation")
    amp: bool = setting(True, "mixed precision on GPU (ignored on CPU)")
    checkpoint_dir: str = setting("checkpoints", "ultralytics' run folder (last.pt every epoch); resumes from it", job_folder="checkpoints")


@dataclass
class Paths:
    train: str = setting("data/room_detection", "train channel: dataset.yaml, images/, labels/", env="SM_CHANNEL_TRAIN")
    weights_channel: str = setting("", "optional channel with pretrained checkpoints", env="SM_CHANNEL_WEIGHTS")
    model_dir: str = setting("model", "where the model artifacts go", env="SM_MODEL_DIR")
    output_data_dir: str = setting("output", "results.csv and training_metrics.json also go here", env="SM_OUTPUT_DATA_DIR")
    num_gpus: int = setting(-1, "GPUs to use, 0 = CPU; -1: every GPU torch sees", env="SM_NUM_GPUS")


def parse_args(argv: list[str] | None = None) -> tuple[Hyperparameters, Paths]:
    return parse_hyperparameters("Train YOLOv8 to detect rooms in floor plans.", (Hyperparameters, Paths), argv)


def validate(hp: Hyperparameters) -> None:
    """Fail before any work with a message that says which hyperparameter to change and how."""
    problems = []
    if hp.model_size not in MODEL_SIZES:
        problems.append(f"--model-size must be one of {', '.join(MODEL_SIZES)} (got {hp.model_size!r})")
    if hp.weights and not hp.pretrained:
        problems.append(f"--weights {hp.weights!r} applies only with --pretrained true")
    if hp.epochs < 1:
        problems.append(f"--epochs must be at least 1 (got {hp.epochs})")
    if hp.batch == 0 or hp.batch < -1:
        problems.append(f"--batch must be -1 (AutoBatch, on a GPU) or at least 1 (got {hp.batch}); 16 is the usual value")
    if hp.imgsz < 32 or hp.imgsz % 32:
        problems.append(f"--imgsz must be a positive multiple of 32, the model's largest stride (got {hp.imgsz}); 640 is the usual value")
    if hp.nbs < 1:
        problems.append(f"--nbs must be at least 1 (got {hp.nbs}); 64 is ultralytics' default, the value of --batch updates the weights every step")
    if hp.patience < 1:
        problems.append(f"--patience must be at least 1 epoch (got {hp.patience})")
    if not (hp.lr0 > 0 and math.isfinite(hp.lr0)):
        problems.append(f"--lr0 must be a positive number (got {hp.lr0}); 0.01 suits SGD")
    if hp.optimizer not in OPTIMIZERS:
        problems.append(f"--optimizer must be one of {', '.join(OPTIMIZERS)} (got {hp.optimizer!r})")
    if hp.workers < 0:
        problems.append(f"--workers must be 0 or more (got {hp.workers})")
    if problems:
        raise ValueError("Invalid hyperparameters: " + "; ".join(problems))


# -----------------------------------------------------------------------------
# data: the channel's dataset.yaml, pointed at wherever the channel landed


def _split_images(entry, base: Path) -> int | None:
    """Images one split entry names (a folder, a .txt list, or a list of those); None if it cannot tell."""
    if isinstance(entry, list):
        counts = [_split_images(item, base) for item in entry]
        return None if None in counts else sum(counts)
    path = Path(entry) if Path(str(entry)).is_absolute() else base / str(entry)
    if path.is_dir():
        return sum(1 for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if path.is_file() and path.suffix == ".txt":
        return sum(1 for line in path.read_text().splitlines() if line.strip())
    return None if path.exists() else 0


def prepare_dataset(train_dir: str, work_dir: Path) -> tuple[Path, dict]:
    """Find the channel's dataset.yaml, check its splits, and write a copy whose `path` is the channel."""
    root = Path(train_dir)
    candidates = [root / "dataset.yaml"] if (root / "dataset.yaml").is_file() else sorted(root.glob("*.yaml"))
    if len(candidates) != 1:
        found = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())[:10] if root.is_dir() else "the folder does not exist"
        raise FileNotFoundError(
            f"No dataset.yaml in the train channel {root}: expected a YOLO detection set (dataset.yaml with train, "
            f"val and names, beside images/<split>/ and labels/<split>/); found {found or 'no files'}.")
    source = candidates[0]
    try:
        data = yaml.safe_load(source.read_text())
    except yaml.YAMLError as error:
        raise ValueError(f"{source} is not valid YAML: {error}") from error
    if not isinstance(data, dict):
        raise ValueError(f"{source} must be a mapping with train, val and names, got {type(data).__name__}")
    missing = [key for key in ("train", "val", "names") if not data.get(key)]
    if missing:
        raise ValueError(f"{source} lacks {', '.join(missing)}: a YOLO dataset.yaml names the train and val image "
                         "folders (relative to its own folder) and the class names")
    written_path = data.get("path")
    base = Path(written_path) if written_path and Path(str(written_path)).is_absolute() and Path(str(written_path)).is_dir() else source.parent
    data["path"] = str(base.resolve())
    counts = {split: _split_images(data[split], base) for split in ("train", "val", "test") if data.get(split)}
    for split in ("train", "val"):
        if counts[split] == 0:
            raise ValueError(f"The {split} split of {source} ({data[split]!r} under {base}) holds no images; "
                             f"put its images in that folder and their labels in the matching labels/ folder.")
    names = data["names"]
    class_names = [names[k] for k in sorted(names)] if isinstance(names, dict) else list(names)
    work_dir.mkdir(parents=True, exist_ok=True)
    effective = work_dir / "dataset.yaml"
    effective.write_text(yaml.safe_dump(data, sort_keys=False))
    moved = f" (was {written_path!r})" if written_path and str(written_path) != data["path"] else ""
    log(f"data: {source} -> path {data['path']}{moved}; "
        + ", ".join(f"{split} {count if count is not None else '?'} images" for split, count in counts.items())
        + f"; classes {class_names}")
    return effective, {"class_names": class_names, "images": counts}


# -----------------------------------------------------------------------------
# ultralytics, kept offline unless it must download pretrained weights


def configure_ultralytics(offline: bool, config_dir: Path) -> None:
    """Settings in a private folder, no telemetry or experiment trackers; offline: no network at all.

    Must run before ultralytics is imported: it reads YOLO_CONFIG_DIR and YOLO_OFFLINE at import.
    """
    os.environ["YOLO_CONFIG_DIR"] = str(config_dir)  # ultralytics writes settings.json there on import
    # every checkpoint ultralytics loads (pretrained weights, a resumed last.pt) with torch.load(weights_only=True)
    # and its allow-list of model classes, never a full unpickle: a checkpoint prefix in S3 is not code
    os.environ["ULTRALYTICS_SAFE_LOAD"] = "1"
    if offline:
        os.environ["YOLO_OFFLINE"] = "1"  # no connectivity probe, so no update check, telemetry or hub calls
    from ultralytics import settings

    # mlflow and friends log wherever they are installed unless told not to; sync is ultralytics' telemetry
    settings.update({key: False for key in ("sync", "clearml", "comet", "dvc", "mlflow", "raytune", "tensorboard",
                                            "wandb", "vscode_msg", "openvino_msg") if key in settings})
    if offline:
        import ultralytics.data.utils as data_utils
        import ultralytics.engine.trainer as trainer_module

        # checking a data set fetches Arial.ttf for plots even with plots off (an HTTP HEAD, then a download);
        # we never plot, so there is nothing to fetch
        data_utils.check_font = lambda *args, **kwargs: None
        # the AMP self-test downloads yolo26n.pt to compare fp32 and fp16 outputs; offline, trust AMP on CUDA
        trainer_module.check_amp = lambda model: next(model.parameters()).device.type == "cuda"


def check_checkpoints_are_weights_only(weights_dir: Path) -> None:
    """Refuse a checkpoint folder whose .pt files need a full unpickle, before anything loads them.

    ULTRALYTICS_SAFE_LOAD covers ultralytics' loads, but its strip_optimizer, run on best.pt and last.pt
    when training ends, still unpickles them fully; a resumed run may keep the downloaded best.pt."""
    from ultralytics.nn.tasks import torch_safe_load

    for checkpoint in sorted(weights_dir.glob("*.pt")):
        try:
            torch_safe_load(str(checkpoint), safe_only=True)
        except Exception as exc:
            raise RuntimeError(f"checkpoint {checkpoint} does not load with torch.load(weights_only=True) and "
                               f"ultralytics' allow-list of model classes, so it is not resumed: {exc}") from exc


def resolve_weights(hp: Hyperparameters, paths: Paths) -> tuple[str, bool]:
    """What YOLO() loads, and whether it has to come from the network."""
    if not hp.pretrained:
        return f"yolov8{hp.model_size}.yaml", False  # shipped inside the ultralytics package
    if not hp.weights:
        return f"yolov8{hp.model_size}.pt", True  # ultralytics downloads it from its GitHub release
    candidates = [Path(hp.weights)]
    if paths.weights_channel and not Path(hp.weights).is_absolute():
        candidates.insert(0, Path(paths.weights_channel) / hp.weights)
    for candidate in candidates:
        if candidate.is_file():
            return str(candidate), False
    raise FileNotFoundError(f"--weights {hp.weights!r} is not a file (looked at {', '.join(map(str, candidates))}); "
                            "give a checkpoint path or a file name in the weights channel (SM_CHANNEL_WEIGHTS)")


def device_for(num_gpus: int) -> str:
    import torch

    available = torch.cuda.device_count()
    count = available if num_gpus < 0 else min(num_gpus, available)
    return ",".join(str(i) for i in range(count)) if count else "cpu"


def _metric_values(metrics: dict) -> dict[str, float]:
    return {name: float(metrics.get(key, float("nan"))) for name, key in BOX_METRICS.items()}


def _metric_text(values: dict[str, float], prefix: str = "") -> str:
    return " ".join(f"{prefix}{name}={values[name]:.4f}" for name in BOX_METRICS)


class EpochLogger:
    """ultralytics callbacks that print one metric line per epoch and keep the history in progress.json."""

    def __init__(self, progress_path: Path, history: list[dict]):
        self.progress_path = progress_path
        self.history = history
        self.pending_epoch = None

    def on_train_epoch_end(self, trainer) -> None:
        self.pending_epoch = trainer.epoch

    def on_fit_epoch_end(self, trainer) -> None:
        # also called once more by the final validation of best.pt, which no training epoch precedes: skip that one
        if self.pending_epoch != trainer.epoch:
            return
        self.pending_epoch = None
        epoch = trainer.epoch + 1
        losses = trainer.label_loss_items(trainer.tloss, prefix="train")
        entry = {"epoch": epoch, **{k.split("/")[1]: float(v) for k, v in losses.items()},
                 **_metric_values(trainer.metrics), "lr": float(next(iter(trainer.lr.values()))),
                 "epoch_seconds": float(trainer.epoch_time or 0.0),
                 "is_best": bool(trainer.fitness is not None and trainer.fitness == trainer.best_fitness)}
        loss_text = " ".join(f"{name}={entry[name]:.4f}" for name in ("box_loss", "cls_loss", "dfl_loss") if name in entry)
        self.history.append(entry)
        self.save(epochs=trainer.epochs, finished=False)  # first: a job stopped right after the line resumes past it
        log(f"epoch={epoch} {loss_text} {_metric_text(entry)} learning_rate={entry['lr']:.6f} epoch_seconds={entry['epoch_seconds']:.1f}")

    def save(self, *, epochs: int, finished: bool) -> None:
        self.progress_path.write_text(json.dumps({"epochs": epochs, "finished": finished, "history": self.history}, indent=2))


def _load_progress(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


# -----------------------------------------------------------------------------
# main


def main(argv: list[str] | None = None) -> int:
    hp, paths = parse_args(argv)
    validate(hp)
    started = time.perf_counter()
    checkpoint_dir = Path(hp.checkpoint_dir).resolve()
    run_dir = checkpoint_dir / RUN_NAME
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    dataset_yaml, data_info = prepare_dataset(paths.train, checkpoint_dir)

    source, needs_network = resolve_weights(hp, paths)
    config_dir = Path(tempfile.mkdtemp(prefix="ultralytics-config-"))
    configure_ultralytics(offline=not needs_network, config_dir=config_dir)
    import torch
    from ultralytics import YOLO

    device = device_for(paths.num_gpus)
    progress_path = checkpoint_dir / PROGRESS_FILE
    progress = _load_progress(progress_path)
    last = run_dir / "weights" / "last.pt"
    resuming = bool(progress) and not progress.get("finished") and last.is_file()
    already_done = bool(progress.get("finished")) and (run_dir / "weights" / "best.pt").is_file()
    history = list(progress.get("history", [])) if (resuming or already_done) else []
    logger = EpochLogger(progress_path, history)

    log(f"torch {torch.__version__}, device {device}, {'offline' if not needs_network else 'online (downloads ' + source + ')'}")
    if resuming or already_done:
        check_checkpoints_are_weights_only(run_dir / "weights")
    if already_done:
        log(f"the checkpoint in {run_dir} holds a finished run of {progress.get('epochs')} epoch(s): packaging it without training")
    else:
        if resuming:
            # ultralytics' checkpoints pickle the model; they load weights-only (ULTRALYTICS_SAFE_LOAD, checked above)
            log(f"resuming from {last}: {len(history)} epoch(s) done of {progress.get('epochs')}")
            model = YOLO(str(last))
            train_args = dict(resume=True, data=str(dataset_yaml), device=device, workers=hp.workers)
        else:
            if run_dir.exists():
                shutil.rmtree(run_dir)  # a stale run (another data set or settings) must not be resumed or mixed in
            log(f"model: {source} ({'pretrained' if hp.pretrained else 'random init'})")
            model = YOLO(source, task="detect")
            train_args = dict(
                data=str(dataset_yaml), epochs=hp.epochs, batch=hp.batch, nbs=hp.nbs, imgsz=hp.imgsz, patience=hp.patience,
                lr0=hp.lr0, optimizer=hp.optimizer, workers=hp.workers, seed=hp.seed, amp=hp.amp, device=device,
                project=str(checkpoint_dir), name=RUN_NAME, exist_ok=True, plots=False, verbose=False,
                pretrained=hp.pretrained,
            )
            if hp.optimizer == "auto":
                log(f"optimizer auto: ultralytics picks the optimizer and its learning rate; --lr0 {hp.lr0} is not used")
        model.add_callback("on_train_epoch_end", logger.on_train_epoch_end)
        model.add_callback("on_fit_epoch_end", logger.on_fit_epoch_end)
        model.train(**train_args)
        if history and not all(math.isfinite(history[-1][k]) for k in ("box_loss", "cls_loss", "dfl_loss")):
            raise RuntimeError(f"Training diverged: the last epoch's losses are {history[-1]}; lower --lr0 (now {hp.lr0}).")
        logger.save(epochs=len(history), finished=True)

    best = run_dir / "weights" / "best.pt"
    if not best.is_file():
        raise RuntimeError(f"ultralytics wrote no best.pt in {run_dir / 'weights'}; see its log above")
    best_model = YOLO(str(best), task="detect")
    # before any validation: validating fuses conv and batch-norm layers in place, which changes the state_dict
    state_dict, architecture = plain_weights(best_model.model, hp.model_size)

    # best.pt on val (the gate's numbers) and on test: evaluated here, so a resumed or packaged run reports them too
    # project/name: validators make a folder, which would otherwise land in ./runs/ of the working directory
    eval_args = dict(data=str(dataset_yaml), imgsz=hp.imgsz, batch=hp.batch if hp.batch > 0 else 16, device=device,
                     workers=hp.workers, plots=False, verbose=False, project=str(run_dir), exist_ok=True)
    best_values = _metric_values(best_model.val(split="val", name="val-best", **eval_args).results_dict)
    best_epochs = [entry["epoch"] for entry in history if entry.get("is_best")]
    best_epoch = best_epochs[-1] if best_epochs else None  # ultralytics keeps the latest of equally good epochs
    log(f"best_epoch={best_epoch} {_metric_text(best_values, 'best_')}")
    test_values = None
    if data_info["images"].get("test"):
        test_values = _metric_values(best_model.val(split="test", name="test-best", **eval_args).results_dict)
        log(_metric_text(test_values, "test_"))

    write_model_artifacts(Path(paths.model_dir), run_dir, state_dict, architecture, {
        "architecture": architecture["name"],
        "task": "detect",
        "class_names": data_info["class_names"],
        "imgsz": hp.imgsz,
        "started_from": source if hp.pretrained else f"{source} (random init)",
        "best_epoch": best_epoch,
        "best": best_values,
        "test": test_values,
        "images": data_info["images"],
        "history": history,
        "hyperparameters": asdict(hp),
        "ultralytics_version": __import__("ultralytics").__version__,
        "torch_version": torch.__version__,
        "training_seconds": round(time.perf_counter() - started, 1),
    })
    output = Path(paths.output_data_dir)
    output.mkdir(parents=True, exist_ok=True)
    for name in ("results.csv", "args.yaml"):
        if (run_dir / name).is_file():
            shutil.copy2(run_dir / name, output / name)
    shutil.copy2(Path(paths.model_dir) / "training_metrics.json", output / "training_metrics.json")
    log(f"saved best.pt (epoch {best_epoch}), last.pt and model.pth to {paths.model_dir}")
    shutil.rmtree(config_dir, ignore_errors=True)
    return 0


def plain_weights(network, model_size: str) -> tuple[dict, dict]:
    """The network's float32 state_dict, and its architecture: {"name": "yolov8n", "config": yaml dict}."""
    state_dict = {k: v.detach().float().cpu() if v.is_floating_point() else v.detach().cpu()
                  for k, v in network.state_dict().items()}
    config = {k: v for k, v in network.yaml.items() if k != "yaml_file"}
    # the file it was built from names it (yolov8n.yaml, also inside a .pt); ultralytics reads the scale from that name
    name = Path(network.yaml.get("yaml_file") or f"yolov8{model_size}.yaml").stem
    return state_dict, {"name": name, "config": config}


def write_model_artifacts(model_dir: Path, run_dir: Path, state_dict: dict, architecture: dict, metrics: dict) -> None:
    """best.pt, last.pt, model.pth + the architecture yaml (for weights-only loading), the JSON files, code/."""
    import torch

    model_dir.mkdir(parents=True, exist_ok=True)
    for name in ("best.pt", "last.pt"):
        shutil.copy2(run_dir / "weights" / name, model_dir / name)
    torch.save(state_dict, model_dir / "model.pth")
    config_name = f"{architecture['name']}.yaml"
    (model_dir / config_name).write_text(yaml.safe_dump(architecture["config"], sort_keys=False))
    info = {key: metrics[key] for key in ("architecture", "task", "class_names", "imgsz", "best_epoch")}
    info.update(config=config_name, weights="model.pth", metric={"name": "validation:mAP50", "value": metrics["best"]["mAP50"]})
    (model_dir / "model_info.json").write_text(json.dumps(info, indent=2) + "\n")
    (model_dir / "training_metrics.json").write_text(json.dumps(metrics, indent=2, default=str) + "\n")
    copy_serving_code(model_dir, CODE_FILES, Path(__file__).resolve().parent)


if __name__ == "__main__":
    sys.exit(main())
