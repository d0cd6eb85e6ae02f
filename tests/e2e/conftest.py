"""Whole DAG runs: a throwaway Airflow home per test module, its aws_default pointed at the emulator."""
from __future__ import annotations

import pytest

from include.local_airflow import airflow_environment, migrate_db


@pytest.fixture(scope="module")
def airflow_env(emulator, tmp_path_factory):
    env = airflow_environment(tmp_path_factory.mktemp("airflow-home"), emulator.endpoint_url)
    migrate_db(env)
    return env


def output_of(result) -> str:
    """What `airflow dags test` printed, stdout and stderr together."""
    return (result.stdout or "") + (result.stderr or "")
