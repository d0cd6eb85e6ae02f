"""Command-line hyperparameters the SageMaker way, shared by every workload's train.py.

A workload declares its settings as dataclasses whose fields carry a type, a default and
``metadata["help"]``; SageMaker passes each hyperparameter as ``--name value`` with the value as a
string. The packager (include/pipelines/packaging.py) puts this module beside train.py in every
sourcedir.tar.gz, so in the container it is imported like a sibling of train.py.
"""
from __future__ import annotations

import argparse
import os
from dataclasses import MISSING, field, fields
from pathlib import Path

__all__ = ["from_env", "job_folder", "parse_bool", "parse_hyperparameters", "setting"]


def setting(default, help: str):
    """A hyperparameter with a fixed default."""
    return field(default=default, metadata={"help": help})


def from_env(variable: str, by_hand: str, help: str):
    """A path or count SageMaker passes in an environment variable (SM_CHANNEL_TRAIN, SM_NUM_GPUS, ...),
    with a fallback for runs by hand; the string goes through the field's type like any default."""
    return field(default_factory=lambda: os.environ.get(variable, by_hand),
                 metadata={"help": f"{help} (default: ${variable}, else {by_hand!r})"})


def job_folder(relative: str, by_hand: str) -> str:
    """A folder of the job's /opt/ml tree (checkpoints, output/tensorboard): under SAGEMAKER_BASE_DIR on the
    local SageMaker, under /opt/ml in a container, else `by_hand` (a run by hand)."""
    if os.environ.get("SAGEMAKER_BASE_DIR"):
        return str(Path(os.environ["SAGEMAKER_BASE_DIR"]) / relative)
    return f"/opt/ml/{relative}" if Path("/opt/ml").is_dir() else by_hand


def parse_bool(value: str) -> bool:
    # SageMaker passes every hyperparameter as a string: "true", "True", "1", ...
    lowered = str(value).strip().lower()
    if lowered in ("true", "1", "yes"):
        return True
    if lowered in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {value!r}")


_CONVERTERS = {int: int, float: float, str: str, bool: parse_bool}


def parse_hyperparameters(description: str, groups: tuple[type, ...], argv: list[str] | None = None) -> tuple:
    """One instance of each dataclass in ``groups``, from ``argv`` (default: sys.argv).

    Each field is ``--field-name`` and ``--field_name``; abbreviations are refused, so a misspelt
    ``--epoch`` fails instead of silently setting ``--epochs``; an unknown flag fails naming itself,
    except those SageMaker adds on its own (``--_tuning_objective_metric``, ``--sagemaker_*``).
    String defaults (the SM_* environment values) go through the field's type too, so a GPU count
    read from the environment becomes an int.
    """
    parser = argparse.ArgumentParser(description=description, allow_abbrev=False)
    for group in groups:
        for f in fields(group):
            default = f.default_factory() if f.default_factory is not MISSING else f.default
            dashed = "--" + f.name.replace("_", "-")
            names = [dashed] if dashed == "--" + f.name else [dashed, "--" + f.name]
            help_text = f.metadata["help"]
            if "(default: " not in help_text:
                help_text += f" (default: {default})"
            parser.add_argument(*names, dest=f.name, type=_CONVERTERS[f.type], default=default,
                                metavar=f.type.__name__.upper(), help=help_text)
    args, unknown = parser.parse_known_args(argv)
    typos = [arg for arg in unknown if arg.startswith("-") and not arg.lstrip("-").startswith(("_", "sagemaker_"))]
    if typos:
        parser.error(f"unrecognized hyperparameter(s) {' '.join(typos)}; run with --help for the accepted ones")
    values = vars(args)
    return tuple(group(**{f.name: values[f.name] for f in fields(group)}) for group in groups)
