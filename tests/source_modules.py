"""Import a workload's training_src modules in the test process, as its container would."""
from __future__ import annotations

import importlib
import sys
from pathlib import Path

TRAINING_SRC = Path(__file__).resolve().parents[1] / "training_src"


def import_source(name: str, directory: Path):
    """Import directory/<name>.py as the container would (its folder on sys.path, so `from model import`
    works), then take its sibling modules out of sys.modules: other workloads have a model.py too."""
    siblings = {path.stem for path in directory.glob("*.py")}
    saved = {key: sys.modules.pop(key) for key in siblings if key in sys.modules}
    sys.path.insert(0, str(directory))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(str(directory))
        for key in siblings:
            sys.modules.pop(key, None)
        sys.modules.update(saved)
