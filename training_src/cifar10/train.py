"""Train a ResNet-18 on CIFAR-10 (python batch format), as SageMaker's PyTorch training container runs it.

SageMaker runs `python train.py --epochs 10 --batch-size 128 ...` with the hyperparameters as flags
and the paths in SM_* variables; by hand, the flags' defaults stand in for those variables:

    python -m include.datasets.cifar10 data/cifar10          # a small synthetic set, real format
    python training_src/cifar10/train.py --train data/cifar10 --epochs 2 --model-dir model

Data: the train channel holds cifar-10-batches-py's files (data_batch_1..5, batches.meta, and
usually test_batch); validation uses test_batch from the test channel when there is one, else from
the train channel. The whole set stays in memory as uint8 tensors; batches are augmented (random
crop with padding 4, horizontal flip) and normalized on the device.

Log lines, stable for two readers (a person, and SageMaker's MetricDefinitions: the regexes of
training.metric_definitions in include/workloads/cifar10.yaml, their one copy):
    epoch=3 train_loss=1.2345 train_accuracy=0.5123 val_loss=1.1000 val_accuracy=0.6012 lr=0.0500 epoch_seconds=12.3
    best_val_accuracy=0.6012
train_loss includes label smoothing; val_loss is plain cross-entropy; lr is the rate of the epoch's last step.

Outputs in SM_MODEL_DIR (model.tar.gz): model.pth (state_dict of the best epoch by val_accuracy,
load with torch.load(weights_only=True)), model_info.json, and code/ (inference.py, model.py,
requirements.txt: the entry point of SageMaker's PyTorch inference container). Each epoch also
checkpoints model + optimizer + scheduler to --checkpoint-dir, and a run resumes from it (spot training).

Multi-process: under torchrun (WORLD_SIZE > 1) it trains with DistributedDataParallel (nccl on GPU,
gloo on CPU); --batch-size is per process; only rank 0 logs metrics and writes files.

Evidence (2-core Xeon, no GPU, torch 2.14.1, 2 epochs on include.datasets.cifar10's default synthetic set,
600 training + 200 validation images): --batch-size 32 --learning-rate 0.1 reached best_val_accuracy
0.945, 0.895, 0.945 (seeds 0, 1, 2; 0.925 with seed 42 on 640 + 160 images); epoch 1 alone 0.80-0.83.
--batch-size 64 --learning-rate 0.05 gets fewer steps: 0.57-0.76. An epoch took 12-17 s with the machine
lightly loaded (load average 2-3), about 35 s per run with start-up; under load 8-10 it took 4-10x longer.
Not measured: real CIFAR-10 and GPUs (the --amp and channels_last path runs only on CUDA);
benchmarks/training_paths.py times this path against a plain recipe, on a GPU with --device cuda --size full.
"""
import importlib.util
import json
import math
import os
import re
import sys
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import NamedTuple

import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import BatchSampler, DataLoader, DistributedSampler, RandomSampler, TensorDataset

# In the container the packager puts training_src/shared's modules beside this file (/opt/ml/code); run
# from the repository, as `python training_src/cifar10/train.py`, they are in training_src/shared.
if importlib.util.find_spec("sagemaker_hyperparameters") is None:
    sys.path.insert(1, str(Path(__file__).resolve().parents[1] / "shared"))

from cifar_batches import read_batch_arrays, read_pickled_entries
from model import ARCHITECTURE, CIFAR10_MEAN, CIFAR10_STD, CLASS_NAMES, INPUT_SIZE, build_model
from sagemaker_hyperparameters import parse_hyperparameters, setting
from serving_code import copy_serving_code
from spot_checkpoints import CHECKPOINT_NAME, load_checkpoint, save_checkpoint

CODE_FILES = ("inference.py", "model.py", "requirements.txt")  # what code/ in model.tar.gz needs to serve


# -----------------------------------------------------------------------------
# settings: hyperparameters arrive as --flags, paths as SM_* variables


@dataclass
class Hyperparameters:
    epochs: int = setting(10, "passes over the training set")
    batch_size: int = setting(128, "images per step and process")
    learning_rate: float = setting(0.1, "peak SGD learning rate (short warmup, then cosine decay to 0)")
    momentum: float = setting(0.9, "SGD momentum, in [0, 1)")
    weight_decay: float = setting(5e-4, "L2 weight decay")
    label_smoothing: float = setting(0.0, "cross-entropy label smoothing, in [0, 1)")
    augment: bool = setting(True, "random crop (padding 4) and horizontal flip of training images")
    num_workers: int = setting(2, "DataLoader processes slicing batches off the in-memory tensors; 0 = main process")
    seed: int = setting(0, "random seed for initialization, sampling and augmentation")
    max_train_samples: int = setting(0, "train on a random subset of this many images; 0 = all")
    checkpoint_dir: str = setting("checkpoints", "per-epoch checkpoints, resumed from when present", job_folder="checkpoints")
    amp: bool = setting(True, "bf16 autocast on GPU (ignored on CPU)")


@dataclass
class Paths:
    train: str = setting("data/cifar10", "train channel: cifar-10-batches-py's files", env="SM_CHANNEL_TRAIN")
    test: str = setting("", "optional test channel holding test_batch", env="SM_CHANNEL_TEST")
    model_dir: str = setting("model", "model artifacts, packed into model.tar.gz", env="SM_MODEL_DIR")
    output_data_dir: str = setting("output", "metrics.json, packed into output.tar.gz", env="SM_OUTPUT_DATA_DIR")
    num_gpus: int = setting(torch.cuda.device_count(), "GPUs to use; 0 = CPU", env="SM_NUM_GPUS")


def parse_args(argv: list[str] | None = None) -> tuple[Hyperparameters, Paths]:
    return parse_hyperparameters("Train ResNet-18 on CIFAR-10 python batches.", (Hyperparameters, Paths), argv)


def validate(hp: Hyperparameters) -> None:
    """Fail before any work with a message that says which hyperparameter to change and how."""
    problems = []
    if hp.epochs < 1:
        problems.append(f"--epochs must be at least 1 (got {hp.epochs})")
    if hp.batch_size < 1:
        problems.append(f"--batch-size must be at least 1 (got {hp.batch_size}); 128 is the usual value")
    if not (hp.learning_rate > 0 and math.isfinite(hp.learning_rate)):
        problems.append(f"--learning-rate must be a positive number (got {hp.learning_rate}); 0.1 suits SGD from scratch")
    if not 0 <= hp.momentum < 1:
        problems.append(f"--momentum must be in [0, 1) (got {hp.momentum}); 0.9 is the usual value")
    if not (hp.weight_decay >= 0 and math.isfinite(hp.weight_decay)):
        problems.append(f"--weight-decay must be 0 or more (got {hp.weight_decay}); 5e-4 is the usual value")
    if not 0 <= hp.label_smoothing < 1:
        problems.append(f"--label-smoothing must be in [0, 1) (got {hp.label_smoothing}); 0 turns it off")
    if hp.num_workers < 0:
        problems.append(f"--num-workers must be 0 or more (got {hp.num_workers})")
    if hp.max_train_samples < 0:
        problems.append(f"--max-train-samples must be 0 (all) or more (got {hp.max_train_samples})")
    if problems:
        raise ValueError("Invalid hyperparameters: " + "; ".join(problems))


# -----------------------------------------------------------------------------
# data: CIFAR-10 python batches -> uint8 tensors [N, 3, 32, 32] in memory


def read_batch(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """One data_batch_N / test_batch file -> (uint8 images [N, 3, 32, 32], int64 labels [N])."""
    images, labels = read_batch_arrays(path)
    return torch.from_numpy(images), torch.from_numpy(labels)


def _batch_number(path: Path) -> int:
    match = re.search(r"(\d+)$", path.name)
    return int(match.group(1)) if match else 0


def load_cifar10(train_dir: str, test_dir: str = "") -> dict:
    """Training images from every data_batch_* under train_dir; validation from test_batch (test_dir first)."""
    train_root = Path(train_dir)
    train_files = sorted((p for p in train_root.rglob("data_batch_*") if p.is_file()), key=_batch_number)
    if not train_files:
        found = (sorted(p.name for p in train_root.rglob("*") if p.is_file())[:10] if train_root.is_dir()
                 else "the folder does not exist")
        raise FileNotFoundError(
            f"No CIFAR-10 training batches in the train channel {train_root}: expected the files of "
            f"cifar-10-batches-py (data_batch_1 .. data_batch_5, batches.meta, test_batch); found {found or 'no files'}."
        )
    search = [Path(test_dir)] if test_dir else [train_root]
    test_files = [p for folder in search for p in sorted(folder.rglob("test_batch")) if p.is_file()]
    if not test_files:
        raise FileNotFoundError(
            f"No test_batch for validation in {' or '.join(map(str, search))}: put cifar-10-batches-py's test_batch "
            f"in the test channel (SM_CHANNEL_TEST) or beside the data_batch_* files of the train channel."
        )
    meta_files = [p for folder in [train_root, *search] for p in sorted(folder.rglob("batches.meta"))]
    class_names = list(CLASS_NAMES)
    if meta_files:
        (names,) = read_pickled_entries(meta_files[0], "label_names")
        class_names = [n.decode() if isinstance(n, bytes) else str(n) for n in names]

    parts = [read_batch(p) for p in train_files]
    train_images, train_labels = torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])
    if not len(train_images):
        raise ValueError(f"The training batches in {train_root} hold no images.")
    val_images, val_labels = read_batch(test_files[0])
    for name, labels in (("training", train_labels), ("validation", val_labels)):
        if len(labels) and not (0 <= int(labels.min()) and int(labels.max()) < len(class_names)):
            raise ValueError(f"{name} labels must lie in 0..{len(class_names) - 1} (one per class in batches.meta), "
                             f"found {int(labels.min())}..{int(labels.max())}")
    return dict(train_images=train_images, train_labels=train_labels, val_images=val_images, val_labels=val_labels,
                class_names=class_names, train_files=[p.name for p in train_files], test_file=str(test_files[0]))


def augment(images: torch.Tensor, padding: int = 4) -> torch.Tensor:
    """Random crop with zero padding and random horizontal flip, per image, on a float batch [N, C, H, W]."""
    n, c, h, w = images.shape
    device = images.device
    flip = torch.rand(n, device=device) < 0.5
    images = torch.where(flip[:, None, None, None], images.flip(3), images)
    padded = F.pad(images, (padding,) * 4)
    dx, dy = torch.randint(0, 2 * padding + 1, (2, n), device=device)
    rows = (dy[:, None] + torch.arange(h, device=device))[:, None, :, None]
    cols = (dx[:, None] + torch.arange(w, device=device))[:, None, None, :]
    image_index = torch.arange(n, device=device)[:, None, None, None]
    channel_index = torch.arange(c, device=device)[None, :, None, None]
    return padded[image_index, channel_index, rows, cols]


# -----------------------------------------------------------------------------
# training: main() below is the whole job; the pieces it is built from are functions of their own, so
# benchmarks/training_paths.py measures this script's own path and not a copy of it


def configure_device(device: torch.device) -> None:
    """On CUDA: make `device` current and let cuDNN pick its fastest kernels (the input shape is fixed)."""
    if device.type == "cuda":
        torch.cuda.set_device(device)
        torch.backends.cudnn.benchmark = True


class DevicePath(NamedTuple):
    """How batches reach the model: uint8 images copied to the device, augmented and normalized there;
    on CUDA also channels_last and (with --amp) bf16 autocast; on CPU fp32 in the default (NCHW) layout."""
    device: torch.device
    memory_format: torch.memory_format
    use_amp: bool
    augment: bool
    mean: torch.Tensor
    std: torch.Tensor

    @classmethod
    def on(cls, device: torch.device, hp: Hyperparameters) -> "DevicePath":
        use_cuda = device.type == "cuda"
        return cls(device=device, memory_format=torch.channels_last if use_cuda else torch.contiguous_format,
                   use_amp=hp.amp and use_cuda, augment=hp.augment,
                   mean=torch.tensor(CIFAR10_MEAN, device=device).view(1, 3, 1, 1),
                   std=torch.tensor(CIFAR10_STD, device=device).view(1, 3, 1, 1))

    def prepare(self, images: torch.Tensor, train: bool = False) -> torch.Tensor:
        x = images.to(self.device, non_blocking=True).float().div_(255)
        if train and self.augment:
            x = augment(x)
        return ((x - self.mean) / self.std).contiguous(memory_format=self.memory_format)

    def autocast(self):
        return torch.autocast("cuda", dtype=torch.bfloat16) if self.use_amp else nullcontext()

    def place(self, model: nn.Module) -> nn.Module:
        return model.to(self.device, memory_format=self.memory_format)


def batch_loader(dataset: TensorDataset, sampler, batch_size: int, num_workers: int, pin_memory: bool) -> DataLoader:
    """Index batches off the in-memory uint8 tensors: the sampler yields whole index batches, so each step
    is one tensor slice rather than batch_size lookups."""
    return DataLoader(dataset, sampler=BatchSampler(sampler, batch_size, drop_last=False), batch_size=None,
                      num_workers=num_workers, pin_memory=pin_memory, persistent_workers=num_workers > 0)


def optimization(model: nn.Module, hp: Hyperparameters, total_steps: int):
    """(SGD optimizer, warmup-then-cosine scheduler stepped once a step, loss)."""
    optimizer = torch.optim.SGD(model.parameters(), lr=hp.learning_rate, momentum=hp.momentum, weight_decay=hp.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, total_steps))
    return optimizer, scheduler, nn.CrossEntropyLoss(label_smoothing=hp.label_smoothing)


def train_step(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, path: DevicePath, optimizer, scheduler,
               criterion) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, float]:
    """One SGD step on a uint8 batch; returns (loss, logits, labels on the device, the step's learning rate)."""
    x, y = path.prepare(images, train=True), labels.to(path.device, non_blocking=True)
    with path.autocast():
        logits = model(x)
        loss = criterion(logits.float(), y)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    lr = scheduler.get_last_lr()[0]
    scheduler.step()
    return loss, logits, y, lr


def lr_factor(step: int, total_steps: int) -> float:
    """Linear warmup over the first 5% of steps, then cosine decay to 0."""
    warmup = max(1, round(0.05 * total_steps))
    if step < warmup:
        return (step + 1) / warmup
    return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total_steps - warmup))))


@torch.no_grad()
def evaluate(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, prepare, autocast) -> tuple[float, float]:
    """(mean cross-entropy, accuracy) over a uint8 image set."""
    model.eval()
    loss_sum, correct = 0.0, 0
    for start in range(0, len(images), 500):
        x = prepare(images[start:start + 500])
        y = labels[start:start + 500].to(x.device)
        with autocast():
            logits = model(x)
        loss_sum += F.cross_entropy(logits.float(), y, reduction="sum").item()
        correct += (logits.argmax(1) == y).sum().item()
    return loss_sum / max(1, len(images)), correct / max(1, len(images))


def write_model_artifacts(model_dir: Path, best_state: dict, info: dict) -> None:
    """model.pth, model_info.json and code/ (the inference entry point), as SM_MODEL_DIR becomes model.tar.gz."""
    model_dir.mkdir(parents=True, exist_ok=True)
    torch.save(best_state, model_dir / "model.pth")
    (model_dir / "model_info.json").write_text(json.dumps(info, indent=2) + "\n")
    copy_serving_code(model_dir, CODE_FILES, Path(__file__).resolve().parent)


def main(argv: list[str] | None = None) -> None:
    hp, paths = parse_args(argv)
    validate(hp)

    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = paths.num_gpus > 0 and torch.cuda.is_available()
    device = torch.device("cuda", local_rank) if use_cuda else torch.device("cpu")
    distributed = world_size > 1
    configure_device(device)
    if distributed:
        dist.init_process_group("nccl" if use_cuda else "gloo")
    rank = dist.get_rank() if distributed else 0
    is_main = rank == 0
    log = print if is_main else (lambda *args, **kwargs: None)
    torch.manual_seed(hp.seed + rank)  # DDP broadcasts rank 0's initial weights; other ranks just augment differently

    data = load_cifar10(paths.train, paths.test)
    train_images, train_labels = data["train_images"], data["train_labels"]
    if hp.max_train_samples and hp.max_train_samples < len(train_images):
        subset = torch.randperm(len(train_images), generator=torch.Generator().manual_seed(hp.seed))[:hp.max_train_samples]
        train_images, train_labels = train_images[subset], train_labels[subset]
    class_names = data["class_names"]
    log(f"data: {len(train_images)} training images from {', '.join(data['train_files'])}; "
        f"{len(data['val_images'])} validation images from {data['test_file']}; {len(class_names)} classes")

    dataset = TensorDataset(train_images, train_labels)
    sampler = (DistributedSampler(dataset, num_replicas=world_size, rank=rank, shuffle=True, seed=hp.seed)
               if distributed else RandomSampler(dataset))
    loader = batch_loader(dataset, sampler, hp.batch_size, hp.num_workers, pin_memory=use_cuda)
    steps_per_epoch = len(loader)
    total_steps = hp.epochs * steps_per_epoch

    path = DevicePath.on(device, hp)

    raw_model = path.place(build_model(len(class_names)))
    model = DistributedDataParallel(raw_model, device_ids=[local_rank] if use_cuda else None) if distributed else raw_model
    optimizer, scheduler, criterion = optimization(model, hp, total_steps)

    start_epoch, best = 0, {"val_accuracy": -1.0, "epoch": 0, "state": None}
    history = []
    checkpoint = load_checkpoint(hp.checkpoint_dir) if is_main else None
    if distributed:  # every rank resumes from rank 0's checkpoint, so all agree on the epoch
        shared = [checkpoint]
        dist.broadcast_object_list(shared, src=0)
        checkpoint = shared[0]
    if checkpoint:
        try:
            raw_model.load_state_dict(checkpoint["model"])
        except RuntimeError as error:
            raise RuntimeError(f"The checkpoint in {hp.checkpoint_dir} is for another model ({error}); "
                               f"point --checkpoint-dir elsewhere or delete it.") from error
        optimizer.load_state_dict(checkpoint["optimizer"])
        scheduler.load_state_dict(checkpoint["scheduler"])
        start_epoch = checkpoint["epoch"]
        best = {"val_accuracy": checkpoint["best_val_accuracy"], "epoch": checkpoint["best_epoch"],
                "state": checkpoint["best_model"]}
        history = checkpoint.get("history", [])
        log(f"resuming from {Path(hp.checkpoint_dir) / CHECKPOINT_NAME}: {start_epoch} epoch(s) done, "
            f"best val accuracy {best['val_accuracy']:.4f}")
    if use_cuda and not distributed and torch.cuda.device_count() > 1:
        log(f"note: {torch.cuda.device_count()} GPUs visible but one process uses one; launch with torchrun (the "
            f"PyTorch estimator's distribution={{'torch_distributed': {{'enabled': True}}}}) to use them all")
    log(f"training: {hp.epochs} epochs x {steps_per_epoch} steps on {device} (world size {world_size}, "
        f"bf16 autocast {'on' if path.use_amp else 'off'}), hyperparameters {json.dumps(asdict(hp))}")

    for epoch in range(start_epoch + 1, hp.epochs + 1):
        started = time.perf_counter()
        if distributed:
            sampler.set_epoch(epoch)
        model.train()
        sums = torch.zeros(3, dtype=torch.float64, device=device)  # loss sum, correct, count
        for images, labels in loader:
            loss, logits, y, lr = train_step(model, images, labels, path, optimizer, scheduler, criterion)
            sums[0] += loss.detach().double() * len(y)
            sums[1] += (logits.argmax(1) == y).sum()
            sums[2] += len(y)
        if distributed:
            dist.all_reduce(sums)
        train_loss, train_accuracy = (sums[0] / sums[2]).item(), (sums[1] / sums[2]).item()
        if not math.isfinite(train_loss):
            raise RuntimeError(f"Training diverged: train_loss is {train_loss} in epoch {epoch}; "
                               f"lower --learning-rate (now {hp.learning_rate}).")
        val_loss, val_accuracy = evaluate(raw_model, data["val_images"], data["val_labels"], path.prepare, path.autocast)
        seconds = time.perf_counter() - started
        log(f"epoch={epoch} train_loss={train_loss:.4f} train_accuracy={train_accuracy:.4f} val_loss={val_loss:.4f} "
            f"val_accuracy={val_accuracy:.4f} lr={lr:.4f} epoch_seconds={seconds:.1f}", flush=True)
        history.append(dict(epoch=epoch, train_loss=train_loss, train_accuracy=train_accuracy, val_loss=val_loss,
                            val_accuracy=val_accuracy, lr=lr, epoch_seconds=seconds))
        if val_accuracy > best["val_accuracy"]:
            best = {"val_accuracy": val_accuracy, "epoch": epoch,
                    "state": {k: v.detach().cpu().clone() for k, v in raw_model.state_dict().items()} if is_main else None}
        if is_main:
            save_checkpoint(Path(hp.checkpoint_dir) / CHECKPOINT_NAME, {
                "epoch": epoch, "model": raw_model.state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "best_val_accuracy": best["val_accuracy"],
                "best_epoch": best["epoch"], "best_model": best["state"], "history": history,
            })

    if is_main:
        if start_epoch >= hp.epochs:
            log(f"the checkpoint already holds {start_epoch} epoch(s), as many as --epochs {hp.epochs} asks: "
                "nothing to train")
        info = {
            "architecture": ARCHITECTURE,
            "description": "torchvision resnet18 with a 3x3 stride-1 conv1 and no max-pool",
            "num_classes": len(class_names),
            "class_names": class_names,
            "input_size": [3, INPUT_SIZE, INPUT_SIZE],
            "mean": list(CIFAR10_MEAN),
            "std": list(CIFAR10_STD),
            "best_metric": {"name": "validation:accuracy", "value": best["val_accuracy"]},
            "best_epoch": best["epoch"],
            "epochs_trained": max(start_epoch, hp.epochs),
            "hyperparameters": asdict(hp),
            "torch_version": torch.__version__,
        }
        write_model_artifacts(Path(paths.model_dir), best["state"], info)
        Path(paths.output_data_dir).mkdir(parents=True, exist_ok=True)
        metrics = {"history": history, **info["best_metric"]}
        (Path(paths.output_data_dir) / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
        log(f"best_val_accuracy={best['val_accuracy']:.4f}", flush=True)
        log(f"saved the epoch-{best['epoch']} model to {paths.model_dir}")
    if distributed:
        dist.barrier()
        dist.destroy_process_group()


if __name__ == "__main__":
    sys.exit(main())
