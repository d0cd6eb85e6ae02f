"""What the endpoint janitor's tests share (tests/unit/test_janitor.py sweeps the local SageMaker itself,
tests/e2e/test_endpoint_janitor.py through the DAG): endpoints on a config and model of their own, tagged as
a case needs, whether a resource is still there, and freeing the model servers afterwards."""
from __future__ import annotations

from include.pipelines.janitor import is_missing
from tests.emulator.hosting_fixtures import create_config, create_model, instance_variant, scaler_files, unique, wait_for_status

PAST = "2020-01-01T00:00:00Z"  # an expires-at long gone


def exists(call, **kwargs) -> bool:
    """Whether a Describe* call finds its resource; an error other than "not found" fails the test."""
    from botocore.exceptions import ClientError

    try:
        call(**kwargs)
    except ClientError as error:
        assert is_missing(error), error
        return False
    return True


def wait_in_service(sagemaker_client, endpoint: str) -> None:
    described = wait_for_status(sagemaker_client, endpoint, {"InService", "Failed"})
    assert described["EndpointStatus"] == "InService", (endpoint, described.get("FailureReason"))


def make_endpoint(sagemaker_client, s3_client, made: dict[str, dict], prefix: str, key: str, tags: list[dict], *,
                  extra_models: tuple[str, ...] = (), wait: bool = True) -> dict:
    """made[key] = {"endpoint", "config", "models"}: an endpoint with `tags` on a config of its own model (whose
    answers are tagged `key`), plus a variant for each of `extra_models`; InService when `wait`. Recorded in
    `made` before the endpoint is created, so that delete_endpoints frees it whatever happens next."""
    model = create_model(sagemaker_client, s3_client, unique(f"{prefix}-{key}"), scaler_files(2, key))
    variants = [instance_variant(model)] + [instance_variant(m, f"V{i}") for i, m in enumerate(extra_models)]
    config = create_config(sagemaker_client, unique(f"{prefix}-{key}-cfg"), variants)
    endpoint = unique(f"{prefix}-{key}-ep")
    made[key] = {"endpoint": endpoint, "config": config, "models": [model, *extra_models]}
    sagemaker_client.create_endpoint(EndpointName=endpoint, EndpointConfigName=config, Tags=tags)
    if wait:
        wait_in_service(sagemaker_client, endpoint)
    return made[key]


def delete_endpoints(sagemaker_client, made: dict[str, dict]) -> None:
    """Free the model servers of the endpoints in `made` that the janitor left."""
    for parts in made.values():
        if exists(sagemaker_client.describe_endpoint, EndpointName=parts["endpoint"]):
            sagemaker_client.delete_endpoint(EndpointName=parts["endpoint"])
