r"""Train the Brain-to-Text diphone decoder (day-specific input layers, GRU, CTC) as SageMaker runs it.

SageMaker runs `python train.py --n-units 1024 --batch-size 48 ...` with the hyperparameters as
flags and paths in SM_* variables; by hand, the flags' defaults stand in for those variables:

    python -m include.datasets.brain_to_text data/brain_to_text          # small synthetic sessions
    python training_src/brain_to_text/train.py --train data/brain_to_text --n-units 32 --n-layers 1 \
        --patch-size 0 --num-training-batches 300 --batches-per-val-step 100 --model-dir model

Data: <root>/<session>/data_train.hdf5 and data_val.hdf5 (the benchmark's layout, labels
diphone-encoded). --data-s3-uri s3://bucket/prefix streams the trials from S3 as batches need them
(dataset.py; nothing is downloaded whole, so the data set may be far larger than the disk); without
it the train channel (SM_CHANNEL_TRAIN, File mode) is read. Every session found (or those
--sessions names, in that order) gets its own day-specific input layer.

The defaults are the diphone configuration: 1681 classes (41 x 41), 1024 GRU units in 5 layers,
batches of 48 trials from 4 days, 150000 batches, AdamW (lr 0.004 after a 1000-batch warm-up,
cosine decay to 0.0001, weight decay 0.002, none on biases and day layers), gradient norm clipped
at 10, white-noise and offset augmentation, Gaussian smoothing in time.

Log lines, stable for two readers (a person, and SageMaker's MetricDefinitions: the regexes of
training.metric_definitions in include/workloads/brain_to_text.yaml, their one copy):
    Train batch 200: loss: 5.21 grad norm: 8.43 time: 0.538
    Val batch 1500: DER (avg): 0.7654 CTC Loss (avg): 1.2345 time: 3.210
    t15.2023.08.13 val DER: 0.7012
    Best avg val DER achieved: 0.7654
DER is the diphone error rate: edit distance of the greedy CTC decode to the labels, summed over
the validation trials and divided by their total label length. Validation runs every
--batches-per-val-step batches and after the last one.

Outputs in SM_MODEL_DIR (model.tar.gz): checkpoint/best_checkpoint (the weights of the best
validation, load with torch.load(weights_only=True)), checkpoint/args.yaml (every setting and the
session -> day layer order), checkpoint/val_metrics.json, training_log, and code/ (inference.py,
model.py, dataset.py, requirements.txt: the entry point of SageMaker's PyTorch inference container).
Every --batches-per-checkpoint batches the full training state goes to --checkpoint-dir (synced
to S3 by CheckpointConfig), and a restarted job (spot) resumes from it at the next batch, drawing
the same batches it would have drawn.

A session file that is not readable HDF5 or a trial missing a field stops the job with a
TrialDataError naming the file and the trial (it becomes the job's FailureReason).

The output layer's bias starts at the log class frequencies of the first training batches
(--init-output-bias): with 1681 classes of which a few hundred occur, a model started from a flat
bias spends its first thousands of batches learning only that, before it looks at its input.

Evidence (2-core shared CPU, torch 2.14.1, OMP_NUM_THREADS=1, the workload YAML's local profile:
32 units, 1 layer, 300 batches of 8 synthetic trials): 35-60 s as the machine's load varies, val DER
1.00 -> 0.23. The same run with --init-output-bias false still decodes nothing but blanks (DER 1.00)
after its 300 batches; so did 800-batch runs with 64 and 128 units.
"""
import functools
import importlib.util
import json
import math
import sys
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import yaml

# In the container the packager puts training_src/shared's modules beside this file (/opt/ml/code); run
# from the repository, as `python training_src/brain_to_text/train.py`, they are in training_src/shared.
if importlib.util.find_spec("sagemaker_hyperparameters") is None:
    sys.path.insert(1, str(Path(__file__).resolve().parents[1] / "shared"))

from dataset import PlannedBatches, SessionStore, eval_batch_plans, train_batch_plan
from model import GRUDecoder, edit_distance, gaussian_smooth, greedy_decode
from sagemaker_hyperparameters import parse_hyperparameters, setting
from serving_code import copy_serving_code
from spot_checkpoints import CHECKPOINT_NAME, load_checkpoint, save_checkpoint

CODE_FILES = ("inference.py", "model.py", "dataset.py", "requirements.txt")  # what code/ needs to serve


# -----------------------------------------------------------------------------
# settings: hyperparameters arrive as --flags, paths as SM_* variables


@dataclass
class Hyperparameters:
    # data
    data_s3_uri: str = setting("", "s3://bucket/prefix holding <session>/data_{train,val}.hdf5, streamed; empty = the train channel")
    sessions: str = setting("", "comma-separated sessions to train on, in day-layer order; empty = every session found")
    s3_block_size: int = setting(8192, "bytes per S3 range block (HDF5 metadata costs one block per read)")
    s3_cache_blocks: int = setting(512, "blocks kept per open S3 file (LRU); their total must hold a trial")
    num_workers: int = setting(0, "DataLoader worker processes reading trials; 0 = main process")
    # model
    n_input_features: int = setting(512, "neural features per time step")
    n_classes: int = setting(1681, "output classes incl. the CTC blank 0: 1681 diphones (41 x 41), 41 phonemes")
    n_units: int = setting(1024, "GRU units per layer")
    n_layers: int = setting(5, "GRU layers")
    rnn_dropout: float = setting(0.5, "dropout between GRU layers")
    input_dropout: float = setting(0.2, "dropout after the day-specific input layers")
    patch_size: int = setting(14, "time steps the GRU sees at once; 0 = one step at a time")
    patch_stride: int = setting(4, "time steps between patches")
    # training
    batch_size: int = setting(48, "trials per batch")
    days_per_batch: int = setting(4, "sessions each training batch draws from")
    num_training_batches: int = setting(150000, "training batches in all")
    lr_max: float = setting(0.004, "peak AdamW learning rate")
    lr_min: float = setting(0.0001, "learning rate at the end of the cosine decay")
    lr_warmup_steps: int = setting(1000, "batches of linear warm-up")
    lr_decay_steps: int = setting(0, "batches until the cosine decay reaches lr-min; 0 = num-training-batches")
    weight_decay: float = setting(0.002, "AdamW weight decay (not on biases and day layers)")
    beta0: float = setting(0.9, "AdamW beta1")
    beta1: float = setting(0.999, "AdamW beta2")
    epsilon: float = setting(0.1, "AdamW epsilon")
    grad_norm_clip_value: float = setting(10.0, "clip the gradient norm to this; 0 = off")
    white_noise_std: float = setting(1.0, "training augmentation: white noise added to every feature")
    constant_offset_std: float = setting(0.2, "training augmentation: one offset per trial and feature")
    random_cut: int = setting(3, "training augmentation: drop up to this many leading time steps")
    smooth_kernel_std: float = setting(2.0, "Gaussian smoothing in time (train, validation and inference); 0 = off")
    smooth_kernel_size: int = setting(100, "smoothing kernel length in time steps")
    batches_per_train_log: int = setting(200, "log a Train batch line every this many batches")
    batches_per_val_step: int = setting(2000, "validate every this many batches (and after the last)")
    batches_per_checkpoint: int = setting(0, "save the resumable state every this many batches; 0 = at each validation")
    init_output_bias: bool = setting(True, "start the output bias at the log class frequencies of the first training batches")
    seed: int = setting(10, "random seed for initialisation, batch sampling and augmentation")
    use_amp: bool = setting(True, "bf16 autocast on GPU (ignored on CPU)")
    checkpoint_dir: str = setting("checkpoints", "resumable state; a job resumes from the one there", job_folder="checkpoints")


@dataclass
class Paths:
    train: str = setting("data/brain_to_text", "train channel, read when --data-s3-uri is empty", env="SM_CHANNEL_TRAIN")
    model_dir: str = setting("model", "where the model artifacts go", env="SM_MODEL_DIR")
    output_data_dir: str = setting("output", "metrics.json goes here", env="SM_OUTPUT_DATA_DIR")
    num_gpus: int = setting(torch.cuda.device_count(), "GPUs to use, 0 = CPU", env="SM_NUM_GPUS")


def parse_args(argv: list[str] | None = None) -> tuple[Hyperparameters, Paths]:
    return parse_hyperparameters("Train the Brain-to-Text diphone decoder.", (Hyperparameters, Paths), argv)


def validate(hp: Hyperparameters) -> None:
    """Fail before any work with a message that says which hyperparameter to change and how."""
    problems = []
    for name in ("n_input_features", "n_units", "n_layers", "batch_size", "days_per_batch", "num_training_batches",
                 "batches_per_train_log", "batches_per_val_step", "s3_block_size", "s3_cache_blocks", "smooth_kernel_size"):
        if getattr(hp, name) < 1:
            problems.append(f"--{name.replace('_', '-')} must be at least 1 (got {getattr(hp, name)})")
    if hp.n_classes < 2:
        problems.append(f"--n-classes must be at least 2, the blank and one label (got {hp.n_classes}); 1681 for diphones")
    for name in ("rnn_dropout", "input_dropout"):
        if not 0 <= getattr(hp, name) < 1:
            problems.append(f"--{name.replace('_', '-')} must be in [0, 1) (got {getattr(hp, name)})")
    if hp.patch_size < 0 or (hp.patch_size > 0 and hp.patch_stride < 1):
        problems.append(f"--patch-size must be 0 (off) or positive with --patch-stride >= 1 (got {hp.patch_size}, {hp.patch_stride})")
    if not (0 < hp.lr_max and math.isfinite(hp.lr_max)):
        problems.append(f"--lr-max must be a positive number (got {hp.lr_max}); 0.004 suits the diphone decoder")
    if not 0 <= hp.lr_min <= hp.lr_max:
        problems.append(f"--lr-min must be between 0 and --lr-max {hp.lr_max} (got {hp.lr_min})")
    for name in ("lr_warmup_steps", "lr_decay_steps", "batches_per_checkpoint", "num_workers", "random_cut"):
        if getattr(hp, name) < 0:
            problems.append(f"--{name.replace('_', '-')} must be 0 or more (got {getattr(hp, name)})")
    for name in ("weight_decay", "grad_norm_clip_value", "white_noise_std", "constant_offset_std", "smooth_kernel_std"):
        if not (getattr(hp, name) >= 0 and math.isfinite(getattr(hp, name))):
            problems.append(f"--{name.replace('_', '-')} must be 0 or more (got {getattr(hp, name)})")
    if not (0 <= hp.beta0 < 1 and 0 <= hp.beta1 < 1 and hp.epsilon > 0):
        problems.append(f"--beta0 and --beta1 must be in [0, 1) and --epsilon positive (got {hp.beta0}, {hp.beta1}, {hp.epsilon})")
    if hp.data_s3_uri and not hp.data_s3_uri.startswith("s3://"):
        problems.append(f"--data-s3-uri must be an s3:// URI (got {hp.data_s3_uri!r}); leave it empty to read the train channel")
    if problems:
        raise ValueError("Invalid hyperparameters: " + "; ".join(problems))


# -----------------------------------------------------------------------------
# training


class Log:
    """print() that also keeps the lines for the model's training_log."""

    def __init__(self):
        self.lines: list[str] = []

    def __call__(self, message: str) -> None:
        print(message, flush=True)
        self.lines.append(message)


def lr_factor(step: int, warmup: int, decay_steps: int, min_ratio: float) -> float:
    """Linear warm-up to 1, then cosine decay to min_ratio at decay_steps, then min_ratio."""
    if step < warmup:
        return step / max(1, warmup)
    if step >= decay_steps:
        return min_ratio
    progress = (step - warmup) / max(1, decay_steps - warmup)
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def augment(features: torch.Tensor, n_time_steps: torch.Tensor, hp: Hyperparameters, generator: torch.Generator):
    """White noise, a constant offset per trial and feature, and a random cut of the first steps.

    `generator` lives on the features' device, so the noise is drawn where it is added.
    """
    device = features.device
    if hp.white_noise_std > 0:
        features = features + torch.randn(features.shape, generator=generator, device=device) * hp.white_noise_std
    if hp.constant_offset_std > 0:
        offset = torch.randn((features.shape[0], 1, features.shape[2]), generator=generator, device=device)
        features = features + offset * hp.constant_offset_std
    if hp.random_cut > 0:
        cut = int(torch.randint(0, hp.random_cut, (1,), generator=generator, device=device))
        features, n_time_steps = features[:, cut:], n_time_steps - cut
    return features, n_time_steps


def ctc_loss(model: GRUDecoder, logits: torch.Tensor, batch: dict, n_time_steps: torch.Tensor) -> torch.Tensor:
    """Mean CTC loss over the batch; a trial too short for its labels counts 0 (zero_infinity), not inf."""
    log_probs = logits.float().log_softmax(2).transpose(0, 1)
    return torch.nn.functional.ctc_loss(log_probs, batch["seq_class_ids"].to(logits.device), model.output_lengths(n_time_steps),
                                        batch["seq_lens"].to(logits.device), blank=0, reduction="none",
                                        zero_infinity=True).mean()


@torch.no_grad()
def validate_model(model: GRUDecoder, loader, hp: Hyperparameters, device, autocast, sessions: list[str]) -> dict:
    """DER (edit distance of the greedy decode / label length) and CTC loss over every validation trial."""
    model.eval()
    errors, lengths, losses = 0, 0, []
    per_day: dict[str, list[int]] = {}
    examples = []
    for batch in loader:
        features = gaussian_smooth(batch["input_features"].to(device), hp.smooth_kernel_std, hp.smooth_kernel_size)
        n_time_steps = batch["n_time_steps"].to(device)
        with autocast():
            logits = model(features, batch["day_indices"].to(device))
        losses.append(ctc_loss(model, logits, batch, n_time_steps).item())
        decoded = greedy_decode(logits.float(), model.output_lengths(n_time_steps))
        for row, (predicted, info) in enumerate(zip(decoded, batch["trials"])):
            truth = batch["seq_class_ids"][row, : batch["seq_lens"][row]].tolist()
            distance = edit_distance(predicted, truth)
            errors, lengths = errors + distance, lengths + len(truth)
            day = per_day.setdefault(info[0], [0, 0])
            day[0], day[1] = day[0] + distance, day[1] + len(truth)
            if len(examples) < 5:
                examples.append({"session": info[0], "trial": info[1], "sentence_label": info[4],
                                 "decoded": predicted, "labels": truth})
    model.train()
    return {"avg_DER": errors / max(1, lengths), "avg_loss": float(np.mean(losses)),
            "day_DERs": {s: per_day[s][0] / max(1, per_day[s][1]) for s in sessions if s in per_day},
            "examples": examples}


@torch.no_grad()
def init_output_bias(model: GRUDecoder, batches) -> dict:
    """Set the output bias to the log frequency of each class in `batches` (the blank: the frames no label needs).

    As a classifier's bias starts at the log prior: otherwise the first thousand batches go to learning
    that most of the 1681 diphones never occur, before the model looks at its input.
    """
    counts = torch.zeros(model.n_classes, dtype=torch.float64)
    frames = 0
    for batch in batches:
        for row, length in enumerate(batch["seq_lens"].tolist()):
            counts += torch.bincount(batch["seq_class_ids"][row, :length], minlength=model.n_classes).double()
        frames += int(model.output_lengths(batch["n_time_steps"]).sum())
    counts[0] = max(1.0, frames - counts.sum().item())
    smoothed = counts + 0.1  # classes not seen yet keep a small probability
    model.out.bias.copy_((smoothed / smoothed.sum()).log().to(model.out.bias.dtype))
    return {"labels": int(counts[1:].sum()), "classes_seen": int((counts[1:] > 0).sum()), "frames": frames}


def build_model(hp: Hyperparameters, n_days: int) -> GRUDecoder:
    return GRUDecoder(hp.n_input_features, hp.n_units, n_days, hp.n_classes, rnn_dropout=hp.rnn_dropout,
                      input_dropout=hp.input_dropout, n_layers=hp.n_layers, patch_size=hp.patch_size,
                      patch_stride=hp.patch_stride)


def build_optimizer(model: GRUDecoder, hp: Hyperparameters, fused: bool) -> torch.optim.AdamW:
    """AdamW with weight decay on the weights only: biases and day-specific layers are not decayed."""
    no_decay = [p for name, p in model.named_parameters() if name.startswith("day_") or "bias" in name or name == "h0"]
    decay = [p for name, p in model.named_parameters() if not (name.startswith("day_") or "bias" in name or name == "h0")]
    groups = [{"params": decay, "weight_decay": hp.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=hp.lr_max, betas=(hp.beta0, hp.beta1), eps=hp.epsilon, fused=fused)


def write_model_artifacts(model_dir: Path, args: dict, best: dict, log: Log) -> None:
    """checkpoint/{best_checkpoint, args.yaml, val_metrics.json}, training_log and code/ (the inference entry point)."""
    checkpoint = model_dir / "checkpoint"
    checkpoint.mkdir(parents=True, exist_ok=True)
    torch.save({"model_state_dict": best["state"], "val_DER": best["der"], "val_loss": best["loss"], "batch": best["batch"]},
               checkpoint / "best_checkpoint")
    (checkpoint / "args.yaml").write_text(yaml.safe_dump(args, sort_keys=False))
    (checkpoint / "val_metrics.json").write_text(json.dumps(best["metrics"], indent=2) + "\n")
    (model_dir / "training_log").write_text("\n".join(log.lines) + "\n")
    copy_serving_code(model_dir, CODE_FILES, Path(__file__).resolve().parent)


def run_args(hp: Hyperparameters, sessions: list[str], best: dict) -> dict:
    """checkpoint/args.yaml: every setting, and the sessions in day-layer order (what inference needs to rebuild the model)."""
    return {"hyperparameters": asdict(hp), "sessions": sessions, "label_encoding": "diphone: 41 x previous phoneme + phoneme",
            "best_batch": best["batch"], "torch_version": str(torch.__version__)}


def main(argv: list[str] | None = None) -> None:
    hp, paths = parse_args(argv)
    validate(hp)
    log = Log()
    use_cuda = paths.num_gpus > 0 and torch.cuda.is_available()
    device = torch.device("cuda") if use_cuda else torch.device("cpu")
    use_amp = hp.use_amp and use_cuda
    autocast = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if use_amp else nullcontext
    torch.manual_seed(hp.seed)

    # data: the trial lists of every session; the trials themselves are read as batches need them
    root = hp.data_s3_uri or paths.train
    wanted = [s.strip() for s in hp.sessions.split(",") if s.strip()] or None
    store_options = dict(n_features=hp.n_input_features, n_classes=hp.n_classes, block_size=hp.s3_block_size, cache_blocks=hp.s3_cache_blocks)
    train_store = SessionStore(root, "train", sessions=wanted, **store_options)
    sessions = list(train_store.paths)
    val_store = SessionStore(root, "val", sessions=sessions, required=False, **store_options)
    if not val_store.paths:
        raise FileNotFoundError(f"No data_val.hdf5 under {root} for any of the sessions {', '.join(sessions)}: "
                                "validation (and the DER the gate reads) needs at least one")
    day_of = {session: day for day, session in enumerate(sessions)}
    log(f"data: {len(sessions)} sessions from {root} ({'streamed from S3' if train_store.remote else 'local files'}); "
        f"{sum(map(len, train_store.trials.values()))} training trials, {sum(map(len, val_store.trials.values()))} "
        f"validation trials in {len(val_store.paths)} sessions")

    model = build_model(hp, len(sessions)).to(device)
    optimizer = build_optimizer(model, hp, fused=use_cuda)
    decay_steps = hp.lr_decay_steps or hp.num_training_batches
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(step, hp.lr_warmup_steps, decay_steps, hp.lr_min / hp.lr_max))
    total = sum(p.numel() for p in model.parameters())
    day_params = sum(p.numel() for name, p in model.named_parameters() if name.startswith("day_"))
    log(f"model: {total:,} parameters, {day_params:,} of them in {len(sessions)} day-specific input layers; "
        f"{hp.n_classes} classes; device {device} (bf16 autocast {'on' if use_amp else 'off'})")

    start, best, history = 0, {"der": math.inf, "loss": math.inf, "batch": -1, "state": None, "metrics": {}}, []
    plan_of_training = functools.partial(train_batch_plan, train_store, batch_size=hp.batch_size,
                                         days_per_batch=hp.days_per_batch, seed=hp.seed)
    checkpoint = load_checkpoint(hp.checkpoint_dir)
    if checkpoint:
        if checkpoint.get("sessions") != sessions:
            raise RuntimeError(f"The checkpoint in {hp.checkpoint_dir} was trained on sessions {checkpoint.get('sessions')}, "
                               f"not {sessions}; point --checkpoint-dir elsewhere or delete it.")
        try:
            model.load_state_dict(checkpoint["model"])
        except RuntimeError as error:
            raise RuntimeError(f"The checkpoint in {hp.checkpoint_dir} is for another model ({error}); "
                               "point --checkpoint-dir elsewhere or delete it.") from error
        optimizer.load_state_dict(checkpoint["optimizer"])
        scheduler.load_state_dict(checkpoint["scheduler"])
        start, best, history = checkpoint["next_batch"], checkpoint["best"], checkpoint["history"]
        log(f"resuming from {Path(hp.checkpoint_dir) / CHECKPOINT_NAME} at batch {start}; best val DER so far {best['der']:.4f}")

    if not checkpoint and hp.init_output_bias:
        sample = PlannedBatches(train_store, day_of, plan_of_training, min(hp.num_training_batches, math.ceil(256 / hp.batch_size)))
        seen = init_output_bias(model, sample)
        log(f"output bias: log frequencies of {seen['labels']} labels ({seen['classes_seen']} classes) in "
            f"{seen['frames']} output frames of the first {len(sample)} training batches")
    val_plans = eval_batch_plans(val_store, hp.batch_size)
    val_loader = torch.utils.data.DataLoader(PlannedBatches(val_store, day_of, val_plans.__getitem__, len(val_plans)),
                                             batch_size=None)
    train_loader = torch.utils.data.DataLoader(
        PlannedBatches(train_store, day_of, plan_of_training, max(0, hp.num_training_batches - start), first=start),
        batch_size=None, num_workers=hp.num_workers, pin_memory=use_cuda, persistent_workers=False)
    every_checkpoint = hp.batches_per_checkpoint or hp.batches_per_val_step
    last = hp.num_training_batches - 1
    log(f"training: batches {start}..{last} of {hp.batch_size} trials from {min(hp.days_per_batch, len(sessions))} "
        f"days, validating every {hp.batches_per_val_step}; hyperparameters {json.dumps(asdict(hp))}")

    model_dir = Path(paths.model_dir)
    model.train()
    for index, batch in enumerate(train_loader, start=start):
        started = time.perf_counter()
        torch.manual_seed(hp.seed * 1_000_003 + index)  # dropout draws depend on the batch, so a resumed job repeats them
        generator = torch.Generator(device=device).manual_seed(hp.seed * 1_000_003 + index)
        features, n_time_steps = augment(batch["input_features"].to(device, non_blocking=True),
                                         batch["n_time_steps"].to(device), hp, generator)
        features = gaussian_smooth(features, hp.smooth_kernel_std, hp.smooth_kernel_size)
        with autocast():
            logits = model(features, batch["day_indices"].to(device))
        loss = ctc_loss(model, logits, batch, n_time_steps)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if hp.grad_norm_clip_value > 0:
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), hp.grad_norm_clip_value)
        else:
            grad_norm = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in model.parameters() if p.grad is not None]))
        if not (math.isfinite(loss.item()) and math.isfinite(grad_norm.item())):
            raise RuntimeError(f"Training diverged at batch {index}: loss {loss.item()}, grad norm {grad_norm.item()}; "
                               f"lower --lr-max (now {hp.lr_max}) or --grad-norm-clip-value.")
        optimizer.step()
        scheduler.step()
        if index % hp.batches_per_train_log == 0:
            log(f"Train batch {index}: loss: {loss.item():.2f} grad norm: {grad_norm.item():.2f} "
                f"time: {time.perf_counter() - started:.3f}")

        if index % hp.batches_per_val_step == 0 or index == last:
            started = time.perf_counter()
            metrics = validate_model(model, val_loader, hp, device, autocast, sessions)
            log(f"Val batch {index}: DER (avg): {metrics['avg_DER']:.4f} CTC Loss (avg): {metrics['avg_loss']:.4f} "
                f"time: {time.perf_counter() - started:.3f}")
            for session, der in metrics["day_DERs"].items():
                log(f"{session} val DER: {der:.4f}")
            history.append({"batch": index, "avg_DER": metrics["avg_DER"], "avg_loss": metrics["avg_loss"]})
            # the best is the lowest DER; a tie goes to the lower CTC loss (as the benchmark's trainer keeps it)
            if (metrics["avg_DER"], metrics["avg_loss"]) < (best["der"], best["loss"]):
                log(f"New best val DER {best['der']:.4f} --> {metrics['avg_DER']:.4f} (CTC loss {metrics['avg_loss']:.4f})")
                best = {"der": metrics["avg_DER"], "loss": metrics["avg_loss"], "batch": index,
                        "state": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
                        "metrics": {"batch": index, **metrics}}
                # at once, not only at the end: a job stopped at MaxRuntimeInSeconds still uploads its best model
                write_model_artifacts(model_dir, run_args(hp, sessions, best), best, log)
        if (index + 1) % every_checkpoint == 0 or index == last:
            save_checkpoint(Path(hp.checkpoint_dir) / CHECKPOINT_NAME, {
                "next_batch": index + 1, "sessions": sessions, "model": model.state_dict(),
                "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "best": best, "history": history,
            })

    if best["state"] is None:
        raise RuntimeError(f"No validation ran: the checkpoint in {hp.checkpoint_dir} already holds "
                           f"{start} of --num-training-batches {hp.num_training_batches} and no best model")
    log(f"Best avg val DER achieved: {best['der']:.4f}")
    if train_store.remote:
        log(f"data: read {train_store.bytes_fetched + val_store.bytes_fetched:,} bytes from S3 in this process "
            f"(session files: {train_store.file_sizes() + val_store.file_sizes():,} bytes)")
    write_model_artifacts(model_dir, run_args(hp, sessions, best), best, log)
    Path(paths.output_data_dir).mkdir(parents=True, exist_ok=True)
    (Path(paths.output_data_dir) / "metrics.json").write_text(json.dumps({"history": history, "best_DER": best["der"]}, indent=2) + "\n")
    log(f"saved the batch-{best['batch']} model to {model_dir}")


if __name__ == "__main__":
    sys.exit(main())
