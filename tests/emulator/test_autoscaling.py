"""Application Auto Scaling for endpoint variants (served by moto on the emulator's port), and the
teardown operator that deregisters a variant's scaling before it deletes the endpoint."""
from __future__ import annotations

import json

import pytest

from tests.conftest import TEST_REGION
from tests.emulator.hosting_fixtures import create_config, create_model, deploy, instance_variant, scaler_files, unique

DIMENSION = "sagemaker:variant:DesiredInstanceCount"


@pytest.fixture(scope="module")
def autoscaling_client(emulator):
    import boto3

    return boto3.client("application-autoscaling", endpoint_url=emulator.endpoint_url, region_name=TEST_REGION,
                        aws_access_key_id="testing", aws_secret_access_key="testing")


def _register_variant_scaling(autoscaling_client, endpoint: str) -> str:
    resource_id = f"endpoint/{endpoint}/variant/AllTraffic"
    autoscaling_client.register_scalable_target(ServiceNamespace="sagemaker", ResourceId=resource_id,
                                                ScalableDimension=DIMENSION, MinCapacity=1, MaxCapacity=4)
    autoscaling_client.put_scaling_policy(
        PolicyName=f"{endpoint}-invocations", ServiceNamespace="sagemaker", ResourceId=resource_id,
        ScalableDimension=DIMENSION, PolicyType="TargetTrackingScaling",
        TargetTrackingScalingPolicyConfiguration={
            "TargetValue": 70.0,
            "PredefinedMetricSpecification": {"PredefinedMetricType": "SageMakerVariantInvocationsPerInstance"},
            "ScaleInCooldown": 300, "ScaleOutCooldown": 60})
    return resource_id


@pytest.mark.slow  # the first Application Auto Scaling call loads moto's backend: seconds
def test_variant_scaling_target_and_policy_are_accepted_and_visible(autoscaling_client):
    endpoint = unique("scaled-ep")
    resource_id = _register_variant_scaling(autoscaling_client, endpoint)
    (target,) = autoscaling_client.describe_scalable_targets(ServiceNamespace="sagemaker", ResourceIds=[resource_id])["ScalableTargets"]
    assert (target["ScalableDimension"], target["MinCapacity"], target["MaxCapacity"]) == (DIMENSION, 1, 4)
    (policy,) = autoscaling_client.describe_scaling_policies(ServiceNamespace="sagemaker", ResourceId=resource_id)["ScalingPolicies"]
    assert policy["PolicyType"] == "TargetTrackingScaling"
    assert policy["TargetTrackingScalingPolicyConfiguration"]["TargetValue"] == 70.0
    autoscaling_client.deregister_scalable_target(ServiceNamespace="sagemaker", ResourceId=resource_id,
                                                  ScalableDimension=DIMENSION)


@pytest.mark.slow
def test_delete_endpoint_operator_deregisters_scaling_first(emulator, sagemaker_client, s3_client, autoscaling_client,
                                                            monkeypatch):
    from sagemaker_pipelines_plugin.endpoints import SageMakerDeleteEndpointOperator

    monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", json.dumps({
        "conn_type": "aws", "login": "testing", "password": "testing",
        "extra": {"region_name": TEST_REGION, "endpoint_url": emulator.endpoint_url}}))
    model = create_model(sagemaker_client, s3_client, unique("scaled"), scaler_files(2, "scaled"))
    config = create_config(sagemaker_client, unique("scaled-cfg"), [instance_variant(model)])
    endpoint = unique("scaled-ep")
    assert deploy(sagemaker_client, endpoint, config)["EndpointStatus"] == "InService"
    resource_id = _register_variant_scaling(autoscaling_client, endpoint)

    # the endpoint must still be there (InService) when its scaling is deregistered
    status_at_deregistration = []
    deregister = SageMakerDeleteEndpointOperator._deregister_autoscaling

    def watched(operator, variants):
        status_at_deregistration.append(sagemaker_client.describe_endpoint(EndpointName=endpoint)["EndpointStatus"])
        deregister(operator, variants)

    monkeypatch.setattr(SageMakerDeleteEndpointOperator, "_deregister_autoscaling", watched)
    deleted = SageMakerDeleteEndpointOperator(task_id="teardown", endpoint_name=endpoint, poll_interval=0.5).execute({})
    assert status_at_deregistration == ["InService"]
    assert deleted == {"endpoint": endpoint, "endpoint_config": config, "models": [model]}
    assert autoscaling_client.describe_scalable_targets(
        ServiceNamespace="sagemaker", ResourceIds=[resource_id])["ScalableTargets"] == []
    assert endpoint not in [e["EndpointName"] for e in sagemaker_client.list_endpoints(NameContains=endpoint)["Endpoints"]]
