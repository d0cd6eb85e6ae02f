"""Hyperparameter tuning for the local SageMaker (the API lives in ``include.emulator.sagemaker.tuning``).

``space`` parses ParameterRanges; ``strategies`` proposes hyperparameters (Random, Bayesian through
optuna, Grid, Hyperband); ``early_stopping`` stops weak children from their logged objective
values; ``definitions`` checks the request and builds child training jobs; ``runner`` runs it all.
"""
