"""The preflight's checks: role, bucket, data, images against the local SageMaker (moto's IAM and S3
on its port); quotas with botocore's Stubber, since the emulator serves no SageMaker quotas."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import boto3
import pytest
from botocore.stub import Stubber

from include.pipelines import preflight
from include.pipelines.config import load_workload
from tests.conftest import TEST_REGION

ROOT = Path(__file__).resolve().parents[2]
ACCOUNT = "123456789012"  # moto's account: the emulator's
TEST_ROLE = "preflight-test-sagemaker-role"
TEST_ROLE_ARN = f"arn:aws:iam::{ACCOUNT}:role/{TEST_ROLE}"
TEST_BUCKET = "preflight-test-bucket"
EU_BUCKET = "preflight-test-bucket-eu"
TRUST_POLICY = json.loads((ROOT / "deploy" / "iam" / "sagemaker-execution-role-trust-policy.json").read_text())


def _client(emulator, service, region=TEST_REGION):
    return boto3.client(service, endpoint_url=emulator.endpoint_url, region_name=region,
                        aws_access_key_id="testing", aws_secret_access_key="testing")


@pytest.fixture(scope="module")
def iam(emulator):
    client = _client(emulator, "iam")
    # the repository's own trust policy, with the emulator's account in place of the placeholder one
    trust = json.dumps(TRUST_POLICY).replace("111122223333", ACCOUNT)
    client.create_role(RoleName=TEST_ROLE, AssumeRolePolicyDocument=trust)
    client.create_role(RoleName="preflight-test-ec2-role", AssumeRolePolicyDocument=json.dumps({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}]}))
    return client


@pytest.fixture(scope="module")
def s3(emulator):
    client = _client(emulator, "s3")
    client.create_bucket(Bucket=TEST_BUCKET)
    _client(emulator, "s3", "eu-west-1").create_bucket(
        Bucket=EU_BUCKET, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    client.put_object(Bucket=TEST_BUCKET, Key="datasets/meld/train/train_sent_emo.csv", Body=b"Utterance,Emotion\n")
    return client


def aws_workload(name="cifar10", **changes):
    """A workload's aws profile with the test role and bucket in place of the placeholders."""
    cfg = load_workload(name, "aws").with_overrides(role_arn=TEST_ROLE_ARN, bucket=TEST_BUCKET)
    return dataclasses.replace(cfg, **changes) if changes else cfg


def statuses(findings, check=None):
    return [f.status for f in findings if check is None or f.check == check]


# ---- role --------------------------------------------------------------------------------------

def test_role_with_the_repository_trust_policy_passes(iam):
    findings = preflight.check_role(iam, TEST_ROLE_ARN, workload="cifar10", account_id=ACCOUNT)
    assert statuses(findings) == ["ok"], findings
    assert "trusts sagemaker.amazonaws.com" in findings[0].message


def test_missing_role_blocks_and_says_how_to_create_it(iam):
    [finding] = preflight.check_role(iam, f"arn:aws:iam::{ACCOUNT}:role/no-such-role", workload="cifar10", account_id=ACCOUNT)
    assert finding.blocking
    assert "no-such-role does not exist" in finding.message
    assert "deploy/iam/sagemaker-execution-role-trust-policy.json" in finding.message
    assert "sagemaker_role_arn" in finding.message


def test_role_that_does_not_trust_sagemaker_blocks(iam):
    [finding] = preflight.check_role(iam, f"arn:aws:iam::{ACCOUNT}:role/preflight-test-ec2-role", workload="cifar10",
                                     account_id=ACCOUNT)
    assert finding.blocking and "does not trust sagemaker.amazonaws.com" in finding.message


def test_role_of_another_account_blocks(iam):
    [finding] = preflight.check_role(iam, f"arn:aws:iam::111122223333:role/{TEST_ROLE}", workload="cifar10", account_id=ACCOUNT)
    assert finding.blocking
    assert f"belongs to account 111122223333, the connection's account is {ACCOUNT}" in finding.message


def test_trust_policy_as_iam_sends_it_url_encoded_is_understood():
    from urllib.parse import quote

    assert preflight._trusts_sagemaker(quote(json.dumps(TRUST_POLICY)))
    assert not preflight._trusts_sagemaker({"Statement": [{"Effect": "Deny", "Action": "sts:AssumeRole",
                                                             "Principal": {"Service": "sagemaker.amazonaws.com"}}]})


def test_missing_role_is_only_a_warning_on_the_local_sagemaker(iam):
    [finding] = preflight.check_role(iam, f"arn:aws:iam::{ACCOUNT}:role/no-such-role", workload="cifar10",
                                     account_id=ACCOUNT, strict=False)
    assert finding.status == "warning"


# ---- bucket and data ---------------------------------------------------------------------------

def test_bucket_in_the_connection_region_passes(s3):
    assert statuses(preflight.check_bucket(s3, TEST_BUCKET, TEST_REGION, workload="cifar10")) == ["ok"]


def test_missing_bucket_blocks_with_the_command_that_creates_it(s3):
    [finding] = preflight.check_bucket(s3, "preflight-no-such-bucket", "eu-west-1", workload="cifar10")
    assert finding.blocking
    assert "aws s3api create-bucket --bucket preflight-no-such-bucket --region eu-west-1" in finding.message
    assert "LocationConstraint=eu-west-1" in finding.message


def test_bucket_in_another_region_blocks_naming_both_regions(s3):
    [finding] = preflight.check_bucket(s3, EU_BUCKET, TEST_REGION, workload="cifar10")
    assert finding.blocking
    assert f"{EU_BUCKET} is in eu-west-1, the connection's region is {TEST_REGION}" in finding.message


def test_missing_bucket_is_only_a_warning_on_the_local_sagemaker(s3):
    [finding] = preflight.check_bucket(s3, "preflight-no-such-bucket", TEST_REGION, workload="cifar10", strict=False)
    assert finding.status == "warning" and "the DAG creates it" in finding.message


def test_s3_data_source_must_hold_objects(s3):
    meld = load_workload("meld_sentiment", "aws").with_overrides(role_arn=TEST_ROLE_ARN, bucket=TEST_BUCKET)
    present = dataclasses.replace(meld, data=dataclasses.replace(meld.data, source_uri=f"s3://{TEST_BUCKET}/datasets/meld"))
    empty = dataclasses.replace(meld, data=dataclasses.replace(meld.data, source_uri=f"s3://{TEST_BUCKET}/datasets/none"))
    assert statuses(preflight.check_data_source(s3, present)) == ["ok"]
    [finding] = preflight.check_data_source(s3, empty)
    assert finding.blocking and f"no objects under s3://{TEST_BUCKET}/datasets/none" in finding.message


# ---- images ------------------------------------------------------------------------------------

def test_images_resolve_for_a_supported_region():
    findings = preflight.check_images(aws_workload(), TEST_REGION)
    assert statuses(findings) == ["ok", "ok"], findings
    assert "pytorch-training" in findings[0].message and "pytorch-inference" in findings[1].message


def test_unknown_region_has_no_images_and_blocks():
    findings = preflight.check_images(aws_workload(), "xx-nowhere-1")
    assert findings and all(f.blocking for f in findings)
    assert "no training image for pytorch" in findings[0].message and "xx-nowhere-1" in findings[0].message


# ---- quotas ------------------------------------------------------------------------------------

def test_quota_needs_take_the_largest_of_training_and_tuning_and_count_blue_green():
    needs = {(n.quota_name, n.blocking): n.count for n in preflight.quota_needs(aws_workload())}
    # cifar10 on AWS: 2 spot instances to train, 4 parallel single-instance tuning jobs
    assert needs[("ml.g4dn.xlarge for spot training job usage", True)] == 4
    assert needs[("ml.m5.xlarge for transform job usage", True)] == 1
    # the endpoint autoscales to 2; a blue/green update runs a second fleet beside the first
    assert needs[("ml.m5.xlarge for endpoint usage", True)] == 2
    assert needs[("ml.m5.xlarge for endpoint usage", False)] == 4


def test_serverless_endpoints_need_no_instance_quota():
    names = [n.quota_name for n in preflight.quota_needs(aws_workload("room_detection"))]
    assert not [name for name in names if "endpoint" in name], names


def _quota(name, value, code):
    return {"ServiceCode": "sagemaker", "ServiceName": "Amazon SageMaker", "QuotaName": name, "QuotaCode": code,
            "Value": float(value)}


@pytest.fixture
def quotas_client():
    client = boto3.client("service-quotas", region_name=TEST_REGION, aws_access_key_id="testing",
                          aws_secret_access_key="testing")
    with Stubber(client) as stubber:
        yield client, stubber
        stubber.assert_no_pending_responses()


def test_applied_quotas_win_over_defaults_across_pages(quotas_client):
    client, stubber = quotas_client
    stubber.add_response("list_service_quotas", {
        "Quotas": [_quota("ml.g4dn.xlarge for spot training job usage", 8, "L-SPOT")], "NextToken": "page-2"},
        {"ServiceCode": "sagemaker"})
    stubber.add_response("list_service_quotas", {"Quotas": [_quota("ml.m5.xlarge for endpoint usage", 4, "L-EP")]},
                         {"ServiceCode": "sagemaker", "NextToken": "page-2"})
    stubber.add_response("list_aws_default_service_quotas", {"Quotas": [
        _quota("ml.g4dn.xlarge for spot training job usage", 0, "L-SPOT"),
        _quota("ml.m5.xlarge for transform job usage", 2, "L-TR")]}, {"ServiceCode": "sagemaker"})
    quotas = preflight.account_quotas(client)
    assert quotas["ml.g4dn.xlarge for spot training job usage"] == {"value": 8.0, "code": "L-SPOT"}
    assert quotas["ml.m5.xlarge for endpoint usage"]["value"] == 4.0
    assert quotas["ml.m5.xlarge for transform job usage"]["value"] == 2.0  # only a default exists


def test_short_quota_blocks_and_names_the_quota_code_to_raise():
    needs = {"cifar10": preflight.quota_needs(aws_workload())}
    quotas = {"ml.g4dn.xlarge for spot training job usage": {"value": 1.0, "code": "L-SPOT"},
              "ml.m5.xlarge for transform job usage": {"value": 2.0, "code": "L-TR"},
              "ml.m5.xlarge for endpoint usage": {"value": 2.0, "code": "L-EP"}}
    findings = preflight.check_quotas(needs, quotas, TEST_REGION)
    blocking = [f for f in findings if f.blocking]
    assert len(blocking) == 1, findings
    assert "ml.g4dn.xlarge for spot training job usage is 1 in us-east-1, tuning (4 parallel jobs of 1) needs 4" in blocking[0].message
    assert "L-SPOT" in blocking[0].message
    # enough for the endpoint itself, not for a blue/green update: a warning
    assert [f for f in findings if f.status == "warning" and "blue/green" in f.message]


def test_quota_absent_from_the_account_is_a_warning():
    findings = preflight.check_quotas({"acoustic_shield": preflight.quota_needs(aws_workload("acoustic_shield"))}, {}, TEST_REGION)
    assert findings and all(f.status == "warning" for f in findings)
    assert "no Service Quotas entry 'ml.g4dn.xlarge for training job usage' in us-east-1" in findings[0].message


def test_workloads_that_together_exceed_a_quota_get_a_warning():
    # cifar10's endpoint autoscales to 2 ml.m5.xlarge, acoustic_shield's has 1: each fits a quota of 2, both do not
    needs = {name: preflight.quota_needs(aws_workload(name)) for name in ("cifar10", "acoustic_shield")}
    quotas = {name: {"value": 8.0, "code": "L-ANY"} for name in (
        "ml.g4dn.xlarge for spot training job usage", "ml.g4dn.xlarge for training job usage",
        "ml.m5.xlarge for transform job usage")}
    quotas["ml.m5.xlarge for endpoint usage"] = {"value": 2.0, "code": "L-EP"}
    findings = preflight.check_quotas(needs, quotas, TEST_REGION)
    assert not [f for f in findings if f.blocking], findings
    [together] = [f for f in findings if f.workload == "(all)"]
    assert together.status == "warning"
    assert "ml.m5.xlarge for endpoint usage is 2: acoustic_shield 1, cifar10 2 need 3 when they run at once" in together.message


# ---- the whole check and its report ------------------------------------------------------------

def test_everything_in_place_reports_nothing_missing(iam, s3, quotas_client):
    client, stubber = quotas_client
    cfg = aws_workload("acoustic_shield")
    cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, source_uri=f"s3://{TEST_BUCKET}/datasets/meld"))
    stubber.add_response("list_service_quotas", {"Quotas": [
        _quota("ml.g4dn.xlarge for training job usage", 2, "L-TR"),
        _quota("ml.m5.xlarge for endpoint usage", 4, "L-EP")]}, {"ServiceCode": "sagemaker"})
    stubber.add_response("list_aws_default_service_quotas", {"Quotas": []}, {"ServiceCode": "sagemaker"})
    findings = preflight.collect_findings([cfg], region=TEST_REGION, clients={"iam": iam, "s3": s3, "service-quotas": client},
                                          account_id=ACCOUNT)
    assert not [f for f in findings if f.status != "ok"], findings
    assert {f.check for f in findings} == {"role", "bucket", "data", "images", "quota"}
    report = preflight.format_report(findings, profile="aws", region=TEST_REGION, account_id=ACCOUNT)
    assert report.endswith("Nothing missing: the pipelines can run here.")


def test_report_ends_with_everything_missing(iam, s3, quotas_client):
    client, stubber = quotas_client
    stubber.add_client_error("list_service_quotas", service_error_code="AccessDeniedException", http_status_code=403)
    placeholders = load_workload("cifar10", "aws")  # the file's replace-me role and bucket
    wrong_region = aws_workload("brain_to_text").with_overrides(bucket=EU_BUCKET)
    wrong_region = dataclasses.replace(wrong_region, data=dataclasses.replace(wrong_region.data, source_uri=None))
    findings = preflight.collect_findings([placeholders, wrong_region], region=TEST_REGION,
                                          clients={"iam": iam, "s3": s3, "service-quotas": client}, account_id=ACCOUNT)
    report = preflight.format_report(findings, profile="aws", region=TEST_REGION, account_id=ACCOUNT)
    missing = report.split("Missing (each blocks a run):\n", 1)[1]
    assert "cifar10: settings:" in missing and "sagemaker_role_arn" in missing
    assert f"brain_to_text: bucket: bucket {EU_BUCKET} is in eu-west-1" in missing
    # the quota check could not run: a warning that says which permission to add, not a missing resource
    assert "servicequotas:ListServiceQuotas" in report and "quota" not in missing


def test_run_preflight_through_the_airflow_connection_on_the_local_sagemaker(emulator, monkeypatch):
    connection = {"conn_type": "aws", "login": "testing", "password": "testing",
                  "extra": {"region_name": TEST_REGION, "endpoint_url": emulator.endpoint_url}}
    monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", json.dumps(connection))
    result = preflight.run_preflight(["cifar10", "room_detection"], requested_profile="auto")
    assert result["profile"] == "local" and result["account"] == ACCOUNT
    by_check = {(f["workload"], f["check"]): f["status"] for f in result["findings"]}
    assert by_check[("cifar10", "images")] == "ok"
    assert by_check[("cifar10", "quota")] == "skipped"
    assert not [f for f in result["findings"] if f["status"] == "missing"]


def test_run_preflight_fails_with_the_report_when_something_is_missing(emulator, monkeypatch):
    connection = {"conn_type": "aws", "login": "testing", "password": "testing",
                  "extra": {"region_name": TEST_REGION, "endpoint_url": emulator.endpoint_url}}
    monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", json.dumps(connection))
    # the aws profile's placeholders, no Variables set: the report says what to set
    with pytest.raises(preflight.PreflightFailed) as failure:
        preflight.run_preflight(["cifar10"], requested_profile="aws")
    assert "Missing (each blocks a run):" in str(failure.value)
    assert "sagemaker_role_arn" in str(failure.value)
