"""The synthetic CIFAR-10 generator writes files that read exactly like the published python batches."""
import pickle

import numpy as np
import pytest

from include.datasets import cifar10

REAL_LABEL_NAMES = [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse", b"ship", b"truck"]
PUBLISHED_FILES = {"data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch", "batches.meta"}


def read(path):
    # the loader from the CIFAR-10 page
    with open(path, "rb") as f:
        return pickle.load(f, encoding="bytes")


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory):
    return cifar10.generate(tmp_path_factory.mktemp("cifar10"), train_per_class=7, test_per_class=3, seed=0)


def test_generate_writes_the_published_file_set(dataset_dir):
    assert {p.name for p in dataset_dir.iterdir()} == PUBLISHED_FILES


def test_batches_read_like_real_cifar10(dataset_dir):
    train_labels = []
    for number in range(1, 6):
        batch = read(dataset_dir / f"data_batch_{number}")
        assert set(batch) == {b"batch_label", b"labels", b"data", b"filenames"}
        assert batch[b"batch_label"] == f"training batch {number} of 5".encode()
        assert batch[b"data"].dtype == np.uint8 and batch[b"data"].shape == (len(batch[b"labels"]), 3072)
        assert all(isinstance(name, bytes) and name.endswith(b".png") for name in batch[b"filenames"])
        assert len(batch[b"filenames"]) == len(batch[b"labels"])
        train_labels += batch[b"labels"]
    assert all(isinstance(label, int) for label in train_labels)
    assert np.bincount(train_labels).tolist() == [7] * 10  # balanced, every class present

    test = read(dataset_dir / "test_batch")
    assert test[b"batch_label"] == b"testing batch 1 of 1"
    assert test[b"data"].shape == (30, 3072) and np.bincount(test[b"labels"]).tolist() == [3] * 10

    meta = read(dataset_dir / "batches.meta")
    assert meta[b"label_names"] == REAL_LABEL_NAMES
    assert meta[b"num_vis"] == 3072 and meta[b"num_cases_per_batch"] == len(read(dataset_dir / "data_batch_1")[b"labels"])


def test_rows_hold_the_red_then_green_then_blue_plane():
    image = np.zeros((1, 32, 32, 3), np.uint8)
    image[..., 0], image[..., 1], image[..., 2] = 10, 20, 30
    image[0, 0, 1, 0] = 99  # row 0, column 1 of the red plane
    row = cifar10.to_cifar_rows(image)[0]
    assert row[1] == 99 and set(row[2:1024]) == {10} and set(row[1024:2048]) == {20} and set(row[2048:]) == {30}
    assert (row.reshape(3, 32, 32).transpose(1, 2, 0) == image[0]).all()  # the usual decoding gives it back


def test_same_seed_writes_identical_files(tmp_path):
    first = cifar10.generate(tmp_path / "a", train_per_class=2, test_per_class=1, seed=3)
    second = cifar10.generate(tmp_path / "b", train_per_class=2, test_per_class=1, seed=3)
    other = cifar10.generate(tmp_path / "c", train_per_class=2, test_per_class=1, seed=4)
    for name in PUBLISHED_FILES:
        assert (first / name).read_bytes() == (second / name).read_bytes()
    assert (first / "test_batch").read_bytes() != (other / "test_batch").read_bytes()


def test_classes_differ_and_images_vary():
    by_class = {}
    for name, image in cifar10.sample_images(40, seed=0):
        assert image.shape == (32, 32, 3) and image.dtype == np.uint8
        by_class.setdefault(name, []).append(image)
    assert sorted(by_class) == sorted(name.decode() for name in REAL_LABEL_NAMES)
    assert all(len(images) == 4 for images in by_class.values())
    # images of one class are not copies of each other (random place, size, colour and noise)
    assert not np.array_equal(by_class["cat"][0], by_class["cat"][1])


def test_cli_writes_the_data_set(tmp_path, capsys):
    cifar10.main([str(tmp_path / "out"), "--train-per-class", "2", "--test-per-class", "1"])
    assert {p.name for p in (tmp_path / "out").iterdir()} == PUBLISHED_FILES
    assert "20 training and 10 test images" in capsys.readouterr().out


def test_rejects_empty_classes(tmp_path):
    with pytest.raises(ValueError, match="at least 1"):
        cifar10.generate(tmp_path, train_per_class=0)
