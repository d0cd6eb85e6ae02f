"""Small synthetic Brain-to-Text sessions in the benchmark's HDF5 layout, diphone-encoded.

One folder per recording session, named like the real ones (t15.YYYY.MM.DD), holding
data_train.hdf5, data_val.hdf5 and data_test.hdf5. Each file has one group per trial,
trial_0000, trial_0001, ..., holding:
- input_features: float32 [n_time_steps x 512], the neural features in 20 ms bins;
- seq_class_ids: int32 [500], the trial's diphone ids, zero-padded (the CTC blank is 0);
- transcription: int32 [500], the sentence as ASCII codes, zero-padded;
- attributes n_time_steps, seq_len (diphones in seq_class_ids), sentence_label, session,
  block_num and trial_num.
The published test files carry no labels; these carry them by default (`test_labels`), so the
batch decode of a held-out session can be scored. `test_labels=False` writes the real test layout.

Diphones: with the benchmark's 41 phoneme classes (0 the CTC blank, 1..39 ARPAbet, 40 the
word-boundary silence ' | '), the diphone of a phoneme is 41 x previous + phoneme, with previous 0
at the start of a sentence: 1681 classes, 0 still the blank.

The signal: each phoneme has a fixed random pattern over the 512 features, held for 2 to 4 bins
and blended with the previous phoneme's on entry (so the diphone is visible in the data); each
session distorts every feature by its own gain and offset (what the model's day-specific input
layers undo); noise on top. Sentences of 2 or 3 words come from a 16-word vocabulary: about 70
distinct diphones occur, which the local profile's tiny GRU learns in 300 batches on a CPU.

    python -m include.datasets.brain_to_text data/brain_to_text --sessions 3 --train-trials 40
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

PHONEMES = (
    "BLANK",
    "AA", "AE", "AH", "AO", "AW", "AY", "B", "CH", "D", "DH",
    "EH", "ER", "EY", "F", "G", "HH", "IH", "IY", "JH", "K",
    "L", "M", "N", "NG", "OW", "OY", "P", "R", "S", "SH",
    "T", "TH", "UH", "UW", "V", "W", "Y", "Z", "ZH",
    " | ",
)
BLANK = 0
SILENCE = PHONEMES.index(" | ")
N_PHONEME_CLASSES = len(PHONEMES)  # 41
N_DIPHONE_CLASSES = N_PHONEME_CLASSES**2  # 1681
N_FEATURES = 512  # 2 features (threshold crossings, spike band power) x 256 electrodes
MAX_SEQ_ELEMENTS = 500  # seq_class_ids and transcription are zero-padded to this length
SPLITS = ("train", "val", "test")

# a small vocabulary with ARPAbet spellings (no stress marks, as the benchmark's phoneme set)
WORDS = {
    "i": "AY", "you": "Y UW", "want": "W AA N T", "need": "N IY D", "water": "W AO T ER",
    "help": "HH EH L P", "please": "P L IY Z", "now": "N AW", "more": "M AO R", "good": "G UH D",
    "bed": "B EH D", "the": "DH AH", "my": "M AY", "sit": "S IH T", "up": "AH P", "thank": "TH AE NG K",
}


def diphone_ids(phonemes: list[int]) -> list[int]:
    """Phoneme ids (1..40) -> diphone ids: 41 x previous + current, previous 0 at the start."""
    previous, out = BLANK, []
    for phoneme in phonemes:
        if not 0 < phoneme < N_PHONEME_CLASSES:
            raise ValueError(f"phoneme ids are 1..{N_PHONEME_CLASSES - 1}, got {phoneme}")
        out.append(previous * N_PHONEME_CLASSES + phoneme)
        previous = phoneme
    return out


def phonemes_of(diphones: list[int]) -> list[int]:
    """Diphone ids -> the phoneme each one ends in."""
    return [int(d) % N_PHONEME_CLASSES for d in diphones]


def sentence_phonemes(words: list[str]) -> list[int]:
    """A sentence's phoneme ids: each word's phonemes followed by the silence ' | ', as the benchmark writes them."""
    out = []
    for word in words:
        out += [PHONEMES.index(p) for p in WORDS[word].split()] + [SILENCE]
    return out


def _session_names(count: int) -> list[str]:
    # real sessions are dated t15.YYYY.MM.DD; these are a week apart from a fixed date
    start = np.datetime64("2025-01-06")
    return [f"t15.{str(start + np.timedelta64(7 * i, 'D')).replace('-', '.')}" for i in range(count)]


def _render(phonemes: list[int], prototypes: np.ndarray, gain: np.ndarray, offset: np.ndarray,
            rng: np.random.Generator, noise_std: float) -> np.ndarray:
    """[time x 512] features of one spoken phoneme sequence, with lead-in and trailing rest."""
    rows = [np.zeros((rng.integers(2, 6), N_FEATURES))]
    previous = None
    for phoneme in phonemes:
        held = np.repeat(prototypes[phoneme][None], rng.integers(2, 5), axis=0)
        if previous is not None:
            held[0] = 0.5 * held[0] + 0.5 * prototypes[previous]  # coarticulation: the diphone shows
        rows.append(held)
        previous = phoneme
    rows.append(np.zeros((rng.integers(2, 4), N_FEATURES)))
    clean = np.concatenate(rows)
    noisy = clean + rng.normal(0.0, noise_std, size=clean.shape)
    return (noisy * gain + offset).astype(np.float32)


def _padded(values: list[int]) -> np.ndarray:
    out = np.zeros(MAX_SEQ_ELEMENTS, dtype=np.int32)
    out[: len(values)] = values
    return out


def write_session_file(path: Path, session: str, trials: list[dict], *, labels: bool = True) -> Path:
    """One data_<split>.hdf5: a trial_NNNN group per trial, in the benchmark's layout."""
    import h5py

    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        for index, trial in enumerate(trials):
            group = f.create_group(f"trial_{index:04d}")
            group.create_dataset("input_features", data=trial["input_features"])
            group.attrs["n_time_steps"] = len(trial["input_features"])
            group.attrs["session"] = session
            group.attrs["block_num"] = trial["block_num"]
            group.attrs["trial_num"] = trial["trial_num"]
            if labels:
                diphones = trial["seq_class_ids"]
                group.create_dataset("seq_class_ids", data=_padded(diphones))
                group.create_dataset("transcription", data=_padded([ord(c) for c in trial["sentence_label"]]))
                group.attrs["seq_len"] = len(diphones)
                group.attrs["sentence_label"] = trial["sentence_label"]
    return path


def generate(
    out_dir: str | Path,
    sessions: int = 3,
    train_trials: int = 40,
    val_trials: int = 10,
    test_trials: int = 8,
    noise_std: float = 0.6,
    test_labels: bool = True,
    seed: int = 0,
) -> Path:
    """Write <out_dir>/<session>/data_{train,val,test}.hdf5 for `sessions` sessions; return out_dir."""
    counts = {"train": train_trials, "val": val_trials, "test": test_trials}
    if sessions < 1 or min(counts.values()) < 1:
        raise ValueError(f"sessions and trials per split must be at least 1, got sessions={sessions}, {counts}")
    out = Path(out_dir)
    rng = np.random.default_rng(seed)
    prototypes = rng.normal(0.0, 1.0, size=(N_PHONEME_CLASSES, N_FEATURES))
    vocabulary = sorted(WORDS)
    for session in _session_names(sessions):
        gain = rng.normal(1.0, 0.25, size=N_FEATURES)
        offset = rng.normal(0.0, 0.5, size=N_FEATURES)
        for block, split in enumerate(SPLITS, start=1):
            trials = []
            for number in range(counts[split]):
                words = list(rng.choice(vocabulary, size=rng.integers(2, 4)))
                phonemes = sentence_phonemes(words)
                trials.append({
                    "input_features": _render(phonemes, prototypes, gain, offset, rng, noise_std),
                    "seq_class_ids": diphone_ids(phonemes),
                    "sentence_label": " ".join(words).capitalize() + ".",
                    "block_num": block,
                    "trial_num": number,
                })
            labels = split != "test" or test_labels
            write_session_file(out / session / f"data_{split}.hdf5", session, trials, labels=labels)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out_dir", help="folder to write the session folders into (created if missing)")
    parser.add_argument("--sessions", type=int, default=3, help="recording sessions (days)")
    parser.add_argument("--train-trials", type=int, default=40, help="trials per session in data_train.hdf5")
    parser.add_argument("--val-trials", type=int, default=10, help="trials per session in data_val.hdf5")
    parser.add_argument("--test-trials", type=int, default=8, help="trials per session in data_test.hdf5")
    parser.add_argument("--noise-std", type=float, default=0.6, help="standard deviation of the feature noise")
    parser.add_argument("--unlabelled-test", action="store_true", help="leave labels out of data_test.hdf5, as published")
    parser.add_argument("--seed", type=int, default=0, help="random seed; the same seed writes the same trials")
    args = parser.parse_args(argv)
    out = generate(args.out_dir, args.sessions, args.train_trials, args.val_trials, args.test_trials,
                   args.noise_std, not args.unlabelled_test, args.seed)
    print(f"wrote {args.sessions} sessions x ({args.train_trials} train, {args.val_trials} val, "
          f"{args.test_trials} test) trials in the Brain-to-Text HDF5 layout to {out}")


if __name__ == "__main__":
    main()
