"""Whole DAG runs in a real Airflow: api-server, scheduler, dag-processor and triggerer, LocalExecutor,
started once for the session with its aws_default pointed at the local SageMaker."""
from __future__ import annotations

import pytest

from include.local_airflow import LocalAirflow


@pytest.fixture(scope="session")
def airflow(emulator, tmp_path_factory):
    with LocalAirflow(tmp_path_factory.mktemp("airflow-home"), emulator.endpoint_url) as airflow:
        yield airflow


def succeeded(run) -> bool:
    """For `assert succeeded(run), run.report()`: the run's state, with the failed tasks' logs on failure."""
    return run.succeeded
