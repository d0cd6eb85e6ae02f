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
    """Package training_src/<workload> (with training_src/shared) reproducibly and upload it under its content hash."""
    from . import packaging

    cfg = run_config(settings)
    s3 = _aws_hook(aws_conn_id, "s3").get_conn()
    ensure_bucket(s3, cfg.bucket, settings["region"])
    uri = packaging.upload_source(s3, cfg.bucket, cfg.s3_prefix, cfg.source_path)
    if cfg.promotion is not None:  # the evaluation's processing job reads the files unpacked
        packaging.upload_source_files(s3, uri, cfg.source_path)
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
    preset: str | None = None,
) -> dict[str, Any]:
    """Every SageMaker request of one run, with names derived from the run so retries are idempotent.

    `preset` names one of the workload's presets: its hyperparameters apply under `hyperparameters`.
    Endpoint requests are planned when the workload has an endpoint, a batch transform when it
    names a transform.input.
    """
    from . import images, requests
    from .naming import resource_name

    cfg = run_config(settings)
    if preset:
        if preset not in cfg.presets:
            raise ValueError(f"workload {cfg.name!r} has no preset {preset!r}; its presets: {', '.join(cfg.presets) or 'none'}")
        hyperparameters = {**cfg.presets[preset], **(hyperparameters or {})}
        log.info("Preset %s: hyperparameters %s", preset, hyperparameters)
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
    # the gate as this run planned it: a config edit mid-run must not move the bar
    gate = {"metric": cfg.evaluation.metric, "threshold": cfg.evaluation.threshold, "direction": cfg.evaluation.direction}
    planned = {"training": training, "model": model, "gate": gate}
    standing = cfg.promotion.endpoint_name if cfg.promotion else None
    if cfg.endpoint is not None and standing is None:  # a temporary endpoint of this run
        planned.update(
            endpoint_config=requests.build_endpoint_config_request(cfg, config_name=config_name, model_name=model_name),
            endpoint=requests.build_endpoint_request(cfg, endpoint_name=endpoint_name, config_name=config_name),
            endpoint_name=endpoint_name,
        )
    if cfg.tuning is not None:
        planned["tuning"] = requests.build_tuning_request(
            cfg, tuning_job_name=resource_name(cfg.name, "tune", run_id), image_uri=training["AlgorithmSpecification"][
                "TrainingImage"], source_uri=source_uri, channels=channels)
    if cfg.endpoint is not None and cfg.endpoint.autoscaling is not None:
        register, policy = requests.build_autoscaling_requests(cfg, endpoint_name=standing or endpoint_name)
        planned["autoscaling"] = {"scalable_target": register, "scaling_policy": policy}
    if cfg.promotion is not None:
        planned["promotion"] = plan_promotion(cfg, region=region, source_uri=source_uri, channels=channels,
                                              run_id=run_id, training_job=job_name)
    if cfg.transform is not None and cfg.transform.input:
        transform_job = resource_name(cfg.name, "transform", run_id)
        # the transform runs a model of its own: the endpoint's teardown deletes the endpoint's model
        # while a parallel transform may still be using it
        batch_model_name = resource_name(cfg.name, "batch-model", run_id)
        planned["batch_model"] = {**model, "ModelName": batch_model_name}
        planned["transform"] = requests.build_transform_request(
            cfg, job_name=transform_job, model_name=batch_model_name, input_uri=requests.transform_input_uri(cfg),
            output_uri=cfg.s3_uri("transform-output", transform_job))
    return planned


def plan_promotion(cfg, *, region: str, source_uri: str, channels: dict, run_id: str, training_job: str) -> dict:
    """What the promotion stage of this run needs, fixed at planning time like the gate: the policy, the
    registry group, the standing endpoint, the evaluation job's name, image, code and output."""
    import dataclasses

    from . import images, packaging, requests
    from .naming import resource_name

    evaluation_job = resource_name(cfg.name, "evaluate", run_id)
    output = cfg.s3_uri("evaluation", evaluation_job)
    return {
        # the challenger's and champion's model data are added once known (plan_evaluation)
        "evaluation_request": requests.build_evaluation_request(
            cfg, job_name=evaluation_job, image_uri=images.training_image_uri(cfg, region),
            code_uri=packaging.source_files_uri(source_uri), output_uri=output),
        "policy": dataclasses.asdict(cfg.promotion),
        "model_package_group": cfg.registry.model_package_group,
        "endpoint_name": cfg.promotion.endpoint_name,
        "evaluation_output": output,
        "standing": requests.plan_standing_endpoint(cfg) if cfg.promotion.endpoint_name else None,
        # the version's request, less what only the finished job knows (its artifact, metrics, token)
        "model_package": requests.build_model_package_request(
            cfg, image_uri=images.inference_image_uri(cfg, region), model_data_url=f"{cfg.s3_uri('models')}/planned"),
        # what ties a registered version to how it came about (values: no commas, 256 characters at most)
        "lineage": {"training-job": training_job, "source": source_uri, "data": cfg.data_uri,
                    "channels": " ".join(f"{k}={v}" for k, v in sorted(channels.items())), "dag-run": run_id},
    }


def run_config(settings: dict):
    """The workload config of this run: its profile, with the run's bucket and role."""
    from .config import load_workload

    cfg = load_workload(settings["workload"], settings["profile"])
    return cfg.with_overrides(role_arn=settings["role_arn"], bucket=settings["bucket"])


def evaluate_gate(training_description: dict, gate: dict) -> bool:
    """True when the training job's metric clears the run's planned gate."""
    from .config import EvaluationConfig
    from .evaluation import final_metric, passes_gate

    gate = EvaluationConfig(**gate)
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
        "evaluating against the champion" if passed else "stopping here: nothing is registered or deployed",
    )
    return passed


def data_files(settings: dict, *, aws_conn_id: str = "aws_default") -> list[str]:
    """The objects under the workload's data location, relative to it (e.g. 'images/train/plan_00000.png')."""
    from .data import list_data_files

    s3 = _aws_hook(aws_conn_id, "s3").get_conn()
    return list_data_files(s3, run_config(settings))


def publish_model_files(settings: dict, training_description: dict, files: tuple[str, ...], *,
                        aws_conn_id: str = "aws_default") -> dict:
    """Copy `files` out of a finished job's model.tar.gz to <s3_prefix>/models/<job>/, then to models/latest/.

    models/latest/ is the stable place consumers outside SageMaker read the current model from; each
    file carries the job's name and gate metric as S3 metadata, and latest/manifest.json says which
    job it came from. The job's own copy stays, so an earlier model remains addressable.
    """
    import datetime as dt
    import hashlib
    import json
    import tarfile

    from .evaluation import final_metric

    if not files:
        raise ValueError("files must name at least one file of the model archive, e.g. ('best.pt',)")
    cfg = run_config(settings)
    s3 = _aws_hook(aws_conn_id, "s3").get_conn()
    job = training_description["TrainingJobName"]
    model_uri = training_description["ModelArtifacts"]["S3ModelArtifacts"]
    bucket, key = model_uri.removeprefix("s3://").split("/", 1)
    gate_metric = cfg.evaluation.metric
    gate_value = final_metric(training_description, gate_metric)
    # S3 metadata keys are lowercase and take no ':'
    metadata = {"training-job": job, "model-data": model_uri, gate_metric.replace(":", "-").lower(): f"{gate_value:.6f}"}
    published: dict[str, dict[str, str]] = {"latest": {}, "versioned": {}}
    digests = {}
    with tempfile.TemporaryDirectory(prefix=f"{cfg.name}-publish-") as tmp:
        archive = Path(tmp) / "model.tar.gz"
        s3.download_file(bucket, key, str(archive))
        with tarfile.open(archive) as tar:
            members = {m.name.removeprefix("./"): m for m in tar.getmembers() if m.isfile()}
            missing = [name for name in files if name not in members]
            if missing:
                raise FileNotFoundError(f"{model_uri} holds no {', '.join(missing)}; it has {', '.join(sorted(members))}")
            for name in files:
                data = tar.extractfile(members[name]).read()
                digests[name] = hashlib.sha256(data).hexdigest()
                versioned_key = cfg.s3_uri("models", job, name).removeprefix(f"s3://{cfg.bucket}/")
                latest_key = cfg.s3_uri("models", "latest", name).removeprefix(f"s3://{cfg.bucket}/")
                s3.put_object(Bucket=cfg.bucket, Key=versioned_key, Body=data,
                              Metadata={**metadata, "sha256": digests[name]})
                # a server-side copy: latest/ changes only once the job's own copy is complete
                s3.copy_object(Bucket=cfg.bucket, Key=latest_key, CopySource={"Bucket": cfg.bucket, "Key": versioned_key},
                               MetadataDirective="COPY")
                published["versioned"][name] = f"s3://{cfg.bucket}/{versioned_key}"
                published["latest"][name] = f"s3://{cfg.bucket}/{latest_key}"
    manifest = {"training_job": job, "model_data": model_uri, "metric": {gate_metric: gate_value},
                "files": {name: {"uri": published["versioned"][name], "sha256": digests[name]} for name in files},
                "published_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}
    manifest_key = cfg.s3_uri("models", "latest", "manifest.json").removeprefix(f"s3://{cfg.bucket}/")
    s3.put_object(Bucket=cfg.bucket, Key=manifest_key, Body=json.dumps(manifest, indent=2).encode(),
                  ContentType="application/json")
    published["manifest"] = f"s3://{cfg.bucket}/{manifest_key}"
    log.info("Published %s of %s to %s", ", ".join(files), job, ", ".join(published["latest"].values()))
    return published


def endpoint_details(endpoint_name: str, *, aws_conn_id: str = "aws_default") -> dict:
    """What a consumer needs to call a deployed endpoint, as SageMaker describes it: name, ARN, region,
    and per production variant its model, model data and instances (the first variant also at top level)."""
    sagemaker = _aws_hook(aws_conn_id, "sagemaker").get_conn()
    endpoint = sagemaker.describe_endpoint(EndpointName=endpoint_name)
    if endpoint["EndpointStatus"] != "InService":
        raise RuntimeError(f"Endpoint {endpoint_name} is {endpoint['EndpointStatus']}, not InService: nothing to publish")
    config = sagemaker.describe_endpoint_config(EndpointConfigName=endpoint["EndpointConfigName"])
    variants = []
    for variant in config["ProductionVariants"]:
        container = sagemaker.describe_model(ModelName=variant["ModelName"]).get("PrimaryContainer", {})
        package_arn = container.get("ModelPackageName")
        if package_arn:  # a model that runs a registered version names only the version: its image and data are there
            package = sagemaker.describe_model_package(ModelPackageName=package_arn)
            container = {**package["InferenceSpecification"]["Containers"][0], **container}
        variants.append({
            "variant_name": variant["VariantName"],
            "model_name": variant["ModelName"],
            "model_data": container.get("ModelDataUrl"),
            "model_package_arn": package_arn,
            "image": container.get("Image"),
            "instance_type": variant.get("InstanceType"),
            "initial_instance_count": variant.get("InitialInstanceCount"),
            "serverless": variant.get("ServerlessConfig"),
        })
    return {
        "endpoint_name": endpoint_name,
        "endpoint_arn": endpoint["EndpointArn"],
        "endpoint_config_name": endpoint["EndpointConfigName"],
        "region": sagemaker.meta.region_name,
        "status": endpoint["EndpointStatus"],
        "variant": variants[0]["variant_name"],
        "model_name": variants[0]["model_name"],
        "model_data": variants[0]["model_data"],
        "variants": variants,
        "created_at": endpoint["CreationTime"].isoformat(),
    }


def training_with_tuned_hyperparameters(training: dict, tuning_description: dict | None) -> dict:
    """The planned training request with the best tuning job's hyperparameters, when tuning ran.

    The final job then trains with what tuning found, at the final job's own scale (instances,
    spot, checkpoints), rather than redeploying a tuning child.
    """
    if not tuning_description:
        log.info("No tuning this run: training %s with the workload's hyperparameters", training["TrainingJobName"])
        return training
    best = tuning_description.get("BestTrainingJob")
    if not best:
        raise ValueError(f"tuning job {tuning_description.get('HyperParameterTuningJobName')} found no best training job")
    tuned = best["TunedHyperParameters"]
    log.info("Best tuning job %s (%s = %s): %s", best["TrainingJobName"],
             best.get("FinalHyperParameterTuningJobObjectiveMetric", {}).get("MetricName"),
             best.get("FinalHyperParameterTuningJobObjectiveMetric", {}).get("Value"), tuned)
    return {**training, "HyperParameters": {**training["HyperParameters"], **tuned}}


def register_autoscaling(autoscaling: dict, *, aws_conn_id: str = "aws_default") -> dict:
    """Register the endpoint variant with Application Auto Scaling and attach its target-tracking policy."""
    client = _aws_hook(aws_conn_id, "application-autoscaling").get_conn()
    client.register_scalable_target(**autoscaling["scalable_target"])
    policy = client.put_scaling_policy(**autoscaling["scaling_policy"])
    target = autoscaling["scalable_target"]
    log.info("Autoscaling %s between %d and %d instances (policy %s)", target["ResourceId"],
             target["MinCapacity"], target["MaxCapacity"], autoscaling["scaling_policy"]["PolicyName"])
    return {"resource_id": target["ResourceId"], "policy_arn": policy["PolicyARN"]}


def prepare_cifar10_batch_input(settings: dict, *, aws_conn_id: str = "aws_default") -> dict:
    """The CIFAR-10 test set as the batch transform's JSON-lines input."""
    from .cifar10_batch import write_batch_input

    return write_batch_input(run_config(settings), _aws_hook(aws_conn_id, "s3").get_conn())


def check_cifar10_batch_output(settings: dict, transform_description: dict, *, aws_conn_id: str = "aws_default") -> dict:
    """The batch transform's predictions: one per image, scored against the labels."""
    from .cifar10_batch import check_batch_output

    return check_batch_output(run_config(settings), _aws_hook(aws_conn_id, "s3").get_conn(), transform_description)
