"""The model registry on the local SageMaker: package groups, versioned packages, approval, deployment."""
from __future__ import annotations

import json

import pytest
from botocore.exceptions import ClientError

from tests.conftest import TEST_REGION, TEST_ROLE_ARN
from tests.emulator.hosting_fixtures import (
    IMAGE,
    create_config,
    deploy,
    instance_variant,
    invoke_json,
    model_archive,
    scaler_files,
    unique,
    upload,
)

ACCOUNT = "123456789012"


def _group_arn(name: str) -> str:
    return f"arn:aws:sagemaker:{TEST_REGION}:{ACCOUNT}:model-package-group/{name.lower()}"


def _package_arn(name: str, version: int | None = None) -> str:
    suffix = f"/{version}" if version is not None else ""
    return f"arn:aws:sagemaker:{TEST_REGION}:{ACCOUNT}:model-package/{name.lower()}{suffix}"


def _error(excinfo) -> tuple[str, str]:
    return excinfo.value.response["Error"]["Code"], excinfo.value.response["Error"]["Message"]


def _inference_spec(model_url: str = "s3://test-sagemaker-bucket/models/model.tar.gz") -> dict:
    return {"Containers": [{"Image": IMAGE, "ModelDataUrl": model_url, "Environment": {"SAGEMAKER_PROGRAM": "inference.py"}}],
            "SupportedContentTypes": ["application/json"], "SupportedResponseMIMETypes": ["application/json"]}


def test_registry_round_trip(sagemaker_client):
    group = unique("Registry")
    assert sagemaker_client.create_model_package_group(
        ModelPackageGroupName=group, ModelPackageGroupDescription="cifar10 models",
        Tags=[{"Key": "workload", "Value": "cifar10"}])["ModelPackageGroupArn"] == _group_arn(group)
    described = sagemaker_client.describe_model_package_group(ModelPackageGroupName=group)
    assert described["ModelPackageGroupStatus"] == "Completed"
    assert described["ModelPackageGroupDescription"] == "cifar10 models"
    assert sagemaker_client.describe_model_package_group(ModelPackageGroupName=_group_arn(group))["ModelPackageGroupName"] == group
    assert group in [g["ModelPackageGroupName"] for g in
                     sagemaker_client.list_model_package_groups(NameContains=group)["ModelPackageGroupSummaryList"]]
    with pytest.raises(ClientError) as excinfo:
        sagemaker_client.create_model_package_group(ModelPackageGroupName=group)
    assert _error(excinfo) == ("ValidationException", f"Model Package Group already exists: {_group_arn(group)}")

    metrics = {"ModelQuality": {"Statistics": {"ContentType": "application/json", "S3Uri": "s3://b/metrics.json"}}}
    first = sagemaker_client.create_model_package(
        ModelPackageGroupName=group, ModelPackageDescription="first", InferenceSpecification=_inference_spec(),
        ModelMetrics=metrics, CustomerMetadataProperties={"val_accuracy": "0.71"})["ModelPackageArn"]
    second = sagemaker_client.create_model_package(
        ModelPackageGroupName=group, InferenceSpecification=_inference_spec(),
        ModelApprovalStatus="Approved", CustomerMetadataProperties={"val_accuracy": "0.84"})["ModelPackageArn"]
    assert (first, second) == (_package_arn(group, 1), _package_arn(group, 2))

    package = sagemaker_client.describe_model_package(ModelPackageName=first)
    assert package["ModelPackageName"] == group and package["ModelPackageGroupName"] == group
    assert package["ModelPackageVersion"] == 1
    assert package["ModelApprovalStatus"] == "PendingManualApproval"
    assert package["ModelPackageStatus"] == "Completed"
    assert package["ModelPackageStatusDetails"]["ValidationStatuses"] == []
    assert package["InferenceSpecification"] == _inference_spec()
    assert package["ModelMetrics"] == metrics
    assert package["CustomerMetadataProperties"] == {"val_accuracy": "0.71"}
    assert sagemaker_client.describe_model_package(ModelPackageName=f"{group}/2")["ModelPackageArn"] == second

    versions = sagemaker_client.list_model_packages(ModelPackageGroupName=group, SortBy="CreationTime",
                                                    SortOrder="Ascending")["ModelPackageSummaryList"]
    assert [(v["ModelPackageVersion"], v["ModelApprovalStatus"]) for v in versions] == [
        (1, "PendingManualApproval"), (2, "Approved")]
    approved = sagemaker_client.list_model_packages(ModelPackageGroupName=group, ModelApprovalStatus="Approved")
    assert [v["ModelPackageArn"] for v in approved["ModelPackageSummaryList"]] == [second]
    newest_first = sagemaker_client.list_model_packages(ModelPackageGroupName=group)["ModelPackageSummaryList"]
    assert [v["ModelPackageVersion"] for v in newest_first] == [2, 1]

    sagemaker_client.update_model_package(ModelPackageArn=first, ModelApprovalStatus="Rejected",
                                          ApprovalDescription="accuracy below the gate")
    updated = sagemaker_client.describe_model_package(ModelPackageName=first)
    assert (updated["ModelApprovalStatus"], updated["ApprovalDescription"]) == ("Rejected", "accuracy below the gate")
    assert updated["LastModifiedTime"] >= updated["CreationTime"]

    # a group with versions cannot go; once they are gone it can, and versions keep counting
    with pytest.raises(ClientError) as excinfo:
        sagemaker_client.delete_model_package_group(ModelPackageGroupName=group)
    assert _error(excinfo)[0] == "ConflictException"
    sagemaker_client.delete_model_package(ModelPackageName=second)
    third = sagemaker_client.create_model_package(ModelPackageGroupName=group, InferenceSpecification=_inference_spec())
    assert third["ModelPackageArn"] == _package_arn(group, 3)
    for arn in (first, third["ModelPackageArn"]):
        sagemaker_client.delete_model_package(ModelPackageName=arn)
    sagemaker_client.delete_model_package_group(ModelPackageGroupName=group)
    with pytest.raises(ClientError) as excinfo:
        sagemaker_client.describe_model_package_group(ModelPackageGroupName=group)
    assert _error(excinfo) == ("ValidationException", f"ModelPackageGroup {_group_arn(group)} does not exist.")


def test_unversioned_packages_and_bad_requests(sagemaker_client):
    name = unique("standalone")
    arn = sagemaker_client.create_model_package(ModelPackageName=name, InferenceSpecification=_inference_spec())["ModelPackageArn"]
    assert arn == _package_arn(name)
    described = sagemaker_client.describe_model_package(ModelPackageName=name)
    assert described["ModelPackageName"] == name and "ModelPackageVersion" not in described
    assert "ModelApprovalStatus" not in described
    # the documented default lists unversioned packages only
    assert arn in [p["ModelPackageArn"] for p in sagemaker_client.list_model_packages(NameContains=name)["ModelPackageSummaryList"]]

    group = unique("grp")
    sagemaker_client.create_model_package_group(ModelPackageGroupName=group)
    for kwargs, message in (
        ({"ModelPackageName": unique("x"), "ModelPackageGroupName": group}, "Both ModelPackageName and ModelPackageGroupName"),
        ({}, "Missing ARN"),
        ({"ModelPackageGroupName": "no-such-group"}, f"ModelPackageGroup {_group_arn('no-such-group')} does not exist."),
    ):
        with pytest.raises(ClientError) as excinfo:
            sagemaker_client.create_model_package(InferenceSpecification=_inference_spec(), **kwargs)
        assert message in _error(excinfo)[1]
    with pytest.raises(ClientError) as excinfo:
        sagemaker_client.describe_model_package(ModelPackageName=f"{group}/9")
    assert _error(excinfo) == ("ValidationException", f"ModelPackage {_package_arn(group, 9)} does not exist.")

    # a retried create with the same ClientToken is the same package, not version 2
    token = unique("token")
    once = sagemaker_client.create_model_package(ModelPackageGroupName=group, InferenceSpecification=_inference_spec(), ClientToken=token)
    again = sagemaker_client.create_model_package(ModelPackageGroupName=group, InferenceSpecification=_inference_spec(), ClientToken=token)
    assert once["ModelPackageArn"] == again["ModelPackageArn"] == _package_arn(group, 1)


@pytest.mark.slow
def test_airflow_register_model_version_operator(emulator, sagemaker_client, monkeypatch):
    """The provider's SageMakerRegisterModelVersionOperator creates the group once, then versions in it."""
    from airflow.providers.amazon.aws.operators.sagemaker import ApprovalStatus, SageMakerRegisterModelVersionOperator

    monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", json.dumps({
        "conn_type": "aws", "login": "testing", "password": "testing",
        "extra": {"region_name": TEST_REGION, "endpoint_url": emulator.endpoint_url}}))
    group = unique("af-registry")

    def register(version_tag: str, approval: ApprovalStatus) -> str:
        return SageMakerRegisterModelVersionOperator(
            task_id="register", image_uri=IMAGE, model_url=f"s3://test-sagemaker-bucket/models/{version_tag}.tar.gz",
            package_group_name=group, package_desc=f"model {version_tag}", model_approval=approval,
            extras={"CustomerMetadataProperties": {"run": version_tag}},
        ).execute({})

    assert register("v1", ApprovalStatus.PENDING_MANUAL_APPROVAL) == _package_arn(group, 1)
    assert register("v2", ApprovalStatus.APPROVED) == _package_arn(group, 2)  # the group already exists: fine
    latest = sagemaker_client.describe_model_package(ModelPackageName=_package_arn(group, 2))
    assert latest["ModelApprovalStatus"] == "Approved"
    assert latest["InferenceSpecification"]["Containers"][0]["ModelDataUrl"].endswith("/v2.tar.gz")
    assert latest["CustomerMetadataProperties"] == {"run": "v2"}


@pytest.mark.slow
def test_model_from_an_approved_package_serves_its_image_and_data(sagemaker_client, runtime_client, s3_client):
    group = unique("deploy-registry")
    sagemaker_client.create_model_package_group(ModelPackageGroupName=group)
    model_url = upload(s3_client, f"{group}/model.tar.gz", model_archive(scaler_files(4, "registered")))
    package = sagemaker_client.create_model_package(
        ModelPackageGroupName=group, InferenceSpecification=_inference_spec(model_url))["ModelPackageArn"]

    pending = unique("from-pending")
    sagemaker_client.create_model(ModelName=pending, ExecutionRoleArn=TEST_ROLE_ARN,
                                  PrimaryContainer={"ModelPackageName": package})
    described = deploy(sagemaker_client, unique("pending-ep"), create_config(sagemaker_client, unique("pending-cfg"),
                                                                              [instance_variant(pending)]))
    assert described["EndpointStatus"] == "Failed"
    assert "PendingManualApproval" in described["FailureReason"] and "must be Approved" in described["FailureReason"]
    sagemaker_client.delete_endpoint(EndpointName=described["EndpointName"])

    sagemaker_client.update_model_package(ModelPackageArn=package, ModelApprovalStatus="Approved")
    approved = unique("from-approved")
    sagemaker_client.create_model(ModelName=approved, ExecutionRoleArn=TEST_ROLE_ARN,
                                  PrimaryContainer={"ModelPackageName": package})
    endpoint = unique("registry-ep")
    described = deploy(sagemaker_client, endpoint, create_config(sagemaker_client, unique("registry-cfg"),
                                                                 [instance_variant(approved)]))
    assert described["EndpointStatus"] == "InService", described.get("FailureReason")
    assert described["ProductionVariants"][0]["DeployedImages"][0]["SpecifiedImage"] == IMAGE
    assert invoke_json(runtime_client, endpoint, {"values": [1, 2]})[0] == {"tag": "registered", "outputs": [4, 8]}
    sagemaker_client.delete_endpoint(EndpointName=endpoint)
