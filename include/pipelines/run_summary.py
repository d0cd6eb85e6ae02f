"""What one pipeline run did, gathered after its last task: the outcome, the figures, the cost, the endpoint.

The run report task calls summarize_run: it reads the XComs the run's tasks left (a task that did not
run left none), asks SageMaker for the rest, renders the HTML page (run_report.py), puts it in S3 and
logs where.
"""
from __future__ import annotations

import datetime as dt
import logging

log = logging.getLogger(__name__)


def _clients():
    from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook

    return {name: AwsBaseHook(aws_conn_id="aws_default", client_type=name).get_conn()
            for name in ("sagemaker", "s3", "logs", "cloudwatch")}


def _pull(ti, task_id: str, key: str = "return_value"):
    try:
        return ti.xcom_pull(task_ids=task_id, key=key)
    except Exception:  # a task that never ran has nothing to pull
        return None


def _gate_passed(ti, training: dict) -> bool | None:
    """The gate's verdict, None when it gave none. A short circuit that returns False pushes no XCom (Airflow 3
    skips its downstream by raising), so without one the verdict is read again from the job's metric and the
    gate this run planned."""
    passed = _pull(ti, "evaluate")
    gate = _pull(ti, "plan", key="gate")
    if passed is not None or not training or not gate:
        return passed
    from include.pipelines.config import EvaluationConfig
    from include.pipelines.evaluation import MetricNotFound, final_metric, passes_gate

    try:
        return passes_gate(final_metric(training, gate["metric"]), EvaluationConfig(**gate))
    except MetricNotFound:
        return None


def outcome_of(decision: dict | None, gate_passed, version: dict | None, rollout: dict | None,
               has_endpoint: bool) -> tuple[str, str]:
    """(outcome, reason) of the run, from what its tasks left behind."""
    if decision is None:
        if gate_passed is False:
            return "rejected", "the training job's own validation metric did not clear the gate: nothing was evaluated"
        return "failed", "the run ended before the challenger was evaluated"
    if not decision["promote"]:
        return "rejected", decision["reason"]
    status = (version or {}).get("ModelApprovalStatus")
    description = (version or {}).get("ApprovalDescription") or ""
    if status == "Rejected":
        if description.startswith("Rejected after its rollout failed"):
            return "rolled_back", description
        return "approval_rejected", description or "the version was rejected"
    if status != "Approved":
        return "not_deployed", f"the version is {status or 'not registered'}: nothing was rolled out"
    if has_endpoint and not rollout:
        return "failed", "the version was approved but the rollout did not finish"
    return "promoted", decision["reason"]


def summarize_run(settings: dict, promotion: dict, *, ti) -> dict:
    from include.pipelines import costs, run_report

    clients = _clients()
    sm = clients["sagemaker"]
    decision = _pull(ti, "decide")
    registered = _pull(ti, "register_version")
    rollout = _pull(ti, "deploy_standing_endpoint")
    version = sm.describe_model_package(ModelPackageName=registered["model_package_arn"]) if registered else None
    training = (_pull(ti, "train") or {}).get("Training") or {}
    outcome, reason = outcome_of(decision, _gate_passed(ti, training), version, rollout,
                                 has_endpoint=bool(promotion.get("endpoint_name")))

    tuning = (_pull(ti, "tune") or {}).get("Tuning") or {}
    transforms = [t for t in (_pull(ti, "batch_transform"), _pull(ti, "batch_decode")) if t]
    evaluation = decision["evaluation_job"] if decision else None
    cost = costs.run_cost(
        sm,
        training_jobs=[training["TrainingJobName"]] if training else [],
        tuning_jobs=[tuning["HyperParameterTuningJobName"]] if tuning else [],
        processing_jobs=[evaluation] if evaluation else [],
        transform_jobs=[t["Transform"]["TransformJobName"] for t in transforms],
    )
    endpoint = _endpoint_state(sm, promotion.get("endpoint_name"))
    report = {
        "workload": settings["workload"],
        "dag_id": ti.dag_id,
        "run_id": ti.run_id,
        "generated_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "decision": {**(decision or {}), "outcome": outcome, "reason": reason},
        "training_job": training.get("TrainingJobName"),
        "curves": (run_report.training_curves(sm, clients["logs"], training["TrainingJobName"])
                   if training else {}),
        "tuning": run_report.tuning_results(sm, tuning["HyperParameterTuningJobName"]) if tuning else None,
        "cost": cost,
        "model_package": version and {
            "arn": version["ModelPackageArn"], "version": version.get("ModelPackageVersion"),
            "approval_status": version.get("ModelApprovalStatus"),
            "approval_description": version.get("ApprovalDescription")},
        "endpoint": endpoint,
    }
    html = run_report.render_report(report)
    key = run_report.report_key(settings["prefix"], ti.dag_id, ti.run_id)
    uri = run_report.publish_report(clients["s3"], settings["bucket"], key, html)
    log.info("Outcome: %s. %s", outcome.upper().replace("_", " "), reason)
    log.info("Cost: %s", costs.format_cost(cost))
    log.info("Run report: %s", uri)
    return {"outcome": outcome, "reason": reason, "report": uri, "cost_usd": cost["total_usd"],
            "challenger": decision and decision.get("challenger"), "champion": decision and decision.get("champion"),
            "endpoint": endpoint}


def _endpoint_state(sm, endpoint_name: str | None) -> dict | None:
    from botocore.exceptions import ClientError

    if not endpoint_name:
        return None
    try:
        endpoint = sm.describe_endpoint(EndpointName=endpoint_name)
    except ClientError:
        return {"name": endpoint_name, "status": "absent", "config": None, "variants": [], "failure_reason": None}
    return {
        "name": endpoint_name,
        "status": endpoint["EndpointStatus"],
        "config": endpoint.get("EndpointConfigName"),
        "failure_reason": endpoint.get("FailureReason"),
        "variants": [{"name": v["VariantName"], "weight": v.get("CurrentWeight"),
                      "instances": v.get("CurrentInstanceCount"),
                      "model": (v.get("DeployedImages") or [{}])[0].get("SpecifiedImage")}
                     for v in endpoint.get("ProductionVariants", [])],
    }
