"""Champion/challenger promotion: the decision, the champion lookup, the registry's record and the run's
outcome, against the local SageMaker where SageMaker answers."""
from __future__ import annotations

import json
import math

import pytest

from include.pipelines import requests as rq
from include.pipelines.config import load_workload
from include.pipelines.promotion import decide, find_champion, latest_approved_version, report_value, set_approval
from include.pipelines.promotion_tasks import plan_evaluation, register_version
from include.pipelines.run_summary import outcome_of
from include.pipelines.steps import plan_requests
from tests.conftest import TEST_REGION, client_of

POLICY = {"metric": "accuracy", "direction": "maximize", "threshold": 0.5, "margin": 0.01}
RUN_ID = "manual__2026-12-01T00:00:00+00:00"


@pytest.mark.parametrize("challenger, champion, promote, words", [
    (0.7, None, True, "no champion yet"),
    (0.4, None, False, "does not clear the threshold"),
    (0.4, 0.3, False, "does not clear the threshold"),  # the threshold holds even against a weak champion
    (0.9, 0.8, True, "beats champion 0.8000 by 0.1000"),
    (0.805, 0.8, False, "by more than the margin 0.0100"),  # a win inside the margin is no win
    (0.8, 0.8, False, "does not beat champion"),
    (0.7, 0.8, False, "does not beat champion"),
    (math.nan, None, False, "not a number"),
])
def test_decision_maximize(challenger, champion, promote, words):
    decision = decide(POLICY, challenger, champion)
    assert decision.promote is promote and words in decision.reason, decision.reason
    assert decision.outcome == ("promote" if promote else "rejected")
    assert (decision.challenger, decision.champion, decision.threshold) == (challenger, champion, 0.5) or math.isnan(challenger)


def test_decision_minimize_is_direction_aware():
    policy = {**POLICY, "metric": "diphone_error_rate", "direction": "minimize", "threshold": 0.6, "margin": 0.0}
    assert decide(policy, 0.3, 0.4).promote
    assert not decide(policy, 0.4, 0.3).promote and "lower is better" in decide(policy, 0.4, 0.3).reason
    assert not decide(policy, 0.7, None).promote  # above the bar


def test_report_value_reads_the_pipelines_convention():
    report = {"multiclass_classification_metrics": {"accuracy": {"value": 0.75}}, "samples": 160}
    assert report_value(report, "accuracy") == 0.75
    with pytest.raises(LookupError, match="no metric 'macro_f1'; it has"):
        report_value(report, "macro_f1")


@pytest.fixture(scope="module")
def cfg():
    return load_workload("cifar10", "local")


@pytest.fixture(scope="module")
def planned(cfg):
    settings = {"workload": "cifar10", "profile": "local", "region": TEST_REGION, "bucket": cfg.bucket,
                "prefix": cfg.s3_prefix, "role_arn": cfg.role_arn}
    source = f"s3://{cfg.bucket}/{cfg.s3_prefix}/source/0123456789abcdef/sourcedir.tar.gz"
    return plan_requests(settings, source_uri=source, channels=cfg.channel_uris(), run_id=RUN_ID)


def test_the_plan_fixes_the_promotion_of_the_run(planned, cfg):
    promotion = planned["promotion"]
    assert promotion["policy"]["metric"] == "accuracy" and promotion["policy"]["threshold"] == cfg.promotion.threshold
    request = promotion["evaluation_request"]
    assert request["AppSpecification"]["ContainerEntrypoint"] == ["python3", "/opt/ml/processing/input/code/evaluate.py"]
    inputs = {i["InputName"]: i["S3Input"]["S3Uri"] for i in request["ProcessingInputs"]}
    assert inputs["code"].endswith("/source/0123456789abcdef/files") and inputs["test"] == f"{cfg.data_uri}/test_batch"
    assert "champion" not in inputs
    assert request["ProcessingOutputConfig"]["Outputs"][0]["S3Output"]["S3Uri"] == promotion["evaluation_output"]
    standing = promotion["standing"]
    policy = standing["deployment_config"]["BlueGreenUpdatePolicy"]
    assert policy["TrafficRoutingConfiguration"]["Type"] == "CANARY"
    assert policy["TrafficRoutingConfiguration"]["CanarySize"] == {"Type": "CAPACITY_PERCENT", "Value": 25}
    assert [a["AlarmName"] for a in standing["alarms"]] == ["cifar10-classifier-5xx-errors", "cifar10-classifier-model-latency"]
    assert standing["alarms"][1]["Threshold"] == 2_000_000  # ModelLatency is in microseconds
    # autoscaling follows the standing endpoint, not a temporary one
    assert planned["autoscaling"]["scalable_target"]["ResourceId"] == "endpoint/cifar10-classifier/variant/AllTraffic"


def test_a_version_deploys_under_names_of_its_own(planned):
    arn = "arn:aws:sagemaker:us-east-1:123456789012:model-package/cifar10/7"
    names = rq.standing_version_requests(planned["promotion"]["standing"], version=7, model_package_arn=arn)
    assert names["endpoint_config_name"] == names["model"]["ModelName"] == "cifar10-classifier-v7"
    assert names["model"]["PrimaryContainer"] == {"ModelPackageName": arn}
    assert names["endpoint_config"]["ProductionVariants"][0]["ModelName"] == "cifar10-classifier-v7"


@pytest.fixture
def aws_default(emulator, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", json.dumps({
        "conn_type": "aws", "login": "testing", "password": "testing",
        "extra": {"region_name": TEST_REGION, "endpoint_url": emulator.endpoint_url}}))


def _training(job: str, model_data: str) -> dict:
    return {"Training": {"TrainingJobName": job, "ModelArtifacts": {"S3ModelArtifacts": model_data}}}


def _decision(value: float, promote: bool = True) -> dict:
    return {**decide(POLICY, value, None).as_dict(), "promote": promote, "champion_version": None}


def test_registering_is_idempotent_and_the_champion_is_the_latest_approved(emulator, aws_default, planned):
    sm = client_of(emulator, "sagemaker")
    group = f"{planned['promotion']['model_package_group']}-{emulator.endpoint_url.rsplit(':', 1)[-1]}"
    promotion = {**planned["promotion"], "model_package_group": group,
                 "model_package": {**planned["promotion"]["model_package"], "ModelPackageGroupName": group}}
    first = register_version.function(promotion, _training("job-a", "s3://b/a/model.tar.gz"), _decision(0.7), run_id=RUN_ID)
    again = register_version.function(promotion, _training("job-a", "s3://b/a/model.tar.gz"), _decision(0.7), run_id=RUN_ID)
    assert again == first  # a retried register task gets the version its first try made
    package = sm.describe_model_package(ModelPackageName=first["model_package_arn"])
    assert package["ModelApprovalStatus"] == "PendingManualApproval"
    assert package["ModelMetrics"]["ModelQuality"]["Statistics"]["S3Uri"].endswith("/evaluation.json")
    metadata = package["CustomerMetadataProperties"]
    assert metadata["training-job"] == "job-a" and metadata["evaluation-accuracy"] == "0.700000"
    assert metadata["dag-run"] == RUN_ID and metadata["source"].endswith("sourcedir.tar.gz")
    assert len(sm.list_model_packages(ModelPackageGroupName=group)["ModelPackageSummaryList"]) == 1

    # nothing approved yet: no champion, and the evaluation scores the challenger alone
    assert find_champion(sm, group=group, endpoint_name=None) is None
    plan = plan_evaluation.function({**promotion, "endpoint_name": None}, _training("job-a", "s3://b/a/model.tar.gz"))
    assert plan["champion"] is None and "--champion" not in plan["request"]["AppSpecification"]["ContainerArguments"]

    set_approval(sm, first["model_package_arn"], True, "Approved automatically: test")
    second = register_version.function(promotion, _training("job-b", "s3://b/b/model.tar.gz"), _decision(0.8), run_id=RUN_ID)
    assert second["version"] == first["version"] + 1
    champion = latest_approved_version(sm, group)
    assert champion["model_package_arn"] == first["model_package_arn"] and champion["model_data"] == "s3://b/a/model.tar.gz"
    plan = plan_evaluation.function({**promotion, "endpoint_name": None}, _training("job-b", "s3://b/b/model.tar.gz"))
    inputs = {i["InputName"]: i["S3Input"]["S3Uri"] for i in plan["request"]["ProcessingInputs"]}
    assert inputs["champion"] == "s3://b/a/model.tar.gz" and inputs["challenger"] == "s3://b/b/model.tar.gz"
    assert plan["request"]["AppSpecification"]["ContainerArguments"] == [
        "--challenger", "/opt/ml/processing/challenger", "--champion", "/opt/ml/processing/champion",
        "--test-data", "/opt/ml/processing/test", "--output", "/opt/ml/processing/evaluation"]
    rq_problems = rq.request_problems("sagemaker", "CreateProcessingJob", plan["request"], strict=True)
    assert not rq_problems, rq_problems

    set_approval(sm, second["model_package_arn"], False, "Rejected: test")
    described = sm.describe_model_package(ModelPackageName=second["model_package_arn"])
    assert (described["ModelApprovalStatus"], described["ApprovalDescription"]) == ("Rejected", "Rejected: test")


@pytest.mark.parametrize("decision, gate, status, description, rollout, outcome", [
    (None, False, None, None, None, "rejected"),
    (None, None, None, None, None, "failed"),
    ({"promote": False, "reason": "r"}, True, "Rejected", "Rejected: r", None, "rejected"),
    ({"promote": True, "reason": "r"}, True, "Rejected", "Reject by admin in Airflow", None, "approval_rejected"),
    ({"promote": True, "reason": "r"}, True, "Rejected", "Rejected after its rollout failed; x", None, "rolled_back"),
    ({"promote": True, "reason": "r"}, True, "PendingManualApproval", None, None, "not_deployed"),
    ({"promote": True, "reason": "r"}, True, "Approved", "ok", {"action": "updated"}, "promoted"),
    ({"promote": True, "reason": "r"}, True, "Approved", "ok", None, "failed"),
])
def test_the_run_outcome_follows_what_the_tasks_left(decision, gate, status, description, rollout, outcome):
    version = {"ModelApprovalStatus": status, "ApprovalDescription": description} if status else None
    assert outcome_of(decision, gate, version, rollout, has_endpoint=True)[0] == outcome
