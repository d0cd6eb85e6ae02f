"""Whole DAG runs in a real Airflow: api-server, scheduler, dag-processor and triggerer, LocalExecutor,
started once for this package's tests (and stopped after them) with its aws_default pointed at the
local SageMaker."""
from __future__ import annotations

import pytest

from include.local_airflow import LocalAirflow


@pytest.fixture(scope="package")
def airflow(emulator, tmp_path_factory):
    with LocalAirflow(tmp_path_factory.mktemp("airflow-home"), emulator.endpoint_url) as airflow:
        yield airflow

