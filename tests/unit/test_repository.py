"""Promises the repository makes to its users: the quickstart, the pinned environment, compose."""
from __future__ import annotations

import re
from pathlib import Path

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


def test_every_requirement_is_pinned():
    lines = [line.split("#")[0].strip() for line in (ROOT / "requirements.txt").read_text().splitlines()]
    unpinned = [line for line in lines if line and "==" not in line]
    assert not unpinned, f"pin these in requirements.txt: {unpinned}"


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
