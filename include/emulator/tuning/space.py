"""ParameterRanges: what a tuning job may vary, checked as SageMaker checks it, and sampled through
optuna distributions with SageMaker's ScalingType.

- Linear: uniform over [MinValue, MaxValue].
- Logarithmic: uniform over the logarithm; the range must be entirely above 0.
- ReverseLogarithmic: dense near 1, for values such as momentum: uniform over log(1 - x); continuous
  ranges entirely within 0 <= x < 1 only.
- Auto: SageMaker picks the scale; the local SageMaker picks Logarithmic for a positive range that
  spans two orders of magnitude or more (a learning rate), Linear otherwise.

Values reach the training job as strings: integers as such, continuous values as Python writes a
float, categorical values exactly as listed.
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution

AUTO_LOG_RATIO = 100.0  # Auto goes logarithmic when MaxValue / MinValue reaches this


class RangeError(ValueError):
    """A range SageMaker would refuse; the message names the range and the problem."""


@dataclass(frozen=True)
class NumericParameter:
    name: str
    integer: bool
    low: float
    high: float
    scaling: str  # Linear | Logarithmic | ReverseLogarithmic (Auto resolved)

    def distribution(self) -> BaseDistribution:
        """In search coordinates: the value itself, or log(1 - value) for ReverseLogarithmic."""
        if self.scaling == "ReverseLogarithmic":
            return FloatDistribution(math.log(1 - self.high), math.log(1 - self.low))
        log = self.scaling == "Logarithmic"
        if self.integer:
            return IntDistribution(int(self.low), int(self.high), log=log)
        return FloatDistribution(self.low, self.high, log=log)

    def value(self, sampled) -> str:
        if self.scaling == "ReverseLogarithmic":
            sampled = min(self.high, max(self.low, 1 - math.exp(sampled)))
        return str(int(sampled)) if self.integer else repr(float(sampled))


@dataclass(frozen=True)
class CategoricalParameter:
    name: str
    values: tuple[str, ...]

    def distribution(self) -> BaseDistribution:
        return CategoricalDistribution(self.values)

    def value(self, sampled) -> str:
        return sampled


class SearchSpace:
    """The ranges of one training job definition."""

    def __init__(self, parameters: list[NumericParameter | CategoricalParameter]):
        self.parameters = parameters

    @property
    def names(self) -> list[str]:
        return [parameter.name for parameter in self.parameters]

    @property
    def categorical_only(self) -> bool:
        return all(isinstance(parameter, CategoricalParameter) for parameter in self.parameters)

    def distributions(self) -> dict[str, BaseDistribution]:
        return {parameter.name: parameter.distribution() for parameter in self.parameters}

    def hyperparameters(self, sampled: dict) -> dict[str, str]:
        """The training job's tuned hyperparameters from a sample in search coordinates."""
        return {parameter.name: parameter.value(sampled[parameter.name]) for parameter in self.parameters}

    def grid(self) -> list[dict[str, str]]:
        """Every combination of the categorical values, in the order they are listed."""
        names = self.names
        return [dict(zip(names, values)) for values in itertools.product(*(p.values for p in self.parameters))]

    @classmethod
    def from_ranges(cls, ranges: dict | None, field: str) -> "SearchSpace":
        """Parse ParameterRanges (``field`` names where it sits in the request, for messages)."""
        ranges = ranges or {}
        if ranges.get("AutoParameters"):
            raise RangeError(f"{field}.AutoParameters is not supported by the local SageMaker; give explicit ranges.")
        parameters: list[NumericParameter | CategoricalParameter] = []
        for kind, integer in (("IntegerParameterRanges", True), ("ContinuousParameterRanges", False)):
            for item in ranges.get(kind) or []:
                parameters.append(_numeric(item, integer, f"{field}.{kind}"))
        for item in ranges.get("CategoricalParameterRanges") or []:
            values = tuple(item["Values"])
            if len(set(values)) != len(values):
                raise RangeError(f"{field}.CategoricalParameterRanges: the values of '{item['Name']}' must be distinct.")
            parameters.append(CategoricalParameter(item["Name"], values))
        names = [parameter.name for parameter in parameters]
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise RangeError(f"{field}: hyperparameter {', '.join(repeated)} has more than one range.")
        if not parameters:
            raise RangeError(f"{field} must give at least one range of hyperparameters to tune.")
        return cls(parameters)


def _number(text: str, integer: bool, what: str) -> float:
    try:
        value = int(text) if integer else float(text)
    except (TypeError, ValueError):
        raise RangeError(f"{what} '{text}' is not {'an integer' if integer else 'a number'}.") from None
    if not math.isfinite(value):
        raise RangeError(f"{what} '{text}' is not a finite number.")
    return value


def _numeric(item: dict, integer: bool, field: str) -> NumericParameter:
    name = item["Name"]
    where = f"{field} '{name}':"
    low = _number(item["MinValue"], integer, f"{where} MinValue")
    high = _number(item["MaxValue"], integer, f"{where} MaxValue")
    if low > high:
        raise RangeError(f"{where} MinValue {item['MinValue']} is greater than MaxValue {item['MaxValue']}.")
    scaling = item.get("ScalingType", "Auto")
    if scaling == "Auto":
        scaling = "Logarithmic" if low > 0 and high / low >= AUTO_LOG_RATIO else "Linear"
    elif scaling == "Logarithmic" and low <= 0:
        raise RangeError(f"{where} Logarithmic scaling needs a range entirely above 0 (MinValue {item['MinValue']}).")
    elif scaling == "ReverseLogarithmic" and (integer or not (0 <= low and high < 1)):
        raise RangeError(
            f"{where} ReverseLogarithmic scaling works only for continuous ranges entirely within 0 <= x < 1."
        )
    return NumericParameter(name, integer, low, high, scaling)
