"""Shared by the hosting and runtime tests: tiny inference scripts, model archives, deploy helpers."""
from __future__ import annotations

import io
import json
import tarfile
import textwrap
import time
import uuid

from tests.conftest import TEST_BUCKET, TEST_ROLE_ARN

IMAGE = "763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-inference:2.5.1-cpu-py311-ubuntu22.04-sagemaker"
PREFIX = "hosting-tests"

# A model whose weights are a JSON file: it scales "values" and says which model answered.
# BadRequest comes from a helper module beside the script, as real inference code does.
SCALER_PY = textwrap.dedent(
    """
    import json, os, time

    from helpers import BadRequest

    def model_fn(model_dir):
        with open(os.path.join(model_dir, "model.json")) as f:
            return json.load(f)

    def input_fn(body, content_type):
        if content_type != "application/json":
            raise BadRequest(f"unsupported content type {content_type}")
        return json.loads(body)

    def predict_fn(data, model):
        if data.get("fail"):
            raise ValueError(data["fail"])
        if data.get("sleep"):
            time.sleep(data["sleep"])
        if "values" not in data:
            raise BadRequest("the request needs 'values'")
        return {"tag": model["tag"], "outputs": [v * model["scale"] for v in data["values"]]}

    def output_fn(prediction, accept, context):
        attributes = context.get_request_header(0, "X-Amzn-SageMaker-Custom-Attributes")
        if attributes:
            context.set_response_header(0, "X-Amzn-SageMaker-Custom-Attributes", f"seen={attributes}")
        return json.dumps(prediction), "application/json"
    """
)
HELPERS_PY = textwrap.dedent(
    """
    class BadRequest(Exception):
        status_code = 400  # the model server answers with this status
    """
)
FAILING_MODEL_FN_PY = textwrap.dedent(
    """
    def model_fn(model_dir):
        raise RuntimeError("weights file model.bin is corrupt")
    """
)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def model_archive(files: dict[str, str | bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, content in sorted(files.items()):
            data = content.encode() if isinstance(content, str) else content
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def upload(s3_client, key: str, data: bytes) -> str:
    s3_client.put_object(Bucket=TEST_BUCKET, Key=f"{PREFIX}/{key}", Body=data)
    return f"s3://{TEST_BUCKET}/{PREFIX}/{key}"


def scaler_files(scale: float, tag: str) -> dict[str, str]:
    return {
        "model.json": json.dumps({"scale": scale, "tag": tag}),
        "code/inference.py": SCALER_PY,
        "code/helpers.py": HELPERS_PY,
    }


def create_model(sagemaker_client, s3_client, name: str, files: dict[str, str | bytes], *,
                 image: str = IMAGE, environment: dict | None = None) -> str:
    """Upload ``files`` as model.tar.gz and CreateModel on it; returns the model name."""
    uri = upload(s3_client, f"{name}/model.tar.gz", model_archive(files))
    sagemaker_client.create_model(
        ModelName=name,
        PrimaryContainer={"Image": image, "ModelDataUrl": uri,
                          "Environment": {"SAGEMAKER_PROGRAM": "inference.py", **(environment or {})}},
        ExecutionRoleArn=TEST_ROLE_ARN,
    )
    return name


def instance_variant(model_name: str, variant: str = "AllTraffic", *, count: int = 1, weight: float = 1.0) -> dict:
    return {"VariantName": variant, "ModelName": model_name, "InstanceType": "ml.m5.large",
            "InitialInstanceCount": count, "InitialVariantWeight": weight}


def create_config(sagemaker_client, name: str, variants: list[dict]) -> str:
    sagemaker_client.create_endpoint_config(EndpointConfigName=name, ProductionVariants=variants)
    return name


def wait_for_status(sagemaker_client, endpoint_name: str, wanted: set[str], timeout: float = 90) -> dict:
    """DescribeEndpoint until the status is one of ``wanted`` (and no update is pending)."""
    deadline = time.monotonic() + timeout
    while True:
        description = sagemaker_client.describe_endpoint(EndpointName=endpoint_name)
        if description["EndpointStatus"] in wanted and "PendingDeploymentSummary" not in description:
            return description
        assert time.monotonic() < deadline, f"endpoint {endpoint_name} still {description['EndpointStatus']}"
        time.sleep(0.2)


def deploy(sagemaker_client, endpoint_name: str, config_name: str) -> dict:
    sagemaker_client.create_endpoint(EndpointName=endpoint_name, EndpointConfigName=config_name)
    return wait_for_status(sagemaker_client, endpoint_name, {"InService", "Failed"})


def invoke_json(runtime_client, endpoint_name: str, payload, **kwargs) -> tuple[dict, dict]:
    response = runtime_client.invoke_endpoint(
        EndpointName=endpoint_name, Body=json.dumps(payload), ContentType="application/json", **kwargs)
    return json.loads(response["Body"].read()), response
