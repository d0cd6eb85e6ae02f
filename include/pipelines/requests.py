"""SageMaker request dicts built from a workload config, with SageMaker's own key names.

Each builder validates its result against botocore's service model (strict: enum, min/max,
pattern, and no unknown members) before returning it, so a bad request fails in the task that
built it, naming the field, instead of half-way through a pipeline on AWS.
"""
from __future__ import annotations

import json
import re
from datetime import datetime, timedelta, timezone
from typing import Any

from include.aws_shapes import RequestValidationError, request_problems

from .config import WorkloadConfig

SAGEMAKER_LOG_LEVEL = "20"  # logging.INFO, as the SageMaker Python SDK sends it
MODEL_CODE_DIR = "/opt/ml/model/code"  # where the inference container finds code packed in model.tar.gz
CHECKPOINT_LOCAL_PATH = "/opt/ml/checkpoints"
TENSORBOARD_LOCAL_PATH = "/opt/ml/output/tensorboard"  # TensorBoardOutputConfig.LocalPath's default
EXPIRY_TAG = "expires-at"  # ISO-8601 UTC time after which the endpoint janitor deletes the endpoint
_ECR_REGION = re.compile(r"\.dkr\.ecr\.([a-z0-9-]+)\.amazonaws\.com")


class InvalidRequest(RequestValidationError):
    """A built request that SageMaker would refuse; the message names the operation and each field."""

    def __init__(self, operation: str, problems: list[str]):
        super().__init__(problems)
        self.operation = operation
        self.args = (f"{operation}: {self.args[0]}",)


def _validated(operation: str, request: dict, service: str = "sagemaker") -> dict:
    problems = request_problems(service, operation, request, strict=True)
    if problems:
        raise InvalidRequest(operation, problems)
    return request


def hyperparameter_value(value: Any) -> str:
    """A hyperparameter as SageMaker carries it: strings as they are, anything else as JSON ("true", "0.1")."""
    return value if isinstance(value, str) else json.dumps(value)


def region_of(image_uri: str) -> str:
    match = _ECR_REGION.search(image_uri)
    if not match:
        raise ValueError(f"cannot tell the region from image {image_uri!r}; pass region=")
    return match.group(1)


def resource_tags(cfg: WorkloadConfig, extra: dict[str, str] | None = None) -> list[dict[str, str]]:
    """The workload's cost tags plus workload=<name> (and `extra`), as SageMaker's [{Key, Value}] list."""
    tags = {**cfg.tags, "workload": cfg.name, **(extra or {})}
    return [{"Key": key, "Value": str(value)} for key, value in sorted(tags.items())]


def expiry_time(tags: list[dict[str, str]] | dict[str, str]) -> datetime | None:
    """The `expires-at` time in a tag list (as ListTags returns it), or None when there is none."""
    pairs = tags.items() if isinstance(tags, dict) else ((t.get("Key"), t.get("Value")) for t in tags)
    for key, value in pairs:
        if key == EXPIRY_TAG and value:
            return datetime.fromisoformat(value.replace("Z", "+00:00"))
    return None


# --- training --------------------------------------------------------------------------------

def _streamed_hyperparameters(cfg: WorkloadConfig, channels: dict[str, str]) -> dict[str, str]:
    """The S3 URIs of the channels the script streams (data.streamed), under the hyperparameters it reads them from."""
    missing = sorted(set(cfg.data.streamed) - set(channels))
    if missing:
        raise ValueError(f"channels must include the streamed channel(s) {', '.join(missing)}")
    return {hyperparameter: channels[name] for name, hyperparameter in cfg.data.streamed.items()}


def _training_hyperparameters(cfg: WorkloadConfig, *, job_name: str | None, source_uri: str, region: str,
                              overrides: dict | None, exclude: set[str] = frozenset(),
                              streamed: dict[str, str] | None = None) -> dict[str, str]:
    values = {**cfg.training.hyperparameters, **(streamed or {}), **(overrides or {})}
    reserved = sorted(k for k in values if k.startswith("sagemaker_"))
    if reserved:
        raise ValueError(f"hyperparameter_overrides may not set the toolkit's own {', '.join(reserved)}")
    hyperparameters = {str(k): hyperparameter_value(v) for k, v in values.items() if k not in exclude}
    # the toolkit (sagemaker-training) json-decodes these, as the SageMaker Python SDK encodes them
    hyperparameters.update({
        "sagemaker_program": json.dumps(cfg.source.entry_point),
        "sagemaker_submit_directory": json.dumps(source_uri),
        "sagemaker_region": json.dumps(region),
        "sagemaker_container_log_level": SAGEMAKER_LOG_LEVEL,
    })
    if job_name:
        hyperparameters["sagemaker_job_name"] = json.dumps(job_name)
    if cfg.training.distribution == "torch_distributed":
        hyperparameters["sagemaker_torch_distributed_enabled"] = "true"  # launch with torchrun on every host
    return hyperparameters


def _input_data_config(channels: dict[str, str]) -> list[dict]:
    if not channels:
        raise ValueError("channels must name at least one input channel (channel name -> s3:// URI)")
    return [
        {
            "ChannelName": name,
            "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": uri,
                                            "S3DataDistributionType": "FullyReplicated"}},
        }
        for name, uri in sorted(channels.items())
    ]


def _job_definition(cfg: WorkloadConfig, image_uri: str, channels: dict[str, str]) -> dict:
    """The members CreateTrainingJob and a tuning job's TrainingJobDefinition share."""
    t = cfg.training
    stopping = {"MaxRuntimeInSeconds": t.max_runtime_seconds}
    definition = {
        "AlgorithmSpecification": {
            "TrainingImage": image_uri,
            "TrainingInputMode": t.input_mode,
            "MetricDefinitions": [{"Name": m.name, "Regex": m.regex} for m in t.metric_definitions],
        },
        "RoleArn": cfg.role_arn,
        "OutputDataConfig": {"S3OutputPath": cfg.s3_uri("training-output")},
        "ResourceConfig": {"InstanceType": t.instance_type, "InstanceCount": t.instance_count,
                           "VolumeSizeInGB": t.volume_size_gb},
        "StoppingCondition": stopping,
    }
    # a streamed channel reaches the script as a hyperparameter (see _streamed_hyperparameters), not as a download
    downloaded = {name: uri for name, uri in channels.items() if name not in cfg.data.streamed}
    if downloaded or not channels:
        definition["InputDataConfig"] = _input_data_config(downloaded)
    if t.use_spot:
        definition["EnableManagedSpotTraining"] = True
        stopping["MaxWaitTimeInSeconds"] = t.max_wait_seconds
    if t.environment:
        definition["Environment"] = dict(t.environment)
    return definition


def build_training_request(cfg: WorkloadConfig, *, job_name: str, image_uri: str, source_uri: str,
                           channels: dict[str, str], hyperparameter_overrides: dict | None = None,
                           region: str | None = None) -> dict:
    """CreateTrainingJob for the workload: its script from `source_uri`, its data from `channels`.

    `region` (for the toolkit's sagemaker_region) defaults to the image's region.
    """
    request = {"TrainingJobName": job_name}
    request.update(_job_definition(cfg, image_uri, channels))
    request["HyperParameters"] = _training_hyperparameters(
        cfg, job_name=job_name, source_uri=source_uri, region=region or region_of(image_uri),
        overrides=hyperparameter_overrides, streamed=_streamed_hyperparameters(cfg, channels))
    if cfg.training.checkpoint_s3_prefix:
        # per job: a spot restart of this job resumes from here, another job never does
        request["CheckpointConfig"] = {"S3Uri": cfg.s3_uri(cfg.training.checkpoint_s3_prefix, job_name),
                                       "LocalPath": CHECKPOINT_LOCAL_PATH}
    if cfg.training.tensorboard_s3_prefix:
        # per job, like checkpoints: SageMaker uploads what the script writes to LocalPath while the job runs
        # SageMaker itself appends <job>/tensorboard-output/ to the output path
        request["TensorBoardOutputConfig"] = {"S3OutputPath": cfg.s3_uri(cfg.training.tensorboard_s3_prefix),
                                              "LocalPath": TENSORBOARD_LOCAL_PATH}
    request["Tags"] = resource_tags(cfg)
    return _validated("CreateTrainingJob", request)


def model_artifact_uri(training_request: dict) -> str:
    """Where SageMaker writes the job's model: <S3OutputPath>/<job>/output/model.tar.gz."""
    output = training_request["OutputDataConfig"]["S3OutputPath"].rstrip("/")
    return f"{output}/{training_request['TrainingJobName']}/output/model.tar.gz"


def _number(value: float, integer: bool) -> str:
    return str(int(value)) if integer else json.dumps(float(value))


def build_tuning_request(cfg: WorkloadConfig, *, tuning_job_name: str, image_uri: str, source_uri: str,
                         channels: dict[str, str], region: str | None = None) -> dict:
    """CreateHyperParameterTuningJob from `tuning:`; the tuned names leave the static hyperparameters."""
    if cfg.tuning is None:
        raise ValueError(f"workload {cfg.name!r} has no tuning section")
    tuning = cfg.tuning
    ranges: dict[str, list] = {"IntegerParameterRanges": [], "ContinuousParameterRanges": [], "CategoricalParameterRanges": []}
    for name, r in sorted(tuning.ranges.items()):
        if r.type == "categorical":
            ranges["CategoricalParameterRanges"].append({"Name": name, "Values": [hyperparameter_value(v) for v in r.values]})
        else:
            key = "IntegerParameterRanges" if r.type == "integer" else "ContinuousParameterRanges"
            ranges[key].append({"Name": name, "MinValue": _number(r.min, r.type == "integer"),
                                "MaxValue": _number(r.max, r.type == "integer"), "ScalingType": r.scaling})
    ranges = {kind: items for kind, items in ranges.items() if items}
    metric = tuning.objective_metric or cfg.evaluation.metric
    direction = "Maximize" if cfg.evaluation.direction == "maximize" else "Minimize"
    definition = _job_definition(cfg, image_uri, channels)
    if tuning.instance_count is not None:
        # the search may run its candidates smaller than the final (e.g. distributed) job
        definition["ResourceConfig"]["InstanceCount"] = tuning.instance_count
    # no CheckpointConfig: the child jobs would share one checkpoint prefix and resume from each other
    definition["StaticHyperParameters"] = _training_hyperparameters(
        cfg, job_name=None, source_uri=source_uri, region=region or region_of(image_uri), overrides=None,
        exclude=set(tuning.ranges), streamed=_streamed_hyperparameters(cfg, channels))
    request = {
        "HyperParameterTuningJobName": tuning_job_name,
        "HyperParameterTuningJobConfig": {
            "Strategy": tuning.strategy,
            "HyperParameterTuningJobObjective": {"Type": direction, "MetricName": metric},
            "ResourceLimits": {"MaxNumberOfTrainingJobs": tuning.max_jobs,
                               "MaxParallelTrainingJobs": tuning.max_parallel_jobs},
            "ParameterRanges": ranges,
            "TrainingJobEarlyStoppingType": tuning.early_stopping,
        },
        "TrainingJobDefinition": definition,
        "Tags": resource_tags(cfg),
    }
    return _validated("CreateHyperParameterTuningJob", request)


# --- hosting ---------------------------------------------------------------------------------

def build_model_request(cfg: WorkloadConfig, *, model_name: str, image_uri: str, model_data_url: str,
                        region: str | None = None) -> dict:
    """CreateModel for a model.tar.gz whose inference code sits in its code/ folder (as the PyTorch SDK packs it)."""
    request = {
        "ModelName": model_name,
        "PrimaryContainer": {
            "Image": image_uri,
            "ModelDataUrl": model_data_url,
            "Environment": _inference_environment(cfg, region or region_of(image_uri)),
        },
        "ExecutionRoleArn": cfg.role_arn,
        "Tags": resource_tags(cfg),
    }
    return _validated("CreateModel", request)


def _inference_environment(cfg: WorkloadConfig, region: str) -> dict[str, str]:
    """What the PyTorch inference container needs to find the code packed in model.tar.gz."""
    return {
        "SAGEMAKER_PROGRAM": cfg.source.inference_entry_point,
        "SAGEMAKER_SUBMIT_DIRECTORY": MODEL_CODE_DIR,
        "SAGEMAKER_CONTAINER_LOG_LEVEL": SAGEMAKER_LOG_LEVEL,
        "SAGEMAKER_REGION": region,
    }


def _endpoint(cfg: WorkloadConfig):
    if cfg.endpoint is None:
        raise ValueError(f"workload {cfg.name!r} has no endpoint section")
    return cfg.endpoint


def build_endpoint_config_request(cfg: WorkloadConfig, *, config_name: str, model_name: str) -> dict:
    """CreateEndpointConfig with one production variant: instance-based or serverless."""
    endpoint = _endpoint(cfg)
    variant: dict[str, Any] = {"VariantName": endpoint.variant_name, "ModelName": model_name}
    if endpoint.serverless is not None:
        variant["ServerlessConfig"] = {"MemorySizeInMB": endpoint.serverless.memory_size_mb,
                                       "MaxConcurrency": endpoint.serverless.max_concurrency}
    else:
        variant.update(InstanceType=endpoint.instance_type, InitialInstanceCount=endpoint.initial_instance_count,
                       InitialVariantWeight=1.0)
    request = {"EndpointConfigName": config_name, "ProductionVariants": [variant], "Tags": resource_tags(cfg)}
    return _validated("CreateEndpointConfig", request)


def build_endpoint_request(cfg: WorkloadConfig, *, endpoint_name: str, config_name: str,
                           now: datetime | None = None) -> dict:
    """CreateEndpoint, tagged `expires-at` (now + endpoint.ttl_hours) for the janitor when a TTL is set."""
    endpoint = _endpoint(cfg)
    extra = {}
    if endpoint.ttl_hours is not None:
        expires = (now or datetime.now(timezone.utc)) + timedelta(hours=endpoint.ttl_hours)
        extra[EXPIRY_TAG] = expires.astimezone(timezone.utc).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")
    request = {"EndpointName": endpoint_name, "EndpointConfigName": config_name, "Tags": resource_tags(cfg, extra)}
    return _validated("CreateEndpoint", request)


# --- autoscaling (Application Auto Scaling) ------------------------------------------------------

def scalable_target_id(endpoint_name: str, variant_name: str = "AllTraffic") -> dict:
    """The members that name an endpoint variant's scalable target (also what DeregisterScalableTarget takes)."""
    return {"ServiceNamespace": "sagemaker", "ResourceId": f"endpoint/{endpoint_name}/variant/{variant_name}",
            "ScalableDimension": "sagemaker:variant:DesiredInstanceCount"}


def build_autoscaling_requests(cfg: WorkloadConfig, *, endpoint_name: str) -> tuple[dict, dict]:
    """(RegisterScalableTarget, PutScalingPolicy) that track invocations per instance."""
    endpoint = _endpoint(cfg)
    scaling = endpoint.autoscaling
    if scaling is None:
        raise ValueError(f"workload {cfg.name!r} ({cfg.profile}) has no endpoint.autoscaling section")
    target_id = scalable_target_id(endpoint_name, endpoint.variant_name)
    register = {**target_id, "MinCapacity": scaling.min_capacity, "MaxCapacity": scaling.max_capacity}
    policy = {
        **target_id,
        "PolicyName": f"{endpoint_name}-invocations",
        "PolicyType": "TargetTrackingScaling",
        "TargetTrackingScalingPolicyConfiguration": {
            "TargetValue": scaling.target_invocations_per_instance,
            "PredefinedMetricSpecification": {"PredefinedMetricType": "SageMakerVariantInvocationsPerInstance"},
            "ScaleInCooldown": scaling.scale_in_cooldown_seconds,
            "ScaleOutCooldown": scaling.scale_out_cooldown_seconds,
        },
    }
    return (_validated("RegisterScalableTarget", register, "application-autoscaling"),
            _validated("PutScalingPolicy", policy, "application-autoscaling"))


# --- batch transform -------------------------------------------------------------------------

def build_transform_request(cfg: WorkloadConfig, *, job_name: str, model_name: str, input_uri: str,
                            output_uri: str) -> dict:
    """CreateTransformJob over every object under `input_uri`, from `transform:`."""
    if cfg.transform is None:
        raise ValueError(f"workload {cfg.name!r} has no transform section")
    t = cfg.transform
    transform_input: dict[str, Any] = {
        "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": input_uri}},
        "SplitType": t.split_type,
    }
    if t.content_type:
        transform_input["ContentType"] = t.content_type
    transform_output: dict[str, Any] = {"S3OutputPath": output_uri, "AssembleWith": t.assemble_with}
    if t.accept:
        transform_output["Accept"] = t.accept
    request = {
        "TransformJobName": job_name,
        "ModelName": model_name,
        "MaxConcurrentTransforms": t.max_concurrent_transforms,
        "MaxPayloadInMB": t.max_payload_mb,
        "BatchStrategy": t.batch_strategy,
        "TransformInput": transform_input,
        "TransformOutput": transform_output,
        "TransformResources": {"InstanceType": t.instance_type, "InstanceCount": t.instance_count},
        "Tags": resource_tags(cfg),
    }
    return _validated("CreateTransformJob", request)


def transform_input_uri(cfg: WorkloadConfig) -> str:
    """S3 URI of what the transform reads: transform.input under the data location."""
    if cfg.transform is None or not cfg.transform.input:
        raise ValueError(f"workload {cfg.name!r} ({cfg.profile}) names no transform.input to transform")
    return f"{cfg.data_uri}/{cfg.transform.input}"


# --- model registry ----------------------------------------------------------------------------

def build_model_package_request(cfg: WorkloadConfig, *, image_uri: str, model_data_url: str, description: str = "",
                                metadata: dict[str, str] | None = None, region: str | None = None,
                                client_token: str | None = None, evaluation_report_uri: str | None = None) -> dict:
    """CreateModelPackage: a new version in registry.model_package_group, deployable as CreateModel runs it.

    Every version starts PendingManualApproval; the promotion decision (or a person) approves or
    rejects it. The content types come from `transform:` (else JSON), the instance types from
    `transform:` and `endpoint:`; `metadata` becomes CustomerMetadataProperties (the training job,
    source hash, data, DAG run, metrics); `evaluation_report_uri` is its ModelMetrics' ModelQuality.
    """
    if cfg.registry is None:
        raise ValueError(f"workload {cfg.name!r} has no registry section")
    t = cfg.transform
    specification: dict[str, Any] = {
        "Containers": [{"Image": image_uri, "ModelDataUrl": model_data_url,
                        "Environment": _inference_environment(cfg, region or region_of(image_uri))}],
        "SupportedContentTypes": [(t and t.content_type) or "application/json"],
        "SupportedResponseMIMETypes": [(t and t.accept) or "application/json"],
    }
    if t:
        specification["SupportedTransformInstanceTypes"] = [t.instance_type]
    if cfg.endpoint and cfg.endpoint.instance_type:
        specification["SupportedRealtimeInferenceInstanceTypes"] = [cfg.endpoint.instance_type]
    request = {
        "ModelPackageGroupName": cfg.registry.model_package_group,
        "ModelPackageDescription": description or cfg.registry.description,
        "InferenceSpecification": specification,
        "ModelApprovalStatus": "PendingManualApproval",
        "Tags": resource_tags(cfg),
    }
    if evaluation_report_uri:
        request["ModelMetrics"] = {"ModelQuality": {"Statistics": {
            "ContentType": "application/json", "S3Uri": evaluation_report_uri}}}
    if metadata:
        # CustomerMetadataProperties: keys 1-128 chars of [a-zA-Z0-9_:.-]... values up to 256
        request["CustomerMetadataProperties"] = {str(k): str(v)[:256] for k, v in metadata.items()}
    if client_token:
        request["ClientToken"] = client_token
    return _validated("CreateModelPackage", request)


def package_model_request(model: dict, model_package_arn: str) -> dict:
    """A planned CreateModel (its name, role and tags) made to run a registered version instead of its own image."""
    request = {"ModelName": model["ModelName"], "PrimaryContainer": {"ModelPackageName": model_package_arn},
               "ExecutionRoleArn": model["ExecutionRoleArn"], "Tags": model["Tags"]}
    return _validated("CreateModel", request)


def build_package_model_request(cfg: WorkloadConfig, *, model_name: str, model_package_arn: str) -> dict:
    """CreateModel that runs a registered model package version: its image, model data and environment."""
    request = {
        "ModelName": model_name,
        "PrimaryContainer": {"ModelPackageName": model_package_arn},
        "ExecutionRoleArn": cfg.role_arn,
        "Tags": resource_tags(cfg),
    }
    return _validated("CreateModel", request)


# --- evaluation (a processing job) -------------------------------------------------------------

PROCESSING_DIR = "/opt/ml/processing"


def build_evaluation_request(cfg: WorkloadConfig, *, job_name: str, image_uri: str, code_uri: str,
                             output_uri: str) -> dict:
    """CreateProcessingJob running the workload's evaluate.py on its held-out test data, less its models
    (known only at run time: evaluation_with_models adds them).

    The source files arrive unpacked under input/code (evaluate.py imports its workload's modules as
    siblings, as train.py does); evaluation.json (and, with a champion, champion_evaluation.json) go
    to `output_uri`. Both models are scored by the same code on the same data in one job, so the
    figures compare.
    """
    promotion = _promotion(cfg)
    request = {
        "ProcessingJobName": job_name,
        "RoleArn": cfg.role_arn,
        "AppSpecification": {"ImageUri": image_uri,
                             "ContainerEntrypoint": ["python3", f"{PROCESSING_DIR}/input/code/evaluate.py"],
                             "ContainerArguments": ["--test-data", f"{PROCESSING_DIR}/test",
                                                    "--output", f"{PROCESSING_DIR}/evaluation"]},
        "ProcessingInputs": [
            _processing_input("code", code_uri, "input/code"),
            _processing_input("test", "/".join(p for p in (cfg.data_uri, promotion.test_data) if p), "test")],
        "ProcessingOutputConfig": {"Outputs": [{"OutputName": "evaluation", "S3Output": {
            "S3Uri": output_uri, "LocalPath": f"{PROCESSING_DIR}/evaluation", "S3UploadMode": "EndOfJob"}}]},
        "ProcessingResources": {"ClusterConfig": {"InstanceCount": 1, "InstanceType": promotion.instance_type,
                                                  "VolumeSizeInGB": 30}},
        "StoppingCondition": {"MaxRuntimeInSeconds": promotion.max_runtime_seconds},
        "Environment": {key: value for key, value in cfg.training.environment.items()},
        "Tags": resource_tags(cfg),
    }
    return _validated("CreateProcessingJob", request)


def evaluation_with_models(request: dict, *, challenger_model_uri: str, champion_model_uri: str | None) -> dict:
    """The planned evaluation job with the challenger's model.tar.gz (and the champion's, when there is one),
    each in its own folder and named to evaluate.py by its argument."""
    models = [("challenger", challenger_model_uri), ("champion", champion_model_uri)]
    models = [(role, uri) for role, uri in models if uri]
    inputs = [*request["ProcessingInputs"], *(_processing_input(role, uri, role) for role, uri in models)]
    arguments = [*(a for role, _ in models for a in (f"--{role}", f"{PROCESSING_DIR}/{role}")),
                 *request["AppSpecification"]["ContainerArguments"]]
    return _validated("CreateProcessingJob", {**request, "ProcessingInputs": inputs,
                                               "AppSpecification": {**request["AppSpecification"],
                                                                    "ContainerArguments": arguments}})


def _processing_input(name: str, uri: str, local: str) -> dict:
    return {"InputName": name, "S3Input": {"S3Uri": uri, "LocalPath": f"{PROCESSING_DIR}/{local}",
                                          "S3DataType": "S3Prefix", "S3InputMode": "File"}}


def _promotion(cfg: WorkloadConfig):
    if cfg.promotion is None:
        raise ValueError(f"workload {cfg.name!r} has no promotion section")
    return cfg.promotion


# --- the standing endpoint ---------------------------------------------------------------------

STANDING_ROLE_TAG = ("endpoint-role", "standing")  # the janitor never deletes an endpoint tagged so


def plan_standing_endpoint(cfg: WorkloadConfig) -> dict:
    """What every deployment of a version to the standing endpoint shares, planned with the run: the
    variant, role and tags, the DeploymentConfig of an update and the alarms that roll it back."""
    endpoint = _promotion(cfg).endpoint_name
    variant = build_endpoint_config_request(cfg, config_name=endpoint, model_name=endpoint)["ProductionVariants"][0]
    return {
        "endpoint_name": endpoint,
        "variant": variant,
        "role_arn": cfg.role_arn,
        "tags": resource_tags(cfg, {STANDING_ROLE_TAG[0]: STANDING_ROLE_TAG[1]}),
        "deployment_config": build_deployment_config(cfg),
        "alarms": build_rollback_alarms(cfg),
    }


def standing_version_requests(standing: dict, *, version: int, model_package_arn: str) -> dict:
    """CreateModel and CreateEndpointConfig that put one registered version on the standing endpoint.

    The names derive from the version, so deploying it again (a rollback to it) finds what is there.
    """
    endpoint = standing["endpoint_name"]
    name = f"{endpoint}-v{version}"
    tags = [*standing["tags"], {"Key": "model-package-version", "Value": str(version)}]
    model = {"ModelName": name, "PrimaryContainer": {"ModelPackageName": model_package_arn},
             "ExecutionRoleArn": standing["role_arn"], "Tags": tags}
    config = {"EndpointConfigName": name, "ProductionVariants": [{**standing["variant"], "ModelName": name}],
              "Tags": tags}
    return {"model": _validated("CreateModel", model), "endpoint_config": _validated("CreateEndpointConfig", config),
            "endpoint_name": endpoint, "endpoint_config_name": name, "endpoint_tags": standing["tags"],
            "deployment_config": standing["deployment_config"], "alarms": standing["alarms"]}


def build_deployment_config(cfg: WorkloadConfig) -> dict:
    """UpdateEndpoint's DeploymentConfig: blue/green with the configured traffic shifting; the alarms'
    names are added by the deploy task once it has put them."""
    rollout = _promotion(cfg).rollout
    routing: dict[str, Any] = {"Type": rollout.strategy.upper(), "WaitIntervalInSeconds": rollout.wait_seconds}
    step = {"Type": "CAPACITY_PERCENT", "Value": rollout.traffic_percent}
    if rollout.strategy == "canary":
        routing["CanarySize"] = step
    elif rollout.strategy == "linear":
        routing["LinearStepSize"] = step
    config = {"BlueGreenUpdatePolicy": {"TrafficRoutingConfiguration": routing,
                                        "TerminationWaitInSeconds": rollout.termination_wait_seconds,
                                        "MaximumExecutionTimeoutInSeconds": rollout.max_execution_seconds}}
    _validated("UpdateEndpoint", {"EndpointName": "validation", "EndpointConfigName": "validation",
                                  "DeploymentConfig": config})
    return config


def build_rollback_alarms(cfg: WorkloadConfig) -> list[dict]:
    """PutMetricAlarm for the standing endpoint's 5XX errors and model latency (AutoRollbackConfiguration)."""
    promotion = _promotion(cfg)
    endpoint, variant = promotion.endpoint_name, _endpoint(cfg).variant_name
    alarms = promotion.alarms
    dimensions = [{"Name": "EndpointName", "Value": endpoint}, {"Name": "VariantName", "Value": variant}]
    common = {"Namespace": "AWS/SageMaker", "Dimensions": dimensions, "Period": alarms.period_seconds,
              "EvaluationPeriods": 1, "ComparisonOperator": "GreaterThanOrEqualToThreshold",
              "TreatMissingData": "notBreaching", "Tags": resource_tags(cfg)}
    requests = [
        {"AlarmName": f"{endpoint}-5xx-errors", "MetricName": "Invocation5XXErrors", "Statistic": "Sum",
         "Threshold": float(alarms.max_5xx_errors),
         "AlarmDescription": f"Rolls back an update of {endpoint} that answers with 5XX errors", **common},
        # SageMaker reports ModelLatency in microseconds
        {"AlarmName": f"{endpoint}-model-latency", "MetricName": "ModelLatency", "Statistic": "Average",
         "Threshold": alarms.max_model_latency_ms * 1000.0,
         "AlarmDescription": f"Rolls back an update of {endpoint} whose model answers slowly", **common},
    ]
    return [_validated("PutMetricAlarm", request, service="cloudwatch") for request in requests]
