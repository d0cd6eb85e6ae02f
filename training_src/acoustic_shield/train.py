r"""Fine-tune Wav2Vec2 to classify vehicle audio (Normal, TireSkid, EmergencyBraking, CollisionImminent).

SageMaker's Hugging Face training container runs `python train.py --epochs 4 --learning-rate 3e-05 ...`
with the hyperparameters as flags and the paths in SM_* variables; by hand, the flags' defaults
stand in for those variables:

    python -m include.datasets.acoustic_shield data/acoustic_shield --validation-per-class 6
    python training_src/acoustic_shield/train.py --train data/acoustic_shield/train \
        --validation data/acoustic_shield/validation --model-name-or-path offline-tiny \
        --freeze-feature-encoder false --learning-rate 3e-3 --warmup-steps 5 --max-audio-length 16000 \
        --num-workers 0 --model-dir model

Data: the audiofolder layout, `<channel>/<Label>/*.wav`, in the train channel and optionally the
validation channel; without one, a stratified 10% of each class is held out (--validation-split).
Labels are the folder names, sorted. Every clip is read at any sample rate and channel count,
folded to mono, resampled to 16 kHz and cut to --max-audio-length samples (audio.py, which the
endpoint uses too), then normalized and padded by the Wav2Vec2 feature extractor.

Model: --model-name-or-path names a Hugging Face model (on AWS `facebook/wav2vec2-base` from the
hub) or a folder written by save_pretrained; `offline-tiny` builds a small Wav2Vec2 from a config
instead (no download: for machines without internet, such as the local SageMaker and the tests).

Log lines, stable for two readers (a person, and SageMaker's MetricDefinitions: the regexes of
training.metric_definitions in include/workloads/acoustic_shield.yaml, their one copy):
    epoch=2 train_loss=1.2345 val_loss=1.1000 val_accuracy=0.6012 val_macro_f1=0.5871 lr=2.50e-05 epoch_seconds=12.3
    best_epoch=2 best_val_macro_f1=0.5871 best_val_accuracy=0.6012
lr is the rate of the epoch's last optimizer step (linear warmup over --warmup-steps, then linear decay to 0).

Outputs in SM_MODEL_DIR (model.tar.gz): the weights of the best epoch by validation macro-F1 and
their config (save_pretrained: model.safetensors, config.json), the feature extractor
(preprocessor_config.json), label_info.json, and code/ (inference.py, audio.py, requirements.txt:
the entry point of the inference container). SM_OUTPUT_DATA_DIR gets metrics.json (every epoch).

One process, one device: the GPU with fp16 autocast when there is one (ml.g4dn.xlarge: a T4), else the CPU.
benchmarks/training_paths.py times this path's steps against a plain fp32 recipe (--device cuda --size full on a GPU).

Evidence (2-core CPU shared with other jobs, no GPU, torch 2.14.1, transformers 5.24): offline-tiny
(150k parameters) with the local profile's settings on the generator's 96 + 24 clips of 0.8-1.2 s
trains 4 epochs in 40-90 s; best validation macro-F1 was 1.0, 1.0, 0.87 and 1.0 for seeds 42, 2, 3, 4.
"""
import importlib.util
import json
import math
import random
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

# In the container the packager puts training_src/shared's modules beside this file (/opt/ml/code); run
# from the repository, as `python training_src/acoustic_shield/train.py`, they are in training_src/shared.
if importlib.util.find_spec("sagemaker_hyperparameters") is None:
    sys.path.insert(1, str(Path(__file__).resolve().parents[1] / "shared"))

from audio import SAMPLING_RATE, decode_wav
from sagemaker_hyperparameters import parse_hyperparameters, setting
from serving_code import copy_serving_code

OFFLINE_TINY = "offline-tiny"  # --model-name-or-path value that builds a small Wav2Vec2 from a config
MIN_AUDIO_LENGTH = 1600  # 0.1 s: the convolutional feature encoder needs at least 400 samples for one frame

CODE_FILES = ("inference.py", "audio.py", "requirements.txt")  # what code/ in model.tar.gz needs to serve
LABEL_INFO = "label_info.json"


# -----------------------------------------------------------------------------
# settings: hyperparameters arrive as --flags, paths as SM_* variables


@dataclass
class Hyperparameters:
    epochs: int = setting(4, "passes over the training set")
    learning_rate: float = setting(3e-5, "peak AdamW learning rate")
    batch_size: int = setting(8, "clips per forward pass")
    gradient_accumulation_steps: int = setting(1, "forward passes per optimizer step (effective batch = batch-size x this)")
    warmup_steps: int = setting(500, "optimizer steps of linear warmup, then linear decay to 0")
    max_audio_length: int = setting(80_000, "samples at 16 kHz kept per clip (80000 = 5 s); longer clips are cut")
    model_name_or_path: str = setting("facebook/wav2vec2-base", f"Hugging Face model id or save_pretrained folder to start from; '{OFFLINE_TINY}' builds a small model from a config")
    freeze_feature_encoder: bool = setting(True, "keep the convolutional feature encoder fixed (usual when fine-tuning a pretrained model)")
    validation_split: float = setting(0.1, "share of each class held out for validation when there is no validation channel")
    num_workers: int = setting(2, "DataLoader processes decoding WAV files; 0 = main process")
    fp16: bool = setting(True, "fp16 autocast on GPU (ignored on CPU)")
    seed: int = setting(42, "random seed for the split, initialization and shuffling")


@dataclass
class Paths:
    train: str = setting("data/acoustic_shield/train", "train channel, <Label>/*.wav", env="SM_CHANNEL_TRAIN")
    validation: str = setting("", "optional validation channel, <Label>/*.wav", env="SM_CHANNEL_VALIDATION")
    model_dir: str = setting("model", "where the model artifacts go", env="SM_MODEL_DIR")
    output_data_dir: str = setting("output", "metrics.json goes here", env="SM_OUTPUT_DATA_DIR")
    num_gpus: int = setting(torch.cuda.device_count(), "GPUs to use, 0 = CPU", env="SM_NUM_GPUS")


def parse_args(argv: list[str] | None = None) -> tuple[Hyperparameters, Paths]:
    return parse_hyperparameters("Fine-tune Wav2Vec2 for vehicle audio classification.", (Hyperparameters, Paths), argv)


def validate(hp: Hyperparameters) -> None:
    """Fail before any work with a message that says which hyperparameter to change and how."""
    problems = []
    if hp.epochs < 1:
        problems.append(f"--epochs must be at least 1 (got {hp.epochs})")
    if not (hp.learning_rate > 0 and math.isfinite(hp.learning_rate)):
        problems.append(f"--learning-rate must be a positive number (got {hp.learning_rate}); 3e-5 suits fine-tuning wav2vec2-base")
    if hp.batch_size < 1:
        problems.append(f"--batch-size must be at least 1 (got {hp.batch_size}); 8 fits a 16 GB GPU at 5 s clips")
    if hp.gradient_accumulation_steps < 1:
        problems.append(f"--gradient-accumulation-steps must be at least 1 (got {hp.gradient_accumulation_steps})")
    if hp.warmup_steps < 0:
        problems.append(f"--warmup-steps must be 0 or more (got {hp.warmup_steps})")
    if hp.max_audio_length < MIN_AUDIO_LENGTH:
        problems.append(f"--max-audio-length must be at least {MIN_AUDIO_LENGTH} samples (0.1 s at 16 kHz), "
                        f"got {hp.max_audio_length}; 80000 keeps 5 s")
    if not 0 < hp.validation_split < 1:
        problems.append(f"--validation-split must be between 0 and 1 (got {hp.validation_split}); 0.1 holds out 10%")
    if hp.num_workers < 0:
        problems.append(f"--num-workers must be 0 or more (got {hp.num_workers})")
    if not hp.model_name_or_path.strip():
        problems.append(f"--model-name-or-path must name a model, e.g. facebook/wav2vec2-base or {OFFLINE_TINY}")
    if problems:
        raise ValueError("Invalid hyperparameters: " + "; ".join(problems))


# -----------------------------------------------------------------------------
# data: <channel>/<Label>/*.wav -> (path, label index) pairs, decoded per item


def find_clips(folder: str, channel: str) -> dict[str, list[Path]]:
    """Label -> its WAV files, from the audiofolder layout `<folder>/<Label>/*.wav`."""
    root = Path(folder)
    if not root.is_dir():
        raise FileNotFoundError(f"The {channel} channel {root} does not exist; it should hold one folder of .wav files per label.")
    clips = {}
    for label_dir in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        files = sorted(p for p in label_dir.rglob("*") if p.is_file() and p.suffix.lower() == ".wav")
        if files:
            clips[label_dir.name] = files
    if not clips:
        found = sorted(p.name for p in root.iterdir())[:10]
        raise FileNotFoundError(f"No <Label>/*.wav files in the {channel} channel {root} (audiofolder layout, e.g. "
                                f"Normal/clip1.wav, TireSkid/clip2.wav); found {found or 'nothing'}.")
    return clips


def stratified_split(clips: dict[str, list[Path]], share: float, seed: int) -> tuple[dict, dict]:
    """Hold out `share` of each class (at least one clip of every class that has two or more)."""
    rng = random.Random(seed)
    train, validation = {}, {}
    for label, files in clips.items():
        files = list(files)
        rng.shuffle(files)
        held = max(1, round(len(files) * share)) if len(files) >= 2 else 0
        validation[label], train[label] = files[:held], files[held:]
    if not any(validation.values()):
        raise ValueError("Too few clips to hold any out for validation: give each class at least two clips, "
                         "or provide a validation channel.")
    return train, {label: files for label, files in validation.items() if files}


def labelled(clips: dict[str, list[Path]], label2id: dict[str, int]) -> list[tuple[Path, int]]:
    return [(path, label2id[label]) for label, files in clips.items() for path in files]


class ClipDataset(Dataset):
    """(16 kHz mono samples, label index) per WAV file, decoded when asked for."""

    def __init__(self, items: list[tuple[Path, int]], max_samples: int):
        self.items, self.max_samples = items, max_samples

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> tuple[np.ndarray, int]:
        path, label = self.items[index]
        samples, _, _ = decode_wav(path, max_samples=self.max_samples)
        return samples, label


class Collator:
    """A batch of clips -> padded, normalized input_values (and attention_mask when the extractor uses one)."""

    def __init__(self, feature_extractor, max_samples: int):
        self.feature_extractor, self.max_samples = feature_extractor, max_samples

    def __call__(self, batch):
        samples, labels = zip(*batch)
        features = self.feature_extractor(list(samples), sampling_rate=SAMPLING_RATE, padding="longest",
                                          max_length=self.max_samples, truncation=True, return_tensors="pt")
        return dict(features), torch.tensor(labels, dtype=torch.long)


# -----------------------------------------------------------------------------
# model


def tiny_config(num_labels: int):
    """A small Wav2Vec2 with wav2vec2-base's layout (7 conv layers, 320x downsampling), built offline."""
    from transformers import Wav2Vec2Config

    # width 64: at 32, some random initializations stall for epochs before the classes separate
    return Wav2Vec2Config(
        hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128,
        conv_dim=(64,) * 7, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=8,
        classifier_proj_size=64, num_labels=num_labels, vocab_size=8,
        # regularizers that help a pretrained model keep what it knows only slow a small one learning from scratch
        hidden_dropout=0.0, activation_dropout=0.0, attention_dropout=0.0, final_dropout=0.0, layerdrop=0.0,
        mask_time_prob=0.0,
    )


def build_model(model_name_or_path: str, labels: list[str]):
    """(Wav2Vec2ForSequenceClassification, Wav2Vec2FeatureExtractor) with a fresh head for `labels`."""
    from transformers import Wav2Vec2FeatureExtractor, Wav2Vec2ForSequenceClassification

    id2label = dict(enumerate(labels))
    label2id = {label: index for index, label in id2label.items()}
    if model_name_or_path == OFFLINE_TINY:
        config = tiny_config(len(labels))
        config.id2label, config.label2id = id2label, label2id
        model = Wav2Vec2ForSequenceClassification(config)
        # wav2vec2-base's extractor: zero-mean unit-variance per clip, zero padding, no attention mask
        extractor = Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=SAMPLING_RATE, padding_value=0.0,
                                             do_normalize=True, return_attention_mask=False)
        return model, extractor
    try:
        extractor = Wav2Vec2FeatureExtractor.from_pretrained(model_name_or_path)
        # ignore_mismatched_sizes: a checkpoint fine-tuned for other labels gets a fresh head for ours
        model = Wav2Vec2ForSequenceClassification.from_pretrained(
            model_name_or_path, num_labels=len(labels), id2label=id2label, label2id=label2id,
            ignore_mismatched_sizes=True)
    except (OSError, ValueError) as error:  # ValueError: a name that is neither a folder nor a valid hub id
        raise RuntimeError(f"Cannot load --model-name-or-path {model_name_or_path!r} ({error}). Name a Hugging Face "
                           f"model the job can download, or a save_pretrained folder; use {OFFLINE_TINY!r} without internet.") from error
    if extractor.sampling_rate != SAMPLING_RATE:
        raise ValueError(f"{model_name_or_path} expects {extractor.sampling_rate} Hz audio; this script feeds {SAMPLING_RATE} Hz")
    return model, extractor


# -----------------------------------------------------------------------------
# training: main() below is the whole job; the pieces it is built from are functions of their own, so
# benchmarks/training_paths.py measures this script's own path and not a copy of it


def mixed_precision(device: torch.device, fp16: bool):
    """(use_fp16, autocast factory, GradScaler): fp16 autocast with loss scaling on CUDA when fp16, neither on CPU."""
    use_cuda = device.type == "cuda"
    use_fp16 = use_cuda and fp16

    def autocast():
        return torch.autocast("cuda", dtype=torch.float16, enabled=use_fp16) if use_cuda else torch.autocast("cpu", enabled=False)

    # torch.amp.GradScaler is the current spelling; older torch (as in some training images) has only torch.cuda.amp's
    scaler = (torch.amp.GradScaler("cuda", enabled=use_fp16) if hasattr(torch.amp, "GradScaler")
              else torch.cuda.amp.GradScaler(enabled=use_fp16))
    return use_fp16, autocast, scaler


def clip_loaders(train_items: list, validation_items: list, extractor, hp: Hyperparameters, pin_memory: bool):
    """(shuffled train loader, validation loader): WAV files decoded per item, padded per batch by the extractor."""
    collate = Collator(extractor, hp.max_audio_length)
    loader_args = dict(batch_size=hp.batch_size, collate_fn=collate, num_workers=hp.num_workers,
                       pin_memory=pin_memory, persistent_workers=hp.num_workers > 0)
    generator = torch.Generator().manual_seed(hp.seed)
    train_loader = DataLoader(ClipDataset(train_items, hp.max_audio_length), shuffle=True, generator=generator, **loader_args)
    validation_loader = DataLoader(ClipDataset(validation_items, hp.max_audio_length), shuffle=False, **loader_args)
    return train_loader, validation_loader


def optimization(model, hp: Hyperparameters, total_steps: int):
    """(AdamW over the trainable parameters, linear warmup-then-decay scheduler stepped once per optimizer step)."""
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=hp.learning_rate)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, hp.warmup_steps, total_steps))
    return optimizer, scheduler


def forward(model, features: dict, y: torch.Tensor, device: torch.device, autocast) -> torch.Tensor:
    """The classification loss of one batch (under autocast), its tensors moved to the device."""
    features = {k: v.to(device, non_blocking=True) for k, v in features.items()}
    y = y.to(device, non_blocking=True)
    with autocast():
        return model(**features, labels=y).loss


def optimizer_step(model, optimizer, scheduler, scaler) -> None:
    """Unscale, clip the gradient norm to 1, step (skipped by the scaler on inf/nan), advance the schedule, zero."""
    scaler.unscale_(optimizer)
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    scaler.step(optimizer)
    scaler.update()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)


def lr_factor(step: int, warmup_steps: int, total_steps: int) -> float:
    """Linear warmup to 1 over warmup_steps, then linear decay to 0 at total_steps (as HF's default schedule)."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))


def macro_f1(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Mean F1 over the classes that occur in y_true or y_pred (as scikit-learn's average='macro')."""
    scores = []
    for label in np.union1d(y_true, y_pred):
        tp = np.sum((y_pred == label) & (y_true == label))
        fp = np.sum((y_pred == label) & (y_true != label))
        fn = np.sum((y_pred != label) & (y_true == label))
        scores.append(2 * tp / (2 * tp + fp + fn))
    return float(np.mean(scores)) if scores else 0.0


@torch.no_grad()
def evaluate(model, loader: DataLoader, device: torch.device, autocast) -> dict:
    """Mean cross-entropy, accuracy and macro-F1 over a loader."""
    model.eval()
    loss_sum, truth, predicted = 0.0, [], []
    for features, labels in loader:
        features = {k: v.to(device) for k, v in features.items()}
        with autocast():
            logits = model(**features).logits.float()
        loss_sum += torch.nn.functional.cross_entropy(logits, labels.to(device), reduction="sum").item()
        truth.append(labels.numpy())
        predicted.append(logits.argmax(-1).cpu().numpy())
    y_true, y_pred = np.concatenate(truth), np.concatenate(predicted)
    return {"loss": loss_sum / len(y_true), "accuracy": float(np.mean(y_true == y_pred)), "macro_f1": macro_f1(y_true, y_pred)}


def write_model_artifacts(model_dir: Path, model, extractor, info: dict) -> None:
    """save_pretrained weights and feature extractor, label_info.json, and code/ for the inference container."""
    model_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(model_dir)  # safetensors: loading it runs no code
    extractor.save_pretrained(model_dir)
    (model_dir / LABEL_INFO).write_text(json.dumps(info, indent=2) + "\n")
    copy_serving_code(model_dir, CODE_FILES, Path(__file__).resolve().parent)


def main(argv: list[str] | None = None) -> None:
    hp, paths = parse_args(argv)
    validate(hp)
    random.seed(hp.seed)
    np.random.seed(hp.seed)
    torch.manual_seed(hp.seed)

    use_cuda = paths.num_gpus > 0 and torch.cuda.is_available()
    device = torch.device("cuda" if use_cuda else "cpu")
    use_fp16, autocast, scaler = mixed_precision(device, hp.fp16)

    # data
    train_clips = find_clips(paths.train, "train")
    if paths.validation:
        validation_clips = find_clips(paths.validation, "validation")
        unknown = sorted(set(validation_clips) - set(train_clips))
        if unknown:
            raise ValueError(f"The validation channel has labels the train channel lacks: {', '.join(unknown)} "
                             f"(train labels: {', '.join(train_clips)}).")
        validation_source = f"the validation channel {paths.validation}"
    else:
        train_clips, validation_clips = stratified_split(train_clips, hp.validation_split, hp.seed)
        validation_source = f"a stratified {hp.validation_split:.0%} of the train channel"
    labels = sorted(train_clips)
    if len(labels) < 2:
        raise ValueError(f"The train channel {paths.train} holds one label ({labels[0]}); a classifier needs at least two label folders.")
    label2id = {label: index for index, label in enumerate(labels)}
    train_items, validation_items = labelled(train_clips, label2id), labelled(validation_clips, label2id)
    counts = ", ".join(f"{label}={len(train_clips[label])}/{len(validation_clips.get(label, []))}" for label in labels)
    print(f"labels (train/validation clips): {counts}; validation from {validation_source}", flush=True)

    # model
    model, extractor = build_model(hp.model_name_or_path, labels)
    if hp.freeze_feature_encoder:
        model.freeze_feature_encoder()
    model.to(device)
    train_loader, validation_loader = clip_loaders(train_items, validation_items, extractor, hp, pin_memory=use_cuda)

    steps_per_epoch = math.ceil(len(train_loader) / hp.gradient_accumulation_steps)
    total_steps = steps_per_epoch * hp.epochs
    optimizer, scheduler = optimization(model, hp, total_steps)
    if hp.warmup_steps >= total_steps:
        print(f"note: --warmup-steps {hp.warmup_steps} >= the {total_steps} optimizer steps of this run: "
              f"the learning rate never reaches {hp.learning_rate}", flush=True)
    print(f"model {hp.model_name_or_path}: {sum(p.numel() for p in model.parameters()):,} parameters on {device}"
          f"{' (fp16 autocast)' if use_fp16 else ''}; {total_steps} optimizer steps", flush=True)

    best = {"macro_f1": -1.0, "accuracy": 0.0, "epoch": 0, "state": None}
    history = []
    for epoch in range(1, hp.epochs + 1):
        started = time.perf_counter()
        model.train()
        loss_sum, seen = 0.0, 0
        optimizer.zero_grad(set_to_none=True)
        for index, (features, y) in enumerate(train_loader):
            loss = forward(model, features, y, device, autocast)
            if not torch.isfinite(loss):
                raise RuntimeError(f"Training diverged: the loss is {loss.item()} in epoch {epoch}; "
                                   f"lower --learning-rate (now {hp.learning_rate}).")
            scaler.scale(loss / hp.gradient_accumulation_steps).backward()
            loss_sum += loss.item() * len(y)
            seen += len(y)
            if (index + 1) % hp.gradient_accumulation_steps == 0 or index + 1 == len(train_loader):
                optimizer_step(model, optimizer, scheduler, scaler)
        lr = optimizer.param_groups[0]["lr"]
        metrics = evaluate(model, validation_loader, device, autocast)
        seconds = time.perf_counter() - started
        print(f"epoch={epoch} train_loss={loss_sum / seen:.4f} val_loss={metrics['loss']:.4f} "
              f"val_accuracy={metrics['accuracy']:.4f} val_macro_f1={metrics['macro_f1']:.4f} lr={lr:.2e} "
              f"epoch_seconds={seconds:.1f}", flush=True)
        history.append(dict(epoch=epoch, train_loss=loss_sum / seen, val_loss=metrics["loss"], val_accuracy=metrics["accuracy"],
                            val_macro_f1=metrics["macro_f1"], lr=lr, epoch_seconds=seconds))
        if metrics["macro_f1"] > best["macro_f1"]:
            best = {"macro_f1": metrics["macro_f1"], "accuracy": metrics["accuracy"], "epoch": epoch,
                    "state": {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}}

    model.load_state_dict(best["state"])
    info = {
        "labels": labels,
        "label2id": label2id,
        "sampling_rate": SAMPLING_RATE,
        "max_audio_length": hp.max_audio_length,
        "base_model": hp.model_name_or_path,
        "best_epoch": best["epoch"],
        "best_metric": {"name": "validation:macro_f1", "value": best["macro_f1"]},
        "validation_accuracy": best["accuracy"],
        "hyperparameters": asdict(hp),
        "torch_version": torch.__version__,
    }
    write_model_artifacts(Path(paths.model_dir), model.cpu(), extractor, info)
    Path(paths.output_data_dir).mkdir(parents=True, exist_ok=True)
    (Path(paths.output_data_dir) / "metrics.json").write_text(json.dumps({"history": history, **info["best_metric"]}, indent=2) + "\n")
    print(f"best_epoch={best['epoch']} best_val_macro_f1={best['macro_f1']:.4f} best_val_accuracy={best['accuracy']:.4f}", flush=True)
    print(f"saved the epoch-{best['epoch']} model to {paths.model_dir}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
