"""Fault injection: the emulator:fault tag, its parser, and the endpoint and transform faults it switches on."""
from __future__ import annotations

import time

import pytest
from botocore.exceptions import ClientError

from include.emulator.faults import FAULT_TAG, Faults, FaultTagError, faults_for
from tests.conftest import TEST_BUCKET
from tests.emulator.hosting_fixtures import (
    create_config,
    create_model,
    deploy,
    instance_variant,
    invoke_json,
    scaler_files,
    unique,
    upload,
    wait_for_status,
)


def _fault(value: str) -> list[dict]:
    return [{"Key": FAULT_TAG, "Value": value}]


# --- the parser ------------------------------------------------------------------------------------------

def test_no_tag_injects_nothing():
    assert faults_for(None) == Faults() and not faults_for({"team": "ml"})
    assert not faults_for([{"Key": "team", "Value": "ml"}])


def test_each_fault_parses_into_its_typed_field():
    assert faults_for({FAULT_TAG: "health-check-fails"}) == Faults(health_check_fails=True, health_check_give_up_s=5.0)
    assert faults_for({FAULT_TAG: "health-check-fails:2"}).health_check_give_up_s == 2.0
    assert faults_for({FAULT_TAG: "slow-start:3.5"}).slow_start_s == 3.5
    assert faults_for(_fault("spot-interruption:30")).spot_interruption_after_s == 30.0
    both = faults_for({FAULT_TAG: "slow-start:2 spot-interruption:10"})
    assert (both.slow_start_s, both.spot_interruption_after_s, both.health_check_fails) == (2.0, 10.0, False)
    assert str(both) == "slow-start:2 spot-interruption:10"


def test_a_typo_is_an_error_not_a_silent_no_op():
    with pytest.raises(FaultTagError, match="unknown fault 'health-check-fail'"):
        faults_for({FAULT_TAG: "health-check-fail"})
    with pytest.raises(FaultTagError, match="'slow-start' needs a number of seconds"):
        faults_for({FAULT_TAG: "slow-start"})
    with pytest.raises(FaultTagError, match="non-negative number of seconds"):
        faults_for({FAULT_TAG: "spot-interruption:soon"})


def test_faults_merge_and_startup_timeout():
    merged = Faults(slow_start_s=1).merged(Faults(health_check_fails=True, health_check_give_up_s=2))
    assert merged.health_check_fails and merged.slow_start_s == 1
    assert merged.startup_timeout(600) == 2 and Faults().startup_timeout(600) == 600


def test_fault_environment_is_never_inherited():
    inherited = {"PATH": "/bin", "EMULATOR_FAULT_PING_FAILS": "1"}
    assert Faults().server_environment(inherited) == {"PATH": "/bin"}
    assert Faults(slow_start_s=2).server_environment(inherited)["EMULATOR_FAULT_SLOW_START_SECONDS"] == "2"


# --- endpoints --------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_health_check_fault_fails_the_endpoint(sagemaker_client, s3_client):
    model = create_model(sagemaker_client, s3_client, unique("hc"), scaler_files(2, "hc"))
    config = create_config(sagemaker_client, unique("hc-cfg"), [instance_variant(model)])
    endpoint = unique("hc-ep")
    sagemaker_client.create_endpoint(EndpointName=endpoint, EndpointConfigName=config, Tags=_fault("health-check-fails:1"))
    described = wait_for_status(sagemaker_client, endpoint, {"InService", "Failed"}, timeout=60)
    assert described["EndpointStatus"] == "Failed"
    assert described["FailureReason"].startswith(
        "The primary container for production variant AllTraffic did not pass the ping health check")
    sagemaker_client.delete_endpoint(EndpointName=endpoint)


@pytest.mark.slow
def test_failed_update_by_fault_rolls_back_to_the_old_config(sagemaker_client, runtime_client, s3_client):
    """The new model's tag fails its health check: the endpoint stays InService on the old config."""
    old_model = create_model(sagemaker_client, s3_client, unique("stable"), scaler_files(2, "stable"))
    new_model = create_model(sagemaker_client, s3_client, unique("flaky"), scaler_files(3, "flaky"))
    sagemaker_client.add_tags(ResourceArn=sagemaker_client.describe_model(ModelName=new_model)["ModelArn"],
                              Tags=_fault("health-check-fails:1"))
    old_config = create_config(sagemaker_client, unique("stable-cfg"), [instance_variant(old_model)])
    new_config = create_config(sagemaker_client, unique("flaky-cfg"), [instance_variant(new_model)])
    endpoint = unique("rollback-ep")
    assert deploy(sagemaker_client, endpoint, old_config)["EndpointStatus"] == "InService"

    sagemaker_client.update_endpoint(EndpointName=endpoint, EndpointConfigName=new_config)
    assert sagemaker_client.describe_endpoint(EndpointName=endpoint)["EndpointStatus"] == "Updating"
    after = wait_for_status(sagemaker_client, endpoint, {"InService"}, timeout=60)
    assert after["EndpointConfigName"] == old_config
    assert "did not pass the ping health check" in after["FailureReason"]
    assert invoke_json(runtime_client, endpoint, {"values": [5]})[0] == {"tag": "stable", "outputs": [10]}
    sagemaker_client.delete_endpoint(EndpointName=endpoint)


@pytest.mark.slow
def test_slow_start_delays_in_service(sagemaker_client, runtime_client, s3_client):
    model = create_model(sagemaker_client, s3_client, unique("slow"), scaler_files(2, "slow"))
    config = unique("slow-cfg")
    sagemaker_client.create_endpoint_config(EndpointConfigName=config, ProductionVariants=[instance_variant(model)],
                                            Tags=_fault("slow-start:3"))
    endpoint = unique("slow-ep")
    started = time.monotonic()
    sagemaker_client.create_endpoint(EndpointName=endpoint, EndpointConfigName=config)
    time.sleep(1.5)  # the model has loaded by now, but /ping still answers 503
    assert sagemaker_client.describe_endpoint(EndpointName=endpoint)["EndpointStatus"] == "Creating"
    described = wait_for_status(sagemaker_client, endpoint, {"InService", "Failed"}, timeout=60)
    assert described["EndpointStatus"] == "InService"
    assert time.monotonic() - started >= 3
    assert invoke_json(runtime_client, endpoint, {"values": [1]})[0]["outputs"] == [2]
    sagemaker_client.delete_endpoint(EndpointName=endpoint)


def test_unreadable_fault_tag_fails_the_endpoint_with_the_parsers_message(sagemaker_client, s3_client):
    model = create_model(sagemaker_client, s3_client, unique("typo"), scaler_files(2, "typo"))
    config = create_config(sagemaker_client, unique("typo-cfg"), [instance_variant(model)])
    endpoint = unique("typo-ep")
    sagemaker_client.create_endpoint(EndpointName=endpoint, EndpointConfigName=config, Tags=_fault("slow-start:later"))
    described = wait_for_status(sagemaker_client, endpoint, {"InService", "Failed"}, timeout=30)
    assert described["EndpointStatus"] == "Failed"
    assert "Tag emulator:fault: 'slow-start:later' needs a non-negative number of seconds" in described["FailureReason"]
    sagemaker_client.delete_endpoint(EndpointName=endpoint)


# --- transform jobs ---------------------------------------------------------------------------------------

def _transform(sagemaker_client, s3_client, job: str, tags: list[dict]) -> None:
    model = create_model(sagemaker_client, s3_client, unique("tf-fault"), scaler_files(2, "tf"))
    upload(s3_client, f"{job}/in.json", b'{"values": [1]}')
    sagemaker_client.create_transform_job(
        TransformJobName=job, ModelName=model, Tags=tags,
        TransformInput={"DataSource": {"S3DataSource": {"S3DataType": "S3Prefix",
                                                        "S3Uri": f"s3://{TEST_BUCKET}/hosting-tests/{job}/"}},
                        "ContentType": "application/json"},
        TransformOutput={"S3OutputPath": f"s3://{TEST_BUCKET}/{job}-out/"},
        TransformResources={"InstanceType": "ml.m5.large", "InstanceCount": 1})


@pytest.mark.slow
def test_health_check_fault_fails_a_transform_job(sagemaker_client, s3_client):
    job = unique("tf-hc")
    _transform(sagemaker_client, s3_client, job, _fault("health-check-fails:1"))
    deadline = time.monotonic() + 60
    while (described := sagemaker_client.describe_transform_job(TransformJobName=job))["TransformJobStatus"] == "InProgress":
        assert time.monotonic() < deadline
        time.sleep(0.3)
    assert described["TransformJobStatus"] == "Failed"
    assert described["FailureReason"].startswith("AlgorithmError: The primary container for production variant")
    assert "did not pass the ping health check" in described["FailureReason"]


def test_transform_job_refuses_an_unreadable_fault_tag(sagemaker_client, s3_client):
    with pytest.raises(ClientError) as excinfo:
        _transform(sagemaker_client, s3_client, unique("tf-typo"), _fault("fail-everything"))
    assert excinfo.value.response["Error"]["Code"] == "ValidationException"
    assert "unknown fault 'fail-everything'" in excinfo.value.response["Error"]["Message"]
