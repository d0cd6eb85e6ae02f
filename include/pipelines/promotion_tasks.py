"""The promotion stage's tasks: evaluate challenger and champion, decide, register, approve, report.

Each receives what plan() fixed for the run (`promotion`: the policy, the registry group, the
standing endpoint's plan) instead of re-reading the workload file, so a config edit mid-run moves
nothing. Bodies import what they need, so a DAG file parses without boto3 calls.
"""
from __future__ import annotations

import logging

from airflow.sdk import task
from airflow.sdk.bases.operator import TriggerRule

log = logging.getLogger(__name__)


def aws_client(service: str):
    from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook

    return AwsBaseHook(aws_conn_id="aws_default", client_type=service).get_conn()


@task(multiple_outputs=True)
def plan_evaluation(promotion: dict, training: dict) -> dict:
    """Find the champion (what the standing endpoint serves, else the latest Approved version) and plan
    the processing job that scores it and the challenger on the same held-out data."""
    from include.pipelines.promotion import find_champion
    from include.pipelines.requests import evaluation_with_models

    champion = find_champion(aws_client("sagemaker"), group=promotion["model_package_group"],
                             endpoint_name=promotion["endpoint_name"])
    request = evaluation_with_models(promotion["evaluation_request"],
                                     challenger_model_uri=training["Training"]["ModelArtifacts"]["S3ModelArtifacts"],
                                     champion_model_uri=champion and champion["model_data"])
    return {"request": request, "champion": champion}


@task
def decide(promotion: dict, evaluation: dict, champion: dict | None) -> dict:
    """Promote or reject: the challenger must clear the threshold and beat the champion (same data, same
    code); logs the reason and both figures."""
    from include.pipelines.promotion import decide as decide_promotion
    from include.pipelines.promotion import read_reports, report_value

    policy = promotion["policy"]
    challenger_report, champion_report = read_reports(
        aws_client("s3"), promotion["evaluation_output"], with_champion=champion is not None)
    challenger = report_value(challenger_report, policy["metric"])
    champion_value = report_value(champion_report, policy["metric"]) if champion_report else None
    decision = decide_promotion(policy, challenger, champion_value).as_dict()
    decision.update(champion_version=champion and champion["version"],
                    evaluation_job=evaluation["Processing"]["ProcessingJobName"],
                    challenger_report=challenger_report, champion_report=champion_report)
    log.info("Decision: %s. %s", decision["outcome"].upper(), decision["reason"])
    return decision


@task
def register_version(promotion: dict, training: dict, decision: dict, run_id=None) -> dict:
    """The challenger as a new version of the workload's Model Package Group, PendingManualApproval, with its
    evaluation report as ModelMetrics and what made it as metadata; a retried task gets the same version."""
    from include.pipelines.naming import idempotency_token
    from include.pipelines.promotion import CHALLENGER_REPORT

    sm = aws_client("sagemaker")
    group = promotion["model_package_group"]
    try:
        sm.describe_model_package_group(ModelPackageGroupName=group)
    except sm.exceptions.ClientError:
        sm.create_model_package_group(ModelPackageGroupName=group, Tags=promotion["model_package"].get("Tags", []))
        log.info("Created model package group %s", group)
    job = training["Training"]
    metric = decision["metric"]
    metadata = {**promotion["lineage"], "training-job": job["TrainingJobName"], "dag-run": run_id,
                f"evaluation-{metric}": f"{decision['challenger']:.6f}",
                "champion-version": str(decision.get("champion_version") or "none"),
                "decision": decision["outcome"]}
    request = dict(promotion["model_package"])
    container = {**request["InferenceSpecification"]["Containers"][0],
                 "ModelDataUrl": job["ModelArtifacts"]["S3ModelArtifacts"]}
    request.update(
        InferenceSpecification={**request["InferenceSpecification"], "Containers": [container]},
        ModelPackageDescription=f"Trained by {job['TrainingJobName']}: {metric} {decision['challenger']:.4f} "
                                f"on the held-out data",
        ModelMetrics={"ModelQuality": {"Statistics": {
            "ContentType": "application/json", "S3Uri": f"{promotion['evaluation_output']}/{CHALLENGER_REPORT}"}}},
        CustomerMetadataProperties={k: str(v)[:256] for k, v in metadata.items()},
        # one version per trained model: a retried register task gets the version its first try made
        ClientToken=idempotency_token("model-package", job["TrainingJobName"]),
    )
    arn = sm.create_model_package(**request)["ModelPackageArn"]
    package = sm.describe_model_package(ModelPackageName=arn)
    log.info("Registered %s as version %s of %s", job["TrainingJobName"], package["ModelPackageVersion"],
             promotion["model_package_group"])
    return {"model_package_arn": arn, "version": package["ModelPackageVersion"],
            "model_data": container["ModelDataUrl"]}


@task.branch
def route_approval(decision: dict, params=None) -> str | None:
    """A win goes to approval (auto, or a person when the run asks for manual); a loss is rejected."""
    if not decision["promote"]:
        return "reject_version"
    if not params.get("deploy", True):
        log.info("deploy is off: the version stays PendingManualApproval, nothing is rolled out")
        return None
    return "await_approval" if params.get("approval") == "manual" else "approve_version"


@task
def approve_version(version: dict, decision: dict) -> dict:
    """Auto approval: the decision is the approval."""
    from include.pipelines.promotion import set_approval

    return set_approval(aws_client("sagemaker"), version["model_package_arn"], True,
                        f"Approved automatically: {decision['reason']}")


@task
def reject_version(version: dict, decision: dict) -> dict:
    """The challenger lost: its version is Rejected with the reason; the champion keeps serving."""
    from include.pipelines.promotion import set_approval

    return set_approval(aws_client("sagemaker"), version["model_package_arn"], False, f"Rejected: {decision['reason']}")


@task(trigger_rule=TriggerRule.NONE_FAILED_MIN_ONE_SUCCESS, multiple_outputs=True)
def standing_requests(promotion: dict, version: dict) -> dict:
    """CreateModel and CreateEndpointConfig that put the version on the standing endpoint, once it is Approved
    (by the decision or a person); any other status skips the rollout."""
    from airflow.sdk.exceptions import AirflowSkipException

    from include.pipelines.requests import standing_version_requests

    if not version:  # the gate stopped the run before anything was registered
        raise AirflowSkipException("no version was registered: nothing to roll out")
    status = aws_client("sagemaker").describe_model_package(ModelPackageName=version["model_package_arn"])
    if status["ModelApprovalStatus"] != "Approved":
        raise AirflowSkipException(f"version {version['version']} is {status['ModelApprovalStatus']}: not rolled out")
    return standing_version_requests(promotion["standing"], version=version["version"],
                                     model_package_arn=version["model_package_arn"])


@task(trigger_rule=TriggerRule.ONE_FAILED)
def reject_failed_rollout(ti=None) -> dict:
    """The rollout failed (an alarm rolled it back, or the endpoint never served it): the version is
    Rejected with SageMaker's reason; the champion serves on. Runs only after the deploy task failed."""
    from airflow.sdk.exceptions import AirflowSkipException

    from include.pipelines.promotion import set_approval

    version = ti.xcom_pull(task_ids="register_version")
    names = ti.xcom_pull(task_ids="standing_requests")
    if not version or not names:
        raise AirflowSkipException("nothing was rolled out: an earlier task failed")
    sm = aws_client("sagemaker")
    endpoint = sm.describe_endpoint(EndpointName=names["endpoint_name"])
    reason = endpoint.get("FailureReason") or "the rollout to the standing endpoint failed"
    return set_approval(sm, version["model_package_arn"], False,
                        f"Rejected after its rollout failed; {endpoint.get('EndpointConfigName')} still serves: {reason}")


@task
def approved_champion(promotion: dict) -> dict:
    """The version to run with no endpoint (batch only): the latest Approved one, after this run's decision."""
    from include.pipelines.promotion import latest_approved_version

    champion = latest_approved_version(aws_client("sagemaker"), promotion["model_package_group"])
    if champion is None:
        from airflow.sdk.exceptions import AirflowSkipException

        raise AirflowSkipException(f"{promotion['model_package_group']} has no Approved version yet: nothing to run")
    log.info("Champion: version %s (%s)", champion["version"], champion["model_data"])
    return champion


@task(trigger_rule=TriggerRule.ALL_DONE)
def run_report(settings: dict, promotion: dict, ti=None) -> dict:
    """The run's outcome, metrics, curves, cost and endpoint state: logged, returned, and as an HTML page in S3."""
    from include.pipelines.run_summary import summarize_run

    return summarize_run(settings, promotion, ti=ti)
