"""Workload configuration: include/workloads/<name>.yaml, read into frozen, validated dataclasses.

A workload file holds the common settings plus `profiles: {local: ..., aws: ...}`; the chosen profile
is deep-merged over the common settings (mappings merge, anything else replaces, null clears).
Unknown keys are errors, so a typo never silently falls back to a default.

Imports only the standard library and yaml: DAG files call `load_workload` at parse time.
"""
from __future__ import annotations

import dataclasses
import difflib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlparse

import yaml

from .schema import ConfigError, FieldProblem, Loader, Scalar, option

__all__ = [
    "ConfigError", "WorkloadConfig", "SourceConfig", "ImageConfig", "DataConfig", "MetricDefinition",
    "TrainingConfig", "EvaluationConfig", "EndpointConfig", "ServerlessConfig", "AutoscalingConfig",
    "TuningConfig", "ParameterRange", "TransformConfig", "RegistryConfig", "PromotionConfig",
    "RolloutConfig", "RollbackAlarmsConfig", "load_workload", "load_workload_file",
    "profile_for_endpoint_url", "PROFILES", "REPO_ROOT", "WORKLOADS_DIR",
]

# libyaml's loader parses ~10x faster than the pure-Python one; DAG files load configs at parse time
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
REPO_ROOT = Path(__file__).resolve().parents[2]
WORKLOADS_DIR = REPO_ROOT / "include" / "workloads"
PROFILES = ("local", "aws")
PLACEHOLDER_MARKER = "replace-me"  # role and bucket values the user must set before running on AWS

INSTANCE_TYPE = dict(pattern=r"ml\.[a-z0-9-]+\.[a-z0-9]+", pattern_hint="a SageMaker instance type such as 'ml.m5.xlarge'")
_SCHEDULE_PRESETS = {"@once", "@continuous", "@hourly", "@daily", "@weekly", "@monthly", "@quarterly", "@yearly", "@annually"}
_CRON_FIELD = re.compile(r"[0-9A-Za-z*/,?LW#-]+")
_TAG_TEXT = re.compile(r"[\w\s.:/=+\-@]*")  # AWS's tag alphabet, ASCII approximation of \p{L}\p{Z}\p{N}_.:/=+-@
_HYPERPARAMETER_NAME = re.compile(r"[A-Za-z0-9][\w.-]*")


@dataclass(frozen=True)
class SourceConfig:
    dir: str = option(pattern=r"[\w.-]+(/[\w.-]+)*", pattern_hint="a folder relative to the repository root")
    entry_point: str = option(pattern=r"[\w.-]+\.py", pattern_hint="a .py file name inside the source folder")
    inference_entry_point: str = option("inference.py", pattern=r"[\w.-]+\.py", pattern_hint="a .py file name")

    def check(self) -> None:
        if ".." in self.dir.split("/"):
            raise FieldProblem("dir", f"must stay inside the repository, got {self.dir!r}")


@dataclass(frozen=True)
class ImageConfig:
    framework: Literal["pytorch", "huggingface"]
    version: str = option(pattern=r"\d+(\.\d+)*", pattern_hint="a version such as '2.5.1' (quoted)")
    py_version: str = option(pattern=r"py3\d*", pattern_hint="a Python tag such as 'py311'")
    base_framework_version: str | None = option(None, pattern=r"pytorch\d+(\.\d+)*",
                                                pattern_hint="such as 'pytorch2.1.0'")

    def check(self) -> None:
        if self.framework == "huggingface" and not self.base_framework_version:
            raise FieldProblem("base_framework_version", "is required when framework is 'huggingface'")


@dataclass(frozen=True)
class DataConfig:
    channels: dict[str, str]
    generator: str | None = option(None, pattern=r"[A-Za-z_][\w.]*:[A-Za-z_]\w*", pattern_hint="'package.module:function'")
    generator_kwargs: dict[str, Scalar] = option(default_factory=dict)
    source_uri: str | None = option(None, pattern=r"(s3|https?)://\S+", pattern_hint="an s3:// or https:// URI")
    # channel -> hyperparameter: the script gets the channel's S3 URI as that hyperparameter and streams
    # it, instead of SageMaker downloading the channel before the job starts (for data sets larger than a disk)
    streamed: dict[str, str] = option(default_factory=dict)

    def check(self) -> None:
        for name, hyperparameter in self.streamed.items():
            if name not in self.channels:
                raise FieldProblem(f"streamed.{name}", f"is not one of channels ({', '.join(self.channels)})")
            if hyperparameter.startswith("sagemaker_") or not _HYPERPARAMETER_NAME.fullmatch(hyperparameter):
                raise FieldProblem(f"streamed.{name}", "must be a hyperparameter name such as 'data-s3-uri' "
                                   f"(letters, digits, '-', '_', '.'; not 'sagemaker_...'), got {hyperparameter!r}")
        if (self.generator is None) == (self.source_uri is None):
            raise FieldProblem("", "set exactly one of generator (a local synthetic data set) or source_uri, "
                                   f"got {'both' if self.generator else 'neither'}")
        if self.generator_kwargs and self.generator is None:
            raise FieldProblem("generator_kwargs", "only applies together with generator")
        if not self.channels:
            raise FieldProblem("channels", "must name at least one input channel")
        for name, rel in self.channels.items():
            if not re.fullmatch(r"[A-Za-z0-9.\-_]{1,64}", name):
                raise FieldProblem(f"channels.{name}", "channel names use letters, digits, '.', '-' and '_' (64 at most)")
            if rel.startswith("/") or ".." in rel.split("/"):
                raise FieldProblem(f"channels.{name}", f"must be a path under the data location, got {rel!r}")


@dataclass(frozen=True)
class MetricDefinition:
    name: str = option(key="Name", minimum=1, maximum=255)
    regex: str = option(key="Regex", minimum=1, maximum=500)

    def check(self) -> None:
        try:
            groups = re.compile(self.regex).groups
        except re.error as exc:
            raise FieldProblem("regex", f"is not a valid regular expression: {exc}") from None
        if groups < 1:
            raise FieldProblem("regex", "needs one capture group around the number, e.g. 'val_loss=([0-9.]+)'")


@dataclass(frozen=True)
class TrainingConfig:
    instance_type: str = option(**INSTANCE_TYPE)
    instance_count: int = option(minimum=1)
    max_runtime_seconds: int = option(minimum=1, maximum=2_419_200)  # SageMaker's cap: 28 days
    volume_size_gb: int = option(30, minimum=1, maximum=16_384)
    hyperparameters: dict[str, Scalar] = option(default_factory=dict)
    metric_definitions: list[MetricDefinition] = option(default_factory=list)
    use_spot: bool = False
    max_wait_seconds: int | None = option(None, minimum=1, maximum=2_419_200)
    checkpoint_s3_prefix: str | None = option(None, pattern=r"[\w.\-]+(/[\w.\-]+)*",
                                              pattern_hint="a key prefix under s3_prefix, such as 'checkpoints'")
    tensorboard_s3_prefix: str | None = option(None, pattern=r"[\w.\-]+(/[\w.\-]+)*",
                                               pattern_hint="a key prefix under s3_prefix, such as 'tensorboard'")
    distribution: Literal["none", "torch_distributed"] = "none"
    input_mode: Literal["File", "FastFile", "Pipe"] = "File"
    environment: dict[str, str] = option(default_factory=dict)

    def check(self) -> None:
        for name in self.hyperparameters:
            if name.startswith("sagemaker_") or not _HYPERPARAMETER_NAME.fullmatch(name):
                raise FieldProblem(f"hyperparameters.{name}", "hyperparameter names use letters, digits, '-', '_' "
                                   "and '.', and the 'sagemaker_' prefix is reserved for the toolkit")
        names = [m.name for m in self.metric_definitions]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise FieldProblem("metric_definitions", f"metric names must be unique, repeated: {', '.join(duplicates)}")
        if self.use_spot:
            if self.max_wait_seconds is None:
                raise FieldProblem("max_wait_seconds", "is required when use_spot is true (how long to wait for spot capacity)")
            if self.max_wait_seconds < self.max_runtime_seconds:
                raise FieldProblem("max_wait_seconds", f"must be >= max_runtime_seconds ({self.max_runtime_seconds}), "
                                   f"got {self.max_wait_seconds}")
        elif self.max_wait_seconds is not None:
            raise FieldProblem("max_wait_seconds", "only applies when use_spot is true")


@dataclass(frozen=True)
class EvaluationConfig:
    metric: str = option(minimum=1)
    threshold: float
    direction: Literal["maximize", "minimize"]


@dataclass(frozen=True)
class ServerlessConfig:
    memory_size_mb: int = option(minimum=1024, maximum=6144)
    max_concurrency: int = option(minimum=1, maximum=200)

    def check(self) -> None:
        if self.memory_size_mb % 1024:
            raise FieldProblem("memory_size_mb", f"must be a multiple of 1024, got {self.memory_size_mb}")


@dataclass(frozen=True)
class AutoscalingConfig:
    min_capacity: int = option(minimum=1)
    max_capacity: int = option(minimum=1)
    target_invocations_per_instance: float = option(minimum=1)
    scale_in_cooldown_seconds: int = option(300, minimum=0)
    scale_out_cooldown_seconds: int = option(60, minimum=0)

    def check(self) -> None:
        if self.max_capacity < self.min_capacity:
            raise FieldProblem("max_capacity", f"must be >= min_capacity ({self.min_capacity}), got {self.max_capacity}")


@dataclass(frozen=True)
class EndpointConfig:
    instance_type: str | None = option(None, **INSTANCE_TYPE)
    initial_instance_count: int = option(1, minimum=1)
    variant_name: str = option("AllTraffic", pattern=r"[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}",
                               pattern_hint="letters, digits and '-' (63 at most)")
    serverless: ServerlessConfig | None = None
    ttl_hours: float | None = option(None, minimum=0.01)  # the janitor deletes endpoints older than this
    autoscaling: AutoscalingConfig | None = None

    def check(self) -> None:
        if (self.instance_type is None) == (self.serverless is None):
            raise FieldProblem("", "set exactly one of instance_type (real-time) or serverless")
        if self.autoscaling and self.serverless:
            raise FieldProblem("autoscaling", "applies to instance-based endpoints, not serverless ones")
        if self.autoscaling and not (self.autoscaling.min_capacity <= self.initial_instance_count <= self.autoscaling.max_capacity):
            raise FieldProblem("initial_instance_count", "must lie between autoscaling.min_capacity and max_capacity")


@dataclass(frozen=True)
class ParameterRange:
    type: Literal["continuous", "integer", "categorical"]
    min: float | None = None
    max: float | None = None
    values: list[Scalar] | None = None
    scaling: Literal["Auto", "Linear", "Logarithmic", "ReverseLogarithmic"] = "Auto"

    def check(self) -> None:
        if self.type == "categorical":
            if not self.values:
                raise FieldProblem("values", "a categorical range needs a non-empty list of values")
            if self.min is not None or self.max is not None:
                raise FieldProblem("", "a categorical range takes values, not min/max")
            return
        if self.values is not None:
            raise FieldProblem("values", f"a {self.type} range takes min and max, not values")
        if self.min is None or self.max is None:
            raise FieldProblem("min" if self.min is None else "max", f"is required for a {self.type} range")
        if self.min >= self.max:
            raise FieldProblem("max", f"must be greater than min ({self.min:g}), got {self.max:g}")
        if self.type == "integer" and not (float(self.min).is_integer() and float(self.max).is_integer()):
            raise FieldProblem("", "an integer range needs whole-number min and max")
        if self.scaling in ("Logarithmic", "ReverseLogarithmic") and self.min <= 0:
            raise FieldProblem("min", f"{self.scaling} scaling needs min > 0, got {self.min:g}")
        if self.scaling == "ReverseLogarithmic" and (self.type != "continuous" or self.max >= 1):
            raise FieldProblem("scaling", "ReverseLogarithmic applies only to continuous ranges within (0, 1)")


@dataclass(frozen=True)
class TuningConfig:
    max_jobs: int = option(minimum=1)
    max_parallel_jobs: int = option(minimum=1)
    ranges: dict[str, ParameterRange]
    strategy: Literal["Bayesian", "Random", "Hyperband", "Grid"] = "Bayesian"
    objective_metric: str | None = None  # defaults to evaluation.metric
    early_stopping: Literal["Off", "Auto"] = "Off"
    instance_count: int | None = option(None, minimum=1)  # per candidate job; defaults to training.instance_count

    def check(self) -> None:
        if not self.ranges:
            raise FieldProblem("ranges", "must name at least one hyperparameter to tune")
        if self.max_parallel_jobs > self.max_jobs:
            raise FieldProblem("max_parallel_jobs", f"must be <= max_jobs ({self.max_jobs}), got {self.max_parallel_jobs}")
        if self.strategy == "Grid":
            continuous = [name for name, r in self.ranges.items() if r.type != "categorical"]
            if continuous:
                raise FieldProblem("ranges", f"the Grid strategy takes categorical ranges only, not {', '.join(continuous)}")
        if self.strategy == "Hyperband" and self.early_stopping != "Off":
            raise FieldProblem("early_stopping", "must be 'Off' with Hyperband, which stops jobs early by itself")


@dataclass(frozen=True)
class TransformConfig:
    instance_type: str = option(**INSTANCE_TYPE)
    instance_count: int = option(1, minimum=1)
    content_type: str | None = None
    accept: str | None = None
    split_type: Literal["None", "Line", "RecordIO", "TFRecord"] = "None"
    batch_strategy: Literal["MultiRecord", "SingleRecord"] = "SingleRecord"
    max_payload_mb: int = option(6, minimum=0, maximum=100)
    max_concurrent_transforms: int = option(1, minimum=0)
    assemble_with: Literal["None", "Line"] = "None"
    # what to transform: a path under the data location (an object, or a prefix of several)
    input: str | None = option(None, pattern=r"[\w.\-]+(/[\w.\-]+)*",
                               pattern_hint="a path under the data location, such as 'test/batch_1.csv'")


@dataclass(frozen=True)
class RegistryConfig:
    model_package_group: str = option(pattern=r"[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}",
                                      pattern_hint="letters, digits and '-' (63 at most)")
    description: str = option("", maximum=1024)


@dataclass(frozen=True)
class RolloutConfig:
    """UpdateEndpoint's DeploymentConfig for the standing endpoint (blue/green traffic shifting)."""
    strategy: Literal["canary", "linear", "all_at_once"] = "canary"
    traffic_percent: int = option(25, minimum=1, maximum=50)   # the canary's share, or each linear step's
    wait_seconds: int = option(300, minimum=0, maximum=3600)   # baking time after each traffic step
    termination_wait_seconds: int = option(60, minimum=0, maximum=3600)  # before the old fleet goes
    max_execution_seconds: int = option(1800, minimum=600, maximum=28800)

    def check(self) -> None:
        if self.strategy == "linear" and self.traffic_percent < 10:
            raise FieldProblem("traffic_percent", f"a linear step is 10-50% on SageMaker, got {self.traffic_percent}")


@dataclass(frozen=True)
class RollbackAlarmsConfig:
    """The CloudWatch alarms that roll a standing endpoint's update back (AutoRollbackConfiguration)."""
    max_5xx_errors: int = option(1, minimum=1)                 # Invocation5XXErrors in one period
    max_model_latency_ms: float = option(2000, minimum=1)      # average ModelLatency in one period
    period_seconds: int = option(60, minimum=10)


@dataclass(frozen=True)
class PromotionConfig:
    """Champion/challenger: evaluate.py scores both on the same held-out data; the better one serves."""
    metric: str = option(pattern=r"[A-Za-z0-9_]+", pattern_hint="the metric key evaluate.py writes, e.g. 'accuracy'")
    direction: Literal["maximize", "minimize"]
    threshold: float                                           # the challenger must clear it, champion or not
    test_data: str = option(pattern=r"([\w.\-]+(/[\w.\-]+)*)?",
                            pattern_hint="a path under the data location, such as 'test' ('' for all of it)")
    instance_type: str = option(**INSTANCE_TYPE)               # the evaluation's processing instance
    margin: float = option(0.0, minimum=0)                     # and beat the champion by more than this
    approval: Literal["auto", "manual"] = "auto"               # manual: a person approves in the Airflow UI
    approval_timeout_hours: float = option(24, minimum=0.001)  # no answer by then rejects the version
    max_runtime_seconds: int = option(3600, minimum=1, maximum=432_000)
    endpoint_name: str | None = option(None, pattern=r"[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}",
                                       pattern_hint="letters, digits and '-' (63 at most)")
    rollout: RolloutConfig = option(default_factory=RolloutConfig)
    alarms: RollbackAlarmsConfig = option(default_factory=RollbackAlarmsConfig)


@dataclass(frozen=True)
class WorkloadConfig:
    name: str = option(derived=True)
    profile: str = option(derived=True)
    description: str
    owner: str = option(minimum=1)
    schedule: str | None
    tags: dict[str, str]
    source: SourceConfig
    image: ImageConfig
    role_arn: str = option(pattern=r"arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]+",
                           pattern_hint="an IAM role ARN such as 'arn:aws:iam::123456789012:role/SageMakerExecutionRole'")
    bucket: str = option(pattern=r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]", pattern_hint="an S3 bucket name")
    s3_prefix: str = option(pattern=r"[\w.\-]+(/[\w.\-]+)*", pattern_hint="a key prefix without leading or trailing '/'")
    data: DataConfig
    training: TrainingConfig
    evaluation: EvaluationConfig
    endpoint: EndpointConfig | None = None
    tuning: TuningConfig | None = None
    transform: TransformConfig | None = None
    registry: RegistryConfig | None = None
    promotion: PromotionConfig | None = None
    # named sets of hyperparameter overrides a run can pick (e.g. quick-test: a short run of the same pipeline)
    presets: dict[str, dict[str, Scalar]] = option(default_factory=dict)

    def check(self) -> None:
        if self.schedule is not None and not _valid_schedule(self.schedule):
            raise FieldProblem("schedule", f"must be a cron expression or one of {', '.join(sorted(_SCHEDULE_PRESETS))}, "
                               f"got {self.schedule!r}")
        for key, value in self.tags.items():
            if not (1 <= len(key) <= 128 and _TAG_TEXT.fullmatch(key)) or key.lower().startswith("aws:"):
                raise FieldProblem(f"tags.{key}", "tag keys are 1-128 letters, digits, spaces or _.:/=+-@ and may not start with 'aws:'")
            if len(value) > 256 or not _TAG_TEXT.fullmatch(value):
                raise FieldProblem(f"tags.{key}", f"tag values are up to 256 letters, digits, spaces or _.:/=+-@, got {value!r}")
        metrics = [m.name for m in self.training.metric_definitions]
        if self.evaluation.metric not in metrics:
            raise FieldProblem("evaluation.metric", f"{self.evaluation.metric!r} is not one of training.metric_definitions "
                               f"({', '.join(metrics) or 'none defined'}); SageMaker reports only defined metrics")
        for name in (self.tuning.ranges if self.tuning else {}):
            if name not in self.training.hyperparameters:
                guess = difflib.get_close_matches(name, list(self.training.hyperparameters), n=1)
                hint = f" (did you mean {guess[0]!r}?)" if guess else ""
                raise FieldProblem(f"tuning.ranges.{name}", f"is not one of training.hyperparameters{hint}; "
                                   "tune only what the script takes, and give it a default there")
        for preset, overrides in self.presets.items():
            if not re.fullmatch(r"[a-z0-9][a-z0-9-]*", preset):
                raise FieldProblem(f"presets.{preset}", "preset names use lowercase letters, digits and '-', such as 'quick-test'")
            for name in overrides:
                if name not in self.training.hyperparameters:
                    guess = difflib.get_close_matches(name, list(self.training.hyperparameters), n=1)
                    hint = f" (did you mean {guess[0]!r}?)" if guess else ""
                    raise FieldProblem(f"presets.{preset}.{name}", f"is not one of training.hyperparameters{hint}")
        if self.promotion is not None:
            if self.registry is None:
                raise FieldProblem("registry", "is required with promotion: every evaluated challenger becomes a version")
            if self.promotion.endpoint_name is not None and self.endpoint is None:
                raise FieldProblem("promotion.endpoint_name", "needs an endpoint section to deploy the standing endpoint")
            if (self.promotion.endpoint_name is not None and self.endpoint.serverless is not None
                    and self.promotion.rollout.strategy != "all_at_once"):
                raise FieldProblem("promotion.rollout.strategy", "serverless endpoints update all at once on SageMaker "
                                   f"(no canary or linear traffic shifting), got {self.promotion.rollout.strategy!r}")
        if self.tuning and self.tuning.objective_metric and self.tuning.objective_metric not in metrics:
            raise FieldProblem("tuning.objective_metric", f"{self.tuning.objective_metric!r} is not one of "
                               f"training.metric_definitions ({', '.join(metrics) or 'none defined'})")

    # --- derived locations -------------------------------------------------------------------
    def s3_uri(self, *parts: str) -> str:
        """s3://<bucket>/<s3_prefix>/<parts...>"""
        keys = [self.s3_prefix, *(p.strip("/") for p in parts if p and p.strip("/"))]
        return f"s3://{self.bucket}/" + "/".join(keys)

    @property
    def data_uri(self) -> str:
        """Where the training data lives in S3: the source_uri itself, or the prefix the DAG syncs into."""
        if self.data.source_uri and self.data.source_uri.startswith("s3://"):
            return self.data.source_uri.rstrip("/")
        return self.s3_uri("data")

    def channel_uris(self) -> dict[str, str]:
        """Channel name -> S3 URI, as CreateTrainingJob's InputDataConfig wants them."""
        return {name: "/".join(p for p in (self.data_uri, rel.strip("/")) if p) for name, rel in self.data.channels.items()}

    @property
    def source_path(self) -> Path:
        return REPO_ROOT / self.source.dir

    # --- run-time settings -------------------------------------------------------------------
    def with_overrides(self, *, role_arn: str | None = None, bucket: str | None = None) -> WorkloadConfig:
        """A copy with the role and bucket set at run time (Airflow Variables), validated like the file."""
        changes = {k: v for k, v in {"role_arn": role_arn, "bucket": bucket}.items() if v}
        if not changes:
            return self
        fields = {f.name: f for f in dataclasses.fields(self)}
        loader = Loader(f"run-time override for workload {self.name!r}")
        for key, value in changes.items():
            loader.convert(str, value, key, fields[key].metadata)
        return dataclasses.replace(self, **changes)

    def placeholder_settings(self) -> list[str]:
        """Settings still holding the file's 'replace-me' placeholders."""
        return [k for k in ("role_arn", "bucket") if PLACEHOLDER_MARKER in getattr(self, k).lower()]

    def require_real_settings(self) -> None:
        """Refuse to run on AWS with placeholder role or bucket, saying how to set them."""
        missing = self.placeholder_settings()
        if missing:
            variables = ", ".join(f"sagemaker_{k}" for k in missing)
            raise ConfigError(_display(WORKLOADS_DIR / f"{self.name}.yaml"), ", ".join(missing),
                              f"still a placeholder; set the Airflow Variable(s) {variables} or edit profiles.{self.profile}")
        source = self.data.source_uri or ""
        if PLACEHOLDER_MARKER in source.lower():
            raise ConfigError(_display(WORKLOADS_DIR / f"{self.name}.yaml"), "data.source_uri",
                              f"still a placeholder ({source}); point profiles.{self.profile}.data.source_uri at your data")


def _valid_schedule(schedule: str) -> bool:
    if schedule.startswith("@"):
        return schedule in _SCHEDULE_PRESETS
    fields = schedule.split()
    return len(fields) in (5, 6) and all(_CRON_FIELD.fullmatch(f) for f in fields)


def _display(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(REPO_ROOT))
    except ValueError:
        return str(path)


def _merge(base: Any, override: Any, path: str, origins: set[str]) -> Any:
    """Deep-merge `override` over `base`, recording in `origins` every path the override set."""
    if isinstance(base, dict) and isinstance(override, dict):
        merged = dict(base)
        for key, value in override.items():
            child = f"{path}.{key}" if path else str(key)
            merged[key] = _merge(base.get(key), value, child, origins) if key in base else value
            if key not in base or not (isinstance(base.get(key), dict) and isinstance(value, dict)):
                origins.add(child)
        return merged
    origins.add(path)
    return override


def _origin_finder(origins: set[str], label: str):
    def origin_of(path: str) -> str | None:
        while path:
            if path in origins:
                return label
            path = re.sub(r"(\.[^.\[\]]+|\[\d+\]|^[^.\[\]]+)$", "", path)
        return None
    return origin_of


def load_workload_file(path: str | Path, profile: str = "local", *, name: str | None = None) -> WorkloadConfig:
    """Read one workload file for one profile; every problem raises ConfigError naming the field."""
    path = Path(path)
    source = _display(path)
    try:
        document = yaml.load(path.read_text(), Loader=_YAML_LOADER)
    except FileNotFoundError:
        raise ConfigError(source, "", "no such workload file") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise ConfigError(source, "", f"invalid YAML: {where}{getattr(exc, 'problem', None) or exc}") from None
    if not isinstance(document, dict):
        raise ConfigError(source, "", f"must be a mapping of settings at the top level, got {type(document).__name__}")

    document = dict(document)
    profiles = document.pop("profiles", None)
    if not isinstance(profiles, dict) or not profiles:
        raise ConfigError(source, "profiles", f"is required: a mapping with the profiles {', '.join(PROFILES)}")
    unknown = sorted(set(profiles) - set(PROFILES))
    if unknown:
        raise ConfigError(source, f"profiles.{unknown[0]}", f"unknown profile; profiles are {', '.join(PROFILES)}")
    if profile not in profiles:
        raise ConfigError(source, "profiles", f"has no profile {profile!r}; it has {', '.join(map(str, profiles))}")
    overrides = profiles[profile] or {}
    if not isinstance(overrides, dict):
        raise ConfigError(source, f"profiles.{profile}", "must be a mapping of settings")

    origins: set[str] = set()
    merged = _merge(document, overrides, "", origins)
    loader = Loader(source, _origin_finder(origins, f"profiles.{profile}"))
    return loader.build(WorkloadConfig, merged, derived={"name": name or path.stem, "profile": profile})


def load_workload(name: str, profile: str = "local", *, directory: str | Path | None = None) -> WorkloadConfig:
    """The workload `name` (include/workloads/<name>.yaml) with `profile` ("local" or "aws") applied."""
    if not re.fullmatch(r"[a-z0-9][a-z0-9_]*", name or ""):
        raise ConfigError(str(name), "", "workload names use lowercase letters, digits and '_'")
    if profile not in PROFILES:
        raise ConfigError(f"workload {name}", "", f"unknown profile {profile!r}; profiles are {', '.join(PROFILES)}")
    return load_workload_file(Path(directory or WORKLOADS_DIR) / f"{name}.yaml", profile, name=name)


def profile_for_endpoint_url(endpoint_url: str | None) -> str:
    """"local" when the connection points at a non-AWS endpoint (the local SageMaker), else "aws"."""
    if not endpoint_url:
        return "aws"
    host = (urlparse(endpoint_url if "://" in endpoint_url else f"//{endpoint_url}").hostname or "").lower()
    aws_suffixes = (".amazonaws.com", ".amazonaws.com.cn", ".api.aws")
    return "aws" if host.endswith(aws_suffixes) else "local"
