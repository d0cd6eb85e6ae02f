"""Checkpoints for spot training: written so an interruption never leaves half a file, read back as
tensors and plain data only (weights_only), with a message that says what to do when one is broken."""
from __future__ import annotations

import os
from pathlib import Path

import torch

CHECKPOINT_NAME = "checkpoint.pt"  # in the checkpoint folder SageMaker syncs with CheckpointConfig.S3Uri


def save_checkpoint(path: Path, state: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    torch.save(state, partial)
    os.replace(partial, path)  # atomic: a spot interruption never leaves half a checkpoint behind


def load_checkpoint(checkpoint_dir: str) -> dict | None:
    """The checkpoint in `checkpoint_dir`, or None when there is none yet (a fresh start)."""
    path = Path(checkpoint_dir) / CHECKPOINT_NAME
    if not path.is_file():
        return None
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise RuntimeError(f"Cannot resume from {path} ({error}); delete it to start afresh.") from error
