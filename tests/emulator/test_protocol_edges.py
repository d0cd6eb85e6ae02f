"""awsJson edges answered as AWS answers them: a 400 with a JSON error, never a 500 or moto's own SageMaker mock."""
from __future__ import annotations

import json

import pytest
from botocore.exceptions import ClientError

from tests.conftest import TEST_REGION, raw_request
from tests.emulator.hosting_fixtures import unique

TEST_IMAGE = "763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-inference:2.1.0-cpu-py310"
TEST_ROLE = "arn:aws:iam::123456789012:role/SageMakerExecutionRole"
# what botocore sends: moto routes a request by the service in the credential scope, and checks no signature
SIGNED_FOR_SAGEMAKER = (f"AWS4-HMAC-SHA256 Credential=testing/20250101/{TEST_REGION}/sagemaker/aws4_request, "
                        "SignedHeaders=host;x-amz-date;x-amz-target, Signature=" + "0" * 64)


def _post(emulator, body: bytes, target: str | None = "SageMaker.ListModels", path: str = "/", method: str = "POST",
          **headers: str):
    headers = {"Content-Type": "application/x-amz-json-1.1", **{k.replace("_", "-"): v for k, v in headers.items()}}
    if target is not None:
        headers["X-Amz-Target"] = target
    return raw_request(emulator.endpoint_url, method, path, body, headers)


def _error(status: int, headers: dict, body: bytes) -> tuple[int, str]:
    assert headers["content-type"].startswith("application/x-amz-json-1.1"), body[:200]
    return status, json.loads(body)["__type"]


@pytest.mark.parametrize("body", [b"not json", b"{\"MaxResults\": ", b"\xff\xfe", b"[]", b"\"ListModels\""])
def test_a_body_that_is_no_json_object_is_a_serialization_exception(emulator, body):
    assert _error(*_post(emulator, body)) == (400, "SerializationException")


@pytest.mark.parametrize("depth", [100_000, 1_000, 150])
def test_deeply_nested_json_is_a_serialization_exception_not_a_crash(emulator, depth):
    body = b'{"Tags": ' + b"[" * depth + b"]" * depth + b"}"
    assert _error(*_post(emulator, body, "SageMaker.CreateModel")) == (400, "SerializationException")


def test_an_ordinary_nesting_depth_is_still_read(emulator):
    status, _, body = _post(emulator, json.dumps({"MaxResults": 10}).encode())
    assert status == 200, body
    assert "Models" in json.loads(body)


@pytest.mark.parametrize("target", ["AmazonSageMaker.CreateModel", "sagemaker.CreateModel", "SAGEMAKER.CreateModel",
                                    "SageMaker", "SageMakerCreateModel", "SageMaker_20171124.CreateModel", "Logs_20140328",
                                    "AmazonEC2ContainerRegistry_V20150921.CreateRepository", ".CreateModel"])
@pytest.mark.parametrize("signed", [False, True], ids=["unsigned", "signed-for-sagemaker"])
def test_a_foreign_target_is_an_unknown_operation_and_creates_nothing(emulator, sagemaker_client, target, signed):
    from moto.sagemaker.models import sagemaker_backends

    model = unique("foreign-target")
    request = {"ModelName": model, "ExecutionRoleArn": TEST_ROLE, "PrimaryContainer": {"Image": TEST_IMAGE}}
    headers = {"Authorization": SIGNED_FOR_SAGEMAKER, "X_Amz_Date": "20250101T000000Z"} if signed else {}
    assert _error(*_post(emulator, json.dumps(request).encode(), target, **headers)) == (400, "UnknownOperationException")
    with pytest.raises(ClientError, match="ValidationException"):
        sagemaker_client.describe_model(ModelName=model)
    assert not any(model in backend._models for backend in _all_regions(sagemaker_backends))


def test_a_sagemaker_request_without_a_target_never_reaches_motos_sagemaker(emulator):
    status, headers, body = _post(emulator, b"{}", None, Authorization=SIGNED_FOR_SAGEMAKER)
    assert _error(status, headers, body) == (400, "UnknownOperationException")


@pytest.mark.parametrize("path", ["/moto-api/reset", "/latest/meta-data/iam/security-credentials/"])
def test_motos_own_control_routes_are_not_served(emulator, path):
    status, headers, body = _post(emulator, b"", None, path=path, method="POST" if "reset" in path else "GET")
    assert _error(status, headers, body) == (400, "UnknownOperationException")


def test_an_unsupported_sagemaker_operation_is_still_unknown(emulator):
    status, headers, body = _post(emulator, b"{}", "SageMaker.CreateDomain")
    assert _error(status, headers, body) == (400, "UnknownOperationException")
    assert "CreateDomain" in json.loads(body)["message"]


def test_the_services_moto_answers_for_us_keep_working(emulator, logs_client):
    import boto3

    group = unique("/gate/edges")
    logs_client.create_log_group(logGroupName=group)
    assert [g["logGroupName"] for g in logs_client.describe_log_groups(logGroupNamePrefix=group)["logGroups"]] == [group]
    autoscaling = boto3.client("application-autoscaling", endpoint_url=emulator.endpoint_url, region_name=TEST_REGION)
    assert "ScalableTargets" in autoscaling.describe_scalable_targets(ServiceNamespace="sagemaker")
    sts = boto3.client("sts", endpoint_url=emulator.endpoint_url, region_name=TEST_REGION)
    assert sts.get_caller_identity()["Account"]


def _all_regions(backends):
    for account in backends.values():
        yield from account.values()
