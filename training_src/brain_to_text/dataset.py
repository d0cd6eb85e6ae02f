"""Brain-to-Text trials read on demand from HDF5 session files, in a local folder or under an s3:// prefix.

Layout (the benchmark's): <root>/<session>/data_<split>.hdf5 with one group per trial, trial_NNNN,
holding `input_features` [time x features], `seq_class_ids` (zero-padded labels, here diphone ids),
`transcription`, and attributes `n_time_steps`, `seq_len`, `sentence_label`, `session`, `block_num`,
`trial_num`. Test files carry no labels; `labels=False` reads them.

Nothing is downloaded whole. On S3 each file is opened through s3fs as a random-access file, and
h5py reads from it only the blocks (`block_size` bytes, kept in a small LRU cache of `cache_blocks`
per file) that a trial's header and data live in: a training job touches only the trials it
samples, however large the data set. A read that spans several missing blocks (a trial's features)
is one HTTP range request; the scattered small reads of HDF5 metadata cost one block each, which is
why the blocks are small. The same class reads a local folder (h5py on the files directly), so a
batch is the same whichever the source. Listing a file's trials reads the group's index, scattered
through the file: about one request per 4 trials, once per file when the store opens.

Inside a SageMaker job boto's usual credential chain applies; AWS_ENDPOINT_URL_S3 or AWS_ENDPOINT_URL,
when set (the local SageMaker sets the latter), point s3fs at another S3 endpoint.

A file that is not readable HDF5 (e.g. truncated) or a trial that lacks a field raises
TrialDataError naming the file and the trial, which fails the training job with that message.
"""
from __future__ import annotations

import math
import os
import re
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
from fsspec.caching import BaseCache, register_cache

SPLIT_FILES = {"train": "data_train.hdf5", "val": "data_val.hdf5", "test": "data_test.hdf5"}
TRIAL_KEY = re.compile(r"trial_\d+")
DEFAULT_BLOCK_SIZE = 8 * 2**10  # HDF5 metadata lies scattered in pieces of a few hundred bytes
DEFAULT_CACHE_BLOCKS = 512  # 4 MiB per open file with the default block size: a trial's features fit
LABEL_FIELDS = "input_features, seq_class_ids and transcription, with attributes n_time_steps, seq_len, block_num and trial_num"


class TrialDataError(ValueError):
    """A session file or trial that cannot be used; the message names the file and the trial."""


@dataclass
class Trial:
    session: str
    key: str  # the trial's group, e.g. "trial_0007"
    input_features: np.ndarray  # float32 [n_time_steps, n_features]
    seq_class_ids: np.ndarray | None  # int64 [seq_len], None in unlabelled (test) files
    block_num: int
    trial_num: int
    sentence_label: str | None


class CoalescingBlockCache(BaseCache):
    """fsspec cache for random access: fixed-size blocks in an LRU, and the missing blocks of one read
    fetched in one request per consecutive run (fsspec's blockcache asks for them one by one)."""

    name = "coalescing-blocks"

    def __init__(self, blocksize: int, fetcher, size: int, maxblocks: int = DEFAULT_CACHE_BLOCKS) -> None:
        super().__init__(blocksize, fetcher, size)
        self.maxblocks = maxblocks
        self.blocks: OrderedDict[int, bytes] = OrderedDict()

    def _fetch(self, start: int | None, end: int | None) -> bytes:
        start = start or 0
        end = self.size if end is None else min(end, self.size)
        if start >= end:
            return b""
        first, last = start // self.blocksize, (end - 1) // self.blocksize
        missing = [b for b in range(first, last + 1) if b not in self.blocks]
        if not missing:
            self.hit_count += 1
        runs: list[list[int]] = []
        for block in missing:
            if runs and block == runs[-1][-1] + 1:
                runs[-1].append(block)
            else:
                runs.append([block])
        for run in runs:
            run_start, run_end = run[0] * self.blocksize, min((run[-1] + 1) * self.blocksize, self.size)
            data = self.fetcher(run_start, run_end)
            self.miss_count += 1
            self.total_requested_bytes += run_end - run_start
            for offset, block in enumerate(run):
                self.blocks[block] = data[offset * self.blocksize:(offset + 1) * self.blocksize]
        parts = []
        for block in range(first, last + 1):
            self.blocks.move_to_end(block)
            parts.append(self.blocks[block])
        while len(self.blocks) > self.maxblocks:
            self.blocks.popitem(last=False)
        return b"".join(parts)[start - first * self.blocksize:end - first * self.blocksize]


register_cache(CoalescingBlockCache, clobber=True)  # clobber: the module may load under two names


def s3_filesystem():
    """s3fs for the job's S3: the default AWS endpoint, or the one AWS_ENDPOINT_URL(_S3) names."""
    import s3fs

    client_kwargs = {}
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    if endpoint:
        client_kwargs["endpoint_url"] = endpoint
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    if region:
        client_kwargs["region_name"] = region
    # a fresh instance: fsspec's cached one may belong to the parent of a DataLoader worker
    return s3fs.S3FileSystem(client_kwargs=client_kwargs, skip_instance_cache=True)


def _attr(group, name: str, where: str):
    if name not in group.attrs:
        raise TrialDataError(f"{where} lacks the attribute '{name}' (a trial needs {LABEL_FIELDS})")
    value = group.attrs[name]
    return value.decode() if isinstance(value, bytes) else value


def _dataset(group, name: str, where: str) -> np.ndarray:
    if name not in group:
        raise TrialDataError(f"{where} lacks the dataset '{name}' (a trial needs {LABEL_FIELDS})")
    try:
        return group[name][()]
    except (OSError, ValueError, KeyError) as error:
        raise TrialDataError(f"{where}: cannot read '{name}' ({error}); the file may be truncated or corrupt") from error


class SessionStore:
    """The trials of one split of every session under `root` (a folder or s3://bucket/prefix), read on demand.

    `trials[session]` lists each session's trial keys (sorted); `read(session, key)` returns a Trial.
    File handles open lazily in each process, so a store can be handed to DataLoader workers.
    """

    def __init__(self, root: str, split: str, *, sessions: list[str] | None = None, labels: bool = True,
                 n_features: int | None = None, n_classes: int | None = None, block_size: int = DEFAULT_BLOCK_SIZE,
                 cache_blocks: int = DEFAULT_CACHE_BLOCKS, filesystem=None, required: bool = True):
        if split not in SPLIT_FILES:
            raise ValueError(f"split must be one of {', '.join(SPLIT_FILES)}, got {split!r}")
        self.root = root.rstrip("/")
        self.split, self.labels, self.n_features, self.n_classes = split, labels, n_features, n_classes
        self.block_size, self.cache_blocks = block_size, cache_blocks
        self.remote = self.root.startswith("s3://")
        self._filesystem = filesystem
        self._handles: dict[str, tuple] = {}
        self._pid = os.getpid()
        self.paths = self._find_files(sessions, required)
        self.trials = {session: self._list_trials(session) for session in self.paths}

    # --- files ---------------------------------------------------------------------------------

    @property
    def filesystem(self):
        if self._filesystem is None:
            self._filesystem = s3_filesystem()
        return self._filesystem

    def _find_files(self, sessions: list[str] | None, required: bool) -> dict[str, str]:
        name = SPLIT_FILES[self.split]
        if self.remote:
            found = sorted(self.filesystem.glob(f"{self.root[len('s3://'):]}/*/{name}"))
            paths = {p.rstrip("/").split("/")[-2]: f"s3://{p}" for p in found}
        else:
            if not os.path.isdir(self.root):
                raise FileNotFoundError(f"The data folder {self.root} does not exist")
            paths = {s: os.path.join(self.root, s, name) for s in sorted(os.listdir(self.root))
                     if os.path.isfile(os.path.join(self.root, s, name))}
        if sessions is not None:
            missing = [s for s in sessions if s not in paths]
            if missing and required:
                raise FileNotFoundError(f"No {name} for session(s) {', '.join(missing)} under {self.root}; "
                                        f"sessions found: {', '.join(paths) or 'none'}")
            paths = {s: paths[s] for s in sessions if s in paths}
        if not paths and required:
            raise FileNotFoundError(f"No session folders holding {name} under {self.root}: expected "
                                    f"<session>/{name}, e.g. {self.root}/t15.2023.08.11/{name}")
        return paths

    def _file(self, session: str):
        if os.getpid() != self._pid:  # a forked DataLoader worker: its parent's handles are not its own
            self._handles, self._pid = {}, os.getpid()
            if self.remote:
                self._filesystem = None
        if session not in self._handles:
            import h5py

            path = self.paths[session]
            raw = None
            try:
                if self.remote:
                    raw = self.filesystem.open(path, "rb", block_size=self.block_size, cache_type=CoalescingBlockCache.name,
                                               cache_options={"maxblocks": self.cache_blocks})
                    handle = h5py.File(raw, "r")
                else:
                    handle = h5py.File(path, "r")
            except OSError as error:
                if raw is not None:
                    raw.close()
                raise TrialDataError(f"{path}: cannot be opened as HDF5 ({error}); the file may be truncated "
                                     "or not an HDF5 session file") from error
            self._handles[session] = (raw, handle)
        return self._handles[session][1]

    def _list_trials(self, session: str) -> list[str]:
        keys = sorted(k for k in self._file(session).keys() if TRIAL_KEY.fullmatch(k))
        if not keys:
            raise TrialDataError(f"{self.paths[session]}: holds no trial groups (trial_0000, trial_0001, ...)")
        return keys

    @property
    def bytes_fetched(self) -> int:
        """Bytes this process has requested from S3 for the files it opened (0 for a local folder)."""
        return sum(raw.cache.total_requested_bytes for raw, _ in self._handles.values() if raw is not None)

    def file_sizes(self) -> int:
        """Total size of the split's files, in bytes."""
        if self.remote:
            return sum(self.filesystem.size(p) for p in self.paths.values())
        return sum(os.path.getsize(p) for p in self.paths.values())

    def close(self) -> None:
        for raw, handle in self._handles.values():
            handle.close()
            if raw is not None:
                raw.close()
        self._handles = {}

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_handles"] = {}
        if self.remote:
            state["_filesystem"] = None  # rebuilt from the environment in the receiving process
        return state

    # --- trials --------------------------------------------------------------------------------

    def read(self, session: str, key: str) -> Trial:
        handle = self._file(session)
        where = f"{self.paths[session]}: {key}"
        if key not in handle:
            raise TrialDataError(f"{where} does not exist in the file")
        return read_trial(handle[key], where, session=session, labels=self.labels, n_features=self.n_features,
                          n_classes=self.n_classes)


def read_trial(group, where: str, *, session: str | None = None, labels: bool | None = True,
               n_features: int | None = None, n_classes: int | None = None) -> Trial:
    """One trial group as a Trial, checked; `labels` None reads them when the trial has them.

    `where` ("<file>: <trial>") starts every error message.
    """
    try:
        features = _dataset(group, "input_features", where)
        n_time_steps = int(_attr(group, "n_time_steps", where))
        if features.ndim != 2 or (n_features and features.shape[1] != n_features):
            raise TrialDataError(f"{where}: input_features has shape {features.shape}, expected "
                                 f"[time x {n_features or 'features'}]")
        if not 0 < n_time_steps <= features.shape[0]:
            raise TrialDataError(f"{where}: n_time_steps is {n_time_steps} but input_features has "
                                 f"{features.shape[0]} time steps")
        ids = None
        if labels or (labels is None and "seq_class_ids" in group):
            padded = _dataset(group, "seq_class_ids", where)
            seq_len = int(_attr(group, "seq_len", where))
            if not 0 < seq_len <= len(padded):
                raise TrialDataError(f"{where}: seq_len is {seq_len} but seq_class_ids holds {len(padded)} ids")
            ids = padded[:seq_len].astype(np.int64)
            if ids.min() <= 0:
                raise TrialDataError(f"{where}: seq_class_ids[:seq_len] holds the CTC blank 0 or a negative id")
            if n_classes and ids.max() >= n_classes:
                raise TrialDataError(f"{where}: seq_class_ids holds class {ids.max()}, beyond the model's {n_classes} "
                                     "classes (n-classes: 1681 for diphone labels, 41 for phoneme labels)")
        block_num = int(_attr(group, "block_num", where))
        trial_num = int(_attr(group, "trial_num", where))
        label = group.attrs.get("sentence_label")
        session = session or group.attrs.get("session")
    except OSError as error:  # h5py could not read the trial's header: a damaged file
        raise TrialDataError(f"{where}: cannot be read ({error}); the file may be truncated or corrupt") from error
    label = label.decode() if isinstance(label, bytes) else label
    session = session.decode() if isinstance(session, bytes) else session
    return Trial(str(session), group.name.strip("/"), np.asarray(features[:n_time_steps], dtype=np.float32), ids,
                 block_num, trial_num, None if label is None else str(label))


# --- batches ---------------------------------------------------------------------------------------

def train_batch_plan(store: SessionStore, batch_index: int, *, batch_size: int, days_per_batch: int,
                     seed: int) -> list[tuple[str, str]]:
    """The (session, trial) pairs of training batch `batch_index`: `days_per_batch` random sessions,
    trials drawn with replacement, evenly split between them (as the benchmark's trainer samples).

    A pure function of (seed, batch_index), so a job resumed at batch N draws what it would have drawn.
    """
    rng = np.random.default_rng([seed, batch_index])
    sessions = sorted(s for s, keys in store.trials.items() if keys)
    days = rng.choice(len(sessions), size=min(days_per_batch, len(sessions)), replace=False)
    per_day = math.ceil(batch_size / len(days))
    plan = [(sessions[d], store.trials[sessions[d]][i]) for d in days
            for i in rng.integers(0, len(store.trials[sessions[d]]), size=per_day)]
    return plan[:batch_size]


def eval_batch_plans(store: SessionStore, batch_size: int) -> list[list[tuple[str, str]]]:
    """Every trial once, in batches of one session each (up to batch_size trials)."""
    plans = []
    for session, keys in store.trials.items():
        for start in range(0, len(keys), batch_size):
            plans.append([(session, key) for key in keys[start:start + batch_size]])
    return plans


def collate(trials: list[Trial], day_of: dict[str, int]) -> dict:
    """Pad a list of trials into one batch of tensors (features and labels zero-padded)."""
    import torch

    longest = max(len(t.input_features) for t in trials)
    features = np.zeros((len(trials), longest, trials[0].input_features.shape[1]), dtype=np.float32)
    for row, trial in enumerate(trials):
        features[row, :len(trial.input_features)] = trial.input_features
    batch = {
        "input_features": torch.from_numpy(features),
        "n_time_steps": torch.tensor([len(t.input_features) for t in trials]),
        "day_indices": torch.tensor([day_of[t.session] for t in trials]),
        "trials": [(t.session, t.key, t.block_num, t.trial_num, t.sentence_label) for t in trials],
    }
    if all(t.seq_class_ids is not None for t in trials):
        labels = np.zeros((len(trials), max(len(t.seq_class_ids) for t in trials)), dtype=np.int64)
        for row, trial in enumerate(trials):
            labels[row, :len(trial.seq_class_ids)] = trial.seq_class_ids
        batch["seq_class_ids"] = torch.from_numpy(labels)
        batch["seq_lens"] = torch.tensor([len(t.seq_class_ids) for t in trials])
    return batch


class PlannedBatches:
    """A map-style dataset whose item i is the collated batch `plan(first + i)` (DataLoader batch_size=None)."""

    def __init__(self, store: SessionStore, day_of: dict[str, int], plan, count: int, first: int = 0):
        self.store, self.day_of, self.plan, self.count, self.first = store, day_of, plan, count, first

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < self.count:
            raise IndexError(index)
        pairs = self.plan(self.first + index)
        return collate([self.store.read(session, key) for session, key in pairs], self.day_of)
