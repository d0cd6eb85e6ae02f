"""code/ of model.tar.gz: what the inference container needs to serve the model train.py saved."""
from __future__ import annotations

import shutil
from pathlib import Path

SHARED_DIR = Path(__file__).resolve().parent
# what every workload's inference.py imports from the shared modules
SHARED_SERVING_FILES = ("inference_errors.py",)


def copy_serving_code(model_dir: Path, names: tuple[str, ...], source_dir: Path) -> None:
    """Copy `names` from the workload's folder, and the shared modules inference.py imports, to model_dir/code.

    Each file is taken from `source_dir` (train.py's folder) when it is there, else from the shared
    modules' folder; in the container both are /opt/ml/code, locally they are apart.
    """
    wanted = list(dict.fromkeys([*names, *SHARED_SERVING_FILES]))
    found = {name: next((folder / name for folder in (source_dir, SHARED_DIR) if (folder / name).is_file()), None)
             for name in wanted}
    missing = [name for name, path in found.items() if path is None]
    if missing:
        raise FileNotFoundError(f"Cannot package code/ for serving: {', '.join(missing)} missing in {source_dir}")
    code_dir = Path(model_dir) / "code"
    code_dir.mkdir(parents=True, exist_ok=True)
    for name, path in found.items():
        shutil.copy2(path, code_dir / name)
