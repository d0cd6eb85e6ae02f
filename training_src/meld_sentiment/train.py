r"""Train the multimodal (text + video + audio) emotion and sentiment model on MELD, as SageMaker runs it.

SageMaker runs `python train.py --epochs 20 --batch-size 16 ...` with the hyperparameters as flags
and the channels in SM_CHANNEL_*; by hand the flags' defaults stand in for those variables:

    python -m include.datasets.meld_sentiment data/meld          # a small synthetic set, MELD's layout
    python training_src/meld_sentiment/train.py --train data/meld/train --validation data/meld/validation \
        --text-model scratch --video-backbone conv3d --video-pretrained false --freeze-text-encoder false \
        --freeze-video-encoder false --num-frames 4 --frame-size 32 --epochs 2 --model-dir model

Data: each channel (train, validation) holds one MELD CSV (`train_sent_emo.csv`, `dev_sent_emo.csv`:
Utterance, Speaker, Emotion, Sentiment, Dialogue_ID, Utterance_ID, ...) and somewhere below it one
clip per row, `dia{Dialogue_ID}_utt{Utterance_ID}.mp4`. Every clip is decoded once, before training,
by ffmpeg (media.py, --decode-workers processes at a time) into memory: MELD's ~11k train and dev
clips take about 7 GB at the AWS profile's 16 frames of 112x112, which ml.p3.2xlarge's 61 GB holds.
A clip without audio gets a silent spectrogram, and an unreadable or missing clip black frames as
well (MELD itself ships a broken clip); each is logged by name and counted, and the job fails when
more than --max-unreadable-fraction of a channel's clips cannot be read: that is a bad upload.

Loss: cross-entropy of the emotion head plus that of the sentiment head, each with 'balanced' class
weights from the training CSV (n_samples / (n_classes * count)) and label smoothing.

Log lines, stable for two readers (a person, and SageMaker's MetricDefinitions: the regexes of
training.metric_definitions in include/workloads/meld_sentiment.yaml, their one copy):
    trainable_parameters text_encoder=1234 video_encoder=... audio_encoder=... fusion=... emotion_head=... sentiment_head=... total=...
    epoch=2 train_loss=3.1234 train_emotion_accuracy=0.4000 train_sentiment_accuracy=0.6000 val_loss=2.9000
        val_emotion_accuracy=0.4500 val_sentiment_accuracy=0.6100 val_emotion_weighted_f1=0.4100
        val_sentiment_weighted_f1=0.5900 lr=0.000500 epoch_seconds=12.3     (one line)
    best_val_emotion_weighted_f1=0.4100
The emotion weighted F1 (MELD's usual score) picks the best epoch and gates deployment.
TensorBoard gets the same numbers per epoch in --tensorboard-dir (TensorBoardOutputConfig's LocalPath).

Outputs in SM_MODEL_DIR (model.tar.gz): model.pth (state_dict of the best epoch; torch.load with
weights_only=True), model_info.json (labels, architecture, media settings), text_encoder/ (the
transformer's config and tokenizer: serving rebuilds the model without downloading anything), and
code/ (inference.py and its modules: the entry point of SageMaker's PyTorch inference container).

Evidence (2-core CPU shared with other jobs, torch 2.14.1, OMP_NUM_THREADS=1): the local profile
(96 + 42 synthetic utterances, scratch BERT, conv3d, 4 epochs) runs in ~11 s alone and ~35 s beside two
busy loops, about 1 s an epoch, the rest imports and decoding, and reaches emotion weighted F1 0.79-0.87
over seeds 1, 2, 3 and 42. A seed gives the same model.pth, byte for byte, whatever the load; another
OMP_NUM_THREADS sums floats in another order, so it gives another (equally good) model.
"""
import csv
import io
import importlib.util
import json
import math
import random
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

# In the container the packager puts training_src/shared's modules beside this file (/opt/ml/code); run
# from the repository, as `python training_src/meld_sentiment/train.py`, they are in training_src/shared.
if importlib.util.find_spec("sagemaker_hyperparameters") is None:
    sys.path.insert(1, str(Path(__file__).resolve().parents[1] / "shared"))

from media import NO_AUDIO, MediaSettings, clip_features
from model import EMOTIONS, SENTIMENTS, VIDEO_BACKBONES, ArchitectureSettings, MultimodalSentimentModel, small_bert_config
from sagemaker_hyperparameters import parse_hyperparameters, setting
from serving_code import copy_serving_code
from tensorboard_events import ScalarWriter

CODE_FILES = ("inference.py", "model.py", "media.py", "requirements.txt")  # what code/ in model.tar.gz needs
TEXT_ENCODER_DIR = "text_encoder"
SCRATCH = "scratch"  # --text-model value that builds a small BERT and its tokenizer from the training text
REQUIRED_COLUMNS = ("Utterance", "Emotion", "Sentiment", "Dialogue_ID", "Utterance_ID")
SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


# -----------------------------------------------------------------------------
# settings: hyperparameters arrive as --flags, paths as SM_* variables


@dataclass
class Hyperparameters:
    epochs: int = setting(20, "passes over the training set")
    batch_size: int = setting(16, "utterances per step")
    learning_rate: float = setting(5e-4, "AdamW rate of the audio encoder, projections, fusion and heads")
    encoder_learning_rate: float = setting(8e-5, "AdamW rate of the text transformer and video backbone when they train")
    weight_decay: float = setting(1e-5, "AdamW weight decay")
    label_smoothing: float = setting(0.05, "cross-entropy label smoothing, in [0, 1)")
    dropout: float = setting(0.3, "dropout in the projections, fusion and heads, in [0, 1)")
    class_weights: str = setting("balanced", "'balanced' (n_samples / (n_classes * count), from the training CSV) or 'none'")
    grad_clip: float = setting(1.0, "clip the gradient norm to this; 0 = off")
    text_model: str = setting("bert-base-uncased", f"transformers name or folder for from_pretrained, or '{SCRATCH}': a small BERT trained from scratch")
    scratch_text_hidden_size: int = setting(64, f"--text-model {SCRATCH}: hidden size")
    scratch_text_layers: int = setting(2, f"--text-model {SCRATCH}: transformer layers")
    scratch_vocab_size: int = setting(2000, f"--text-model {SCRATCH}: WordPiece vocabulary learnt from the training utterances")
    max_text_length: int = setting(128, "tokens per utterance, [CLS] and [SEP] included")
    freeze_text_encoder: bool = setting(True, "keep the pretrained text transformer fixed (its projection still trains)")
    video_backbone: str = setting("r3d_18", f"one of {', '.join(VIDEO_BACKBONES)}")
    video_pretrained: bool = setting(True, "r3d_18 with torchvision's Kinetics-400 weights (downloaded)")
    freeze_video_encoder: bool = setting(True, "keep the pretrained video backbone fixed (its projection still trains)")
    video_channels: int = setting(16, "conv3d backbone width")
    audio_channels: int = setting(64, "audio Conv1d width")
    hidden_size: int = setting(128, "each encoder's output size (fusion is 3x this in, 2x out)")
    num_frames: int = setting(16, "video frames sampled evenly over each clip")
    frame_size: int = setting(112, "frames resized to this square size")
    n_mels: int = setting(64, "mel bands of the spectrogram")
    audio_frames: int = setting(300, "spectrogram columns (10 ms each), padded or cut")
    max_unreadable_fraction: float = setting(0.05, "fail when more of a channel's clips than this cannot be read")
    decode_workers: int = setting(8, "ffmpeg processes decoding clips at once, before training")
    seed: int = setting(0, "random seed for initialization and sampling")
    amp: bool = setting(True, "float16 autocast with loss scaling on GPU (ignored on CPU)")
    tensorboard_dir: str = setting("tensorboard", "TensorBoard event files (TensorBoardOutputConfig.LocalPath)", job_folder="output/tensorboard")


@dataclass
class Paths:
    train: str = setting("data/meld/train", "train channel", env="SM_CHANNEL_TRAIN")
    validation: str = setting("data/meld/validation", "validation channel", env="SM_CHANNEL_VALIDATION")
    model_dir: str = setting("model", "where the model artifacts go", env="SM_MODEL_DIR")
    output_data_dir: str = setting("output", "metrics.json goes here", env="SM_OUTPUT_DATA_DIR")
    num_gpus: int = setting(torch.cuda.device_count(), "GPUs to use, 0 = CPU", env="SM_NUM_GPUS")


def parse_args(argv: list[str] | None = None) -> tuple[Hyperparameters, Paths]:
    return parse_hyperparameters("Train the MELD multimodal emotion and sentiment model.", (Hyperparameters, Paths), argv)


def validate(hp: Hyperparameters) -> None:
    """Fail before any work with a message that says which hyperparameter to change and how."""
    problems = []
    for name in ("epochs", "batch_size", "hidden_size", "num_frames", "frame_size", "n_mels", "audio_frames",
                 "video_channels", "audio_channels", "scratch_text_hidden_size", "scratch_text_layers"):
        if getattr(hp, name) < 1:
            problems.append(f"--{name.replace('_', '-')} must be at least 1 (got {getattr(hp, name)})")
    for name, usual in (("learning_rate", "5e-4"), ("encoder_learning_rate", "8e-5")):
        value = getattr(hp, name)
        if not (value > 0 and math.isfinite(value)):
            problems.append(f"--{name.replace('_', '-')} must be a positive number (got {value}); {usual} is the usual value")
    if not (hp.weight_decay >= 0 and math.isfinite(hp.weight_decay)):
        problems.append(f"--weight-decay must be 0 or more (got {hp.weight_decay})")
    for name in ("label_smoothing", "dropout"):
        if not 0 <= getattr(hp, name) < 1:
            problems.append(f"--{name.replace('_', '-')} must be in [0, 1) (got {getattr(hp, name)})")
    if hp.class_weights not in ("balanced", "none"):
        problems.append(f"--class-weights must be 'balanced' or 'none' (got {hp.class_weights!r})")
    if not hp.grad_clip >= 0:
        problems.append(f"--grad-clip must be 0 (off) or more (got {hp.grad_clip})")
    if hp.max_text_length < 8:
        problems.append(f"--max-text-length must be at least 8 tokens (got {hp.max_text_length})")
    if hp.text_model == SCRATCH:
        if hp.scratch_vocab_size < 100:
            problems.append(f"--scratch-vocab-size must be at least 100 (got {hp.scratch_vocab_size})")
        if hp.freeze_text_encoder:
            problems.append(f"--freeze-text-encoder true would keep a --text-model {SCRATCH} encoder at its random "
                            "weights; set it false, or name a pretrained model")
    if hp.video_backbone not in VIDEO_BACKBONES:
        problems.append(f"--video-backbone must be one of {', '.join(VIDEO_BACKBONES)} (got {hp.video_backbone!r})")
    elif hp.video_pretrained and hp.video_backbone != "r3d_18":
        problems.append(f"--video-pretrained true needs --video-backbone r3d_18 (got {hp.video_backbone!r}); "
                        "the conv3d backbone has no pretrained weights")
    if hp.freeze_video_encoder and not hp.video_pretrained:
        problems.append("--freeze-video-encoder true would keep an untrained video backbone at its random weights; "
                        "set it false, or set --video-pretrained true")
    if not 0 <= hp.max_unreadable_fraction <= 1:
        problems.append(f"--max-unreadable-fraction must be in [0, 1] (got {hp.max_unreadable_fraction})")
    if hp.decode_workers < 1:
        problems.append(f"--decode-workers must be at least 1 (got {hp.decode_workers})")
    if problems:
        raise ValueError("Invalid hyperparameters: " + "; ".join(problems))


# -----------------------------------------------------------------------------
# data: a MELD CSV and its clips -> utterances


@dataclass
class Utterance:
    text: str
    emotion: int
    sentiment: int
    clip_name: str
    clip_path: str  # "" when the channel has no such clip


def find_csv(channel: Path) -> Path:
    found = sorted(p for p in channel.rglob("*_sent_emo.csv") if p.is_file()) if channel.is_dir() else []
    if len(found) != 1:
        listing = sorted(p.name for p in channel.rglob("*") if p.is_file())[:10] if channel.is_dir() else "the folder does not exist"
        what = "no" if not found else f"{len(found)} ({', '.join(p.name for p in found)}), expected one"
        raise FileNotFoundError(f"{what} MELD CSV (*_sent_emo.csv, such as train_sent_emo.csv) in the channel {channel}; "
                                f"found {listing or 'no files'}")
    return found[0]


def _label(value: str, names: tuple[str, ...], column: str, where: str) -> int:
    cleaned = (value or "").strip().lower()
    if cleaned not in names:
        raise ValueError(f"{where}: {column} is {value!r}; MELD's values are {', '.join(names)}")
    return names.index(cleaned)


def read_split(channel: str) -> tuple[list[Utterance], Path]:
    """The utterances of one channel, each with its clip's path (or "" when the clip is missing)."""
    root = Path(channel)
    csv_path = find_csv(root)
    clips = {}
    for path in sorted(root.rglob("*.mp4")):
        clips.setdefault(path.name, str(path))
    if not clips:
        raise FileNotFoundError(f"no .mp4 clips under the channel {root}: expected dia<Dialogue_ID>_utt<Utterance_ID>.mp4 "
                                f"for each row of {csv_path.name} (MELD's train_splits/ or dev_splits_complete/)")
    # MELD's CSVs are UTF-8 with a few stray bytes; replacing them beats failing on one odd apostrophe
    reader = csv.DictReader(io.StringIO(csv_path.read_bytes().decode("utf-8", errors="replace")))
    missing = [c for c in REQUIRED_COLUMNS if c not in (reader.fieldnames or [])]
    if missing:
        raise ValueError(f"{csv_path}: missing column(s) {', '.join(missing)}; found {', '.join(reader.fieldnames or []) or 'none'}")
    utterances = []
    for line, row in enumerate(reader, start=2):
        where = f"{csv_path.name} line {line}"
        try:
            name = f"dia{int(row['Dialogue_ID'])}_utt{int(row['Utterance_ID'])}.mp4"
        except (TypeError, ValueError):
            raise ValueError(f"{where}: Dialogue_ID and Utterance_ID must be integers, got "
                             f"{row['Dialogue_ID']!r} and {row['Utterance_ID']!r}") from None
        utterances.append(Utterance(
            text=(row["Utterance"] or "").strip(),
            emotion=_label(row["Emotion"], EMOTIONS, "Emotion", where),
            sentiment=_label(row["Sentiment"], SENTIMENTS, "Sentiment", where),
            clip_name=name, clip_path=clips.get(name, ""),
        ))
    if not utterances:
        raise ValueError(f"{csv_path} has a header but no utterances")
    return utterances, csv_path


def balanced_class_weights(labels: list[int], names: tuple[str, ...]) -> torch.Tensor:
    """n_samples / (n_classes * count) per class (scikit-learn's 'balanced'); 1.0 for a class the set lacks."""
    counts = Counter(labels)
    n, k = len(labels), len(names)
    return torch.tensor([n / (k * counts[c]) if counts[c] else 1.0 for c in range(k)], dtype=torch.float32)


@dataclass
class DecodedSplit:
    """One channel in memory, ready for the model: decoding happens once, not every epoch."""

    input_ids: torch.Tensor  # [N, L] token ids, padded to the split's longest utterance
    attention_mask: torch.Tensor  # [N, L]
    frames: torch.Tensor  # uint8 [N, num_frames, frame_size, frame_size, 3]
    spectrograms: torch.Tensor  # float32 [N, n_mels, audio_frames]
    emotion: torch.Tensor  # [N]
    sentiment: torch.Tensor  # [N]

    def __len__(self) -> int:
        return len(self.emotion)

    def batches(self, batch_size: int, generator: torch.Generator | None = None):
        """Dicts of batch tensors; shuffled (dropping a last batch of one, which batch norm cannot train on) with a generator."""
        order = torch.randperm(len(self), generator=generator) if generator is not None else torch.arange(len(self))
        for start in range(0, len(self), batch_size):
            index = order[start:start + batch_size]
            if generator is not None and len(index) < 2:
                continue
            yield {"input_ids": self.input_ids[index], "attention_mask": self.attention_mask[index],
                   "frames": self.frames[index], "spectrogram": self.spectrograms[index],
                   "emotion": self.emotion[index], "sentiment": self.sentiment[index]}


def decode_split(utterances: list["Utterance"], media: MediaSettings, tokenizer, max_length: int, workers: int,
                 report: "MediaReport", log) -> DecodedSplit:
    """Tokenize the texts and decode every clip (ffmpeg processes, `workers` at a time) into memory."""
    frames = torch.zeros(len(utterances), media.num_frames, media.frame_size, media.frame_size, 3, dtype=torch.uint8)
    spectrograms = torch.zeros(len(utterances), media.n_mels, media.audio_frames)
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=workers) as pool:  # threads suffice: the work happens in ffmpeg
        decoded = pool.map(lambda u: clip_features(u.clip_path or Path("/nonexistent") / u.clip_name, media), utterances)
        for i, (utterance, features) in enumerate(zip(utterances, decoded)):
            frames[i], spectrograms[i] = features.frames, features.spectrogram
            report.observe([utterance.clip_name], [features.problem], log)
            if (i + 1) % 1000 == 0:
                log(f"decoded {i + 1} of {len(utterances)} {report.split} clips ({time.perf_counter() - started:.0f} s)")
    tokens = tokenizer([u.text for u in utterances], padding=True, truncation=True, max_length=max_length,
                       return_tensors="pt")
    return DecodedSplit(tokens["input_ids"], tokens["attention_mask"], frames, spectrograms,
                        torch.tensor([u.emotion for u in utterances]), torch.tensor([u.sentiment for u in utterances]))


class MediaReport:
    """Which clips of a channel were damaged: each logged once by name, all counted."""

    def __init__(self, split: str, total: int):
        self.split, self.total = split, total
        self.problems: dict[str, str] = {}

    def observe(self, clips: list[str], problems: list[str], log) -> None:
        for clip, problem in zip(clips, problems):
            if problem and clip not in self.problems:
                self.problems[clip] = problem
                fallback = "a silent spectrogram" if problem.startswith(NO_AUDIO) else "black frames and a silent spectrogram"
                log(f"warning: {self.split} clip {clip}: {problem}; using {fallback}")

    @property
    def unreadable(self) -> list[str]:
        return sorted(c for c, p in self.problems.items() if p.startswith("unreadable"))

    @property
    def without_audio(self) -> list[str]:
        return sorted(c for c, p in self.problems.items() if p.startswith(NO_AUDIO))

    def summary(self) -> str:
        return (f"media {self.split}: clips={self.total} clips_without_audio={len(self.without_audio)} "
                f"unreadable_clips={len(self.unreadable)}")

    def check(self, max_fraction: float) -> None:
        bad = self.unreadable
        if len(bad) > max_fraction * self.total:
            examples = "; ".join(f"{c}: {self.problems[c].removeprefix('unreadable: ')}" for c in bad[:5])
            raise RuntimeError(f"{len(bad)} of {self.total} clips in the {self.split} channel cannot be read (more than "
                               f"--max-unreadable-fraction {max_fraction}), e.g. {examples}. Check the upload.")


# -----------------------------------------------------------------------------
# model pieces that depend on the data


def learn_wordpiece_vocabulary(word_counts: dict[str, int], vocab_size: int, prefix: str = "##") -> list[str]:
    """What tokenizers' WordPieceTrainer learns: the special tokens, the letters, the letters that continue a word
    (##a), then BPE merges, the most frequent pair first and among equals the one of lower ids, until vocab_size.
    The trainer numbers the ##letters in hash-map order, which changes from process to process
    (huggingface/tokenizers#1794), so the same seed trained another vocabulary, hence another model, each run;
    here they are numbered in sorted order. Plain Python, recounting pairs at each merge: milliseconds for the
    local profile, ~20 s for MELD-sized text (10k utterances, 2000 tokens) on the 2-core CPU above."""
    splits = {word: [word[0], *(prefix + c for c in word[1:])] for word in sorted(word_counts) if word}
    vocabulary = [*SPECIAL_TOKENS, *sorted({c for word in splits for c in word}),
                  *sorted({piece for pieces in splits.values() for piece in pieces[1:]})]
    ids = {token: i for i, token in enumerate(vocabulary)}
    while len(vocabulary) < vocab_size:
        splits = {word: pieces for word, pieces in splits.items() if len(pieces) > 1}  # a whole word merges no further
        pairs = Counter()
        for word, pieces in splits.items():
            for pair in zip(pieces, pieces[1:]):
                pairs[pair] += word_counts[word]
        if not pairs:
            break
        first, second = min(pairs, key=lambda pair: (-pairs[pair], ids[pair[0]], ids[pair[1]]))
        merged = first + second.removeprefix(prefix)
        for pieces in splits.values():
            i = 0
            while i < len(pieces) - 1:  # left to right, as the trainer merges "##a ##a ##a" into "##aa ##a"
                if pieces[i] == first and pieces[i + 1] == second:
                    pieces[i:i + 2] = [merged]
                i += 1
        if merged not in ids:
            ids[merged] = len(vocabulary)
            vocabulary.append(merged)
    return vocabulary


def scratch_tokenizer(texts: list[str], vocab_size: int, max_length: int):
    """A WordPiece tokenizer learnt from the training utterances, BERT-style (lowercase, [CLS] ... [SEP]); the same
    texts give the same vocabulary in every process."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    normalizer, pre_tokenizer = normalizers.BertNormalizer(lowercase=True), pre_tokenizers.BertPreTokenizer()
    words = Counter(word for text in texts for word, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(text)))
    vocabulary = learn_wordpiece_vocabulary(words, vocab_size)
    backend = Tokenizer(models.WordPiece({token: i for i, token in enumerate(vocabulary)}, unk_token="[UNK]"))
    backend.normalizer, backend.pre_tokenizer = normalizer, pre_tokenizer
    backend.add_special_tokens(list(SPECIAL_TOKENS))
    cls, sep = backend.token_to_id("[CLS]"), backend.token_to_id("[SEP]")
    backend.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
                                                           special_tokens=[("[CLS]", cls), ("[SEP]", sep)])
    return PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                                   sep_token="[SEP]", mask_token="[MASK]", model_max_length=max_length)


def text_encoder_and_tokenizer(hp: Hyperparameters, texts: list[str]):
    """(transformer, tokenizer): pretrained through from_pretrained, or a small BERT built from its config."""
    from transformers import AutoModel, AutoTokenizer, BertModel

    if hp.text_model == SCRATCH:
        tokenizer = scratch_tokenizer(texts, hp.scratch_vocab_size, hp.max_text_length)
        config = small_bert_config(len(tokenizer), hp.scratch_text_hidden_size, hp.scratch_text_layers, hp.max_text_length)
        return BertModel(config), tokenizer
    return AutoModel.from_pretrained(hp.text_model), AutoTokenizer.from_pretrained(hp.text_model)


def weighted_f1(true: np.ndarray, predicted: np.ndarray, classes: int) -> float:
    """F1 per class, averaged with each class's share of the true labels (scikit-learn's average='weighted')."""
    total = 0.0
    for c in range(classes):
        support = int((true == c).sum())
        if not support:
            continue
        tp = int(((predicted == c) & (true == c)).sum())
        precision_denominator, recall = int((predicted == c).sum()), tp / support
        precision = tp / precision_denominator if precision_denominator else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        total += f1 * support
    return total / max(1, len(true))


# -----------------------------------------------------------------------------
# training


def run_epoch(model, batches, criteria, device, *, optimizer=None, scaler=None, autocast=nullcontext,
              grad_clip: float = 0.0) -> dict:
    """One pass; trains when an optimizer is given. Returns loss, accuracies and the predictions."""
    training = optimizer is not None
    model.train(training)
    loss_sum, count = 0.0, 0
    truth = {"emotion": [], "sentiment": []}
    predictions = {"emotion": [], "sentiment": []}
    with torch.enable_grad() if training else torch.no_grad():
        for batch in batches:
            inputs = [batch[k].to(device, non_blocking=True) for k in ("input_ids", "attention_mask", "frames", "spectrogram")]
            targets = {head: batch[head].to(device) for head in ("emotion", "sentiment")}
            with autocast():
                logits = model(*inputs)
                loss = sum(criteria[head](logits[head].float(), targets[head]) for head in targets)
            if training:
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                if grad_clip:
                    scaler.unscale_(optimizer)
                    nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], grad_clip)
                scaler.step(optimizer)
                scaler.update()
            n = len(batch["emotion"])
            loss_sum += loss.item() * n
            count += n
            for head in targets:
                truth[head].append(batch[head])
                predictions[head].append(logits[head].argmax(1).cpu())
    truth = {h: torch.cat(v).numpy() for h, v in truth.items()}
    predictions = {h: torch.cat(v).numpy() for h, v in predictions.items()}
    return {
        "loss": loss_sum / max(1, count),
        "emotion_accuracy": float((truth["emotion"] == predictions["emotion"]).mean()),
        "sentiment_accuracy": float((truth["sentiment"] == predictions["sentiment"]).mean()),
        "emotion_weighted_f1": weighted_f1(truth["emotion"], predictions["emotion"], len(EMOTIONS)),
        "sentiment_weighted_f1": weighted_f1(truth["sentiment"], predictions["sentiment"], len(SENTIMENTS)),
    }


def write_model_artifacts(model_dir: Path, best_state: dict, info: dict, transformer, tokenizer) -> None:
    """model.pth, model_info.json, text_encoder/ and code/, as SM_MODEL_DIR becomes model.tar.gz."""
    model_dir.mkdir(parents=True, exist_ok=True)
    torch.save(best_state, model_dir / "model.pth")
    (model_dir / "model_info.json").write_text(json.dumps(info, indent=2) + "\n")
    transformer.config.save_pretrained(model_dir / TEXT_ENCODER_DIR)  # the architecture only: weights are in model.pth
    tokenizer.save_pretrained(model_dir / TEXT_ENCODER_DIR)
    copy_serving_code(model_dir, CODE_FILES, Path(__file__).resolve().parent)


def _format_weights(weights: torch.Tensor, names: tuple[str, ...]) -> str:
    return " ".join(f"{name}={w:.4f}" for name, w in zip(names, weights.tolist()))


def main(argv: list[str] | None = None) -> None:
    hp, paths = parse_args(argv)
    validate(hp)
    random.seed(hp.seed)
    np.random.seed(hp.seed)
    torch.manual_seed(hp.seed)
    use_cuda = paths.num_gpus > 0 and torch.cuda.is_available()
    device = torch.device("cuda" if use_cuda else "cpu")
    log = print

    train_set, train_csv = read_split(paths.train)
    val_set, val_csv = read_split(paths.validation)
    log(f"data: {len(train_set)} training utterances from {train_csv.name}, {len(val_set)} validation utterances "
        f"from {val_csv.name}")
    reports = {"train": MediaReport("train", len(train_set)), "validation": MediaReport("validation", len(val_set))}
    for split, utterances in (("train", train_set), ("validation", val_set)):
        reports[split].observe([u.clip_name for u in utterances if not u.clip_path],
                               ["unreadable: file not found in the channel"] * sum(not u.clip_path for u in utterances), log)
        reports[split].check(hp.max_unreadable_fraction)  # a wholesale bad upload fails before any training

    weights = {"emotion": torch.ones(len(EMOTIONS)), "sentiment": torch.ones(len(SENTIMENTS))}
    if hp.class_weights == "balanced":
        weights = {"emotion": balanced_class_weights([u.emotion for u in train_set], EMOTIONS),
                   "sentiment": balanced_class_weights([u.sentiment for u in train_set], SENTIMENTS)}
    log(f"class_weights ({hp.class_weights}) emotion: {_format_weights(weights['emotion'], EMOTIONS)}; "
        f"sentiment: {_format_weights(weights['sentiment'], SENTIMENTS)}")
    criteria = {head: nn.CrossEntropyLoss(weight=w.to(device), label_smoothing=hp.label_smoothing) for head, w in weights.items()}

    transformer, tokenizer = text_encoder_and_tokenizer(hp, [u.text for u in train_set])
    arch = ArchitectureSettings(video_backbone=hp.video_backbone, video_channels=hp.video_channels,
                                audio_channels=hp.audio_channels, n_mels=hp.n_mels, hidden_size=hp.hidden_size,
                                dropout=hp.dropout)
    model = MultimodalSentimentModel(transformer, arch, video_pretrained=hp.video_pretrained)
    if hp.freeze_text_encoder:
        model.freeze("text")
    if hp.freeze_video_encoder:
        model.freeze("video")
    model.to(device)
    counts = model.parameter_counts()
    log("trainable_parameters " + " ".join(f"{k}={v}" for k, v in counts.items()) + f" total={sum(counts.values())}")

    media = MediaSettings(num_frames=hp.num_frames, frame_size=hp.frame_size, n_mels=hp.n_mels, audio_frames=hp.audio_frames)
    data = {}
    for split, utterances in (("train", train_set), ("validation", val_set)):
        data[split] = decode_split(utterances, media, tokenizer, hp.max_text_length, hp.decode_workers, reports[split], log)
        log(reports[split].summary())
        reports[split].check(hp.max_unreadable_fraction)
    shuffle = torch.Generator().manual_seed(hp.seed)
    steps_per_epoch = len(data["train"]) // hp.batch_size + (len(data["train"]) % hp.batch_size >= 2)

    backbones = {id(p) for p in [*model.text_encoder.transformer.parameters(), *model.video_encoder.backbone.parameters()]}
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW([
        {"params": [p for p in trainable if id(p) in backbones], "lr": hp.encoder_learning_rate},
        {"params": [p for p in trainable if id(p) not in backbones], "lr": hp.learning_rate},
    ], weight_decay=hp.weight_decay)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="min", factor=0.1, patience=2)
    use_amp = hp.amp and use_cuda  # float16: the V100 of ml.p3 has no fast bfloat16
    autocast = (lambda: torch.autocast("cuda", dtype=torch.float16)) if use_amp else nullcontext
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    tensorboard = ScalarWriter(hp.tensorboard_dir)
    log(f"training: {hp.epochs} epochs x {steps_per_epoch} steps on {device}, float16 autocast "
        f"{'on' if use_amp else 'off'}, TensorBoard events in {tensorboard.path.parent}, "
        f"hyperparameters {json.dumps(asdict(hp))}")

    best = {"f1": -1.0, "epoch": 0, "state": None}
    history = []
    for epoch in range(1, hp.epochs + 1):
        started = time.perf_counter()
        train = run_epoch(model, data["train"].batches(hp.batch_size, shuffle), criteria, device, optimizer=optimizer,
                          scaler=scaler, autocast=autocast, grad_clip=hp.grad_clip)
        if not math.isfinite(train["loss"]):
            raise RuntimeError(f"Training diverged: train_loss is {train['loss']} in epoch {epoch}; "
                               f"lower --learning-rate (now {hp.learning_rate}).")
        val = run_epoch(model, data["validation"].batches(hp.batch_size), criteria, device, autocast=autocast)
        lr = optimizer.param_groups[1]["lr"]
        scheduler.step(val["loss"])
        seconds = time.perf_counter() - started
        log(f"epoch={epoch} train_loss={train['loss']:.4f} train_emotion_accuracy={train['emotion_accuracy']:.4f} "
            f"train_sentiment_accuracy={train['sentiment_accuracy']:.4f} val_loss={val['loss']:.4f} "
            f"val_emotion_accuracy={val['emotion_accuracy']:.4f} val_sentiment_accuracy={val['sentiment_accuracy']:.4f} "
            f"val_emotion_weighted_f1={val['emotion_weighted_f1']:.4f} "
            f"val_sentiment_weighted_f1={val['sentiment_weighted_f1']:.4f} lr={lr:.6f} epoch_seconds={seconds:.1f}", flush=True)
        tensorboard.add_scalars({
            "loss/train": train["loss"], "loss/validation": val["loss"],
            "accuracy/train_emotion": train["emotion_accuracy"], "accuracy/train_sentiment": train["sentiment_accuracy"],
            "accuracy/validation_emotion": val["emotion_accuracy"], "accuracy/validation_sentiment": val["sentiment_accuracy"],
            "f1/validation_emotion_weighted": val["emotion_weighted_f1"],
            "f1/validation_sentiment_weighted": val["sentiment_weighted_f1"], "learning_rate": lr,
        }, step=epoch)
        history.append({"epoch": epoch, "train": train, "validation": val, "lr": lr, "epoch_seconds": seconds})
        if val["emotion_weighted_f1"] > best["f1"]:
            best = {"f1": val["emotion_weighted_f1"], "epoch": epoch,
                    "state": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}}
    tensorboard.close()

    info = {
        "emotions": list(EMOTIONS),
        "sentiments": list(SENTIMENTS),
        "architecture": arch.to_dict(),
        "media": asdict(media),
        "max_text_length": hp.max_text_length,
        "text_model": hp.text_model,
        "best_metric": {"name": "validation:emotion_weighted_f1", "value": best["f1"]},
        "best_epoch": best["epoch"],
        "class_weights": {head: w.tolist() for head, w in weights.items()},
        "trainable_parameters": counts,
        "media_problems": {split: report.problems for split, report in reports.items()},
        "hyperparameters": asdict(hp),
        "torch_version": torch.__version__,
    }
    write_model_artifacts(Path(paths.model_dir), best["state"], info, transformer, tokenizer)
    Path(paths.output_data_dir).mkdir(parents=True, exist_ok=True)
    (Path(paths.output_data_dir) / "metrics.json").write_text(json.dumps({"history": history, **info["best_metric"]}, indent=2) + "\n")
    log(f"best_val_emotion_weighted_f1={best['f1']:.4f}", flush=True)
    log(f"saved the epoch-{best['epoch']} model to {paths.model_dir}")


if __name__ == "__main__":
    sys.exit(main())
