"""
### SageMaker preflight: can this AWS account run the pipelines?

Run it once after setting up the `aws_default` connection and the Variables `sagemaker_role_arn`
and `sagemaker_bucket` (docs/deploy.md), and again after changing instance types or counts. For
each workload it checks what a run needs before it spends anything: the execution role exists
and trusts `sagemaker.amazonaws.com`, the bucket exists in the connection's region, the training
and inference images resolve for that region, and the account's SageMaker quotas cover the
configured instance types and counts (Service Quotas). One report in the task log lists every
finding and then what is missing; the task fails when anything blocks a run.

Manual only. The trigger form picks the workloads and the profile (`aws` by default; `auto` picks
`local` when `aws_default` points at the local SageMaker, where roles and quotas do not apply).
"""
from __future__ import annotations

from airflow.sdk import Param, dag, task

from include.pipelines.config import WORKLOADS_DIR
from include.pipelines.tasks import RETRY_DELAY, START_DATE

# the workload files' names: a directory listing, no YAML parsing at parse time
WORKLOADS = sorted(path.stem for path in WORKLOADS_DIR.glob("*.yaml"))


@dag(
    schedule=None,
    start_date=START_DATE,
    catchup=False,
    description="Can this AWS account run the pipelines? Checks role, bucket, images and SageMaker quotas.",
    doc_md=__doc__,
    tags=["sagemaker", "maintenance"],
    # retries cover throttling and network errors; a missing resource fails at once (see below)
    default_args={"owner": "ml-platform", "retries": 2, "retry_delay": RETRY_DELAY},
    params={
        "workloads": Param(WORKLOADS, type="array", items={"type": "string", "enum": WORKLOADS},
                           description="The workloads to check (include/workloads/<name>.yaml)."),
        "profile": Param("aws", enum=["aws", "auto", "local"],
                         description="Which profile of each workload to check; auto: local when aws_default has a "
                                     "non-AWS endpoint_url."),
    },
)
def aws_preflight():
    @task
    def preflight(params=None) -> dict:
        """Check role, bucket, images and quotas of each workload; fail, listing what is missing."""
        from airflow.sdk.exceptions import AirflowFailException

        from include.pipelines.preflight import PreflightFailed, run_preflight

        try:
            return run_preflight(list(params["workloads"]), requested_profile=params["profile"])
        except PreflightFailed as failure:
            # a retry would find the same role, bucket and quotas missing
            raise AirflowFailException(str(failure)) from None

    preflight()


aws_preflight()
