"""Starts a model server process: ``python -P run_model_server.py --model-dir DIR ...``.

The server's modules (``model_server``, ``handlers``) load from this folder under a private package
name, so the model's inference code runs with neither the project root on ``sys.path`` nor an
``include`` package to import: it sees what it would see in SageMaker's container.
"""
import importlib.util
import sys
from pathlib import Path

PACKAGE = "_local_sagemaker_serving"


def load_model_server():
    folder = Path(__file__).resolve().parent
    spec = importlib.util.spec_from_file_location(PACKAGE, folder / "__init__.py", submodule_search_locations=[str(folder)])
    package = importlib.util.module_from_spec(spec)
    sys.modules[PACKAGE] = package
    spec.loader.exec_module(package)
    return importlib.import_module(f"{PACKAGE}.model_server")


if __name__ == "__main__":
    sys.exit(load_model_server().main())
