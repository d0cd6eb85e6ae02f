"""IAM SimulatePrincipalPolicy on the local SageMaker's IAM, through boto3: every action is allowed for a
principal that exists (nothing enforces IAM here), and a missing or malformed principal is refused as IAM does."""
from __future__ import annotations

import json

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from tests.conftest import TEST_REGION

TRUST_SAGEMAKER = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Principal": {"Service": "sagemaker.amazonaws.com"}, "Action": "sts:AssumeRole"}],
}


def iam_client(emulator, **config):
    return boto3.client("iam", endpoint_url=emulator.endpoint_url, region_name=TEST_REGION, aws_access_key_id="testing",
                        aws_secret_access_key="testing", config=Config(**config))


@pytest.fixture(scope="module")
def iam(emulator):
    return iam_client(emulator)


@pytest.fixture(scope="module")
def role_arn(iam):
    role = iam.create_role(RoleName="SimulatedRole", Path="/service-role/", AssumeRolePolicyDocument=json.dumps(TRUST_SAGEMAKER))
    return role["Role"]["Arn"]


def test_every_action_is_allowed_for_an_existing_role(iam, role_arn):
    results = iam.simulate_principal_policy(PolicySourceArn=role_arn, ActionNames=["s3:GetObject", "sagemaker:CreateTrainingJob"])

    assert [(r["EvalActionName"], r["EvalResourceName"], r["EvalDecision"]) for r in results["EvaluationResults"]] == [
        ("s3:GetObject", "*", "allowed"),
        ("sagemaker:CreateTrainingJob", "*", "allowed"),
    ]
    assert results["IsTruncated"] is False


def test_each_action_is_evaluated_on_each_named_resource(iam, role_arn):
    results = iam.simulate_principal_policy(PolicySourceArn=role_arn, ActionNames=["s3:PutObject"],
                                            ResourceArns=["arn:aws:s3:::bucket-a/*", "arn:aws:s3:::bucket-b/*"])["EvaluationResults"]

    assert [(r["EvalResourceName"], r["EvalDecision"]) for r in results] == [
        ("arn:aws:s3:::bucket-a/*", "allowed"), ("arn:aws:s3:::bucket-b/*", "allowed")]
    assert [r["ResourceSpecificResults"] for r in results] == [
        [{"EvalResourceName": arn, "EvalResourceDecision": "allowed", "MatchedStatements": [], "MissingContextValues": []}]
        for arn in ("arn:aws:s3:::bucket-a/*", "arn:aws:s3:::bucket-b/*")
    ]


def test_users_and_groups_are_principals_too(iam):
    user_arn = iam.create_user(UserName="simulated-user")["User"]["Arn"]
    group_arn = iam.create_group(GroupName="simulated-group")["Group"]["Arn"]

    for arn in (user_arn, group_arn):
        [result] = iam.simulate_principal_policy(PolicySourceArn=arn, ActionNames=["logs:PutLogEvents"])["EvaluationResults"]
        assert result["EvalDecision"] == "allowed"


def test_the_paginator_walks_every_page(iam, role_arn):
    actions = [f"sagemaker:Action{index}" for index in range(5)]
    pages = list(iam.get_paginator("simulate_principal_policy").paginate(
        PolicySourceArn=role_arn, ActionNames=actions, PaginationConfig={"PageSize": 2}))

    assert [len(page["EvaluationResults"]) for page in pages] == [2, 2, 1]
    assert [r["EvalActionName"] for page in pages for r in page["EvaluationResults"]] == actions


def test_a_role_that_does_not_exist_is_no_such_entity(iam):
    with pytest.raises(ClientError) as error:
        iam.simulate_principal_policy(PolicySourceArn="arn:aws:iam::123456789012:role/NoSuchRole", ActionNames=["s3:GetObject"])

    assert error.value.response["Error"] == {"Type": "Sender", "Code": "NoSuchEntity",
                                             "Message": "The role with name NoSuchRole cannot be found."}
    assert error.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404


def test_an_assumed_role_arn_is_invalid_input(iam):
    arn = "arn:aws:sts::123456789012:assumed-role/SimulatedRole/session"
    with pytest.raises(iam.exceptions.InvalidInputException, match=f"Invalid Entity Arn: {arn}"):
        iam.simulate_principal_policy(PolicySourceArn=arn, ActionNames=["s3:GetObject"])


def test_a_request_breaking_the_service_model_is_a_validation_error(emulator, role_arn):
    unchecked = iam_client(emulator, parameter_validation=False)  # what a client that skips botocore's checks sends
    with pytest.raises(ClientError) as error:
        unchecked.simulate_principal_policy(PolicySourceArn=role_arn, ActionNames=["s3:GetObject"], MaxItems=0)

    assert error.value.response["Error"]["Code"] == "ValidationError"
    assert "Value '0' at 'maxItems' failed to satisfy constraint: Member must have value greater than or equal to 1" in str(error.value)


def test_other_iam_actions_still_reach_moto_with_their_body_intact(iam, role_arn):
    role = iam.get_role(RoleName="SimulatedRole")["Role"]

    assert role["Arn"] == role_arn
    assert role["AssumeRolePolicyDocument"] == TRUST_SAGEMAKER
