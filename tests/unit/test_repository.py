"""Promises the repository makes to its users: the quickstart, the pinned environment, compose."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]


def test_readme_quickstart_is_make_demo_and_make_test():
    readme = (ROOT / "README.md").read_text()
    quickstart = readme.split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    commands = re.findall(r"^(make \w+)", quickstart, flags=re.M)
    assert commands == ["make demo", "make test"]


def test_ci_runs_the_readme_test_command():
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def test_makefile_has_the_documented_targets():
    makefile = (ROOT / "Makefile").read_text()
    for target in ("setup", "demo", "test", "test-fast", "emulator"):
        assert re.search(rf"^{target}:", makefile, flags=re.M), f"Makefile lacks the {target} target"


def _requirements(name: str) -> list[str]:
    return [line.split("#")[0].strip() for line in (ROOT / name).read_text().splitlines() if line.split("#")[0].strip()]


@pytest.mark.parametrize("name", ["requirements.txt", "requirements-synthetic-data.txt", "requirements-local.txt"])
def test_every_requirement_is_pinned(name):
    unpinned = [line for line in _requirements(name) if "==" not in line and not line.startswith("-r ")]
    assert not unpinned, f"pin these in {name}: {unpinned}"


def test_the_airflow_side_needs_no_training_stack_and_the_local_stack_adds_to_it():
    airflow_side = {re.split(r"[=\[]", line)[0].lower() for line in _requirements("requirements.txt")}
    training_stack = {"torch", "torchvision", "transformers", "ultralytics", "h5py", "soundfile", "s3fs", "pillow",
                      "sagemaker", "moto"}
    assert not airflow_side & training_stack, f"requirements.txt (the Airflow side) lists {airflow_side & training_stack}"
    assert _requirements("requirements-local.txt")[0] == "-r requirements.txt"


def test_docker_compose_runs_airflow_3_and_the_emulator():
    compose = yaml.safe_load((ROOT / "docker-compose.yaml").read_text())
    services = compose["services"]
    expected = {"postgres", "sagemaker-emulator", "airflow-init", "airflow-apiserver", "airflow-scheduler",
                "airflow-dag-processor", "airflow-triggerer"}
    assert expected <= set(services), f"missing services: {expected - set(services)}"
    for name in ("airflow-apiserver", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer"):
        env = services[name]["environment"]
        assert "endpoint_url" in env["AIRFLOW_CONN_AWS_DEFAULT"], f"{name} does not reach the emulator"
    # published ports stay on the host's loopback interface
    for name, service in services.items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} beyond loopback"
