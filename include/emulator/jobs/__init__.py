"""The job runner: what makes a training job really run on this machine.

``runner`` drives one job through its phases; ``hosts`` lays out the per-host /opt/ml stand-in;
``staging`` moves data between S3 and that folder; ``process`` runs the container process group;
``metrics`` applies MetricDefinitions to the log; ``failures`` builds FailureReason.
"""
