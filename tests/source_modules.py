"""Import or run a workload's training_src modules in the test process, as its container would."""
from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path

TRAINING_SRC = Path(__file__).resolve().parents[1] / "training_src"
# packed beside every workload's files in sourcedir.tar.gz (include/pipelines/packaging.py)
SHARED_SOURCE = TRAINING_SRC / "shared"


def import_source(name: str, directory: Path):
    """Import directory/<name>.py as the container would (its folder and the shared modules on sys.path,
    so `from model import` works), then take its sibling modules out of sys.modules: other workloads
    have a model.py too."""
    siblings = {path.stem for path in directory.glob("*.py")}
    saved = {key: sys.modules.pop(key) for key in siblings if key in sys.modules}
    sys.path[:0] = [str(directory), str(SHARED_SOURCE)]
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(str(directory))
        sys.path.remove(str(SHARED_SOURCE))
        for key in siblings:
            sys.modules.pop(key, None)
        sys.modules.update(saved)


def with_shared_modules(env: dict[str, str]) -> dict[str, str]:
    """A train.py subprocess's environment: the shared modules importable, as beside it in the container."""
    path = [str(SHARED_SOURCE)] + [entry for entry in env.get("PYTHONPATH", "").split(os.pathsep) if entry]
    return {**env, "PYTHONPATH": os.pathsep.join(path)}
