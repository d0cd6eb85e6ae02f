"""requirements.txt is the Airflow side: a clean venv with only it (what MWAA, Astronomer or an Airflow
image installs) passes `pip check`, has no torch, transformers or ultralytics, parses every DAG, and
runs the aws-profile tasks' logic (tests/airflow_side_checks.py, against the local SageMaker's S3).
Topped up with requirements-synthetic-data.txt, it writes the local profile's data sets, still without torch.

The venv is built once for the module: pip install -r requirements.txt -c constraints.txt, from the
package index and wheel cache pip already uses here. It skips byte-compiling every installed file (a
third of pip's time) and lets the checks' own processes write the bytecode of what they import.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tests.airflow_side_checks import ABSENT, HEAVY_AT_PARSE, TEST_BUCKET, WORKLOADS

ROOT = Path(__file__).resolve().parents[1]
INSTALL_TIMEOUT_SECONDS = 1200

pytestmark = pytest.mark.slow


def _run(command: list, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([str(part) for part in command], capture_output=True, text=True, **kwargs)


@pytest.fixture(scope="module")
def airflow_side_python(tmp_path_factory) -> Path:
    """The python of a fresh venv (the same interpreter as this one's) holding only requirements.txt."""
    venv = tmp_path_factory.mktemp("airflow-side") / "venv"
    created = _run([sys.executable, "-m", "venv", venv])
    assert created.returncode == 0, created.stderr
    python = venv / "bin" / "python"
    started = time.monotonic()
    install = _run([python, "-m", "pip", "install", "--quiet", "--no-compile", "-r", ROOT / "requirements.txt",
                    "-c", ROOT / "constraints.txt"], timeout=INSTALL_TIMEOUT_SECONDS)
    assert install.returncode == 0, f"pip install -r requirements.txt failed:\n{install.stdout[-3000:]}{install.stderr[-3000:]}"
    print(f"requirements.txt installed in {time.monotonic() - started:.0f} s")
    return python


def _checks(python: Path, emulator, report_path: Path, *names: str) -> dict:
    """Run tests/airflow_side_checks.py (every Airflow-side check, or `names`) with `python`; its report."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(("AIRFLOW_CONN_", "AIRFLOW_VAR_"))
           and key != "PYTHONDONTWRITEBYTECODE"}  # the venv was installed without bytecode: the first import writes it
    env.update(
        PYTHONPATH=os.pathsep.join(str(p) for p in (ROOT, ROOT / "dags", ROOT / "plugins")),
        AIRFLOW_HOME=tempfile.mkdtemp(prefix="airflow-side-home-"),  # not the test session's Airflow
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__CORE__DAGS_FOLDER=str(ROOT / "dags"),
        AIRFLOW__CORE__PLUGINS_FOLDER=str(ROOT / "plugins"),
        AIRFLOW_SIDE_S3_ENDPOINT=emulator.endpoint_url,
    )
    run = _run([python, "-m", "tests.airflow_side_checks", report_path, *names], cwd=ROOT, env=env, timeout=600)
    assert run.returncode == 0 and report_path.exists(), f"the checks did not run:\n{run.stdout[-3000:]}{run.stderr[-3000:]}"
    return json.loads(report_path.read_text())


@pytest.fixture(scope="module")
def report(airflow_side_python, emulator, tmp_path_factory) -> dict:
    """Every Airflow-side check, run once in the venv of requirements.txt; check name -> result or traceback."""
    return _checks(airflow_side_python, emulator, tmp_path_factory.mktemp("airflow-side-report") / "report.json")


@pytest.fixture(scope="module")
def local_profile_report(report, airflow_side_python, emulator, tmp_path_factory) -> dict:
    """The same venv topped up with requirements-synthetic-data.txt (after `report`, which saw it without),
    as an Airflow that runs the local profile has it; then the local profile's check."""
    install = _run([airflow_side_python, "-m", "pip", "install", "--quiet", "--no-compile", "-r",
                    ROOT / "requirements-synthetic-data.txt",
                    "-c", ROOT / "constraints.txt"], timeout=INSTALL_TIMEOUT_SECONDS)
    assert install.returncode == 0, f"pip install -r requirements-synthetic-data.txt failed:\n{install.stderr[-3000:]}"
    check = _run([airflow_side_python, "-m", "pip", "check"])
    assert check.returncode == 0, check.stdout + check.stderr
    return _checks(airflow_side_python, emulator, tmp_path_factory.mktemp("local-profile-report") / "report.json",
                   "local_profile_data")


def result(report: dict, check: str):
    outcome = report[check]
    assert "error" not in outcome, f"{check} failed in the venv of requirements.txt:\n{outcome['error']}"
    return outcome["result"]


def test_pip_check_is_clean(airflow_side_python):
    check = _run([airflow_side_python, "-m", "pip", "check"])
    assert check.returncode == 0, check.stdout + check.stderr


def test_the_training_stack_is_not_installed(airflow_side_python):
    for module in ("torch", "transformers", "ultralytics"):
        attempt = _run([airflow_side_python, "-c", f"import {module}"])
        assert attempt.returncode != 0 and "ModuleNotFoundError" in attempt.stderr, f"{module} imports in the Airflow side"


def test_nothing_of_the_local_sagemaker_stack_is_importable(report):
    environment = result(report, "environment")
    assert environment["importable"] == [], f"requirements.txt pulls in {environment['importable']} (of {ABSENT})"
    assert environment["numpy"] and environment["sagemaker.core"]


def test_every_dag_parses_without_heavy_imports(report):
    dags = result(report, "dags")
    assert dags["import_errors"] == {}, "\n".join(f"{f}: {e}" for f, e in dags["import_errors"].items())
    assert dags["dag_ids_by_file"] == {name: [name.removesuffix(".py")] for name in dags["files"]}
    assert dags["heavy_modules_loaded"] == [], f"parsing the DAGs imported {dags['heavy_modules_loaded']} (of {HEAVY_AT_PARSE})"


def test_every_workload_plans_its_aws_requests(report):
    plans = result(report, "plans")
    assert {name.split(":")[0] for name in plans} == set(WORKLOADS)
    for name, plan in plans.items():
        expected = {"training", "model", "gate", "promotion"}
        if plan["has_tuning"]:
            expected.add("tuning")
        if plan["has_transform"]:
            expected.add("transform")
        assert expected <= set(plan["requests"]), f"{name}: planned {plan['requests']}"
        assert plan["training_image"].startswith("763104351884.dkr.ecr.us-east-1.amazonaws.com/"), name
        assert plan["instance_type"].startswith("ml."), name


def test_the_promotion_and_the_gate_are_decided_on_the_airflow_side(report):
    promotions = result(report, "promotions")
    assert set(promotions) == set(WORKLOADS)
    for workload, promotion in promotions.items():
        assert promotion["decisions"] == [True, False], workload
        assert promotion["version_status"] == "PendingManualApproval", workload
        assert promotion["evaluation_job"].startswith(workload.replace("_", "-")), workload
        assert (promotion["standing_config"] is None) == (workload == "brain_to_text"), workload
    assert promotions["cifar10"]["standing_config"] == "cifar10-classifier-v1"
    assert promotions["brain_to_text"]["batch_model"]
    assert result(report, "gates") == {workload: [True, False] for workload in WORKLOADS}


def test_source_tarballs_are_reproducible_and_uploaded_once(report):
    packages = result(report, "source_packages")
    assert set(packages) == set(WORKLOADS)
    for workload, package in packages.items():
        assert package["reproducible"] and package["has_train_py"], workload
        first, again = package["uploads"]
        assert first == again and first.startswith(f"s3://{TEST_BUCKET}/") and first.endswith("/sourcedir.tar.gz")
    resolved = result(report, "resolve_and_upload_source")
    assert resolved["settings"]["profile"] == "aws" and resolved["settings"]["bucket"] == TEST_BUCKET
    assert resolved["source_uri"] == packages["cifar10"]["uploads"][0]


def test_cifar10_data_and_batch_transform_run_without_torch(report):
    cifar10 = result(report, "cifar10_data_and_batch_transform")
    assert cifar10["uploaded"] == 7  # data_batch_1..5, test_batch, batches.meta
    assert cifar10["channels"]["train"].endswith("/data/cifar-10-batches-py")
    assert cifar10["records"] == 20 and cifar10["image_shape"] == [32, 32, 3]
    assert cifar10["scores"]["records"] == 20


def test_synthetic_data_is_refused_on_aws_with_what_to_do(report):
    messages = result(report, "synthetic_data_refused_on_aws")
    assert set(messages) == set(WORKLOADS)
    for workload, message in messages.items():
        assert message.startswith("ConfigError: "), f"{workload}: {message}"
        assert "local profile only" in message and "profiles.aws.data.source_uri" in message, message
        assert f"python -m include.datasets.{workload} OUT_DIR" in message, message


def test_smoke_request_bodies_need_no_imaging_or_audio_library(report):
    bodies = result(report, "smoke_request_bodies")
    png_signature = b"\x89PNG\r\n\x1a\n".hex()
    assert bodies["cifar10_png"] == png_signature and bodies["room_png"] == png_signature
    assert bodies["acoustic_wav"] == [44100, 2, 2, 22050]  # rate, channels, 16-bit, half a second
    # the two bodies that need an encoder say which package to add
    assert bodies["room_jpeg"].startswith("ModuleNotFoundError: ") and "needs Pillow" in bodies["room_jpeg"]
    assert bodies["meld_clips"].startswith("ModuleNotFoundError: ") and "needs imageio-ffmpeg" in bodies["meld_clips"]


def test_an_airflow_for_the_local_profile_writes_every_synthetic_data_set_without_torch(local_profile_report):
    local = result(local_profile_report, "local_profile_data")
    assert set(local["files"]) == set(WORKLOADS) and all(local["files"].values()), local["files"]
    assert local["jpeg"] == "ffd8ff" and local["mp4_clips"] == ["ftyp", "ftyp"]
    assert local["heavy_modules_loaded"] == []
