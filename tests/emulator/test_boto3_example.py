"""The documented boto3 walk-through runs unchanged against the local SageMaker."""
from __future__ import annotations

import pytest

from examples.boto3_end_to_end import run
from tests.conftest import TEST_REGION, TEST_ROLE_ARN


@pytest.mark.slow
def test_boto3_walkthrough_trains_hosts_invokes_and_cleans_up(emulator):
    report = run(emulator.endpoint_url, TEST_REGION, "example-walkthrough-bucket", TEST_ROLE_ARN, suffix="-t")
    assert report["status"] == "Completed"
    assert report["metrics"] == {"mean": 6.0}  # (1 + 2 + 3 + 6) / 4 * scale 2
    assert report["log_has_metric_line"]
    assert {"model.json", "code/inference.py"} <= set(report["model_files"])
    assert "scale must be positive, got -1.0" in report["failure_reason"]
    assert report["endpoint_status"] == "InService"
    assert report["prediction"] == {"centered": [-3.0, -2.0]}
    assert "negative values are not allowed" in report["model_error"]
    assert report["endpoints_left"] == []
