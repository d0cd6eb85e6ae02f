"""Command-line hyperparameters the SageMaker way, shared by every workload's train.py.

Every train.py declares its settings the same way: dataclasses whose fields are all ``setting(...)``,
a type annotation (int, float, str or bool), a default and a help text::

    @dataclass
    class Hyperparameters:
        epochs: int = setting(10, "passes over the training set")
        checkpoint_dir: str = setting("checkpoints", "spot checkpoints", job_folder="checkpoints")

    @dataclass
    class Paths:
        model_dir: str = setting("model", "model artifacts", env="SM_MODEL_DIR")

`env=` makes the default the value of a variable SageMaker sets (SM_MODEL_DIR, SM_CHANNEL_TRAIN, ...)
and `job_folder=` a folder of the job's /opt/ml tree; either way the first argument is what a run by
hand gets instead. Both are read when the arguments are parsed, not when train.py is imported.

SageMaker's training toolkit passes each hyperparameter as ``--name value`` (``-x value`` for a
one-letter name), every value a string; booleans arrive as "True" / "False". The packager
(include/pipelines/packaging.py) puts this module beside train.py in every sourcedir.tar.gz, so in the
container it is imported like a sibling of train.py; run from the repository, train.py finds it in
training_src/shared.
"""
from __future__ import annotations

import argparse
import os
from dataclasses import MISSING, field, fields
from pathlib import Path

__all__ = ["parse_hyperparameters", "setting"]

_SETTING = "sagemaker_hyperparameters.setting"  # a field's metadata key for its --help text, set only by setting()


def _job_folder(relative: str, by_hand: str) -> str:
    """A folder of the job's /opt/ml tree (checkpoints, output/tensorboard): under SAGEMAKER_BASE_DIR on the
    local SageMaker, under /opt/ml in a container, else `by_hand` (a run by hand)."""
    if os.environ.get("SAGEMAKER_BASE_DIR"):
        return str(Path(os.environ["SAGEMAKER_BASE_DIR"]) / relative)
    return f"/opt/ml/{relative}" if Path("/opt/ml").is_dir() else by_hand


def setting(default, help: str, *, env: str | None = None, job_folder: str | None = None):
    """A hyperparameter or path of train.py: its default and what it is for.

    env="SM_...": the default is that environment variable, else `default` (a run by hand).
    job_folder="checkpoints": the default is that folder of the job (SAGEMAKER_BASE_DIR/..., /opt/ml/...),
    else `default`. A string default goes through the field's type like a flag's value, so
    env="SM_NUM_GPUS" gives an int.
    """
    if env and job_folder:
        raise ValueError("a setting's default comes from env= or from job_folder=, not both")
    if env:
        return field(default_factory=lambda: os.environ.get(env, default),
                     metadata={_SETTING: f"{help} (default: ${env}, else {default!r})"})
    if job_folder:
        return field(default_factory=lambda: _job_folder(job_folder, default),
                     metadata={_SETTING: f"{help} (default: $SAGEMAKER_BASE_DIR/{job_folder} on the local SageMaker, "
                                         f"/opt/ml/{job_folder} in a container, else {default!r})"})
    return field(default=default, metadata={_SETTING: f"{help} (default: {default})"})


def _parse_bool(value: str) -> bool:
    # SageMaker passes every hyperparameter as a string: "True", "true", "1", ...
    lowered = str(value).strip().lower()
    if lowered in ("true", "1", "yes"):
        return True
    if lowered in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {value!r}")


# by the annotation's name: under `from __future__ import annotations` a field's type is the string "int"
_CONVERTERS = {"int": int, "float": float, "str": str, "bool": _parse_bool}


def parse_hyperparameters(description: str, groups: tuple[type, ...], argv: list[str] | None = None) -> tuple:
    """One instance of each dataclass in ``groups``, from ``argv`` (default: sys.argv).

    Each field is ``--field-name`` and ``--field_name`` (a one-letter field also ``-x``, as the toolkit
    passes it); abbreviations are refused, so a misspelt ``--epoch`` fails instead of silently setting
    ``--epochs``; an unknown flag fails naming itself, except those SageMaker adds on its own
    (``--_tuning_objective_metric``, ``--sagemaker_*``). String defaults (the SM_* environment values)
    go through the field's type too, so a GPU count read from the environment becomes an int.
    """
    parser = argparse.ArgumentParser(description=description, allow_abbrev=False)
    for group in groups:
        for f in fields(group):
            kind = getattr(f.type, "__name__", f.type)
            if kind not in _CONVERTERS or _SETTING not in f.metadata:
                raise TypeError(f"{group.__name__}.{f.name} must be declared with setting() and typed "
                                f"int, float, str or bool (got {f.type!r})")
            default = f.default_factory() if f.default_factory is not MISSING else f.default
            names = list(dict.fromkeys(["--" + f.name.replace("_", "-"), "--" + f.name]))
            if len(f.name) == 1:
                names.insert(0, "-" + f.name)
            parser.add_argument(*names, dest=f.name, type=_CONVERTERS[kind], default=default,
                                metavar=kind.upper(), help=f.metadata[_SETTING])
    args, unknown = parser.parse_known_args(argv)
    typos = [arg for arg in unknown if arg.startswith("-") and not arg.lstrip("-").startswith(("_", "sagemaker_"))]
    if typos:
        parser.error(f"unrecognized hyperparameter(s) {' '.join(typos)}; run with --help for the accepted ones")
    values = vars(args)
    return tuple(group(**{f.name: values[f.name] for f in fields(group)}) for group in groups)
