"""The run-time steps every pipeline shares, as plain functions the DAGs wrap in @task.

They read the Airflow connection and Variables at run time (never at parse time), so the same DAG
runs against real AWS and against the local SageMaker; only the `aws_default` connection differs.
"""
from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def _aws_hook(aws_conn_id: str, client_type: str | None = None):
    from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook

    return AwsBaseHook(aws_conn_id=aws_conn_id, client_type=client_type)


def resolve_settings(workload: str, *, aws_conn_id: str = "aws_default", requested_profile: str = "auto") -> dict:
    """Which profile (local or aws) this run uses, and where: region, bucket, role.

    "auto" picks local when the connection points at a non-AWS endpoint_url (the local SageMaker).
    On AWS, the Variables sagemaker_role_arn and sagemaker_bucket override the workload file.
    """
    from airflow.sdk import Variable

    from .config import load_workload, profile_for_endpoint_url

    hook = _aws_hook(aws_conn_id)
    endpoint_url = hook.conn_config.endpoint_url
    profile = profile_for_endpoint_url(endpoint_url) if requested_profile == "auto" else requested_profile
    cfg = load_workload(workload, profile)
    if profile == "aws":
        cfg = cfg.with_overrides(
            role_arn=Variable.get("sagemaker_role_arn", default=None),
            bucket=Variable.get("sagemaker_bucket", default=None),
        )
        cfg.require_real_settings()
    role_arn, bucket = cfg.role_arn, cfg.bucket
    region = hook.region_name or hook.conn_config.region_name or "us-east-1"
    settings = {
        "workload": workload,
        "profile": profile,
        "region": region,
        "bucket": bucket,
        "prefix": cfg.s3_prefix,
        "role_arn": role_arn,
    }
    log.info("Run settings: %s (endpoint %s)", settings, endpoint_url or "AWS")
    return settings


def ensure_bucket(s3_client, bucket: str, region: str) -> None:
    from botocore.exceptions import ClientError

    try:
        s3_client.head_bucket(Bucket=bucket)
    except ClientError:
        kwargs = {} if region == "us-east-1" else {"CreateBucketConfiguration": {"LocationConstraint": region}}
        s3_client.create_bucket(Bucket=bucket, **kwargs)
        log.info("Created bucket %s", bucket)


def upload_source(settings: dict, *, aws_conn_id: str = "aws_default") -> str:
    """Package training_src/<workload> reproducibly and upload it under its content hash."""
    from . import packaging

    cfg = run_config(settings)
    s3 = _aws_hook(aws_conn_id, "s3").get_conn()
    ensure_bucket(s3, cfg.bucket, settings["region"])
    uri = packaging.upload_source(s3, cfg.bucket, cfg.s3_prefix, cfg.source_path)
    log.info("Source for %s: %s", cfg.name, uri)
    return uri


def upload_dataset(settings: dict, *, aws_conn_id: str = "aws_default") -> dict[str, str]:
    """Put the workload's data in S3 as a sync (unchanged files are skipped); returns channel -> S3 URI."""
    from .data import upload_training_data

    cfg = run_config(settings)
    s3 = _aws_hook(aws_conn_id, "s3").get_conn()
    ensure_bucket(s3, cfg.bucket, settings["region"])
    with tempfile.TemporaryDirectory(prefix=f"{cfg.name}-data-") as tmp:
        result = upload_training_data(s3, cfg, Path(tmp))
    log.info(
        "Data in %s: %d files uploaded, %d unchanged", result["uri"], result["uploaded"], result["skipped"]
    )
    return result["channels"]


def plan_requests(
    settings: dict,
    *,
    source_uri: str,
    channels: dict[str, str],
    run_id: str,
    hyperparameters: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Every SageMaker request of one run, with names derived from the run so retries are idempotent."""
    from . import images, requests
    from .naming import resource_name

    cfg = run_config(settings)
    region = settings["region"]
    job_name = resource_name(cfg.name, "train", run_id)
    model_name = resource_name(cfg.name, "model", run_id)
    config_name = resource_name(cfg.name, "epc", run_id)
    endpoint_name = resource_name(cfg.name, "endpoint", run_id)

    training = requests.build_training_request(
        cfg,
        job_name=job_name,
        image_uri=images.training_image_uri(cfg, region),
        source_uri=source_uri,
        channels=channels,
        hyperparameter_overrides=hyperparameters or None,
    )
    model = requests.build_model_request(
        cfg,
        model_name=model_name,
        image_uri=images.inference_image_uri(cfg, region),
        model_data_url=requests.model_artifact_uri(training),
    )
    endpoint_config = requests.build_endpoint_config_request(cfg, config_name=config_name, model_name=model_name)
    endpoint = requests.build_endpoint_request(cfg, endpoint_name=endpoint_name, config_name=config_name)
    return {
        "training": training,
        "model": model,
        "endpoint_config": endpoint_config,
        "endpoint": endpoint,
        "job_name": job_name,
        "endpoint_name": endpoint_name,
    }


def run_config(settings: dict):
    """The workload config of this run: its profile, with the run's bucket and role."""
    from .config import load_workload

    cfg = load_workload(settings["workload"], settings["profile"])
    return cfg.with_overrides(role_arn=settings["role_arn"], bucket=settings["bucket"])


def evaluate_gate(settings: dict, training_description: dict) -> bool:
    """True when the training job's metric clears the workload's evaluation gate."""
    from .evaluation import final_metric, passes_gate

    gate = run_config(settings).evaluation
    value = final_metric(training_description, gate.metric)
    passed = passes_gate(value, gate)
    comparison = ">=" if gate.direction == "maximize" else "<="
    log.info(
        "Gate %s: %s = %.4f, needs %s %.4f -> %s",
        "passed" if passed else "FAILED",
        gate.metric,
        value,
        comparison,
        gate.threshold,
        "deploying" if passed else "not deploying",
    )
    return passed
