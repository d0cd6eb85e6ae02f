r"""Score the meld_sentiment challenger (and the champion) on held-out MELD utterances: a SageMaker Processing job's script.

The command line, and how the job and a person run the script: training_src/shared/evaluation_report.py.
By hand, from the repository root, on the data and model of train.py's docstring:

    python -m include.datasets.meld_sentiment data/meld
    python training_src/meld_sentiment/train.py --train data/meld/train \
        --validation data/meld/validation --text-model scratch --video-backbone conv3d --video-pretrained false \
        --freeze-text-encoder false --freeze-video-encoder false --num-frames 4 --frame-size 32 --epochs 2 \
        --model-dir model
    mkdir -p challenger && tar -czf challenger/model.tar.gz -C model .
    python training_src/meld_sentiment/evaluate.py --challenger challenger \
        --test-data data/meld/validation --output evaluation

(--champion DIR, a folder holding another model.tar.gz, adds champion_evaluation.json.)

Test data: one MELD split as train.py reads a channel (read_split): one `*_sent_emo.csv` and, anywhere
below the folder, `dia{Dialogue_ID}_utt{Utterance_ID}.mp4` for its rows. Real MELD's held-out split is
test.tar.gz: test_sent_emo.csv + output_repeated_splits_test/. The local generator writes train/ and
validation/ only, so there the held-out split is validation/ (dev_sent_emo.csv + dev_splits_complete/:
train.py never trains on it; it only picks the best epoch by it).

Scoring: each model is loaded by this workload's own inference.py (model_fn); every clip is decoded
by media.clip_features with the model's own media settings, and the utterances, in the CSV's order,
go through inference.probabilities (what predict_fn answers from) 16 at a time; the label is the most
probable one. As in train.py's validation, a clip without audio gets a silent spectrogram and an
unreadable or missing one black frames as well (each logged by name); more than 5% unreadable fails
the job: that is a bad upload. The same code scores challenger and champion on the same data on the
CPU, so a model gets the same figure every run.

Reports (training_src/shared/evaluation_report.py): evaluation.json, and champion_evaluation.json with a
champion, each {"multiclass_classification_metrics": {"weighted_f1": {"value": ...}, "accuracy": ...,
"sentiment_weighted_f1": ..., "sentiment_accuracy": ...}, "samples": N}. weighted_f1 (maximize) is the
emotion weighted F1 of train.py's weighted_f1 (MELD's usual score, the metric the training gate uses on
validation), accuracy the emotion accuracy; the sentiment figures are for a reader.

Errors (a missing or broken model.tar.gz, a model it cannot load, test data in another layout, too
many unreadable clips) exit with status 1 and one line `EvaluationError: <what, naming the file>`.
"""
from __future__ import annotations

import importlib.util
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

# In the container the packager puts training_src/shared's modules beside this file; run from the
# repository, as `python training_src/meld_sentiment/evaluate.py`, they are in training_src/shared.
if importlib.util.find_spec("evaluation_report") is None:
    sys.path.insert(1, str(Path(__file__).resolve().parents[1] / "shared"))

from evaluation_report import (EvaluationError, find_archives, finish, install_requirements, parse_args, run, score_models,
                               unpack_models)

# a processing job installs nothing: what the image lacks of requirements.txt, as the training toolkit would
install_requirements(Path(__file__).resolve().parent / "requirements.txt")

CATEGORY = "multiclass_classification_metrics"
METRIC = "weighted_f1"  # maximize: the emotion weighted F1
BATCH_SIZE = 16  # utterances per forward pass (an endpoint request takes up to 32)
MAX_UNREADABLE_FRACTION = 0.05  # train.py's default --max-unreadable-fraction
DECODE_WORKERS = max(1, min(4, os.cpu_count() or 1))  # ffmpeg processes at once


def read_test_split(folder: Path):
    """The test split's utterances (train.py's Utterance: text, emotion, sentiment, clip) and its CSV."""
    from train import read_split

    try:
        return read_split(str(folder))
    except (FileNotFoundError, ValueError) as error:
        raise EvaluationError(f"--test-data: {error}") from error


class DecodedTestSet:
    """Every test clip decoded once per media setting (challenger and champion usually share one)."""

    def __init__(self, utterances):
        self.utterances = utterances
        self._decoded = {}

    def get(self, media) -> list:
        if media not in self._decoded:
            self._decoded[media] = self._decode(media)
        return self._decoded[media]

    def _decode(self, media) -> list:
        from media import NO_AUDIO, clip_features

        started = time.perf_counter()
        with ThreadPoolExecutor(max_workers=DECODE_WORKERS) as pool:  # the work happens in ffmpeg
            features = list(pool.map(lambda u: clip_features(u.clip_path or Path("/nonexistent") / u.clip_name, media),
                                     self.utterances))
        unreadable = []
        for utterance, feature in zip(self.utterances, features):
            if feature.problem:
                fallback = "a silent spectrogram" if feature.problem.startswith(NO_AUDIO) else "black frames and a silent spectrogram"
                print(f"warning: test clip {utterance.clip_name}: {feature.problem}; using {fallback}", flush=True)
            if feature.problem.startswith("unreadable"):
                unreadable.append(f"{utterance.clip_name}: {feature.problem.removeprefix('unreadable: ')}")
        total = len(self.utterances)
        if len(unreadable) > MAX_UNREADABLE_FRACTION * total:
            raise EvaluationError(f"{len(unreadable)} of {total} test clips cannot be read (more than "
                                  f"{MAX_UNREADABLE_FRACTION:.0%}), e.g. {'; '.join(unreadable[:5])}. Check the test data.")
        print(f"decoded {total} test clips ({media.num_frames} frames of {media.frame_size}x{media.frame_size}, "
              f"{media.n_mels} mel bands) in {time.perf_counter() - started:.1f} s; unreadable={len(unreadable)}", flush=True)
        return features


def score(model_dir: Path, archive: Path, role: str, test: DecodedTestSet) -> dict:
    """Emotion weighted F1 and accuracy (and the sentiment ones) of one model, through the serving code."""
    import numpy as np

    import inference
    from model import EMOTIONS, SENTIMENTS
    from train import weighted_f1

    try:
        loaded = inference.model_fn(str(model_dir))
    except Exception as error:  # noqa: BLE001 - whatever the archive lacks, say which archive
        raise EvaluationError(f"cannot load the {role} model from {archive}: {type(error).__name__}: {error}") from error
    if loaded.emotions != list(EMOTIONS) or loaded.sentiments != list(SENTIMENTS):
        raise EvaluationError(f"the {role} model ({archive}) predicts {loaded.emotions} and {loaded.sentiments}; "
                              f"the test data's labels are MELD's {list(EMOTIONS)} and {list(SENTIMENTS)}")
    features = test.get(loaded.media)
    predicted = {"emotion": [], "sentiment": []}
    for start in range(0, len(test.utterances), BATCH_SIZE):
        batch = test.utterances[start:start + BATCH_SIZE]
        probs = inference.probabilities(loaded, [u.text for u in batch], features[start:start + BATCH_SIZE])
        for head in predicted:
            predicted[head].extend(probs[head].argmax(dim=1).tolist())
    truth = {"emotion": np.array([u.emotion for u in test.utterances]),
             "sentiment": np.array([u.sentiment for u in test.utterances])}
    predicted = {head: np.array(values) for head, values in predicted.items()}
    return {
        METRIC: weighted_f1(truth["emotion"], predicted["emotion"], len(EMOTIONS)),
        "accuracy": float(np.mean(truth["emotion"] == predicted["emotion"])),
        "sentiment_weighted_f1": weighted_f1(truth["sentiment"], predicted["sentiment"], len(SENTIMENTS)),
        "sentiment_accuracy": float(np.mean(truth["sentiment"] == predicted["sentiment"])),
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv, description="Score the meld_sentiment challenger (and champion) on held-out MELD utterances.")
    challenger, champion = find_archives(args)

    with tempfile.TemporaryDirectory(prefix="evaluate-") as work:
        models = unpack_models(challenger, champion, Path(work), "model_info.json")
        utterances, csv_path = read_test_split(args.test_data)
        print(f"test data: {len(utterances)} utterances from {csv_path}", flush=True)

        import torch
        from transformers.utils import logging as transformers_logging

        torch.manual_seed(0)  # nothing here is random; in case a layer ever is
        transformers_logging.disable_progress_bar()  # no "Loading weights" bars in the job's log
        reports = score_models(models, partial(score, test=DecodedTestSet(utterances)), CATEGORY, len(utterances))

    return finish(args.output, reports)


if __name__ == "__main__":
    run(main)
