"""Rollback on demand: a DAG that puts an earlier Approved version back on a workload's standing endpoint.

One per workload with a standing endpoint (`dags/<workload>_rollback.py` calls `rollback_dag`),
triggered by hand. It puts the chosen Approved version (the trigger form's `version`; empty: the
newest Approved version older than the one serving) back on the endpoint with the same guarded update
a promotion uses (canary or all at once, the rollback alarms), then runs the workload's smoke test
against it live. A version that is not Approved is refused; the registry is left as it is.
"""
from __future__ import annotations

from airflow.sdk import DAG, Param, chain, task

from include.pipelines import promotion_tasks
from include.pipelines.tasks import RETRIES, RETRY_DELAY, START_DATE
from sagemaker_pipelines_plugin.resources import (
    SageMakerCreateEndpointConfigOnceOperator,
    SageMakerCreateModelOnceOperator,
)
from sagemaker_pipelines_plugin.standing_endpoint import SageMakerDeployStandingEndpointOperator


@task(multiple_outputs=True)
def choose_version(workload: str, params=None) -> dict:
    """The Approved version to serve again, and the requests that put it on the standing endpoint."""
    from include.pipelines.promotion import rollback_target
    from include.pipelines.requests import plan_standing_endpoint, standing_version_requests
    from include.pipelines.steps import resolve_settings, run_config

    cfg = run_config(resolve_settings(workload, requested_profile=params.get("profile", "auto")))
    target = rollback_target(promotion_tasks.aws_client("sagemaker"), group=cfg.registry.model_package_group,
                             endpoint_name=cfg.promotion.endpoint_name, version=params.get("version"))
    return standing_version_requests(plan_standing_endpoint(cfg), version=target["version"],
                                     model_package_arn=target["model_package_arn"])


@task
def smoke_test(workload: str, endpoint_name: str) -> dict:
    """The workload's own smoke test, against the endpoint as it serves now."""
    from importlib import import_module

    return import_module(f"include.pipelines.smoke.{workload}").smoke_test(endpoint_name)


def rollback_dag(workload, *, doc: str | None = None, fileloc: str | None = None) -> DAG:
    """`<workload>_rollback`: choose the version, put it on the standing endpoint (guarded), smoke-test it."""
    with DAG(f"{workload.name}_rollback", description=f"Put an earlier Approved {workload.name} version back on "
             f"{workload.promotion.endpoint_name}", schedule=None, start_date=START_DATE, catchup=False,
             max_active_runs=1, doc_md=doc or __doc__, tags=["sagemaker", "rollback", workload.name.replace("_", "-")],
             default_args={"owner": workload.owner, "retries": RETRIES, "retry_delay": RETRY_DELAY},
             params={"version": Param(None, type=["null", "integer"], minimum=1, description=(
                     "The Approved version to serve again; empty: the newest Approved one older than the one serving.")),
                     "profile": Param("auto", enum=["auto", "local", "aws"],
                                      description="auto: local when aws_default has an endpoint_url.")}) as dag:
        names = choose_version(workload.name)
        deploy = SageMakerDeployStandingEndpointOperator(
            task_id="deploy_standing_endpoint", endpoint_name=names["endpoint_name"],
            endpoint_config_name=names["endpoint_config_name"], deployment_config=names["deployment_config"],
            alarms=names["alarms"], tags=names["endpoint_tags"], check_interval=2)
        chain(SageMakerCreateModelOnceOperator(task_id="create_standing_model", config=names["model"]),
              SageMakerCreateEndpointConfigOnceOperator(task_id="create_standing_endpoint_config",
                                                       config=names["endpoint_config"]),
              deploy, smoke_test(workload.name, names["endpoint_name"]))
    if fileloc:  # the DAG file that asked for it, not this module, is where Airflow finds it
        dag.fileloc = fileloc
    return dag
