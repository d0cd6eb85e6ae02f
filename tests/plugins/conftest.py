"""The operators under test reach the local SageMaker through Airflow's aws_default connection."""
from __future__ import annotations

import json

import pytest

from tests.conftest import TEST_REGION


@pytest.fixture(autouse=True)
def aws_default(emulator, monkeypatch):
    connection = {
        "conn_type": "aws",
        "login": "testing",
        "password": "testing",
        "extra": {"region_name": TEST_REGION, "endpoint_url": emulator.endpoint_url},
    }
    monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", json.dumps(connection))
