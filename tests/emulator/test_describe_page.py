"""GET /_emulator/describe/<Resource>?name=...: the page an Airflow extra link opens on the local SageMaker.

Read-only, and only for requests addressed to the loopback address."""
from __future__ import annotations

import json
import urllib.error
import urllib.request
from urllib.parse import urlsplit

import pytest

from tests.conftest import TEST_REGION

TEST_GROUP = "describe-page-group"


def _get(emulator, path: str, *, method: str = "GET", **headers: str) -> tuple[int, dict, dict]:
    request = urllib.request.Request(f"{emulator.endpoint_url}{path}", method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, dict(response.headers), json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), json.loads(error.read() or b"{}")


@pytest.fixture(scope="module")
def package_group(sagemaker_client):
    sagemaker_client.create_model_package_group(ModelPackageGroupName=TEST_GROUP)
    return TEST_GROUP


def test_describes_a_resource_as_describe_does(emulator, sagemaker_client, package_group):
    status, headers, body = _get(emulator, f"/_emulator/describe/ModelPackageGroup?name={package_group}&region={TEST_REGION}")
    assert status == 200
    assert headers["Content-Type"].startswith("application/json")
    expected = sagemaker_client.describe_model_package_group(ModelPackageGroupName=package_group)
    assert body["ModelPackageGroupName"] == package_group
    assert body["ModelPackageGroupArn"] == expected["ModelPackageGroupArn"]


def test_an_unknown_name_gets_sagemakers_own_error(emulator):
    status, _, body = _get(emulator, "/_emulator/describe/TrainingJob?name=no-such-job")
    assert status == 400
    assert body["__type"] == "ValidationException"
    assert "not found" in body["message"].lower() or "could not find" in body["message"].lower()


def test_an_unknown_resource_or_a_missing_name_is_refused(emulator):
    assert _get(emulator, "/_emulator/describe/Cluster?name=x")[0] == 404
    assert _get(emulator, "/_emulator/describe/TrainingJob")[0] == 400


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE"])
def test_it_is_read_only(emulator, package_group, method):
    status, headers, _ = _get(emulator, f"/_emulator/describe/ModelPackageGroup?name={package_group}", method=method)
    assert status == 405
    assert headers["Allow"] == "GET, HEAD"


def test_a_request_for_a_foreign_host_is_refused(emulator, package_group):
    """A DNS name rebound to 127.0.0.1 must not turn a web page into a reader of the local SageMaker."""
    status, _, _ = _get(emulator, f"/_emulator/describe/ModelPackageGroup?name={package_group}", Host="attacker.example")
    assert status == 403


def test_a_cross_origin_request_is_refused(emulator, package_group):
    status, _, _ = _get(emulator, f"/_emulator/describe/ModelPackageGroup?name={package_group}",
                        Origin="https://attacker.example")
    assert status == 403


def test_localhost_is_a_loopback_address(emulator, package_group):
    port = urlsplit(emulator.endpoint_url).port
    status, _, _ = _get(emulator, f"/_emulator/describe/ModelPackageGroup?name={package_group}", Host=f"localhost:{port}")
    assert status == 200
