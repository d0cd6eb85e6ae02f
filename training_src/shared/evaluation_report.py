"""What every workload's evaluate.py shares: its command line, reading a model archive, writing evaluation.json.

evaluate.py runs as a SageMaker Processing job on the workload's held-out test data. It scores the
challenger (the model this run trained) and, when there is one, the champion (the model serving now)
on the same data with the same code, so the two figures can be compared. Each report follows the
SageMaker Pipelines convention, ``{"<category>": {"<metric>": {"value": <number>}}}``, which
ModelMetrics.ModelQuality.Statistics of a registered version points at:

    <output>/evaluation.json            the challenger
    <output>/champion_evaluation.json   the champion, when one was given

Container paths, as the pipeline's ProcessingInputs/Outputs lay them out (the job passes them as
arguments, so the same script runs by hand on local folders):

    --challenger /opt/ml/processing/challenger   holds model.tar.gz
    --champion   /opt/ml/processing/champion     holds model.tar.gz, or nothing (no champion yet)
    --test-data  /opt/ml/processing/test         the workload's held-out test data
    --output     /opt/ml/processing/evaluation

The job runs an evaluate.py in the unpacked sourcedir.tar.gz (the workload's folder and training_src/shared
side by side), on the workload's training image, on the CPU. By hand, it runs from the repository root on
local folders with nothing on PYTHONPATH (like train.py, it finds training_src/shared itself when the
shared modules are not its siblings); `tar -czf challenger/model.tar.gz -C model .` packs a model folder as
SageMaker packs SM_MODEL_DIR. Each evaluate.py's docstring gives its workload's commands.

An EvaluationError is a problem with the inputs: run() prints it as one line, `EvaluationError: <what,
naming the file>`, and exits with status 1.
"""
from __future__ import annotations

import argparse
import json
import math
import re
import subprocess
import sys
import tarfile
import time
import zlib
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import NoReturn

CHALLENGER_REPORT = "evaluation.json"
CHAMPION_REPORT = "champion_evaluation.json"
MODEL_ARCHIVE = "model.tar.gz"


def parse_args(argv: list[str] | None = None, description: str | None = None) -> argparse.Namespace:
    """The command line every evaluate.py takes (see the module docstring)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--challenger", type=Path, required=True, help="folder holding the challenger's model.tar.gz")
    parser.add_argument("--champion", type=Path, default=None,
                        help="folder holding the champion's model.tar.gz; absent or empty: no champion")
    parser.add_argument("--test-data", type=Path, required=True, help="the held-out test data")
    parser.add_argument("--output", type=Path, required=True, help="where evaluation.json is written")
    return parser.parse_args(argv)


def model_archive(folder: Path | None) -> Path | None:
    """The model.tar.gz in `folder`, or None when there is none (no champion yet)."""
    if folder is None or not folder.is_dir():
        return None
    archive = folder / MODEL_ARCHIVE
    if archive.is_file():
        return archive
    found = sorted(folder.glob("*.tar.gz"))
    return found[0] if found else None


def extract_model(archive: Path, destination: Path) -> Path:
    """Unpack a model.tar.gz into `destination`, refusing anything but plain files and folders inside it.

    An archive is input like any other: no links, devices, absolute paths or '..' (the tarfile data
    filter is not relied on, CVE-2025-4517).
    """
    destination.mkdir(parents=True, exist_ok=True)
    root = destination.resolve()
    with tarfile.open(archive, "r:*") as tar:
        for member in tar.getmembers():
            name = member.name
            target = (root / name).resolve()
            if name.startswith("/") or ".." in Path(name).parts or not (target == root or root in target.parents):
                raise ValueError(f"{archive}: member {name!r} points outside the archive")
            if member.isdir():
                target.mkdir(parents=True, exist_ok=True)
            elif member.isfile():
                target.parent.mkdir(parents=True, exist_ok=True)
                source = tar.extractfile(member)
                with open(target, "wb") as out:
                    while chunk := source.read(1 << 20):
                        out.write(chunk)
            else:
                raise ValueError(f"{archive}: member {name!r} is not a plain file or folder")
    return destination


def metric_report(category: str, metrics: dict[str, float], *, samples: int) -> dict:
    """One model's report in the SageMaker Pipelines convention, plus how many test samples it scored."""
    for name, value in metrics.items():
        if not isinstance(value, (int, float)) or math.isnan(value):
            raise ValueError(f"metric {name!r} is {value!r}, not a number")
    return {category: {name: {"value": float(value)} for name, value in metrics.items()}, "samples": int(samples)}


def write_reports(output: Path, challenger: dict, champion: dict | None) -> list[Path]:
    """evaluation.json (the challenger) and, with a champion, champion_evaluation.json."""
    output.mkdir(parents=True, exist_ok=True)
    written = []
    for name, report in ((CHALLENGER_REPORT, challenger), (CHAMPION_REPORT, champion)):
        if report is None:
            continue
        path = output / name
        path.write_text(json.dumps(report, indent=2, sort_keys=True))
        written.append(path)
    return written


class EvaluationError(Exception):
    """A problem with the inputs, said in one line that names the file."""


def find_archives(args: argparse.Namespace) -> tuple[Path, Path | None]:
    """The challenger's model.tar.gz (EvaluationError when --challenger holds none) and the champion's, or None."""
    challenger = model_archive(args.challenger)
    if challenger is None:
        listing = sorted(p.name for p in args.challenger.iterdir())[:10] if args.challenger.is_dir() else "the folder does not exist"
        raise EvaluationError(f"no model.tar.gz in --challenger {args.challenger} ({listing or 'it is empty'})")
    champion = model_archive(args.champion)
    print(f"challenger {challenger}; champion {champion or 'none (no champion yet)'}; test data {args.test_data}", flush=True)
    return challenger, champion


def unpack(archive: Path, destination: Path, role: str, marker: str) -> Path:
    """The model folder of a model.tar.gz, or EvaluationError naming the archive; `marker` is the file train.py
    writes at the folder's top, without which the archive is not one of this workload's models."""
    try:
        folder = extract_model(archive, destination)
    except (tarfile.TarError, EOFError, OSError, zlib.error, ValueError) as error:
        raise EvaluationError(f"the {role} archive {archive} is not a readable model.tar.gz ({error})") from error
    if not (folder / marker).is_file():
        found = sorted(p.name for p in folder.iterdir())[:10]
        raise EvaluationError(f"the {role} archive {archive} holds no {marker} at its top, so it is not a "
                              f"model.tar.gz train.py wrote; it holds {found or 'nothing'}")
    return folder


def unpack_models(challenger: Path, champion: Path | None, work: Path, marker: str) -> dict[str, tuple[Path, Path]]:
    """Role ("challenger", then "champion" when there is one) -> (its archive, its unpacked folder under `work`)."""
    archives = {"challenger": challenger} if champion is None else {"challenger": challenger, "champion": champion}
    return {role: (archive, unpack(archive, work / role, role, marker)) for role, archive in archives.items()}


def score_models(models: dict[str, tuple[Path, Path]], score: Callable[[Path, Path, str], dict[str, float]],
                 category: str, samples: int) -> dict[str, dict]:
    """Role -> report: each model scored by score(folder, archive, role), its figures and time logged."""
    reports = {}
    for role, (archive, folder) in models.items():
        started = time.perf_counter()
        metrics = score(folder, archive, role)
        reports[role] = metric_report(category, metrics, samples=samples)
        print(f"{role}: " + " ".join(f"{name}={value:.4f}" for name, value in metrics.items())
              + f" samples={samples} seconds={time.perf_counter() - started:.1f}", flush=True)
    return reports


def finish(output: Path, reports: dict[str, dict]) -> int:
    """Write the challenger's (and the champion's) report, log each path; main's exit status, 0."""
    for path in write_reports(output, reports["challenger"], reports.get("champion")):
        print(f"wrote {path}", flush=True)
    return 0


def run(main: Callable[[], int]) -> NoReturn:
    """An evaluate.py's entry point: main's status, or an EvaluationError as one line on stderr and status 1."""
    try:
        sys.exit(main())
    except EvaluationError as error:
        print(f"EvaluationError: {error}", file=sys.stderr, flush=True)
        sys.exit(1)


def report_value(report: dict, metric: str) -> float:
    """The value of `metric` in a report, whatever its category."""
    for category, metrics in report.items():
        if isinstance(metrics, dict) and metric in metrics:
            return float(metrics[metric]["value"])
    raise KeyError(f"the report has no metric {metric!r}: {json.dumps(report)[:300]}")


def install_requirements(requirements: Path) -> list[str]:
    """pip-install the workload's requirements.txt when the image lacks any of them, as the SDK's
    FrameworkProcessor does before it runs a script (a processing job installs nothing by itself).

    Whatever is installed at the pinned version already is left alone, so an image (or the local
    SageMaker) that has them installs nothing and needs no network. Returns what was missing.
    """
    if not requirements.is_file():
        return []
    missing = []
    for line in requirements.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        match = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?\s*(?:==\s*([^\s;]+))?.*", line)
        if not match:
            continue
        name, pinned = match.groups()
        try:
            installed = metadata.version(name)
        except metadata.PackageNotFoundError:
            missing.append(line)
            continue
        if pinned and installed != pinned:
            missing.append(line)
    if missing:
        print(f"Installing what the image lacks: {', '.join(missing)}", flush=True)
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "-r", str(requirements)], check=True)
    return missing
