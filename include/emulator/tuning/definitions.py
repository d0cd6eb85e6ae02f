"""A tuning request's training job definitions, checked, and turned into child training job requests.

SageMaker names each child ``<tuning job>-<3-digit index>-<8 hex>`` and gives it the definition's
StaticHyperParameters, the tuned values and ``_tuning_objective_metric`` (which the training
toolkit keeps out of the script's arguments), plus the tuning job's tags.
"""
from __future__ import annotations

import copy
import json
import math
import secrets
from dataclasses import dataclass, field

from include.aws_shapes import request_problems

from ..errors import ValidationException
from .early_stopping import HyperbandRule, MedianRule
from .space import CategoricalParameter, RangeError, SearchSpace
from .strategies import Strategy, make_strategy

TUNING_OBJECTIVE_HYPERPARAMETER = "_tuning_objective_metric"
HYPERBAND_EPOCH_KEYS = ("epochs", "numepochs", "n-epochs", "n_epochs", "num_epochs")
HYPERBAND_MAX_RESOURCE = 20_000
METRIC_REQUIRED = "A metric is required for this hyperparameter tuning job objective. Provide a metric in the metric definitions."

# CreateTrainingJob members a child copies from its definition as they are
_COPIED = (
    "RoleArn", "InputDataConfig", "VpcConfig", "OutputDataConfig", "StoppingCondition", "EnableNetworkIsolation",
    "EnableInterContainerTrafficEncryption", "EnableManagedSpotTraining", "CheckpointConfig", "RetryStrategy",
    "Environment",
)


@dataclass
class Definition:
    """One training job definition of a tuning job, with the strategy that tunes it."""

    body: dict
    name: str | None  # DefinitionName (TrainingJobDefinitions only)
    objective: dict  # {"Type": "Maximize" | "Minimize", "MetricName": ...}
    space: SearchSpace
    strategy: Strategy = field(repr=False)
    stopping: MedianRule | HyperbandRule | None = field(default=None, repr=False)
    exhausted: bool = False

    @property
    def maximize(self) -> bool:
        return self.objective["Type"] == "Maximize"

    @property
    def metric(self) -> str:
        return self.objective["MetricName"]

    def child_request(self, tuning_job_name: str, index: int, tuned: dict[str, str], tags: list[dict] | None) -> dict:
        request = {"TrainingJobName": child_name(tuning_job_name, index)}
        spec = copy.deepcopy(self.body["AlgorithmSpecification"])
        request["AlgorithmSpecification"] = spec
        for member in _COPIED:
            if member in self.body:
                request[member] = copy.deepcopy(self.body[member])
        request["ResourceConfig"] = resource_config(self.body)
        request["HyperParameters"] = {
            **(self.body.get("StaticHyperParameters") or {}), **tuned, TUNING_OBJECTIVE_HYPERPARAMETER: self.metric,
        }
        if tags:
            request["Tags"] = copy.deepcopy(tags)
        return request


def child_name(tuning_job_name: str, index: int) -> str:
    return f"{tuning_job_name}-{index:03d}-{secrets.token_hex(4)}"


def resource_config(definition: dict) -> dict:
    """ResourceConfig, or the first choice of HyperParameterTuningResourceConfig."""
    if definition.get("ResourceConfig"):
        return copy.deepcopy(definition["ResourceConfig"])
    tuning = definition.get("HyperParameterTuningResourceConfig") or {}
    choice = (tuning.get("InstanceConfigs") or [tuning])[0]
    return {key: choice[key] for key in ("InstanceType", "InstanceCount", "VolumeSizeInGB") if choice.get(key) is not None}


def prepare(request: dict) -> tuple[dict, list[Definition]]:
    """The request with SageMaker's defaults filled in, and its definitions ready to launch children.

    Raises ValidationException naming the field for anything SageMaker (or this machine) refuses."""
    request = copy.deepcopy(request)
    config = request["HyperParameterTuningJobConfig"]
    strategy = config["Strategy"]
    for member in ("WarmStartConfig", "Autotune"):
        if request.get(member):
            raise ValidationException(f"{member} is not supported by the local SageMaker yet.")
    single, several = request.get("TrainingJobDefinition"), request.get("TrainingJobDefinitions")
    if bool(single) == bool(several):
        raise ValidationException("Specify exactly one of TrainingJobDefinition and TrainingJobDefinitions.")

    early_stopping = config.setdefault("TrainingJobEarlyStoppingType", "Off")
    if strategy == "Hyperband" and early_stopping != "Off":
        raise ValidationException(
            "TrainingJobEarlyStoppingType must be Off with the Hyperband strategy, which stops training jobs early itself."
        )
    if config.get("StrategyConfig") and strategy != "Hyperband":
        raise ValidationException("HyperParameterTuningJobConfig.StrategyConfig applies to the Hyperband strategy only.")

    limits = config["ResourceLimits"]
    seed = config.get("RandomSeed")
    bodies = [(single, None, "TrainingJobDefinition")] if single else [
        (body, body.get("DefinitionName"), f"TrainingJobDefinitions[{index}]") for index, body in enumerate(several)
    ]
    if several:
        names = [name for _, name, _ in bodies]
        if None in names or len(set(names)) != len(names):
            raise ValidationException("Every entry of TrainingJobDefinitions needs a distinct DefinitionName.")

    max_jobs = limits.get("MaxNumberOfTrainingJobs")
    definitions = []
    for body, name, where in bodies:
        objective = body.get("TuningObjective") or config.get("HyperParameterTuningJobObjective")
        if not objective:
            raise ValidationException(
                f"{where}: the tuning job needs an objective (HyperParameterTuningJobObjective or TuningObjective)."
            )
        if body.get("HyperParameterRanges"):
            ranges_field = f"{where}.HyperParameterRanges"
        else:
            ranges_field = "HyperParameterTuningJobConfig.ParameterRanges"
        try:
            space = SearchSpace.from_ranges(body.get("HyperParameterRanges") or config.get("ParameterRanges"), ranges_field)
        except RangeError as exc:
            raise ValidationException(str(exc)) from exc
        _check_definition(body, space, objective, where)
        definitions.append(Definition(body, name, objective, space, strategy=None))

    if len({(d.objective["Type"], d.metric) for d in definitions}) > 1:
        raise ValidationException("Every training job definition must have the same TuningObjective, so their jobs compare.")

    if strategy == "Grid":
        if not all(d.space.categorical_only for d in definitions):
            raise ValidationException("The Grid strategy supports only CategoricalParameterRanges.")
        combinations = sum(len(d.space.grid()) for d in definitions)
        if max_jobs is not None and max_jobs != combinations:
            raise ValidationException(
                f"With the Grid strategy, MaxNumberOfTrainingJobs ({max_jobs}) must equal the number of distinct "
                f"categorical combinations ({combinations}), or be left out."
            )
        limits["MaxNumberOfTrainingJobs"] = max_jobs = combinations
    elif max_jobs is None:
        raise ValidationException(f"ResourceLimits.MaxNumberOfTrainingJobs is required with the {strategy} strategy.")

    for definition in definitions:
        definition.strategy = make_strategy(
            strategy, definition.space, maximize=definition.maximize, seed=seed, max_jobs=max_jobs
        )
        if strategy == "Hyperband":
            minimum, maximum = _hyperband_resources(config, definition.body)
            definition.stopping = HyperbandRule(minimum, maximum, definition.maximize)
        elif early_stopping == "Auto":
            definition.stopping = MedianRule(definition.maximize)
    return request, definitions


def _check_definition(body: dict, space: SearchSpace, objective: dict, where: str) -> None:
    static = body.get("StaticHyperParameters") or {}
    both = sorted(set(static) & set(space.names))
    if both:
        raise ValidationException(f"{where}: {', '.join(both)} cannot be both a StaticHyperParameter and a tuned range.")
    metrics = [metric["Name"] for metric in body["AlgorithmSpecification"].get("MetricDefinitions") or []]
    if objective["MetricName"] not in metrics:
        raise ValidationException(METRIC_REQUIRED)
    if not body.get("ResourceConfig") and not body.get("HyperParameterTuningResourceConfig"):
        raise ValidationException(f"{where} needs a ResourceConfig or a HyperParameterTuningResourceConfig.")
    # a child built from the definition must be a valid CreateTrainingJob request
    from ..sagemaker.training import normalized_training_request

    definition = Definition(body, None, objective, space, strategy=None)
    sample = {
        parameter.name: parameter.values[0] if isinstance(parameter, CategoricalParameter) else parameter.value(
            parameter.distribution().low
        )
        for parameter in space.parameters
    }
    child = definition.child_request("validate", 1, sample, None)
    problems = request_problems("sagemaker", "CreateTrainingJob", child)
    if problems:
        raise ValidationException(f"{where} would make invalid training jobs: " + "; ".join(problems))
    normalized_training_request(child)


def _hyperband_resources(config: dict, body: dict) -> tuple[int, int]:
    hyperband = (config.get("StrategyConfig") or {}).get("HyperbandStrategyConfig") or {}
    maximum = hyperband.get("MaxResource")
    if maximum is None:
        static = body.get("StaticHyperParameters") or {}
        for key in HYPERBAND_EPOCH_KEYS:
            if key in static:
                maximum = _epochs(static[key])
                break
    if maximum is None:
        raise ValidationException(
            "HyperbandStrategyConfig.MaxResource is missing and cannot be inferred: give it, or one of the "
            f"StaticHyperParameters {', '.join(HYPERBAND_EPOCH_KEYS)}."
        )
    minimum = hyperband.get("MinResource", 1)
    if not 1 <= minimum <= maximum <= HYPERBAND_MAX_RESOURCE:
        raise ValidationException(
            f"Hyperband needs 1 <= MinResource ({minimum}) <= MaxResource ({maximum}) <= {HYPERBAND_MAX_RESOURCE}."
        )
    return minimum, maximum


def _epochs(value: str) -> int | None:
    try:
        number = json.loads(value)  # the SDK's framework estimators send '"10"'
        number = float(number)
    except (TypeError, ValueError):
        return None
    return int(number) if math.isfinite(number) and number == int(number) and number >= 1 else None
