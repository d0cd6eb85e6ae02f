"""Shared fixtures: a local SageMaker on a free port of 127.0.0.1, and boto3 clients pointed at it."""
from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
for path in (ROOT, ROOT / "dags", ROOT / "plugins"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

TEST_REGION = "us-east-1"
TEST_BUCKET = "test-sagemaker-bucket"
TEST_ROLE_ARN = "arn:aws:iam::123456789012:role/SageMakerExecutionRole"

# no test may reach real AWS, whatever the developer's shell holds
for _var in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL"):
    os.environ.pop(_var, None)
os.environ.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION=TEST_REGION)
# Airflow reads its home at import: a throwaway one, never the developer's ~/airflow
os.environ["AIRFLOW_HOME"] = tempfile.mkdtemp(prefix="airflow-home-")
os.environ.update(
    AIRFLOW__CORE__LOAD_EXAMPLES="False",
    AIRFLOW__CORE__DAGS_FOLDER=str(ROOT / "dags"),
    AIRFLOW__CORE__PLUGINS_FOLDER=str(ROOT / "plugins"),
)


def start_emulator(state_dir, **settings):
    """A local SageMaker on a free port; a test module starts one of its own for settings (short periods,
    one job slot) the session's emulator does not have. The caller stops it."""
    from include.emulator.state import Settings
    from include.emulator.gateway import EmulatorServer

    return EmulatorServer(Settings(port=0, state_dir=state_dir, **settings)).start()


def client_of(emulator, service, **kwargs):
    """A boto3 client of `service` pointed at an emulator, with test credentials."""
    import boto3

    return boto3.client(service, endpoint_url=emulator.endpoint_url, region_name=TEST_REGION,
                        aws_access_key_id="testing", aws_secret_access_key="testing", **kwargs)


def raw_request(endpoint_url: str, method: str, path: str, body: bytes = b"", headers: dict | None = None,
                timeout: float = 60) -> tuple[int, dict[str, str], bytes]:
    """(status, lower-cased headers, body) of one request sent exactly as given, past any client's checks;
    Host defaults to the server's own address."""
    import http.client
    from urllib.parse import urlsplit

    url = urlsplit(endpoint_url)
    headers = {"Host": url.netloc, **(headers or {})}
    connection = http.client.HTTPConnection(url.hostname, url.port, timeout=timeout)
    try:
        connection.request(method, path, body=body, headers=headers)
        response = connection.getresponse()
        return response.status, {key.lower(): value for key, value in response.getheaders()}, response.read()
    finally:
        connection.close()


@pytest.fixture(scope="session")
def emulator(tmp_path_factory):
    """The local SageMaker, started once per test session."""
    server = start_emulator(tmp_path_factory.mktemp("emulator-state"))
    yield server
    server.stop()




@pytest.fixture(scope="session")
def sagemaker_client(emulator):
    return client_of(emulator, "sagemaker")


@pytest.fixture(scope="session")
def runtime_client(emulator):
    return client_of(emulator, "sagemaker-runtime")


@pytest.fixture(scope="session")
def s3_client(emulator):
    client = client_of(emulator, "s3")
    client.create_bucket(Bucket=TEST_BUCKET)
    return client


@pytest.fixture(scope="session")
def logs_client(emulator):
    return client_of(emulator, "logs")


# Longest first, since a long module started last runs alone at the end: with `pytest -n 2 --dist
# loadscope --no-loadscope-reorder` (make test) each worker takes the next module in this order, one at a
# time (and the next one early, once two of its tests are left). Without --no-loadscope-reorder xdist
# orders modules by their number of tests instead, and the cifar10 module (3 tests, 6 minutes) ran last,
# alone. scripts/replay_test_schedule.py replays a run's junit durations under either order.
# The two longest whole-DAG modules go first, then the other whole-DAG ones, then modules with slow
# tests, then the rest; modules move whole, and a module's tests keep their order.
LONGEST_FIRST = ("test_promotion_lifecycle.py", "test_cifar10_pipeline.py")


def pytest_collection_modifyitems(items):
    def rank(item) -> int:
        if item.path.name in LONGEST_FIRST:
            return LONGEST_FIRST.index(item.path.name)
        return len(LONGEST_FIRST) + (0 if item.get_closest_marker("e2e") else 1 if item.get_closest_marker("slow") else 2)

    module_rank: dict = {}
    for item in items:
        module_rank[item.path] = min(rank(item), module_rank.get(item.path, rank(item)))
    items.sort(key=lambda item: module_rank[item.path])
