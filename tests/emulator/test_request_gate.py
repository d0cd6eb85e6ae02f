"""The request gate: the local SageMaker answers only requests addressed to its own address, sent by no web page.

A web page can make a browser send an unsigned CreateProcessingJob to 127.0.0.1, cross-origin or
through a DNS name rebound to 127.0.0.1; its ContainerEntrypoint would run on this machine."""
from __future__ import annotations

import json
import time
from urllib.parse import urlsplit

import pytest

from tests.conftest import TEST_BUCKET, TEST_ROLE_ARN, raw_request, start_emulator
from tests.emulator.hosting_fixtures import unique

SKLEARN_IMAGE = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3"
EVIL_ORIGIN = "http://evil.example"
REBOUND_HOST = "rebind.evil.example"
TEST_ALLOWED_ORIGIN = "http://localhost:3000"


def _send(endpoint_url: str, method: str, path: str, body: bytes = b"", **headers: str):
    """(status, headers, body) of one raw request: Host and Origin exactly as a browser would send them."""
    return raw_request(endpoint_url, method, path, body, {key.replace("_", "-"): value for key, value in headers.items()},
                       timeout=30)


def _create_processing_job(endpoint_url: str, job: str, marker, **headers: str):
    """An unsigned CreateProcessingJob, as a web page's script can send it, whose entrypoint touches ``marker``."""
    request = {
        "ProcessingJobName": job,
        "RoleArn": TEST_ROLE_ARN,
        "AppSpecification": {"ImageUri": SKLEARN_IMAGE,
                             "ContainerEntrypoint": ["python3", "-c", f"import pathlib; pathlib.Path({str(marker)!r}).touch()"]},
        "ProcessingResources": {"ClusterConfig": {"InstanceCount": 1, "InstanceType": "ml.m5.large", "VolumeSizeInGB": 5}},
    }
    return _send(endpoint_url, "POST", "/", json.dumps(request).encode(), X_Amz_Target="SageMaker.CreateProcessingJob",
                 Content_Type="application/x-amz-json-1.1", **headers)


def _processing_job_names(sagemaker_client) -> set[str]:
    return {job["ProcessingJobName"] for job in sagemaker_client.list_processing_jobs(MaxResults=100)["ProcessingJobSummaries"]}


def _assert_refused(status: int, headers: dict, body: bytes) -> None:
    assert status == 403
    assert headers["x-amzn-errortype"] == "AccessDeniedException"
    assert json.loads(body)["__type"] == "AccessDeniedException"
    assert not [name for name in headers if name.startswith("access-control-")]


@pytest.fixture(scope="module")
def widened_emulator(tmp_path_factory):
    """A second server whose settings allow one web origin and the compose service name."""
    server = start_emulator(tmp_path_factory.mktemp("widened-state"), allowed_origins=(TEST_ALLOWED_ORIGIN,),
                            allowed_hosts=("sagemaker-emulator",))
    yield server
    server.stop()


def test_a_cross_origin_create_processing_job_is_refused_and_never_runs(emulator, sagemaker_client, tmp_path):
    job, marker = unique("gate-origin"), tmp_path / "ran"
    _assert_refused(*_create_processing_job(emulator.endpoint_url, job, marker, Origin=EVIL_ORIGIN))
    time.sleep(2)  # what would have run has had time to start
    assert not marker.exists()
    assert job not in _processing_job_names(sagemaker_client)


def test_a_rebound_dns_name_is_refused_and_never_runs(emulator, sagemaker_client, tmp_path):
    job, marker = unique("gate-host"), tmp_path / "ran"
    port = urlsplit(emulator.endpoint_url).port
    _assert_refused(*_create_processing_job(emulator.endpoint_url, job, marker, Host=f"{REBOUND_HOST}:{port}"))
    time.sleep(2)
    assert not marker.exists()
    assert job not in _processing_job_names(sagemaker_client)


def test_the_same_request_from_this_machine_runs(emulator, sagemaker_client, tmp_path):
    """The control: what the gate refuses above is a request that would otherwise have run its entrypoint."""
    job, marker = unique("gate-loopback"), tmp_path / "ran"
    status, _, body = _create_processing_job(emulator.endpoint_url, job, marker)
    assert status == 200, body
    sagemaker_client.get_waiter("processing_job_completed_or_stopped").wait(
        ProcessingJobName=job, WaiterConfig={"Delay": 1, "MaxAttempts": 120})
    assert marker.exists()


@pytest.mark.parametrize("origin", [EVIL_ORIGIN, "null", TEST_ALLOWED_ORIGIN])
def test_a_cors_preflight_is_refused(emulator, origin):
    _assert_refused(*_send(emulator.endpoint_url, "OPTIONS", "/", Origin=origin, Access_Control_Request_Method="POST",
                           Access_Control_Request_Headers="content-type,x-amz-target"))


def test_an_options_request_without_origin_is_refused(emulator):
    _assert_refused(*_send(emulator.endpoint_url, "OPTIONS", f"/{TEST_BUCKET}"))


@pytest.mark.parametrize("method, path", [
    ("POST", "/endpoints/any-endpoint/invocations"),  # sagemaker-runtime
    ("GET", f"/{TEST_BUCKET}"),  # S3, moto's
    ("GET", "/_emulator/health"),
    ("GET", "/_emulator/describe/TrainingJob?name=any-job"),
])
@pytest.mark.parametrize("host", [REBOUND_HOST, f"{REBOUND_HOST}:4566", "sagemaker-emulator", "0.0.0.0", "127.0.0.1.evil.example",
                                  "evil.example@127.0.0.1", ""])
def test_every_route_refuses_a_foreign_host(emulator, s3_client, method, path, host):
    _assert_refused(*_send(emulator.endpoint_url, method, path, b"{}" if method == "POST" else b"", Host=host))


@pytest.mark.parametrize("path", [f"/{TEST_BUCKET}", "/_emulator/health", "/endpoints/any-endpoint/invocations"])
def test_every_route_refuses_a_cross_origin_request(emulator, s3_client, path):
    _assert_refused(*_send(emulator.endpoint_url, "POST" if "invocations" in path else "GET", path, Origin=EVIL_ORIGIN))


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "LOCALHOST:{port}", "[::1]:{port}", "127.0.0.1:{port}"])
def test_loopback_names_with_or_without_port_are_answered(emulator, host):
    host = host.format(port=urlsplit(emulator.endpoint_url).port)
    status, _, body = _send(emulator.endpoint_url, "GET", "/_emulator/health", Host=host)
    assert (status, json.loads(body)) == (200, {"status": "ok"})


def test_no_response_carries_motos_cors_headers(emulator, s3_client):
    status, headers, _ = _send(emulator.endpoint_url, "GET", f"/{TEST_BUCKET}")
    assert status == 200
    assert not [name for name in headers if name.startswith("access-control-")]


def test_boto3_clients_still_work(sagemaker_client, s3_client, logs_client):
    assert "Models" in sagemaker_client.list_models()
    s3_client.put_object(Bucket=TEST_BUCKET, Key="gate/object.txt", Body=b"kept")
    assert s3_client.get_object(Bucket=TEST_BUCKET, Key="gate/object.txt")["Body"].read() == b"kept"
    assert "logGroups" in logs_client.describe_log_groups()


def test_an_allowed_origin_is_answered_with_cors_headers(widened_emulator):
    status, headers, _ = _send(widened_emulator.endpoint_url, "OPTIONS", "/", Origin=TEST_ALLOWED_ORIGIN,
                               Access_Control_Request_Method="POST", Access_Control_Request_Headers="content-type,x-amz-target")
    assert status == 204
    assert headers["access-control-allow-origin"] == TEST_ALLOWED_ORIGIN
    assert headers["access-control-allow-headers"] == "content-type,x-amz-target"
    status, headers, body = _send(widened_emulator.endpoint_url, "POST", "/", b"{}", Origin=TEST_ALLOWED_ORIGIN,
                                  X_Amz_Target="SageMaker.ListModels", Content_Type="application/x-amz-json-1.1")
    assert status == 200, body
    assert headers["access-control-allow-origin"] == TEST_ALLOWED_ORIGIN
    assert "Models" in json.loads(body)


def test_an_allowed_origin_admits_no_other(widened_emulator):
    _assert_refused(*_send(widened_emulator.endpoint_url, "GET", "/_emulator/health", Origin=EVIL_ORIGIN))
    _assert_refused(*_send(widened_emulator.endpoint_url, "GET", "/_emulator/health", Origin="http://localhost:3001"))


def test_an_allowed_host_name_is_answered(widened_emulator):
    port = urlsplit(widened_emulator.endpoint_url).port
    assert _send(widened_emulator.endpoint_url, "GET", "/_emulator/health", Host=f"sagemaker-emulator:{port}")[0] == 200
    _assert_refused(*_send(widened_emulator.endpoint_url, "GET", "/_emulator/health", Host=f"{REBOUND_HOST}:{port}"))


def test_the_container_network_flag_admits_the_compose_service_name_only():
    from include.emulator.__main__ import settings_from_arguments

    assert settings_from_arguments([]).allowed_hosts == ()
    assert settings_from_arguments(["--allow-container-network"]).allowed_hosts == ("sagemaker-emulator",)
    assert settings_from_arguments(["--allow-container-network", "--allow-host", "emulator"]).allowed_hosts == ("emulator",)
    assert settings_from_arguments(["--allow-origin", "HTTP://LocalHost:3000/"]).allowed_origins == (TEST_ALLOWED_ORIGIN,)
    with pytest.raises(SystemExit):
        settings_from_arguments(["--allow-origin", "*"])


def test_a_server_on_every_interface_gives_its_own_clients_the_loopback_address(tmp_path):
    """In its container the emulator listens on 0.0.0.0; its jobs must still address it by a name the gate admits."""
    from include.emulator.state import Emulator, Settings

    emulator = Emulator(Settings(host="0.0.0.0", allow_container_network=True, port=4566, state_dir=tmp_path))
    assert emulator.endpoint_url == "http://127.0.0.1:4566"
