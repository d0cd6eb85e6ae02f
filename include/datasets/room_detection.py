"""Small synthetic floor plans with YOLO labels, in the layout ultralytics trains from.

Written, as a YOLO detection data set is published:

    dataset.yaml                    names: {0: room}; train/val/test: images/<split> (paths relative
                                    to the file's own folder, so the set works wherever it is copied)
    images/<split>/plan_00000.png   one floor plan per image
    labels/<split>/plan_00000.txt   one line per room: "0 x_center y_center width height", each in
                                    0-1 of the image's width or height

Each plan is a building outline cut into rectangular rooms (2 to 7) by dark walls of a few pixels,
with door gaps in the inner walls, on paper of a random tint with a little noise and furniture-like
clutter. A room's box is its floor: the pixels between its walls. Rooms are large and
high-contrast, so YOLOv8n learns to find them in a few CPU epochs; an untrained one finds none.

    python -m include.datasets.room_detection data/room_detection --train 64 --val 16 --test 8
"""
from __future__ import annotations

import argparse
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

CLASS_NAMES = ("room",)
SPLITS = ("train", "val", "test")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
DEFAULT_COUNTS = {"train": 64, "val": 16, "test": 8}
DEFAULT_IMAGE_SIZE = 128  # as the local profile trains (imgsz 128)
MIN_IMAGE_SIZE = 64

DATASET_YAML = """\
# Synthetic floor plans (include/datasets/room_detection.py), YOLO detection format.
# No `path:` key: ultralytics then reads the splits relative to this file's folder.
train: images/train
val: images/val
test: images/test
nc: {nc}
names:
{names}
"""


@dataclass(frozen=True)
class FloorPlan:
    image: np.ndarray  # HxWx3 uint8
    boxes: np.ndarray  # [rooms, 4] float: x1, y1, x2, y2 in pixels (x2, y2 exclusive: the room's pixel edges)


def _split_rooms(outline: tuple[int, int, int, int], rooms: int, min_side: int, wall: int,
                 rng: np.random.Generator) -> tuple[list[tuple[int, int, int, int]], list[tuple[str, int, int, int]]]:
    """Cut `outline` (wall lines x1, y1, x2, y2) into up to `rooms` rectangles; returns them and the inner walls.

    Coordinates are wall lines: a wall at c covers pixels [c, c + wall). A room between lines a and b
    has floor pixels [a + wall, b).
    """
    cells = [outline]
    walls: list[tuple[str, int, int, int]] = []  # ("v", x, y1, y2) or ("h", y, x1, x2)
    while len(cells) < rooms:
        # split the largest cell that can hold two rooms of min_side along its longer side
        candidates = sorted(((c[2] - c[0]) * (c[3] - c[1]), i) for i, c in enumerate(cells)
                            if max(c[2] - c[0], c[3] - c[1]) >= 2 * (min_side + wall))
        if not candidates:
            break
        _, index = candidates[-1]
        x1, y1, x2, y2 = cells.pop(index)
        vertical = (x2 - x1) >= (y2 - y1)
        low, high = (x1, x2) if vertical else (y1, y2)
        cut = int(rng.integers(low + min_side + wall, high - min_side - wall + 1))
        if vertical:
            cells += [(x1, y1, cut, y2), (cut, y1, x2, y2)]
            walls.append(("v", cut, y1, y2))
        else:
            cells += [(x1, y1, x2, cut), (x1, cut, x2, y2)]
            walls.append(("h", cut, x1, x2))
    return cells, walls


def render_floor_plan(rng: np.random.Generator, size: int = DEFAULT_IMAGE_SIZE) -> FloorPlan:
    """One size x size floor plan and the boxes of its rooms."""
    if size < MIN_IMAGE_SIZE:
        raise ValueError(f"image size must be at least {MIN_IMAGE_SIZE} pixels, got {size}")
    wall = max(2, round(size * rng.uniform(0.012, 0.025)))
    paper = rng.uniform(225, 255) + rng.uniform(-8, 8, size=3)
    image = np.empty((size, size, 3), dtype=float)
    image[:] = paper

    # the building: a random rectangle covering most of the sheet
    margin = lambda: int(rng.integers(round(size * 0.03), round(size * 0.15)))  # noqa: E731
    outline = (margin(), margin(), size - wall - margin(), size - wall - margin())
    min_side = max(8, round(size * 0.12))
    cells, inner_walls = _split_rooms(outline, int(rng.integers(2, 8)), min_side, wall, rng)

    # floors: some plans tint each room, others leave them plain
    tinted = rng.random() < 0.5
    for x1, y1, x2, y2 in cells:
        floor = paper + (rng.uniform(-35, 5, size=3) if tinted else 0)
        image[y1 + wall:y2, x1 + wall:x2] = floor
        for _ in range(int(rng.integers(0, 3))):  # furniture: small dark-outlined blocks inside the room
            w, h = (int(rng.integers(3, max(4, (x2 - x1 - wall) // 3))), int(rng.integers(3, max(4, (y2 - y1 - wall) // 3))))
            fx = int(rng.integers(x1 + wall + 1, max(x1 + wall + 2, x2 - w - 1)))
            fy = int(rng.integers(y1 + wall + 1, max(y1 + wall + 2, y2 - h - 1)))
            image[fy:fy + h, fx:fx + w] = rng.uniform(120, 200)
            image[fy + 1:fy + h - 1, fx + 1:fx + w - 1] = floor

    # walls: the outline, then the inner walls, each inner wall with a door gap
    ink = rng.uniform(10, 80)
    x1, y1, x2, y2 = outline
    image[y1:y1 + wall, x1:x2 + wall] = ink
    image[y2:y2 + wall, x1:x2 + wall] = ink
    image[y1:y2 + wall, x1:x1 + wall] = ink
    image[y1:y2 + wall, x2:x2 + wall] = ink
    for kind, at, start, stop in inner_walls:
        if kind == "v":
            image[start:stop + wall, at:at + wall] = ink
        else:
            image[at:at + wall, start:stop + wall] = ink
    for kind, at, start, stop in inner_walls:
        door = max(4, round(size * rng.uniform(0.04, 0.07)))
        if stop - start - wall > door + 2 * wall:
            offset = int(rng.integers(start + wall + 1, stop - door))
            if kind == "v":
                image[offset:offset + door, at:at + wall] = paper
            else:
                image[at:at + wall, offset:offset + door] = paper

    image += rng.normal(0, 4, size=image.shape)
    boxes = np.array([(cx1 + wall, cy1 + wall, cx2, cy2) for cx1, cy1, cx2, cy2 in cells], dtype=float)
    return FloorPlan(np.clip(np.rint(image), 0, 255).astype(np.uint8), boxes)


def sample_plans(n: int = 2, seed: int = 1, size: int = DEFAULT_IMAGE_SIZE) -> list[FloorPlan]:
    """`n` floor plans with their room boxes, for smoke tests and examples."""
    rng = np.random.default_rng(seed)
    return [render_floor_plan(rng, size) for _ in range(n)]


def yolo_label_lines(boxes: np.ndarray, width: int, height: int) -> list[str]:
    """Pixel boxes (x1, y1, x2, y2) -> YOLO lines "class x_center y_center width height" normalised to 0-1."""
    lines = []
    for x1, y1, x2, y2 in boxes:
        cx, cy, w, h = (x1 + x2) / 2 / width, (y1 + y2) / 2 / height, (x2 - x1) / width, (y2 - y1) / height
        lines.append(f"0 {cx:.6f} {cy:.6f} {w:.6f} {h:.6f}")
    return lines


def dataset_yaml(class_names: Iterable[str] = CLASS_NAMES) -> str:
    names = list(class_names)
    return DATASET_YAML.format(nc=len(names), names="\n".join(f"  {i}: {name}" for i, name in enumerate(names)))


def generate(
    out_dir: str | Path,
    train: int = DEFAULT_COUNTS["train"],
    val: int = DEFAULT_COUNTS["val"],
    test: int = DEFAULT_COUNTS["test"],
    image_size: int = DEFAULT_IMAGE_SIZE,
    seed: int = 0,
) -> Path:
    """Write images/, labels/ (train, val, test) and dataset.yaml into `out_dir`; return it."""
    from PIL import Image

    counts = {"train": train, "val": val, "test": test}
    if counts["train"] < 1 or counts["val"] < 1 or counts["test"] < 0:
        raise ValueError(f"need at least 1 train and 1 val image and 0 or more test images, got {counts}")
    out = Path(out_dir)
    rng = np.random.default_rng(seed)
    for split, count in counts.items():
        (out / "images" / split).mkdir(parents=True, exist_ok=True)
        (out / "labels" / split).mkdir(parents=True, exist_ok=True)
        for index in range(count):
            plan = render_floor_plan(rng, image_size)
            stem = f"plan_{index:05d}"
            # optimize=False and no metadata: the same seed writes the same bytes, so a re-sync skips them
            Image.fromarray(plan.image).save(out / "images" / split / f"{stem}.png", format="PNG")
            lines = yolo_label_lines(plan.boxes, image_size, image_size)
            (out / "labels" / split / f"{stem}.txt").write_text("\n".join(lines) + "\n")
    (out / "dataset.yaml").write_text(dataset_yaml())
    return out


def split_counts(relative_paths: Iterable[str]) -> dict[str, dict[str, int]]:
    """Images and label files per split from paths such as 'images/train/plan_00000.png' (any prefix before)."""
    counts = {split: {"images": 0, "labels": 0} for split in SPLITS}
    for path in relative_paths:
        parts = path.split("/")
        for kind, suffixes in (("images", IMAGE_SUFFIXES), ("labels", (".txt",))):
            if kind in parts[:-1]:
                at = len(parts) - 1 - parts[::-1].index(kind)  # the last 'images' or 'labels' folder
                if at + 3 == len(parts) and parts[-1].lower().endswith(suffixes):
                    counts.setdefault(parts[at + 1], {"images": 0, "labels": 0})[kind] += 1
    return counts


def describe_counts(counts: dict[str, dict[str, int]]) -> str:
    """'train: 64 images, 64 labels; val: ...' in split order."""
    return "; ".join(f"{split}: {c['images']} images, {c['labels']} labels" for split, c in counts.items())


def check_splits(counts: dict[str, dict[str, int]], where: str = "the data set") -> None:
    """Refuse a data set that cannot train: no train or val images, or train images without labels."""
    problems = [f"no images in images/{split}/" for split in ("train", "val") if not counts.get(split, {}).get("images")]
    if counts.get("train", {}).get("images") and not counts["train"].get("labels"):
        problems.append("no label files in labels/train/ (one .txt per image: 'class x_center y_center width height')")
    if problems:
        raise ValueError(f"{where} cannot train a detector: {'; '.join(problems)}. Expected the YOLO layout: "
                         "dataset.yaml, images/<split>/ and labels/<split>/ for train, val and (optionally) test.")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out_dir", help="folder to write dataset.yaml, images/ and labels/ into (created if missing)")
    for split in SPLITS:
        parser.add_argument(f"--{split}", type=int, default=DEFAULT_COUNTS[split], help=f"{split} images")
    parser.add_argument("--image-size", type=int, default=DEFAULT_IMAGE_SIZE, help="width and height in pixels")
    parser.add_argument("--seed", type=int, default=0, help="random seed; the same seed writes the same files")
    args = parser.parse_args(argv)
    out = generate(args.out_dir, args.train, args.val, args.test, args.image_size, args.seed)
    counts = split_counts(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    print(f"wrote synthetic floor plans in YOLO format to {out}: {describe_counts(counts)}")


if __name__ == "__main__":
    main()
