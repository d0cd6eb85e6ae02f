"""The synthetic Brain-to-Text sessions and the dataset that reads them from a folder or streams them from S3."""
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from include.datasets import brain_to_text as generator
from tests.conftest import TEST_BUCKET
from tests.source_modules import import_source as _import_source

SOURCE_DIR = Path(__file__).resolve().parents[2] / "training_src" / "brain_to_text"
SESSIONS = ["t15.2025.01.06", "t15.2025.01.13"]


def import_source(name: str, directory: Path = SOURCE_DIR):
    return _import_source(name, directory)


@pytest.fixture(scope="module")
def dataset():
    return import_source("dataset")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return generator.generate(tmp_path_factory.mktemp("b2t"), sessions=2, train_trials=12, val_trials=4, test_trials=3)


def _copy(data_dir: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(data_dir, tmp_path / "data"))


# ---- the generator: the benchmark's layout, diphone-encoded


def test_generator_writes_each_session_split_in_the_benchmark_layout(data_dir):
    import h5py

    assert sorted(p.name for p in data_dir.iterdir()) == SESSIONS
    assert sorted(p.name for p in (data_dir / SESSIONS[0]).iterdir()) == ["data_test.hdf5", "data_train.hdf5", "data_val.hdf5"]
    with h5py.File(data_dir / SESSIONS[1] / "data_train.hdf5") as f:
        assert sorted(f.keys()) == [f"trial_{i:04d}" for i in range(12)]
        trial = f["trial_0003"]
        assert sorted(trial.keys()) == ["input_features", "seq_class_ids", "transcription"]
        features, ids, text = trial["input_features"][()], trial["seq_class_ids"][()], trial["transcription"][()]
        attrs = dict(trial.attrs)
    assert features.dtype == np.float32 and features.shape == (attrs["n_time_steps"], 512)
    assert ids.shape == text.shape == (generator.MAX_SEQ_ELEMENTS,)
    assert attrs["session"] == SESSIONS[1] and attrs["block_num"] == 1 and attrs["trial_num"] == 3
    assert 0 < attrs["seq_len"] and not ids[attrs["seq_len"]:].any() and ids[:attrs["seq_len"]].all()
    assert "".join(map(chr, text[text > 0])) == attrs["sentence_label"]
    # the labels are the diphones of the sentence's phonemes
    words = attrs["sentence_label"].rstrip(".").lower().split()
    assert ids[:attrs["seq_len"]].tolist() == generator.diphone_ids(generator.sentence_phonemes(words))


def test_diphone_ids_encode_previous_and_current_phoneme():
    phonemes = generator.sentence_phonemes(["need", "help"])  # N IY D | HH EH L P |
    diphones = generator.diphone_ids(phonemes)
    n = generator.PHONEMES.index("N")
    assert diphones[0] == n and diphones[1] == 41 * n + generator.PHONEMES.index("IY")
    assert generator.phonemes_of(diphones) == phonemes
    assert max(diphones) < generator.N_DIPHONE_CLASSES == 1681 and generator.BLANK not in diphones
    with pytest.raises(ValueError, match="phoneme ids are 1..40"):
        generator.diphone_ids([0])


def test_generator_and_decoder_share_the_phoneme_table():
    assert tuple(import_source("model").PHONEMES) == generator.PHONEMES


def test_same_seed_writes_the_same_trials_and_test_labels_are_optional(tmp_path, data_dir, dataset):
    again = generator.generate(tmp_path / "again", sessions=2, train_trials=12, val_trials=4, test_trials=3)
    a, b = dataset.SessionStore(str(data_dir), "train"), dataset.SessionStore(str(again), "train")
    assert np.array_equal(a.read(SESSIONS[0], "trial_0005").input_features, b.read(SESSIONS[0], "trial_0005").input_features)

    unlabelled = generator.generate(tmp_path / "unlabelled", sessions=1, train_trials=1, val_trials=1, test_trials=2,
                                    test_labels=False)
    store = dataset.SessionStore(str(unlabelled), "test", labels=False)
    trial = store.read(SESSIONS[0], "trial_0001")
    assert trial.seq_class_ids is None and trial.sentence_label is None and trial.input_features.shape[1] == 512


def test_generator_cli(tmp_path):
    result = subprocess.run([sys.executable, "-m", "include.datasets.brain_to_text", str(tmp_path / "out"), "--sessions", "1",
                             "--train-trials", "2", "--val-trials", "1", "--test-trials", "1", "--unlabelled-test"],
                            capture_output=True, text=True, cwd=Path(__file__).resolve().parents[2], timeout=120)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "out" / SESSIONS[0] / "data_test.hdf5").is_file()
    assert "1 sessions x (2 train, 1 val, 1 test)" in result.stdout


# ---- reading a local folder


def test_store_lists_sessions_and_trials_and_reads_one(data_dir, dataset):
    store = dataset.SessionStore(str(data_dir), "val", n_features=512, n_classes=1681)
    assert list(store.paths) == SESSIONS and store.trials[SESSIONS[0]] == [f"trial_{i:04d}" for i in range(4)]
    trial = store.read(SESSIONS[0], "trial_0002")
    assert trial.session == SESSIONS[0] and trial.key == "trial_0002" and trial.block_num == 2
    assert trial.seq_class_ids.dtype == np.int64 and trial.seq_class_ids.min() > 0 and trial.sentence_label.endswith(".")
    only = dataset.SessionStore(str(data_dir), "train", sessions=[SESSIONS[1]])
    assert list(only.paths) == [SESSIONS[1]]


def test_a_missing_session_or_folder_is_named(data_dir, dataset, tmp_path):
    with pytest.raises(FileNotFoundError, match=r"No data_train.hdf5 for session\(s\) t15.1999.01.01 .* sessions found: t15.2025.01.06"):
        dataset.SessionStore(str(data_dir), "train", sessions=["t15.1999.01.01"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="No session folders holding data_train.hdf5 under .*empty"):
        dataset.SessionStore(str(tmp_path / "empty"), "train")


def test_a_trial_missing_a_field_names_the_file_and_the_trial(data_dir, dataset, tmp_path):
    import h5py

    data = _copy(data_dir, tmp_path)
    path = data / SESSIONS[0] / "data_train.hdf5"
    with h5py.File(path, "a") as f:
        del f["trial_0004/seq_class_ids"]
        del f["trial_0006"].attrs["n_time_steps"]
    store = dataset.SessionStore(str(data), "train")
    with pytest.raises(dataset.TrialDataError) as missing_dataset:
        store.read(SESSIONS[0], "trial_0004")
    assert str(missing_dataset.value).startswith(f"{path}: trial_0004 lacks the dataset 'seq_class_ids'")
    with pytest.raises(dataset.TrialDataError, match=f"{path}: trial_0006 lacks the attribute 'n_time_steps'"):
        store.read(SESSIONS[0], "trial_0006")
    store.read(SESSIONS[0], "trial_0005")  # the others still read


def test_labels_beyond_the_class_count_are_refused(data_dir, dataset):
    store = dataset.SessionStore(str(data_dir), "train", n_classes=41)  # phoneme classes: these labels are diphones
    with pytest.raises(dataset.TrialDataError, match=r"trial_0000: seq_class_ids holds class \d+, beyond the model's 41 classes"):
        store.read(SESSIONS[0], "trial_0000")


def test_a_truncated_file_is_named_when_the_store_opens_it(data_dir, dataset, tmp_path):
    data = _copy(data_dir, tmp_path)
    path = data / SESSIONS[1] / "data_train.hdf5"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(dataset.TrialDataError, match=f"{path}: cannot be opened as HDF5 .*truncated"):
        dataset.SessionStore(str(data), "train")


# ---- batches


def test_training_batches_are_a_pure_function_of_seed_and_index(data_dir, dataset):
    store = dataset.SessionStore(str(data_dir), "train")
    plan = dict(batch_size=6, days_per_batch=2, seed=3)
    first = dataset.train_batch_plan(store, 7, **plan)
    assert first == dataset.train_batch_plan(store, 7, **plan) != dataset.train_batch_plan(store, 8, **plan)
    assert len(first) == 6 and {session for session, _ in first} == set(SESSIONS)  # 3 trials from each of 2 days
    assert len({s for s, _ in dataset.train_batch_plan(store, 7, batch_size=6, days_per_batch=1, seed=3)}) == 1


def test_evaluation_batches_hold_every_trial_once_one_session_each(data_dir, dataset):
    store = dataset.SessionStore(str(data_dir), "val")
    plans = dataset.eval_batch_plans(store, batch_size=3)
    assert [len(p) for p in plans] == [3, 1, 3, 1]
    assert all(len({s for s, _ in p}) == 1 for p in plans)
    assert sorted(pair for p in plans for pair in p) == sorted((s, k) for s in SESSIONS for k in store.trials[s])


def test_collate_pads_features_and_labels(data_dir, dataset):
    store = dataset.SessionStore(str(data_dir), "train")
    trials = [store.read(SESSIONS[0], "trial_0000"), store.read(SESSIONS[1], "trial_0001")]
    batch = dataset.collate(trials, {SESSIONS[0]: 0, SESSIONS[1]: 1})
    longest = max(len(t.input_features) for t in trials)
    assert tuple(batch["input_features"].shape) == (2, longest, 512)
    assert batch["day_indices"].tolist() == [0, 1]
    assert batch["seq_lens"].tolist() == [len(t.seq_class_ids) for t in trials]
    short = int(np.argmin([len(t.input_features) for t in trials]))
    assert not batch["input_features"][short, len(trials[short].input_features):].any()


def test_block_cache_fetches_missing_runs_in_one_request_and_evicts_least_recent(dataset):
    data = bytes(range(256)) * 64  # 16 KiB
    requests = []

    def fetch(start, end):
        requests.append((start, end))
        return data[start:end]

    cache = dataset.CoalescingBlockCache(1024, fetch, len(data), maxblocks=4)
    assert cache._fetch(100, 3000) == data[100:3000] and requests == [(0, 3072)]  # blocks 0-2, one request
    assert cache._fetch(1500, 2000) == data[1500:2000] and len(requests) == 1  # cached
    assert cache._fetch(2000, 5000) == data[2000:5000] and requests[-1] == (3072, 5120)  # only the missing run
    assert cache._fetch(16000, 17000) == data[16000:] and requests[-1] == (15360, 16384)
    assert sorted(cache.blocks) == [2, 3, 4, 15] and cache.total_requested_bytes == 3072 + 2048 + 1024


# ---- streaming from S3 (the emulator's S3)


class CountingS3FileSystem:
    """s3fs that counts the bytes every GetObject returns: what went over the wire, not what the cache says."""

    def __new__(cls, endpoint_url: str):
        import s3fs

        class Counting(s3fs.S3FileSystem):
            bytes_fetched = 0
            requests = 0

            async def _call_s3(self, method, *args, **kwargs):
                response = await super()._call_s3(method, *args, **kwargs)
                if method == "get_object":
                    type(self).bytes_fetched += response["ContentLength"]
                    type(self).requests += 1
                return response

        return Counting(client_kwargs={"endpoint_url": endpoint_url, "region_name": "us-east-1"}, key="testing",
                        secret="testing", skip_instance_cache=True)


@pytest.fixture(scope="module")
def s3_data(s3_client, data_dir):
    prefix = "brain-to-text/data"
    for path in sorted(data_dir.rglob("*.hdf5")):
        s3_client.upload_file(str(path), TEST_BUCKET, f"{prefix}/{path.relative_to(data_dir).as_posix()}")
    return f"s3://{TEST_BUCKET}/{prefix}"


def test_streaming_reads_a_small_fraction_of_a_large_session_file(emulator, s3_client, dataset, tmp_path):
    big = generator.generate(tmp_path / "big", sessions=1, train_trials=400, val_trials=1, test_trials=1, seed=5)
    path = big / SESSIONS[0] / "data_train.hdf5"
    s3_client.upload_file(str(path), TEST_BUCKET, f"big/{SESSIONS[0]}/data_train.hdf5")
    size = path.stat().st_size
    assert size > 20_000_000

    filesystem = CountingS3FileSystem(emulator.endpoint_url)
    store = dataset.SessionStore(f"s3://{TEST_BUCKET}/big", "train", block_size=4096, filesystem=filesystem)
    listed = type(filesystem).bytes_fetched
    trials = [store.read(SESSIONS[0], key) for key in ("trial_0007", "trial_0200", "trial_0399")]
    fetched = type(filesystem).bytes_fetched

    local = dataset.SessionStore(str(big), "train")
    for trial in trials:
        assert np.array_equal(trial.input_features, local.read(SESSIONS[0], trial.key).input_features)
    trial_bytes = sum(t.input_features.nbytes for t in trials)
    assert len(store.trials[SESSIONS[0]]) == 400
    # opening the file, listing its 400 trials and reading 3 of them: a few percent of the file
    assert fetched < 0.03 * size, f"fetched {fetched} of {size} bytes"
    assert fetched - listed < 1.5 * trial_bytes, f"3 trials of {trial_bytes} bytes cost {fetched - listed} bytes"
    assert store.bytes_fetched == fetched  # the store's own count (fsspec's) agrees with what S3 sent


def test_streamed_batches_equal_the_local_folders(emulator, s3_data, data_dir, dataset, monkeypatch):
    import torch

    monkeypatch.setenv("AWS_ENDPOINT_URL", emulator.endpoint_url)  # what the local SageMaker gives a job
    remote = dataset.SessionStore(s3_data, "train", n_classes=1681)
    local = dataset.SessionStore(str(data_dir), "train", n_classes=1681)
    assert remote.remote and remote.trials == local.trials and list(remote.paths) == SESSIONS
    day_of = {s: i for i, s in enumerate(SESSIONS)}
    for index in (0, 5):
        pairs = dataset.train_batch_plan(remote, index, batch_size=5, days_per_batch=2, seed=1)
        assert pairs == dataset.train_batch_plan(local, index, batch_size=5, days_per_batch=2, seed=1)
        a = dataset.collate([remote.read(*p) for p in pairs], day_of)
        b = dataset.collate([local.read(*p) for p in pairs], day_of)
        for key in ("input_features", "n_time_steps", "day_indices", "seq_class_ids", "seq_lens"):
            assert torch.equal(a[key], b[key]), key
    assert remote.bytes_fetched > 0 and local.bytes_fetched == 0


def test_a_store_travels_to_dataloader_workers(emulator, s3_data, dataset, monkeypatch):
    import torch

    monkeypatch.setenv("AWS_ENDPOINT_URL", emulator.endpoint_url)
    store = dataset.SessionStore(s3_data, "val")
    plans = dataset.eval_batch_plans(store, batch_size=4)
    batches = dataset.PlannedBatches(store, {s: i for i, s in enumerate(SESSIONS)}, plans.__getitem__, len(plans))
    loader = torch.utils.data.DataLoader(batches, batch_size=None, num_workers=2)
    seen = [key for batch in loader for _, key, *_ in batch["trials"]]
    assert sorted(seen) == sorted(k for s in SESSIONS for k in store.trials[s])
