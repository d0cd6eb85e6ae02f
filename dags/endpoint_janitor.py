"""
### Endpoint janitor: delete SageMaker endpoints past their `expires-at` tag

Every hour it lists the endpoints of the `aws_default` connection's account and region and deletes
each one whose `expires-at` tag (ISO-8601 UTC, set by the pipelines from `endpoint.ttl_hours`) lies
in the past, with its Application Auto Scaling policies and scalable targets (deregistered first),
its endpoint config and the models of that config, unless an endpoint that stays runs them too.
That catches the endpoints a run kept (`keep_endpoint`) or could not tear down.

Never touched: an endpoint tagged `endpoint-role` = `standing`, one without an `expires-at` tag, one
not expired yet, and one that is busy (Creating, Updating, SystemUpdating, RollingBack: the next
run looks again). Something deleted meanwhile is no error.

The trigger form's `dry_run` logs and returns what would go and deletes nothing. The task log has
one line per removed resource; its XCom is `{"dry_run", "removed": [{"endpoint", "endpoint_config",
"models", "scalable_targets", "expired_at"}], "kept": [{"endpoint", "why"}]}`.
Logic: include/pipelines/janitor.py.
"""
from __future__ import annotations

from datetime import timedelta

from airflow.sdk import Param, dag, task

from include.pipelines.tasks import RETRY_DELAY, START_DATE, dag_schedule


@dag(
    schedule=dag_schedule("@hourly"),  # the next full hour after deploying or unpausing, never a past one
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,  # two sweeps would race to delete the same endpoints
    description="Deletes SageMaker endpoints past their expires-at tag, with their configs, models and autoscaling.",
    doc_md=__doc__,
    tags=["sagemaker", "maintenance"],
    # a retry finds what the failed try left: deleted pieces count as gone, not as errors
    default_args={"owner": "ml-platform", "retries": 2, "retry_delay": RETRY_DELAY},
    params={
        "dry_run": Param(False, type="boolean",
                         description="Only log and return the endpoints that would be deleted; delete nothing."),
    },
)
def endpoint_janitor():
    @task(execution_timeout=timedelta(minutes=30))
    def sweep(params=None) -> dict:
        """Delete the expired endpoints (and their autoscaling, configs and models); returns what went and what stayed."""
        from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook

        from include.pipelines.janitor import sweep_expired_endpoints

        sagemaker = AwsBaseHook(aws_conn_id="aws_default", client_type="sagemaker").get_conn()
        autoscaling = AwsBaseHook(aws_conn_id="aws_default", client_type="application-autoscaling").get_conn()
        return sweep_expired_endpoints(sagemaker, autoscaling, dry_run=bool(params.get("dry_run")))

    sweep()


endpoint_janitor()
