"""CIFAR-10's python batches (cifar-10-batches-py: data_batch_1..5, test_batch, batches.meta), read with numpy only.

The files are pickles, and unpickling runs whatever a file names, so the reader allows only what
numpy arrays need. train.py reads its channels with it; the Airflow side reads test_batch with it
(include/pipelines/cifar10_batch.py) to write the batch transform's input, without torch.
"""
from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

IMAGE_SIDE = 32  # each row of b"data" is one 32x32 image: 1024 red, then 1024 green, then 1024 blue bytes


class _BatchUnpickler(pickle.Unpickler):
    """CIFAR batches are pickles; allow only what numpy arrays need, since any other global can run code."""

    ALLOWED = {("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
               *((module, name) for module in ("numpy.core.multiarray", "numpy._core.multiarray")
                 for name in ("_reconstruct", "scalar"))}

    def find_class(self, module, name):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(
                f"refusing to load {module}.{name}: a CIFAR-10 batch holds only arrays, lists and strings")
        return super().find_class(module, name)


def _entry(batch: dict, key: str):
    # the published files (pickled by Python 2) load with bytes keys under encoding="bytes"
    for candidate in (key.encode(), key):
        if candidate in batch:
            return batch[candidate]
    raise KeyError(key)


def read_pickled_entries(path: Path, *keys: str) -> list:
    """The entries `keys` of one batch file (e.g. "data", "labels"; "label_names" of batches.meta)."""
    try:
        with open(path, "rb") as f:
            content = _BatchUnpickler(f, encoding="bytes").load()
        return [_entry(content, key) for key in keys]
    except (pickle.UnpicklingError, EOFError, KeyError, TypeError, ValueError, AttributeError) as error:
        wanted = " and ".join(f"b'{key}'" for key in keys)
        raise ValueError(f"{path} is not a CIFAR-10 python batch file (a pickled dict with {wanted}): {error!r}") from error


def read_batch_arrays(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One data_batch_N / test_batch file -> (uint8 images [N, 3, 32, 32], int64 labels [N])."""
    data, labels = read_pickled_entries(path, "data", "labels")
    try:
        data, labels = np.asarray(data, dtype=np.uint8), np.asarray(labels, dtype=np.int64)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{path}: b'data' must hold uint8 pixels and b'labels' integers ({error})") from error
    side = IMAGE_SIDE * IMAGE_SIDE * 3
    if data.ndim != 2 or data.shape[1] != side or len(labels) != len(data):
        raise ValueError(f"{path}: expected b'data' of shape [N, {side}] and N labels, "
                         f"got {data.shape} and {len(labels)} labels")
    return data.reshape(-1, 3, IMAGE_SIDE, IMAGE_SIDE).copy(), labels
