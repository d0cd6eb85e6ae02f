"""Score Brain-to-Text decoders on held-out labelled trials: the evaluation.json the pipeline's champion gate reads.

Runs as a SageMaker Processing job in the workload's training image (CPU is enough; h5py from
requirements.txt), from the unpacked source folder: this file, inference.py, model.py, dataset.py
and the shared modules (evaluation_report.py, inference_errors.py, ...) side by side. It scores the
challenger (the model.tar.gz this run trained, as train.py writes SM_MODEL_DIR) and, when one is
given, the champion (the registered model) with the same code on the same trials, and writes

    <output>/evaluation.json            {"sequence_metrics": {"diphone_error_rate": {"value": 0.23}},
    <output>/champion_evaluation.json    "samples": 24}   (the champion's: only with --champion)

diphone_error_rate (lower is better) is the error rate train.py reports for validation, computed
the same way: the edit distance of each trial's greedy CTC decode to its labels, summed over every
trial and divided by their total label length. Each model decodes as its endpoint or batch
transform would: inference.py's model_fn (weights with torch.load(weights_only=True), the settings
of checkpoint/args.yaml) and predict_fn, which smooths, decodes and scores every trial. The same
model on the same trials gives the same figure every run.

--test-data is a local folder (the processing job has downloaded it) in the benchmark's layout,
<session>/data_test.hdf5 for one or more sessions (what include.datasets.brain_to_text writes), or
holding a data_test.hdf5 directly (one session file downloaded alone: the session is then read
from each trial's `session` attribute). Every trial needs labels (seq_class_ids, seq_len): the
benchmark's published test files carry none and cannot be scored. Every session must be one each
model has a day-specific input layer for.

By hand, from the repository root (as train.py, it finds the shared modules in training_src/shared
when they are not beside it):

    python -m include.datasets.brain_to_text data/brain_to_text
    python training_src/brain_to_text/train.py --train data/brain_to_text \\
        --n-units 32 --n-layers 1 --rnn-dropout 0 --input-dropout 0 --patch-size 0 --batch-size 8 --days-per-batch 3 \\
        --num-training-batches 300 --batches-per-val-step 100 --lr-max 0.003 --lr-warmup-steps 20 --epsilon 1e-8 \\
        --white-noise-std 0.2 --constant-offset-std 0.05 --model-dir model      # the workload YAML's local profile
    mkdir -p challenger && tar -czf challenger/model.tar.gz -C model .
    python training_src/brain_to_text/evaluate.py --challenger challenger \\
        --test-data data/brain_to_text --output evaluation

(add `--champion <folder holding another model.tar.gz>` to score a champion too). A missing or
unreadable model archive, or test data in the wrong layout, stops it with an exception naming the file.
"""
from __future__ import annotations

import importlib.util
import sys
import tempfile
import time
from pathlib import Path

# In the container the packager puts training_src/shared's modules beside this file; run from the
# repository, as `python training_src/brain_to_text/evaluate.py`, they are in training_src/shared.
if importlib.util.find_spec("evaluation_report") is None:
    sys.path.insert(1, str(Path(__file__).resolve().parents[1] / "shared"))

from dataset import SPLIT_FILES, TRIAL_KEY, read_trial
from evaluation_report import extract_model, install_requirements, metric_report, model_archive, parse_args, write_reports

# a processing job installs nothing: what the image lacks of requirements.txt, as the training toolkit would
install_requirements(Path(__file__).resolve().parent / "requirements.txt")

CATEGORY = "sequence_metrics"
METRIC = "diphone_error_rate"  # minimize
TEST_FILE = SPLIT_FILES["test"]  # data_test.hdf5


class ModelArchiveError(ValueError):
    """A model.tar.gz that is missing, unreadable, or does not hold a model train.py wrote."""


class HeldOutDataError(ValueError):
    """Test data that is missing, unlabelled, or not in the benchmark's HDF5 layout."""


def _one_line(error: BaseException) -> str:
    """An exception's message on one line (FailureReason shows the exception line of the log)."""
    return " ".join(str(error).split())


def find_test_files(test_data: Path) -> list[tuple[Path, str | None]]:
    """(file, session) for every data_test.hdf5 in `test_data`, sorted; session None: read it from the trials.

    As train.py's SessionStore names sessions: a file in a folder below `test_data` belongs to the
    session that folder is named after; a file at the top (or `test_data` itself) to its trials' attribute.
    """
    if test_data.is_file():
        return [(test_data, None)]
    if not test_data.is_dir():
        raise HeldOutDataError(f"The test data {test_data} does not exist: expected a folder holding "
                               f"<session>/{TEST_FILE}")
    found = sorted(p for p in test_data.rglob(TEST_FILE) if p.is_file())
    if not found:  # the published test files are unlabelled: a labelled validation file held out instead
        found = sorted(p for p in test_data.rglob(SPLIT_FILES["val"]) if p.is_file())
    if not found:
        present = sorted(p.relative_to(test_data).as_posix() for p in test_data.rglob("*") if p.is_file())[:10]
        raise HeldOutDataError(f"No {TEST_FILE} in the test data {test_data}: expected the benchmark's layout, "
                               f"<session>/{TEST_FILE} (e.g. t15.2023.08.13/{TEST_FILE}); "
                               f"found {', '.join(present) or 'no files'}")
    return [(path, None if path.parent == test_data else path.parent.name) for path in found]


def read_test_file(path: Path, session: str | None) -> list:
    """Every trial of one labelled session file, as dataset.Trial, in trial-key order."""
    import h5py

    try:
        handle = h5py.File(path, "r")
    except OSError as error:
        raise HeldOutDataError(f"{path}: cannot be opened as HDF5 ({_one_line(error)}); the file may be truncated "
                               "or not an HDF5 session file") from error
    with handle:
        try:
            keys = sorted(k for k in handle.keys() if TRIAL_KEY.fullmatch(k))
            unlabelled = [k for k in keys if "seq_class_ids" not in handle[k]]
        except (OSError, KeyError) as error:  # a damaged file whose index cannot be read
            raise HeldOutDataError(f"{path}: cannot list its trials ({_one_line(error)}); the file may be truncated "
                                   "or corrupt") from error
        if not keys:
            raise HeldOutDataError(f"{path}: holds no trial groups (trial_0000, trial_0001, ...)")
        if unlabelled:
            raise HeldOutDataError(f"{path}: {len(unlabelled)} of its {len(keys)} trials ({unlabelled[0]}, ...) carry no "
                                   "labels (seq_class_ids): the diphone error rate needs labelled held-out trials, and "
                                   "the benchmark's published test files are unlabelled")
        trials = []
        for key in keys:
            if session is None and not handle[key].attrs.get("session"):
                raise HeldOutDataError(f"{path}: {key} has no 'session' attribute; put the file in a folder named "
                                       f"after its session (<session>/{TEST_FILE})")
            # a trial missing a field, or unreadable, raises dataset.TrialDataError naming the file and the trial
            trials.append(read_trial(handle[key], f"{path}: {key}", session=session, labels=True))
    return trials


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
    except Exception as error:  # no checkpoint/, args.yaml of another model, a pickle weights_only refuses
        inner = _one_line(error).replace(str(model_dir), "<archive>")
        raise ModelArchiveError(f"{archive} does not hold a Brain-to-Text model train.py wrote "
                                "(checkpoint/best_checkpoint and checkpoint/args.yaml): "
                                f"{type(error).__name__}: {inner}") from error


class Scorer:
    """One model's running totals: each test file's trials decoded and scored by inference.py's predict_fn."""

    def __init__(self, archive: Path, decoder, role: str):
        self.archive, self.decoder, self.role = archive, decoder, role
        self.per_session: dict[str, list[int]] = {}  # session -> [edit distance, label length]
        self.trials, self.seconds = 0, 0.0

    def add(self, trials: list, source: Path) -> None:
        import inference

        started = time.perf_counter()
        unknown = sorted({t.session for t in trials} - set(self.decoder.sessions))
        if unknown:
            raise HeldOutDataError(f"{source}: session(s) {', '.join(unknown)} have no day-specific input layer in the "
                                   f"{self.role} model {self.archive} (trained on {', '.join(self.decoder.sessions)})")
        for start in range(0, len(trials), inference.DECODE_CHUNK):
            try:
                results = inference.predict_fn(trials[start:start + inference.DECODE_CHUNK], self.decoder)
            except inference.InvalidInputError as error:  # e.g. a feature count the model was not built for
                raise HeldOutDataError(f"The {self.role} model {self.archive} cannot decode {source}: {error}") from error
            for result in results:
                totals = self.per_session.setdefault(result["session"], [0, 0])
                totals[0] += result["edit_distance"]
                totals[1] += result["label_length"]
        self.trials += len(trials)
        self.seconds += time.perf_counter() - started

    def report(self) -> dict:
        errors = sum(t[0] for t in self.per_session.values())
        length = sum(t[1] for t in self.per_session.values())
        der = errors / length  # as train.py's validation: total edit distance over total label length
        for session, (session_errors, session_length) in sorted(self.per_session.items()):
            print(f"{self.role}: {session} test DER: {session_errors / session_length:.4f}", flush=True)
        print(f"{self.role}: {self.archive}: {METRIC}={der:.4f} ({errors} edits over {length} labels) on "
              f"{self.trials} trials (decoded in {self.seconds:.1f} s)", flush=True)
        return metric_report(CATEGORY, {METRIC: der}, samples=self.trials)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv, description="Score Brain-to-Text decoders (challenger, and champion if given) "
                                        "on held-out labelled trials.")
    challenger = model_archive(args.challenger)
    if challenger is None:
        raise ModelArchiveError(f"No model.tar.gz in the challenger folder {args.challenger}"
                                + ("" if args.challenger.is_dir() else " (the folder does not exist)"))
    archives = {"challenger": challenger, "champion": model_archive(args.champion)}
    archives = {role: archive for role, archive in archives.items() if archive is not None}
    files = find_test_files(args.test_data)
    print(f"test data: {len(files)} file(s) under {args.test_data}; champion: {archives.get('champion', 'none')}",
          flush=True)
    with tempfile.TemporaryDirectory(prefix="evaluate-") as scratch:
        # every archive unpacked and loaded before any decoding: a broken one fails the job at once
        folders = {role: unpack(archive, Path(scratch, role)) for role, archive in archives.items()}
        scorers = [Scorer(archives[role], load_model(archives[role], folder), role) for role, folder in folders.items()]
    for path, session in files:  # one session file in memory at a time, decoded by every model
        trials = read_test_file(path, session)
        print(f"{path}: {len(trials)} trials of {', '.join(sorted({t.session for t in trials}))}", flush=True)
        for scorer in scorers:
            scorer.add(trials, path)
    reports = [scorer.report() for scorer in scorers]
    for path in write_reports(args.output, reports[0], reports[1] if len(reports) > 1 else None):
        print(f"wrote {path}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
