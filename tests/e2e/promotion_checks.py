"""Checks the pipeline e2e tests share: a first promotion (no champion) and a challenger rejected with the
champion untouched, read back from the run's XComs and from the local SageMaker itself."""
from __future__ import annotations

import json

import pytest

SETUP_TASKS = ("resolve_settings", "upload_data", "package_source", "plan", "train", "evaluate")
PROMOTION_TASKS = ("plan_evaluation", "evaluate_models", "decide", "register_version", "route_approval")
ROLLOUT_TASKS = ("standing_requests", "create_standing_model", "create_standing_endpoint_config",
                 "deploy_standing_endpoint", "smoke_test")
# skipped whenever the challenger goes no further than the gate
AFTER_THE_GATE = (*PROMOTION_TASKS, "approve_version", "await_approval", "reject_version")


def s3_bytes(s3, uri: str) -> bytes:
    bucket, key = uri.removeprefix("s3://").split("/", 1)
    return s3.get_object(Bucket=bucket, Key=key)["Body"].read()


def versions(sm, group: str) -> dict[int, dict]:
    """Every version of the group (none when it does not exist yet), by number, as DescribeModelPackage has it."""
    try:
        sm.describe_model_package_group(ModelPackageGroupName=group)
    except sm.exceptions.ClientError:
        return {}
    summaries = sm.list_model_packages(ModelPackageGroupName=group, MaxResults=100)["ModelPackageSummaryList"]
    described = [sm.describe_model_package(ModelPackageName=s["ModelPackageArn"]) for s in summaries]
    return {package["ModelPackageVersion"]: package for package in described}


def serving_config(sm, endpoint_name: str) -> str:
    """The endpoint config the standing endpoint serves; it must be InService."""
    endpoint = sm.describe_endpoint(EndpointName=endpoint_name)
    assert endpoint["EndpointStatus"] == "InService", endpoint
    return endpoint["EndpointConfigName"]


def assert_tasks(run, expected: dict[str, tuple[str, ...]]) -> None:
    """expected: state -> the tasks that must have ended in it."""
    for state, task_ids in expected.items():
        for task_id in task_ids:
            assert run.states.get(task_id) == state, f"{task_id}: {run.states.get(task_id)} (all: {run.states})"


def assert_report(run, s3, outcome: str) -> dict:
    """run_report's XCom says `outcome`, and its HTML page in S3 names it too."""
    report = run.xcom("run_report")
    assert report["outcome"] == outcome, report
    assert report["report"].endswith(".html") and report["cost_usd"] >= 0, report
    page = s3_bytes(s3, report["report"]).decode()
    assert page.lstrip().lower().startswith("<!doctype html") and f'data-outcome="{outcome}"' in page, page[:500]
    assert "Run report: " + report["report"] in run.log("run_report")
    return report


def assert_first_promotion(run, sm, s3, group: str) -> dict:
    """No champion: the challenger clears the threshold alone, becomes version 1 and is Approved with its
    evaluation report and lineage. Returns version 1 as DescribeModelPackage has it."""
    decision = run.xcom("decide")
    assert decision["promote"] is True and decision["outcome"] == "promote", decision
    assert decision["champion"] is None and decision["champion_version"] is None, decision
    assert "no champion yet" in decision["reason"], decision
    registered = run.xcom("register_version")
    assert registered["version"] == 1, registered
    assert_tasks(run, {"success": ("approve_version",), "skipped": ("await_approval", "reject_version")})

    package = versions(sm, group)[1]
    assert package["ModelPackageArn"] == registered["model_package_arn"]
    assert package["ModelApprovalStatus"] == "Approved", package
    assert package["ApprovalDescription"] == f"Approved automatically: {decision['reason']}"
    training_job = run.xcom("train")["Training"]
    container = package["InferenceSpecification"]["Containers"][0]
    assert container["ModelDataUrl"] == training_job["ModelArtifacts"]["S3ModelArtifacts"]

    statistics = package["ModelMetrics"]["ModelQuality"]["Statistics"]
    assert statistics["S3Uri"].endswith("/evaluation.json"), statistics
    evaluation = json.loads(s3_bytes(s3, statistics["S3Uri"]))
    assert evaluation == decision["challenger_report"], (evaluation, decision)

    metadata = package["CustomerMetadataProperties"]
    assert metadata["training-job"] == training_job["TrainingJobName"]
    assert metadata["dag-run"] == run.run_id
    assert metadata["source"].startswith("s3://") and metadata["source"].endswith("sourcedir.tar.gz"), metadata
    assert metadata["decision"] == "promote" and metadata["champion-version"] == "none", metadata
    assert float(metadata[f"evaluation-{decision['metric']}"]) == pytest.approx(decision["challenger"], abs=1e-6)
    return package


def assert_standing_endpoint_created(run, sm, endpoint_name: str) -> None:
    """The first promotion created the standing endpoint on version 1; it stays, tagged as standing."""
    deployed = run.xcom("deploy_standing_endpoint")
    assert deployed["action"] == "created" and deployed["endpoint_name"] == endpoint_name, deployed
    assert deployed["endpoint_config_name"] == f"{endpoint_name}-v1", deployed
    assert run.states.get("reject_failed_rollout") == "skipped", run.states
    assert serving_config(sm, endpoint_name) == f"{endpoint_name}-v1"
    config = sm.describe_endpoint_config(EndpointConfigName=f"{endpoint_name}-v1")
    model = sm.describe_model(ModelName=config["ProductionVariants"][0]["ModelName"])
    assert model["PrimaryContainer"]["ModelPackageName"] == run.xcom("register_version")["model_package_arn"], model
    arn = sm.describe_endpoint(EndpointName=endpoint_name)["EndpointArn"]
    tags = {t["Key"]: t["Value"] for t in sm.list_tags(ResourceArn=arn)["Tags"]}
    assert tags.get("endpoint-role") == "standing" and "expires-at" not in tags, tags  # the janitor leaves it


def assert_rejected_at_the_gate(run, sm, s3, group: str, *, versions_before: int) -> dict:
    """The challenger's own validation metric missed the gate: the `evaluate` short circuit returned False,
    nothing was evaluated, registered or rolled out, and the report says "rejected"."""
    # a short circuit that returns False pushes no XCom (Airflow 3 skips its downstream by raising): its log tells
    gate_log = run.log("evaluate")
    assert "Gate FAILED" in gate_log and "Condition result is False" in gate_log, gate_log[-3000:]
    assert_tasks(run, {"success": ("train", "evaluate", "run_report"), "skipped": AFTER_THE_GATE})
    assert run.xcom("decide") is None and run.xcom("register_version") is None
    assert len(versions(sm, group)) == versions_before, versions(sm, group)
    report = assert_report(run, s3, "rejected")
    assert "did not clear the gate" in report["reason"], report
    return report


def training_job(run, sm) -> dict:
    """The run's own training job, as SageMaker describes it now."""
    return sm.describe_training_job(TrainingJobName=run.xcom("train")["Training"]["TrainingJobName"])


def final_metrics(job: dict) -> dict[str, float]:
    return {m["MetricName"]: m["Value"] for m in job["FinalMetricDataList"]}
