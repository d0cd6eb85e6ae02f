"""How a tuning job picks the next hyperparameters: Random, Bayesian, Grid and Hyperband.

Random and Bayesian ask optuna (a well-kept optimization library) through its ask/tell interface:
Random samples each range independently (RandomSampler); Bayesian fits a Gaussian process to the
objective values reported so far and proposes where the expected improvement is highest
(GPSampler), after a few random start-up trials, as SageMaker's Bayesian search also begins.
Grid walks every combination of the categorical values. Hyperband proposes at random; its early
stopping (see ``early_stopping``) is what makes it Hyperband.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

import optuna
from optuna.trial import TrialState

from .space import SearchSpace

optuna.logging.set_verbosity(optuna.logging.WARNING)


@dataclass
class Proposal:
    hyperparameters: dict[str, str]
    trial: Any = field(default=None, repr=False)  # the strategy's own handle (an optuna trial)


class Strategy:
    def propose(self) -> Proposal | None:
        """The next hyperparameters to train with, or None when the strategy has nothing left."""
        raise NotImplementedError

    def report(self, proposal: Proposal, objective: float | None) -> None:
        """The final objective of a finished job; None when it failed or never reported one."""


class OptunaStrategy(Strategy):
    def __init__(self, space: SearchSpace, sampler: optuna.samplers.BaseSampler, maximize: bool):
        self.space = space
        self.study = optuna.create_study(sampler=sampler, direction="maximize" if maximize else "minimize")

    def propose(self) -> Proposal:
        trial = self.study.ask(self.space.distributions())
        return Proposal(self.space.hyperparameters(trial.params), trial)

    def report(self, proposal: Proposal, objective: float | None) -> None:
        if objective is None:
            self.study.tell(proposal.trial, state=TrialState.FAIL)
        else:
            self.study.tell(proposal.trial, objective)


class GridStrategy(Strategy):
    def __init__(self, space: SearchSpace):
        self._combinations = iter(space.grid())

    def propose(self) -> Proposal | None:
        combination = next(self._combinations, None)
        return Proposal(combination) if combination is not None else None


def startup_trials(max_jobs: int) -> int:
    """Random trials before the Gaussian process takes over: enough to fit it, few enough to matter
    in the handful of jobs a local tuning job runs (optuna's default is 10)."""
    return max(2, min(10, max_jobs // 3))


def make_strategy(name: str, space: SearchSpace, *, maximize: bool, seed: int | None, max_jobs: int) -> Strategy:
    if name == "Grid":
        return GridStrategy(space)
    if name == "Bayesian":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            sampler = optuna.samplers.GPSampler(seed=seed, n_startup_trials=startup_trials(max_jobs))
        return OptunaStrategy(space, sampler, maximize)
    # Random, and Hyperband's proposals
    return OptunaStrategy(space, optuna.samplers.RandomSampler(seed=seed), maximize)
