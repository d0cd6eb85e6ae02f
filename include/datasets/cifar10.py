"""A small synthetic CIFAR-10 in the real "python version" batch format (cifar-10-batches-py).

Files written, as published: data_batch_1..5, test_batch and batches.meta, each a pickled dict
with bytes keys (read them with ``pickle.load(f, encoding="bytes")``): b"data" uint8 [N, 3072]
holding each 32x32 image as its red, green then blue plane, row by row; b"labels" (ints);
b"filenames" and b"batch_label" (bytes). batches.meta holds b"label_names", b"num_cases_per_batch"
and b"num_vis".

Each class is a coloured shape of its own (a red square for "automobile", a yellow triangle for
"bird", ...) at a random place and size, with colour jitter, on a noisy background: easy enough
for ResNet-18 to learn in an epoch or two on a CPU, hard enough that an untrained model is at chance.

    python -m include.datasets.cifar10 data/cifar10 --train-per-class 60 --test-per-class 20
"""
from __future__ import annotations

import argparse
import pickle
from pathlib import Path

import numpy as np

LABEL_NAMES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
IMAGE_SIZE = 32
TRAIN_BATCHES = 5
DEFAULT_TRAIN_PER_CLASS = 60
DEFAULT_TEST_PER_CLASS = 20

# (shape, RGB colour) per class; colour and shape are two independent cues
CLASS_STYLES = {
    "airplane": ("cross", (235, 235, 235)),
    "automobile": ("square", (220, 30, 30)),
    "bird": ("triangle", (240, 220, 40)),
    "cat": ("circle", (245, 135, 20)),
    "deer": ("diamond", (130, 80, 35)),
    "dog": ("ring", (200, 40, 200)),
    "frog": ("checker", (40, 200, 60)),
    "horse": ("horizontal_stripes", (30, 50, 210)),
    "ship": ("vertical_stripes", (40, 200, 225)),
    "truck": ("x", (25, 25, 25)),
}


def _shape_mask(shape: str, dx: np.ndarray, dy: np.ndarray, radius: float) -> np.ndarray:
    """Pixels covered by `shape` centred at dx = dy = 0 with half-size `radius`."""
    ax, ay = np.abs(dx), np.abs(dy)
    in_square = (ax <= radius) & (ay <= radius)
    bar = radius * 0.3
    if shape == "square":
        return in_square
    if shape == "circle":
        return dx**2 + dy**2 <= radius**2
    if shape == "ring":
        return (dx**2 + dy**2 <= radius**2) & (dx**2 + dy**2 >= (radius * 0.55) ** 2)
    if shape == "triangle":
        return (ay <= radius) & (ax <= (dy + radius) / 2)
    if shape == "diamond":
        return ax + ay <= radius
    if shape == "cross":
        return ((ax <= bar) & (ay <= radius)) | ((ay <= bar) & (ax <= radius))
    if shape == "x":
        return in_square & (np.abs(ax - ay) <= bar)
    if shape == "checker":
        return in_square & ((np.floor(dx / 4) + np.floor(dy / 4)) % 2 == 0)
    if shape == "horizontal_stripes":
        return in_square & (np.floor(dy / 3) % 2 == 0)
    if shape == "vertical_stripes":
        return in_square & (np.floor(dx / 3) % 2 == 0)
    raise ValueError(f"unknown shape {shape!r}")


def render(label_name: str, rng: np.random.Generator) -> np.ndarray:
    """One 32x32x3 uint8 image of class `label_name`."""
    shape, colour = CLASS_STYLES[label_name]
    # background: a greyish random tint with a gentle gradient, so no class owns a background colour
    tint = rng.uniform(60, 170) + rng.uniform(-20, 20, size=3)
    ramp = np.linspace(-1, 1, IMAGE_SIZE)
    gradient = rng.uniform(-25, 25) * ramp[:, None] + rng.uniform(-25, 25) * ramp[None, :]
    image = tint[None, None, :] + gradient[:, :, None]

    radius = rng.uniform(6, 12)
    cx, cy = rng.uniform(radius - 2, IMAGE_SIZE - radius + 2, size=2)
    ys, xs = np.mgrid[0:IMAGE_SIZE, 0:IMAGE_SIZE] + 0.5
    mask = _shape_mask(shape, xs - cx, ys - cy, radius)
    object_colour = np.clip(np.asarray(colour, dtype=float) + rng.normal(0, 15, size=3), 0, 255)
    image[mask] = object_colour

    image += rng.normal(0, 12, size=image.shape)
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


def sample_images(n: int = 10, seed: int = 1) -> list[tuple[str, np.ndarray]]:
    """`n` (label_name, HxWx3 uint8 image) pairs cycling through the classes, for smoke tests."""
    rng = np.random.default_rng(seed)
    names = [LABEL_NAMES[i % len(LABEL_NAMES)] for i in range(n)]
    return [(name, render(name, rng)) for name in names]


def to_cifar_rows(images: np.ndarray) -> np.ndarray:
    """[N, 32, 32, 3] -> [N, 3072] with the red plane first, then green, then blue (CIFAR's order)."""
    return np.ascontiguousarray(images.transpose(0, 3, 1, 2).reshape(len(images), -1))


def _render_split(per_class: int, rng: np.random.Generator, prefix: str) -> tuple[np.ndarray, list[int], list[bytes]]:
    labels = np.repeat(np.arange(len(LABEL_NAMES)), per_class)
    rng.shuffle(labels)
    images = np.stack([render(LABEL_NAMES[label], rng) for label in labels])
    filenames = [f"{prefix}_{LABEL_NAMES[label]}_s_{i:06d}.png".encode() for i, label in enumerate(labels)]
    return to_cifar_rows(images), [int(label) for label in labels], filenames


def _write_pickle(path: Path, content: dict) -> None:
    with open(path, "wb") as f:
        pickle.dump(content, f, protocol=4)


def generate(
    out_dir: str | Path,
    train_per_class: int = DEFAULT_TRAIN_PER_CLASS,
    test_per_class: int = DEFAULT_TEST_PER_CLASS,
    seed: int = 0,
) -> Path:
    """Write data_batch_1..5, test_batch and batches.meta into `out_dir`; return it."""
    if train_per_class < 1 or test_per_class < 1:
        raise ValueError(f"train_per_class and test_per_class must be at least 1, got {train_per_class} and {test_per_class}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)

    data, labels, filenames = _render_split(train_per_class, rng, "train")
    bounds = np.linspace(0, len(labels), TRAIN_BATCHES + 1).astype(int)
    for number, (start, stop) in enumerate(zip(bounds[:-1], bounds[1:]), start=1):
        _write_pickle(out / f"data_batch_{number}", {
            b"batch_label": f"training batch {number} of {TRAIN_BATCHES}".encode(),
            b"labels": labels[start:stop],
            b"data": data[start:stop],
            b"filenames": filenames[start:stop],
        })

    data, labels, filenames = _render_split(test_per_class, rng, "test")
    _write_pickle(out / "test_batch", {
        b"batch_label": b"testing batch 1 of 1",
        b"labels": labels,
        b"data": data,
        b"filenames": filenames,
    })
    _write_pickle(out / "batches.meta", {
        b"num_cases_per_batch": int(bounds[1] - bounds[0]),
        b"label_names": [name.encode() for name in LABEL_NAMES],
        b"num_vis": IMAGE_SIZE * IMAGE_SIZE * 3,
    })
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out_dir", help="folder to write the batch files into (created if missing)")
    parser.add_argument("--train-per-class", type=int, default=DEFAULT_TRAIN_PER_CLASS, help="training images per class")
    parser.add_argument("--test-per-class", type=int, default=DEFAULT_TEST_PER_CLASS, help="test images per class")
    parser.add_argument("--seed", type=int, default=0, help="random seed; the same seed writes the same files")
    args = parser.parse_args(argv)
    out = generate(args.out_dir, args.train_per_class, args.test_per_class, args.seed)
    print(f"wrote {args.train_per_class * len(LABEL_NAMES)} training and {args.test_per_class * len(LABEL_NAMES)} "
          f"test images in CIFAR-10 python batch format to {out}")


if __name__ == "__main__":
    main()
