r"""Score the acoustic_shield challenger (and the champion) on held-out clips: a SageMaker Processing job's script.

Its command line, and how the job and a person run it: training_src/shared/evaluation_report.py. By
hand, from the repository root, on the data and model of train.py's docstring:

    python -m include.datasets.acoustic_shield data/acoustic_shield --validation-per-class 6
    python training_src/acoustic_shield/train.py --train data/acoustic_shield/train \
        --validation data/acoustic_shield/validation --model-name-or-path offline-tiny \
        --freeze-feature-encoder false --learning-rate 3e-3 --warmup-steps 5 --max-audio-length 16000 \
        --num-workers 0 --model-dir model
    mkdir -p challenger && tar -czf challenger/model.tar.gz -C model .
    python training_src/acoustic_shield/evaluate.py --challenger challenger \
        --test-data data/acoustic_shield/validation --output evaluation

(--champion DIR, a folder holding another model.tar.gz, adds champion_evaluation.json.)

Test data: one split in the audiofolder layout, `<test-data>/<Label>/*.wav`, read as train.py reads a
channel (find_clips); every label must be one the model knows. The local generator writes train/ and
validation/ only, so there the held-out split is validation/ (train.py never trains on it; it only
picks the best epoch by it); with recordings of your own, upload a test/ split beside them and point
the job's input at that.

Scoring: each model is loaded by this workload's own inference.py (model_fn) and every clip goes
through input_fn and predict_fn as the WAV body of a request, one at a time, exactly as the endpoint
would answer it; the predicted label is the most probable one. The same code scores challenger and
champion on the same clips, in the same (sorted) order, on the CPU, so a model gets the same figure
every run.

Reports (training_src/shared/evaluation_report.py): evaluation.json, and champion_evaluation.json with a
champion, each {"multiclass_classification_metrics": {"macro_f1": {"value": ...}, "accuracy": {"value": ...}},
"samples": N}. macro_f1 (maximize) is train.py's macro_f1, the metric the training gate uses on validation.

Errors (a missing or broken model.tar.gz, a model it cannot load, test data in another layout, a clip
that is not a readable WAV file) exit with status 1 and one line `EvaluationError: <what, naming the file>`.
"""
from __future__ import annotations

import importlib.util
import sys
import tempfile
from functools import partial
from pathlib import Path

# In the container the packager puts training_src/shared's modules beside this file; run from the
# repository, as `python training_src/acoustic_shield/evaluate.py`, they are in training_src/shared.
if importlib.util.find_spec("evaluation_report") is None:
    sys.path.insert(1, str(Path(__file__).resolve().parents[1] / "shared"))

from evaluation_report import (EvaluationError, find_archives, finish, install_requirements, parse_args, run, score_models,
                               unpack_models)

# a processing job installs nothing: what the image lacks of requirements.txt, as the training toolkit would
install_requirements(Path(__file__).resolve().parent / "requirements.txt")

CATEGORY = "multiclass_classification_metrics"
METRIC = "macro_f1"  # maximize
SPLIT_NAMES = {"train", "training", "validation", "val", "dev", "test", "testing"}


def read_test_clips(folder: Path) -> dict[str, list[Path]]:
    """Label -> WAV files of the test split, read as train.py reads a channel."""
    from train import find_clips

    try:
        clips = find_clips(str(folder), "test")
    except FileNotFoundError as error:
        raise EvaluationError(f"--test-data: {error}") from error
    if set(clips) <= SPLIT_NAMES:
        raise EvaluationError(f"--test-data {folder} holds the split folders {', '.join(sorted(clips))}, not label folders: "
                              f"point it at one split, e.g. {folder / sorted(clips)[-1]}")
    return clips


def score(model_dir: Path, archive: Path, role: str, clips: dict[str, list[Path]]) -> dict:
    """macro-F1 and accuracy of one model over the test clips, through the serving code."""
    import numpy as np

    import inference
    from train import macro_f1

    try:
        loaded = inference.model_fn(str(model_dir))
    except Exception as error:  # noqa: BLE001 - whatever the archive lacks, say which archive
        raise EvaluationError(f"cannot load the {role} model from {archive}: {type(error).__name__}: {error}") from error
    unknown = sorted(set(clips) - set(loaded.labels))
    if unknown:
        raise EvaluationError(f"--test-data has label folder(s) {', '.join(unknown)} that the {role} model ({archive}) "
                              f"does not know; its labels are {', '.join(loaded.labels)}")
    truth, predicted = [], []
    for label, files in clips.items():
        for path in files:
            try:
                clip = inference.input_fn(path.read_bytes(), "audio/wav")
            except inference.InvalidAudioError as error:
                raise EvaluationError(f"test clip {path}: {error}") from error
            prediction = inference.predict_fn(clip, loaded)
            truth.append(loaded.labels.index(label))
            predicted.append(int(np.argmax(prediction.probabilities)))
    y_true, y_pred = np.array(truth), np.array(predicted)
    return {METRIC: macro_f1(y_true, y_pred), "accuracy": float(np.mean(y_true == y_pred))}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv, description="Score the acoustic_shield challenger (and champion) on held-out clips.")
    challenger, champion = find_archives(args)

    with tempfile.TemporaryDirectory(prefix="evaluate-") as work:
        models = unpack_models(challenger, champion, Path(work), "label_info.json")
        clips = read_test_clips(args.test_data)
        samples = sum(len(files) for files in clips.values())
        print("test clips: " + ", ".join(f"{label}={len(files)}" for label, files in clips.items()), flush=True)

        import torch
        from transformers.utils import logging as transformers_logging

        torch.manual_seed(0)  # nothing here is random; in case a layer ever is
        transformers_logging.disable_progress_bar()  # no "Loading weights" bars in the job's log
        reports = score_models(models, partial(score, clips=clips), CATEGORY, samples)

    return finish(args.output, reports)


if __name__ == "__main__":
    run(main)
