"""benchmarks/training_overhead.py --seconds 1 --repeats 1 runs a no-op and a 1 s training job beside the
same script by hand and prints its figures: so the benchmark never rots. Not a time budget (the machines
here are noisy): the figures only have to be there and be numbers.

Also the cuts in the job's own processes whose effect it measures (``jobs/job_site``) keep what they
replace: the PyTorch toolkit's SM_DLC_TORCH_VERSION is torch's own version string, the toolkit's exit
keeps its atexit handlers and exit code, and a deferred paramiko is the real module once used."""
from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BENCHMARK = ROOT / "benchmarks" / "training_overhead.py"
JOB_SITE = ROOT / "include" / "emulator" / "jobs" / "job_site"


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("training-overhead") / "figures.json"
    result = subprocess.run([sys.executable, str(BENCHMARK), "--seconds", "1", "--repeats", "1", "--json", str(out)],
                            cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    return result.stdout, json.loads(out.read_text())


def number(text: str) -> float:
    value = float(text)
    assert math.isfinite(value), text
    return value


@pytest.mark.slow
def test_the_benchmark_runs_both_scripts_and_prints_its_figures(tiny_run):
    log, figures = tiny_run
    assert re.search(r"^machine: \d+ CPUs", log, re.M), log
    assert number(re.search(r"^no-op fixed overhead: (\S+) s$", log, re.M).group(1)) == pytest.approx(
        figures["noop_overhead_s"], abs=0.01)
    ratio = re.search(r"^1 s script ratio: (\S+)x", log, re.M)
    assert ratio and number(ratio.group(1)) > 0, log
    assert re.search(r"^goal \(at most 1\.10x for a 30 s script\): not judged", log, re.M), log
    for phase in ("Downloading", "Training", "Uploading"):  # where the no-op job's time goes
        assert re.search(rf"^  {phase} +\S+ s$", log, re.M), log
    assert figures["cpu_count"] >= 1 and figures["repeats"] == 1 and figures["work"] == "busy"
    for kind in ("noop", "work_script"):
        row = figures[kind]
        assert row["hand_wall_s"] > 0 and row["job_client_wall_s"] > 0 and row["job_wall_s"] > 0, row
        assert row["job_cpu_s"] > 0, row
        assert len(row["runs"]["hand"]) == len(row["runs"]["job"]) == 1


def job_process(code: str, **env) -> subprocess.CompletedProcess:
    """``code`` in a fresh interpreter that loads the job-local sitecustomize, as a training job's processes do."""
    environment = {"PATH": os.environ.get("PATH", os.defpath), "PYTHONPATH": str(JOB_SITE), "EMULATOR_JOB_HOSTS": "algo-1",
                   **env}
    return subprocess.run([sys.executable, "-c", code], env=environment, capture_output=True, text=True, timeout=120)


@pytest.mark.slow
def test_the_toolkit_is_told_the_torch_version_that_importing_torch_gives():
    told = job_process(
        "import os, sys\n"
        "import sagemaker_pytorch_container.training as training\n"
        "training._set_torch_version_environment()\n"
        "print(os.environ['SM_DLC_TORCH_VERSION'], 'torch' in sys.modules)\n"
    )
    assert told.returncode == 0, told.stderr
    imported = subprocess.run([sys.executable, "-c", "import torch; print(torch.__version__)"],
                              capture_output=True, text=True, timeout=300)
    assert told.stdout.split() == [imported.stdout.strip(), "False"]  # the same string, and torch never imported


def test_the_toolkits_exit_keeps_atexit_handlers_and_its_exit_code():
    for code, status in (("3", 3), ("0", 0)):
        exited = job_process(
            "import atexit, sagemaker_training.trainer as trainer\n"
            "atexit.register(print, 'atexit ran', flush=True)\n"
            "print(trainer._exit_processes.__module__, end=' ')\n"  # the job-local exit, not the toolkit's
            "print('buffered', end='')\n"
            f"trainer._exit_processes({code})\n"
            "print('not reached')\n",
            PYTHONUNBUFFERED="",
        )
        assert exited.returncode == status, exited.stderr
        assert exited.stdout == "_emulator_job_process bufferedatexit ran\n", exited.stdout


def test_a_deferred_paramiko_is_the_real_module_once_the_toolkit_uses_it():
    used = job_process(
        "import sys\n"
        "import sagemaker_training.mpi as mpi\n"
        "print('paramiko.transport' in sys.modules)\n"  # bound, not yet loaded
        "client = mpi.paramiko.SSHClient\n"
        "import paramiko, paramiko.transport\n"
        "print(paramiko is mpi.paramiko, client is paramiko.SSHClient, paramiko.transport.Transport.__name__)\n"
    )
    assert used.returncode == 0, used.stderr
    assert used.stdout.split() == ["False", "True", "True", "Transport"]
