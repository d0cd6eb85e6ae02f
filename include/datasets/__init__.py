"""Generators of small synthetic data sets in each workload's real on-disk format, for offline runs."""
