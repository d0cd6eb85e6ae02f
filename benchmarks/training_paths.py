"""The training scripts' own device paths against a plain PyTorch recipe, side by side in one run.

    .venv/bin/python benchmarks/training_paths.py [--device auto|cpu|cuda] [--size tiny|full]
        [--workloads cifar10,acoustic_shield] [--compile auto|on|off] [--extras auto|on|off] [--threads N]
        [--num-workers N] [--seed N] [--json FILE]

Offline: the data comes from the project's synthetic generators (include/datasets/cifar10.py in the real
CIFAR-10 batch format, include/datasets/acoustic_shield.py in the audiofolder layout), the models are built
from code or a config (no hub download). Every path of a workload trains the same model from the same
initial weights (same seed), on the same data, with the same optimizer and schedule (the script's own).

cifar10, ResNet-18 (training_src/cifar10/model.py), reported as training throughput (images/s, after a
few warm-up steps, evaluation pauses excluded) and time to a target validation accuracy (training time
only, compilation and warm-up included):
  plain           a torch DataLoader over a per-image Dataset in CPU memory (torchvision random crop +
                  flip + normalize per image, in the loader's workers), fp32, NCHW, eager
  train.py        what training_src/cifar10/train.py does on that device, through its own functions
                  (batch_loader, DevicePath, optimization, train_step, evaluate): uint8 index batches off
                  in-memory tensors, copied to the device and augmented there; on CUDA also cuDNN
                  benchmark, channels_last and bf16 autocast (--amp); on CPU fp32 NCHW, as the script runs
  +device-data    benchmark-only variant (not in train.py): the whole uint8 set moved to the GPU once,
                  batches sliced there; no DataLoader, no host-to-device copies
  +compile        benchmark-only variant (train.py never compiles): the above with torch.compile(model)
The two variants run by default on CUDA only (--extras, --compile); on CPU they would measure nothing
train.py does there, and compiling ResNet-18 for a CPU takes minutes.

acoustic_shield, Wav2Vec2ForSequenceClassification, reported as ms per optimizer step (data loading
included, after warm-up steps; data_ms is the part spent waiting for the loader):
  plain           a DataLoader over clips decoded once into CPU memory, the same feature extractor, fp32
  train.py        training_src/acoustic_shield/train.py's path (clip_loaders, mixed_precision, forward,
                  optimizer_step): WAV files decoded per item; on CUDA fp16 autocast with a GradScaler
--size tiny: offline-tiny (150k parameters) on 1 s clips; --size full: Wav2Vec2Config()'s defaults, the
layout of facebook/wav2vec2-base (95M parameters, random weights, saved with save_pretrained and loaded by
train.build_model as a model folder) on 5 s clips, batch 8, feature encoder frozen (the aws profile).

--size tiny is a smoke run for a 2-core CPU (about 20 s with the machine to itself, one torch thread):
5 CIFAR steps of 10 images with target accuracy 0 (nothing is learnt in 5 steps, so its "time to target"
is the time of those steps) and 5 wav2vec2 steps; its figures show that every path runs, not how fast.
--size full is for a GPU machine (50,000 + 10,000 CIFAR-sized images, batch 500, 2 epochs, target 0.9;
benchmarks/gpu_check.sh runs it and keeps the output). Each row says which options it ran with; the
ratios compare each path with plain on the same machine in the same run.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import tempfile
import time
import traceback
from contextlib import nullcontext
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
TRAINING_SRC = ROOT / "training_src"

import numpy as np  # noqa: E402
import torch  # noqa: E402

from tests.source_modules import import_source  # noqa: E402  (as the container imports a workload's modules)

SIZES = {
    "tiny": {
        # 50 + 20 images, 5 steps of 10 a path: nothing is learnt in 5 steps, so the target is 0 and "time to
        # target" is the time of those 5 steps; tiny shows that every path runs, not how fast it is
        "cifar10": dict(train_per_class=5, test_per_class=2, batch_size=10, epochs=1, eval_every=5,
                        target_accuracy=0.0, warmup_steps=1, num_workers=0),
        "acoustic_shield": dict(seconds=0.5, batch_size=4, model="offline-tiny",
                                freeze_feature_encoder=False, learning_rate=3e-3, warmup_steps=1, timed_steps=4,
                                num_workers=0),
    },
    "full": {
        # 50,000 training images at batch 500: 100 full steps an epoch (no ragged last batch to recompile for)
        "cifar10": dict(train_per_class=5000, test_per_class=1000, batch_size=500, epochs=2, eval_every=10,
                        target_accuracy=0.9, warmup_steps=10, num_workers=4),
        "acoustic_shield": dict(seconds=5.0, batch_size=8, model="base-config",
                                freeze_feature_encoder=True, learning_rate=3e-5, warmup_steps=5, timed_steps=30,
                                num_workers=2),
    },
}


# -----------------------------------------------------------------------------
# plumbing


def synchronizer(device: torch.device):
    return (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine(device: torch.device) -> dict:
    info = {"device": str(device), "torch": torch.__version__, "python": platform.python_version(),
            "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(), "cpu": cpu_name()}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(gpu=props.name, gpu_memory_gib=round(props.total_memory / 2**30, 1),
                    capability=f"{props.major}.{props.minor}", cuda=torch.version.cuda,
                    cudnn=torch.backends.cudnn.version(), tf32_matmul=torch.backends.cuda.matmul.allow_tf32,
                    tf32_cudnn=torch.backends.cudnn.allow_tf32)
    else:
        info["gpu"] = "none"
    return info


def run_row(row: dict, run, device: torch.device) -> None:
    """row.update(run()), with the GPU's peak memory; one path failing (say, no compiler for torch.compile) is
    reported on its row and does not hide the others."""
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    try:
        row.update(run())
        if device.type == "cuda":
            row["peak_gpu_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
    except Exception as error:
        row["error"] = f"{type(error).__name__}: {error}".splitlines()[0][:300]
        traceback.print_exc()


def fmt(value, digits: int = 1) -> str:
    return "not-reached" if value is None else f"{value:.{digits}f}"


def print_row(row: dict) -> None:
    """One key=value line per path (stable: tests/benchmarks/test_training_paths_tiny.py reads it)."""
    parts = [f"{row['workload']} path={row['path']}"]
    for key, value in row.items():
        if key in ("workload", "path", "options"):
            continue
        if key in ("skipped", "error"):
            value = json.dumps(value)
        elif value is None or isinstance(value, float):
            # seconds to the millisecond: a tiny run's first step can take 30 ms, which ".1f" prints as 0.0
            value = fmt(value, 4 if "accuracy" in key or key == "target" else 3 if key.endswith("_s") else 1)
        parts.append(f"{key}={value}")
    parts.append(f"options={json.dumps(row['options'])}")
    print(" ".join(parts), flush=True)


# -----------------------------------------------------------------------------
# cifar10


class PlainCifar(torch.utils.data.Dataset):
    """The textbook recipe: one image at a time from CPU memory, torchvision transforms in the loader's workers."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, mean, std, train: bool):
        from torchvision.transforms import v2

        self.images, self.labels = images, labels
        steps = [v2.RandomCrop(32, padding=4), v2.RandomHorizontalFlip()] if train else []
        self.transform = v2.Compose([*steps, v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(mean), list(std))])

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int):
        return self.transform(self.images[index]), self.labels[index]


def train_to_target(batches, step, evaluate, model, cfg: dict, device: torch.device) -> dict:
    """Run cfg['epochs'] epochs of `step(batch) -> images`; evaluate every cfg['eval_every'] steps until the target
    accuracy is reached (evaluation time excluded from the training time) and once at the end. Throughput counts
    the steps after cfg['warmup_steps'] (loader start-up, cuDNN autotuning and compilation fall before)."""
    sync = synchronizer(device)
    train_s, images, steps, evaluated_at = 0.0, 0, 0, -1
    first_step_s = warm = reached = accuracy = None

    def close_segment():
        nonlocal train_s, started
        sync()
        now = time.perf_counter()
        train_s += now - started
        started = now

    model.train()
    sync()
    started = time.perf_counter()
    for _ in range(cfg["epochs"]):
        for batch in batches():
            images += step(batch)
            steps += 1
            if steps == 1:
                close_segment()
                first_step_s = train_s
            if steps == cfg["warmup_steps"]:
                close_segment()
                warm = (train_s, images)
            if reached is None and steps % cfg["eval_every"] == 0:
                close_segment()
                accuracy, evaluated_at = evaluate(), steps
                if accuracy >= cfg["target_accuracy"]:
                    reached = dict(time_to_target_s=train_s, steps_to_target=steps, images_to_target=images)
                model.train()
                started = time.perf_counter()
    close_segment()
    if evaluated_at != steps:  # the final weights too
        accuracy = evaluate()
        if reached is None and accuracy >= cfg["target_accuracy"]:
            reached = dict(time_to_target_s=train_s, steps_to_target=steps, images_to_target=images)
    if warm is None or steps <= cfg["warmup_steps"]:
        raise RuntimeError(f"{steps} steps are not more than the {cfg['warmup_steps']} warm-up steps")
    reached = reached or dict(time_to_target_s=None, steps_to_target=None, images_to_target=None)
    return dict(images_per_s=(images - warm[1]) / (train_s - warm[0]), **reached, target=cfg["target_accuracy"],
                final_val_accuracy=accuracy, steps=steps, train_s=train_s, first_step_s=first_step_s)


def cifar10_rows(args, cfg: dict, device: torch.device, work: Path) -> list[dict]:
    from torch.utils.data import DataLoader, RandomSampler, TensorDataset

    from include.datasets import cifar10 as generator

    train = import_source("train", TRAINING_SRC / "cifar10")
    started = time.perf_counter()
    data_dir = generator.generate(work / "cifar10", cfg["train_per_class"], cfg["test_per_class"], seed=args.seed)
    data = train.load_cifar10(str(data_dir))  # the script's reader, on the real batch format
    train_images, train_labels = data["train_images"], data["train_labels"]
    val_images, val_labels = data["val_images"], data["val_labels"]
    classes = len(data["class_names"])
    # the script's hyperparameters as the toolkit passes them; everything else at train.py's defaults
    hp, _ = train.parse_args(["--batch-size", str(cfg["batch_size"]), "--num-workers", str(cfg["num_workers"]),
                              "--seed", str(args.seed), "--epochs", str(cfg["epochs"])])
    train.validate(hp)
    steps_per_epoch = math.ceil(len(train_images) / hp.batch_size)
    total_steps = hp.epochs * steps_per_epoch
    print(f"cifar10: ResNet-18 ({train.ARCHITECTURE}), {len(train_images)} training + {len(val_images)} validation synthetic "
          f"images (include.datasets.cifar10, read by train.load_cifar10; made in {time.perf_counter() - started:.1f} s), "
          f"batch {hp.batch_size}, {hp.epochs} epoch(s) x {steps_per_epoch} steps, SGD lr {hp.learning_rate} momentum "
          f"{hp.momentum} weight decay {hp.weight_decay} (train.optimization), seed {hp.seed}, {hp.num_workers} loader "
          f"workers, target val accuracy {cfg['target_accuracy']}, throughput after {cfg['warmup_steps']} warm-up steps",
          flush=True)
    cuda = device.type == "cuda"
    extras = args.extras == "on" or (args.extras == "auto" and cuda)
    compiled = args.compile == "on" or (args.compile == "auto" and cuda)

    def fresh_model():
        torch.manual_seed(hp.seed)  # the same initial weights on every path
        return train.build_model(classes)

    def plain():
        torch.backends.cudnn.benchmark = False  # PyTorch's default
        model = fresh_model().to(device)
        optimizer, scheduler, criterion = train.optimization(model, hp, total_steps)
        loader = DataLoader(PlainCifar(train_images, train_labels, train.CIFAR10_MEAN, train.CIFAR10_STD, train=True),
                            batch_size=hp.batch_size, shuffle=True, num_workers=hp.num_workers)
        mean = torch.tensor(train.CIFAR10_MEAN, device=device).view(1, 3, 1, 1)
        std = torch.tensor(train.CIFAR10_STD, device=device).view(1, 3, 1, 1)

        def step(batch):
            x, y = batch[0].to(device), batch[1].to(device)
            loss = criterion(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            return len(y)

        def evaluate():  # not timed; the same normalization as the Dataset's, fp32, NCHW
            return train.evaluate(model, val_images, val_labels, lambda u: (u.to(device).float() / 255 - mean) / std,
                                  nullcontext)[1]

        return train_to_target(lambda: loader, step, evaluate, model, cfg, device)

    def script(device_data: bool = False, compile_model: bool = False):
        train.configure_device(device)  # cuDNN benchmark on CUDA, as main() does
        path = train.DevicePath.on(device, hp)
        raw_model = path.place(fresh_model())
        model = torch.compile(raw_model) if compile_model else raw_model
        optimizer, scheduler, criterion = train.optimization(raw_model, hp, total_steps)
        dataset = TensorDataset(train_images, train_labels)
        if device_data:
            on_device = train_images.to(device), train_labels.to(device)
            sampler = torch.utils.data.BatchSampler(RandomSampler(dataset), hp.batch_size, drop_last=False)

            def batches():
                for indices in sampler:
                    indices = torch.as_tensor(indices).to(device, non_blocking=True)
                    yield on_device[0][indices], on_device[1][indices]
        else:
            loader = train.batch_loader(dataset, RandomSampler(dataset), hp.batch_size, hp.num_workers, pin_memory=cuda)

            def batches():
                return loader
        sums = torch.zeros(3, dtype=torch.float64, device=device)

        def step(batch):
            loss, logits, y, _ = train.train_step(model, batch[0], batch[1], path, optimizer, scheduler, criterion)
            sums[0] += loss.detach().double() * len(y)  # main()'s running metrics, on the device
            sums[1] += (logits.argmax(1) == y).sum()
            sums[2] += len(y)
            return len(y)

        def evaluate():  # main() evaluates the uncompiled model
            return train.evaluate(raw_model, val_images, val_labels, path.prepare, path.autocast)[1]

        graphs_before = torch._dynamo.utils.counters["stats"]["unique_graphs"]
        figures = train_to_target(batches, step, evaluate, raw_model, cfg, device)
        if compile_model:  # more than one graph: a graph break or a recompilation (a new shape, a failed guard)
            figures["compiled_graphs"] = torch._dynamo.utils.counters["stats"]["unique_graphs"] - graphs_before
        return figures

    amp = "bf16 autocast" if cuda and hp.amp else "fp32 (train.py's --amp is for CUDA only)"
    layout = "channels_last" if cuda else "NCHW (train.py uses channels_last on CUDA only)"
    workers = f"{hp.num_workers} workers"
    variants = [
        ("plain", f"DataLoader over a per-image Dataset in CPU memory, torchvision crop+flip+normalize per image, "
                  f"{workers}, fp32, NCHW, eager, cudnn.benchmark off", plain, True, ""),
        ("train.py", f"train.py's own path: uint8 index batches off in-memory tensors ({workers}"
                     f"{', pinned' if cuda else ''}), augmented on the {device.type}, {amp}, {layout}, eager"
                     f"{', cudnn.benchmark on' if cuda else ''}", script, True, ""),
        ("train.py+device-data", f"benchmark-only (not in train.py): the uint8 set kept on the {device.type}, batches "
                                 f"sliced there, no DataLoader; otherwise as train.py ({amp}, {layout})",
         lambda: script(device_data=True), extras,
         "benchmark-only variant, on by default on CUDA only (--extras on runs it here)"),
        ("train.py+device-data+compile", "benchmark-only (train.py never compiles): as train.py+device-data with "
                                         "torch.compile(model) (default mode; compile time counts toward time to target)",
         lambda: script(device_data=True, compile_model=True), compiled,
         "train.py never compiles; this benchmark-only variant is on by default on CUDA only (--compile on runs it here)"),
    ]
    rows = []
    for name, options, run, enabled, why_not in variants:
        row = {"workload": "cifar10", "path": name}
        if not enabled:
            row["skipped"] = why_not
        else:
            run_row(row, run, device)
        row["options"] = options
        print_row(row)
        rows.append(row)
    return rows


# -----------------------------------------------------------------------------
# acoustic_shield


class DecodedClips(torch.utils.data.Dataset):
    """Clips decoded once into CPU memory: (16 kHz samples, label index)."""

    def __init__(self, clips: list[tuple[np.ndarray, int]]):
        self.clips = clips

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, index: int):
        return self.clips[index]


def save_base_config_model(folder: Path, labels: list[str], seed: int) -> Path:
    """Wav2Vec2Config()'s defaults (facebook/wav2vec2-base's layout), random weights, and wav2vec2-base's feature
    extractor settings, written with save_pretrained: a model folder train.build_model loads as on AWS, offline."""
    from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2ForSequenceClassification

    torch.manual_seed(seed)
    config = Wav2Vec2Config(num_labels=len(labels), id2label=dict(enumerate(labels)),
                            label2id={label: i for i, label in enumerate(labels)})
    Wav2Vec2ForSequenceClassification(config).save_pretrained(folder)
    Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=16000, padding_value=0.0, do_normalize=True,
                             return_attention_mask=False).save_pretrained(folder)
    return folder


def time_steps(loader, step, cfg: dict, device: torch.device) -> dict:
    """Warm-up steps, then cfg['timed_steps'] steps, each synchronized and timed with its data loading (data_ms:
    waiting for the loader's next batch); one pass over the clips, so no loader restart falls among the timed steps."""
    sync = synchronizer(device)
    durations, waits, first_step_s = [], [], None
    total = cfg["warmup_steps"] + cfg["timed_steps"]
    if len(loader) < total:
        raise ValueError(f"{len(loader)} batches of clips for {total} steps")
    batches = iter(loader)
    for index in range(total):
        sync()
        started = time.perf_counter()
        batch = next(batches)
        loaded = time.perf_counter()
        step(*batch)
        sync()
        seconds = time.perf_counter() - started
        if index == 0:
            first_step_s = seconds
        if index >= cfg["warmup_steps"]:
            durations.append(seconds)
            waits.append(loaded - started)
    mean = statistics.fmean(durations)
    return dict(ms_per_step=mean * 1000, p50_ms=statistics.median(durations) * 1000,
                data_ms=statistics.fmean(waits) * 1000, clips_per_s=cfg["batch_size"] / mean, steps=len(durations),
                first_step_s=first_step_s)


def acoustic_shield_rows(args, cfg: dict, device: torch.device, work: Path) -> list[dict]:
    from torch.utils.data import DataLoader

    from include.datasets import acoustic_shield as generator

    train = import_source("train", TRAINING_SRC / "acoustic_shield")
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()
    started = time.perf_counter()
    steps = cfg["warmup_steps"] + cfg["timed_steps"]
    per_class = math.ceil(steps * cfg["batch_size"] / len(generator.LABELS))  # one pass covers every step
    data_dir = generator.generate(work / "acoustic_shield", per_class, min_seconds=cfg["seconds"],
                                  max_seconds=cfg["seconds"], seed=args.seed)
    clips = train.find_clips(str(data_dir / "train"), "train")
    labels = sorted(clips)
    items = train.labelled(clips, {label: i for i, label in enumerate(labels)})
    data_s = time.perf_counter() - started
    max_samples = int(cfg["seconds"] * 16000)
    model_name = cfg["model"]
    started = time.perf_counter()
    if model_name == "base-config":
        model_name = str(save_base_config_model(work / "wav2vec2-base-config", labels, args.seed))
    hp, _ = train.parse_args([
        "--model-name-or-path", model_name, "--batch-size", str(cfg["batch_size"]), "--num-workers", str(cfg["num_workers"]),
        "--max-audio-length", str(max_samples), "--learning-rate", str(cfg["learning_rate"]),
        "--freeze-feature-encoder", str(cfg["freeze_feature_encoder"]).lower(), "--seed", str(args.seed), "--epochs", "1",
        "--warmup-steps", str(cfg["warmup_steps"])])
    train.validate(hp)
    cuda = device.type == "cuda"

    def fresh_model():
        torch.backends.cudnn.benchmark = False  # PyTorch's default; train.py here never changes it (cifar10's does)
        torch.manual_seed(hp.seed)  # offline-tiny is initialized here; a model folder loads the same weights anyway
        model, extractor = train.build_model(hp.model_name_or_path, labels)
        if hp.freeze_feature_encoder:
            model.freeze_feature_encoder()
        return model.to(device), extractor

    probe, _ = train.build_model(hp.model_name_or_path, labels)
    parameters = sum(p.numel() for p in probe.parameters())
    del probe
    model_s = time.perf_counter() - started
    print(f"acoustic_shield: Wav2Vec2ForSequenceClassification {cfg['model']} ({parameters:,} parameters, feature encoder "
          f"{'frozen' if hp.freeze_feature_encoder else 'trained'}; "
          f"{'saved from its config and loaded' if cfg['model'] == 'base-config' else 'built'} by train.build_model in "
          f"{model_s:.1f} s), {len(items)} synthetic clips of {cfg['seconds']:g} s (include.datasets.acoustic_shield, "
          f"made in {data_s:.1f} s), batch {hp.batch_size}, "
          f"AdamW lr {hp.learning_rate} (train.optimization), grad-norm clip 1.0, seed {hp.seed}, {hp.num_workers} loader "
          f"workers, {cfg['timed_steps']} timed steps after {cfg['warmup_steps']} warm-up steps", flush=True)

    def plain():
        model, extractor = fresh_model()
        optimizer, scheduler = train.optimization(model, hp, steps)
        clip_files = train.ClipDataset(items, max_samples)
        decoded = [clip_files[i] for i in range(len(clip_files))]  # decoded once (by train.py's reader) into memory
        generator_ = torch.Generator().manual_seed(hp.seed)
        loader = DataLoader(DecodedClips(decoded), batch_size=hp.batch_size, shuffle=True, generator=generator_,
                            collate_fn=train.Collator(extractor, max_samples), num_workers=hp.num_workers)
        model.train()

        def step(features, y):
            features = {k: v.to(device) for k, v in features.items()}
            loss = model(**features, labels=y.to(device)).loss
            loss.backward()
            loss.item()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)

        return time_steps(loader, step, cfg, device)

    def script():
        _, autocast, scaler = train.mixed_precision(device, hp.fp16)
        model, extractor = fresh_model()
        train_loader, _ = train.clip_loaders(items, items[:1], extractor, hp, pin_memory=cuda)
        optimizer, scheduler = train.optimization(model, hp, steps)
        model.train()
        optimizer.zero_grad(set_to_none=True)

        def step(features, y):  # main()'s loop body with --gradient-accumulation-steps 1
            loss = train.forward(model, features, y, device, autocast)
            if not torch.isfinite(loss):
                raise RuntimeError(f"the loss is {loss.item()}")
            scaler.scale(loss).backward()
            loss.item()
            train.optimizer_step(model, optimizer, scheduler, scaler)

        return time_steps(train_loader, step, cfg, device)

    precision = "fp16 autocast + GradScaler" if cuda and hp.fp16 else "fp32 (train.py's --fp16 is for CUDA only)"
    workers = f"{hp.num_workers} workers"
    variants = [
        ("plain", f"DataLoader over clips decoded once into CPU memory, the same extractor collate, {workers}, fp32, eager", plain),
        ("train.py", f"train.py's own path: WAV files decoded per item ({workers}{', pinned' if cuda else ''}), "
                     f"{precision}, eager", script),
    ]
    rows = []
    for name, options, run in variants:
        row = {"workload": "acoustic_shield", "path": name}
        run_row(row, run, device)
        row["options"] = options
        print_row(row)
        rows.append(row)
    return rows


# -----------------------------------------------------------------------------


def ratios(rows: list[dict]) -> list[dict]:
    """Each path against plain of its workload: >1 is faster for a speedup, <1 is faster for a time ratio."""
    out = []
    for workload in dict.fromkeys(row["workload"] for row in rows):
        mine = [row for row in rows if row["workload"] == workload and "skipped" not in row and "error" not in row]
        base = next((row for row in mine if row["path"] == "plain"), None)
        if base is None:
            continue
        for row in mine:
            if row is base:
                continue
            ratio = {"workload": workload, "path": row["path"]}
            if workload == "cifar10":
                ratio["throughput_x"] = row["images_per_s"] / base["images_per_s"]
                if row["time_to_target_s"] is not None and base["time_to_target_s"] is not None:
                    ratio["time_to_target_x"] = row["time_to_target_s"] / base["time_to_target_s"]
                else:
                    ratio["time_to_target_x"] = None
            else:
                ratio["step_time_x"] = row["ms_per_step"] / base["ms_per_step"]
                ratio["speedup_x"] = base["ms_per_step"] / row["ms_per_step"]
            out.append(ratio)
    return out


def print_ratio(ratio: dict) -> None:
    if ratio["workload"] == "cifar10":
        tt = ratio["time_to_target_x"]
        print(f"ratio cifar10 {ratio['path']}/plain throughput={ratio['throughput_x']:.2f}x "
              f"time_to_target={'n/a' if tt is None else f'{tt:.2f}x'} (time: below 1 is faster)", flush=True)
    else:
        print(f"ratio acoustic_shield {ratio['path']}/plain step_time={ratio['step_time_x']:.2f}x "
              f"speedup={ratio['speedup_x']:.2f}x", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="auto: cuda when there is one")
    parser.add_argument("--size", choices=tuple(SIZES), default="tiny", help="tiny: a 2-core CPU in well under a minute; full: a GPU")
    parser.add_argument("--workloads", default="cifar10,acoustic_shield", help="comma-separated: cifar10, acoustic_shield")
    parser.add_argument("--compile", choices=("auto", "on", "off"), default="auto",
                        help="cifar10's benchmark-only torch.compile variant; auto: on CUDA only")
    parser.add_argument("--extras", choices=("auto", "on", "off"), default="auto",
                        help="cifar10's benchmark-only device-resident-data variant; auto: on CUDA only")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (torch.set_num_threads); 0 keeps torch's default. Default: 1 for --size "
                             "tiny on a CPU (on a 2-core CPU other jobs share, 2 threads waiting on each other made a "
                             "ResNet-18 step 4-5x slower than 1 thread), else torch's default")
    parser.add_argument("--num-workers", type=int, default=None,
                        help="DataLoader workers of every path (the same for plain and train.py); default: 0 for tiny, "
                             "full: 4 for cifar10 (the aws profile's num-workers), 2 for acoustic_shield (its default)")
    parser.add_argument("--seed", type=int, default=0, help="the one seed of every path (data, weights, sampling)")
    parser.add_argument("--json", help="also write the machine, rows and ratios to this JSON file")
    args = parser.parse_args(argv)

    workloads = [name.strip() for name in args.workloads.split(",") if name.strip()]
    unknown = sorted(set(workloads) - {"cifar10", "acoustic_shield"})
    if unknown or not workloads:
        parser.error(f"--workloads takes cifar10 and/or acoustic_shield, got {args.workloads!r}")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: torch sees no CUDA device here (torch.cuda.is_available() is False)")
    device = torch.device("cuda", 0) if args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available()) \
        else torch.device("cpu")
    if args.num_workers is not None and args.num_workers < 0:
        parser.error(f"--num-workers must be 0 or more, got {args.num_workers}")
    if args.threads is None:
        args.threads = 1 if args.size == "tiny" and device.type == "cpu" else 0
    if args.threads < 0:
        parser.error(f"--threads must be 0 (torch's default) or more, got {args.threads}")
    if args.threads:
        torch.set_num_threads(args.threads)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing is downloaded; say so to transformers too
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # no "Loading weights" bars among the rows

    info = machine(device)
    print("training paths benchmark: size=" + args.size + " " + " ".join(f"{k}={json.dumps(v) if isinstance(v, str) and ' ' in v else v}"
                                                                         for k, v in info.items()), flush=True)
    started = time.perf_counter()
    rows = []
    with tempfile.TemporaryDirectory(prefix="training-paths-") as work:
        for workload in workloads:
            run = cifar10_rows if workload == "cifar10" else acoustic_shield_rows
            cfg = dict(SIZES[args.size][workload])
            if args.num_workers is not None:
                cfg["num_workers"] = args.num_workers
            rows += run(args, cfg, device, Path(work))
    found = ratios(rows)
    for ratio in found:
        print_ratio(ratio)
    elapsed = time.perf_counter() - started
    print(f"done in {elapsed:.1f} s", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps({"size": args.size, "machine": info, "rows": rows, "ratios": found,
                                               "seconds": elapsed}, indent=2) + "\n")
    return 1 if any("error" in row for row in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
