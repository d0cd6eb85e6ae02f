"""The synthetic floor plans: the YOLO detection layout ultralytics reads, and boxes that are the rooms' floors."""
import numpy as np
import pytest
import yaml
from PIL import Image

from include.datasets import room_detection


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory):
    return room_detection.generate(tmp_path_factory.mktemp("rooms"), train=6, val=3, test=2, image_size=96, seed=0)


def read_labels(path):
    return [[float(v) for v in line.split()] for line in path.read_text().splitlines()]


def test_generate_writes_the_yolo_layout(dataset_dir):
    for split, count in (("train", 6), ("val", 3), ("test", 2)):
        images = sorted(p.name for p in (dataset_dir / "images" / split).iterdir())
        labels = sorted(p.name for p in (dataset_dir / "labels" / split).iterdir())
        assert images == [f"plan_{i:05d}.png" for i in range(count)]
        assert labels == [f"plan_{i:05d}.txt" for i in range(count)]
    config = yaml.safe_load((dataset_dir / "dataset.yaml").read_text())
    assert config == {"train": "images/train", "val": "images/val", "test": "images/test", "nc": 1, "names": {0: "room"}}


def test_ultralytics_accepts_the_data_set(dataset_dir, monkeypatch, tmp_path):
    monkeypatch.setenv("YOLO_OFFLINE", "1")
    monkeypatch.setenv("YOLO_CONFIG_DIR", str(tmp_path))
    import ultralytics.data.utils as data_utils

    monkeypatch.setattr(data_utils, "check_font", lambda *a, **k: None)  # fonts are for plots, and need the network
    data = data_utils.check_det_dataset(str(dataset_dir / "dataset.yaml"))
    assert data["nc"] == 1 and data["names"] == {0: "room"}
    assert data["train"] == str((dataset_dir / "images" / "train").resolve())


def test_labels_are_normalised_yolo_lines(dataset_dir):
    for label_file in (dataset_dir / "labels" / "train").iterdir():
        rows = read_labels(label_file)
        assert 2 <= len(rows) <= 7
        for cls, cx, cy, w, h in rows:
            assert cls == 0
            assert 0 < w <= 1 and 0 < h <= 1
            assert 0 <= cx - w / 2 and cx + w / 2 <= 1 and 0 <= cy - h / 2 and cy + h / 2 <= 1


@pytest.mark.parametrize("seed", range(5))
def test_boxes_are_room_floors_bounded_by_walls(seed):
    plan = room_detection.sample_plans(1, seed=seed, size=160)[0]
    dark = plan.image.astype(float).mean(axis=2) < 110  # walls are ink of 10-80 grey; floors 190 and up
    for x1, y1, x2, y2 in plan.boxes.astype(int):
        inside = dark[y1:y2, x1:x2]
        frame = np.concatenate([dark[y1 - 1, x1:x2], dark[y2, x1:x2], dark[y1:y2, x1 - 1], dark[y1:y2, x2]])
        assert inside.mean() < 0.1  # no wall runs through a room (furniture outlines are mid grey)
        assert frame.mean() > 0.6  # walls all round, but for door gaps
    # rooms do not overlap: they tile the building
    boxes = plan.boxes
    for i in range(len(boxes)):
        for j in range(i + 1, len(boxes)):
            a, b = boxes[i], boxes[j]
            assert min(a[2], b[2]) <= max(a[0], b[0]) or min(a[3], b[3]) <= max(a[1], b[1])


def test_label_lines_round_trip_to_pixel_boxes(dataset_dir):
    image = Image.open(dataset_dir / "images" / "val" / "plan_00000.png")
    assert image.size == (96, 96) and image.mode == "RGB"
    lines = room_detection.yolo_label_lines(np.array([[10, 20, 50, 80]]), 100, 200)
    assert lines == ["0 0.300000 0.250000 0.400000 0.300000"]


def test_same_seed_writes_identical_files(tmp_path):
    first = room_detection.generate(tmp_path / "a", train=2, val=1, test=1, image_size=64, seed=3)
    second = room_detection.generate(tmp_path / "b", train=2, val=1, test=1, image_size=64, seed=3)
    other = room_detection.generate(tmp_path / "c", train=2, val=1, test=1, image_size=64, seed=4)
    files = sorted(p.relative_to(first) for p in first.rglob("*") if p.is_file())
    assert len(files) == 9
    assert all((first / f).read_bytes() == (second / f).read_bytes() for f in files)
    assert (first / "images/train/plan_00000.png").read_bytes() != (other / "images/train/plan_00000.png").read_bytes()


def test_plans_vary():
    plans = room_detection.sample_plans(6, seed=0, size=128)
    assert len({len(p.boxes) for p in plans}) > 1
    assert not np.array_equal(plans[0].image, plans[1].image)
    assert all(p.image.shape == (128, 128, 3) and p.image.dtype == np.uint8 for p in plans)


def test_split_counts_read_any_prefix():
    paths = ["dataset.yaml", "images/train/a.png", "images/train/b.jpg", "labels/train/a.txt", "labels/train/b.txt",
             "images/val/c.png", "labels/val/c.txt", "labels/val/c.cache", "images/train/notes.md",
             "x/images/test/d.PNG", "images/train/nested/e.png"]
    assert room_detection.split_counts(paths) == {
        "train": {"images": 2, "labels": 2}, "val": {"images": 1, "labels": 1}, "test": {"images": 1, "labels": 0}}
    assert room_detection.describe_counts(room_detection.split_counts(paths)).startswith("train: 2 images, 2 labels; val: 1")


def test_check_splits_names_what_is_missing():
    room_detection.check_splits({"train": {"images": 2, "labels": 2}, "val": {"images": 1, "labels": 1}})
    with pytest.raises(ValueError, match=r"s3://b/data cannot train a detector: no images in images/val/"):
        room_detection.check_splits({"train": {"images": 2, "labels": 2}, "val": {"images": 0, "labels": 0}}, "s3://b/data")
    with pytest.raises(ValueError, match="no label files in labels/train/"):
        room_detection.check_splits({"train": {"images": 2, "labels": 0}, "val": {"images": 1, "labels": 1}})


def test_cli_writes_the_data_set_and_reports_counts(tmp_path, capsys):
    room_detection.main([str(tmp_path / "out"), "--train", "3", "--val", "2", "--test", "1", "--image-size", "64"])
    assert (tmp_path / "out" / "dataset.yaml").is_file()
    assert "train: 3 images, 3 labels; val: 2 images, 2 labels; test: 1 images, 1 labels" in capsys.readouterr().out


def test_rejects_bad_sizes_and_counts(tmp_path):
    with pytest.raises(ValueError, match="at least 64 pixels"):
        room_detection.sample_plans(1, size=32)
    with pytest.raises(ValueError, match="at least 1 train and 1 val image"):
        room_detection.generate(tmp_path, train=0)
