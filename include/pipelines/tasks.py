"""The tasks every pipeline shares, as TaskFlow functions a DAG file calls with its workload's name.

Each runs the matching step of include/pipelines/steps.py inside the task, so nothing heavy is
imported while the DAG file parses.
"""
from __future__ import annotations

from airflow.sdk import Param, task


def pipeline_params(**extra: Param) -> dict[str, Param]:
    """The trigger form every pipeline offers, plus the workload's own fields."""
    return {
        "epochs": Param(None, type=["null", "integer"], minimum=1, description="Override the workload's epochs."),
        "hyperparameters": Param(
            {}, type="object", description='More overrides for the training script, e.g. {"learning-rate": 0.01}.'
        ),
        "deploy": Param(True, type="boolean", description="Deploy and smoke-test the model when it passes the gate."),
        "profile": Param(
            "auto", enum=["auto", "local", "aws"], description="auto: local when aws_default has an endpoint_url."
        ),
        **extra,
    }


@task
def resolve_settings(workload: str, params=None) -> dict:
    """Pick the profile (local or aws), region, bucket and role for this run."""
    from include.pipelines.steps import resolve_settings as resolve

    return resolve(workload, requested_profile=params.get("profile", "auto"))


@task
def upload_data(settings: dict) -> dict:
    """Sync the training data to S3 (unchanged files skipped); returns the S3 URI of each channel."""
    from include.pipelines.steps import upload_dataset

    return upload_dataset(settings)


@task
def package_source(settings: dict) -> str:
    """Package training_src/<workload> reproducibly; upload only when its content changed."""
    from include.pipelines.steps import upload_source

    return upload_source(settings)


@task(multiple_outputs=True)
def plan(settings: dict, channels: dict, source_uri: str, params=None, run_id=None) -> dict:
    """Build every SageMaker request of this run; names derive from the run, so retries are idempotent."""
    from include.pipelines.steps import plan_requests

    overrides = dict(params.get("hyperparameters") or {})
    if params.get("epochs"):
        overrides["epochs"] = params["epochs"]
    return plan_requests(settings, source_uri=source_uri, channels=channels, run_id=run_id, hyperparameters=overrides)


@task.short_circuit(ignore_downstream_trigger_rules=False)
def evaluate(training: dict, settings: dict, params=None) -> bool:
    """Gate: deploy only if the job's metric clears the workload's threshold (and deploy is on)."""
    from include.pipelines.steps import evaluate_gate

    return evaluate_gate(settings, training["Training"]) and bool(params.get("deploy", True))


@task
def model_request(model: dict, training: dict) -> dict:
    """The model request, pointing at the artifact of the job that really ran (a retry renames it)."""
    container = {**model["PrimaryContainer"], "ModelDataUrl": training["Training"]["ModelArtifacts"]["S3ModelArtifacts"]}
    return {**model, "PrimaryContainer": container}
