"""The tasks every pipeline shares, as TaskFlow functions a DAG file calls with its workload's name.

Each runs the matching step of include/pipelines/steps.py inside the task, so nothing heavy is
imported while the DAG file parses.
"""
from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import Param, task

from sagemaker_pipelines_plugin.timetables import UpcomingCronTimetable

START_DATE = pendulum.datetime(2026, 1, 1, tz="UTC")
RETRIES = 2  # the job operators rejoin their earlier try's job, so a retry never pays twice
RETRY_DELAY = timedelta(minutes=1)


def pipeline_dag_arguments(workload, *, doc: str | None, tags: list[str], params: dict[str, Param]) -> dict:
    """@dag(...)'s arguments every pipeline shares: the workload's description, schedule and owner, no
    backfill, one run at a time (two would race for the same endpoint), retries; plus the DAG's own doc,
    tags (after "sagemaker") and trigger form."""
    return {
        "description": workload.description,
        "schedule": dag_schedule(workload.schedule),
        "start_date": START_DATE,
        "catchup": False,
        "max_active_runs": 1,
        "doc_md": doc,
        "tags": ["sagemaker", *tags],
        "default_args": {"owner": workload.owner, "retries": RETRIES, "retry_delay": RETRY_DELAY},
        "params": params,
    }


def dag_schedule(schedule: str | None):
    """The workload's schedule (a cron expression or preset; None: manual only) as the DAG's schedule.

    A cron schedule becomes an UpcomingCronTimetable: without catchup, Airflow's own timetables start the
    latest past slot as soon as a DAG is unpaused (a full retraining for last Sunday); this one waits for
    the next cron time. @once and @continuous are not cron times and pass through as they are.
    """
    if schedule is None or schedule in ("@once", "@continuous"):
        return schedule
    return UpcomingCronTimetable(schedule, timezone="UTC")


def pipeline_params(*, omit: tuple[str, ...] = (), **extra: Param) -> dict[str, Param]:
    """The trigger form every pipeline offers, less the `omit` fields it has no use for, plus its own fields."""
    params = {
        "epochs": Param(None, type=["null", "integer"], minimum=1, description="Override the workload's epochs."),
        "hyperparameters": Param(
            {}, type="object", description='More overrides for the training script, e.g. {"learning-rate": 0.01}.'
        ),
        "deploy": Param(True, type="boolean", description=(
            "Promote: roll a challenger that beats the champion out to the standing endpoint (false: evaluate and "
            "register only).")),
        "profile": Param(
            "auto", enum=["auto", "local", "aws"], description="auto: local when aws_default has an endpoint_url."
        ),
        **extra,
    }
    return {name: param for name, param in params.items() if name not in omit}


def preset_param(presets) -> Param:
    """Trigger-form field choosing one of the workload's presets (e.g. quick-test), or none: the full run."""
    return Param("full", enum=["full", *presets], description=(
        "full: the workload's configured training; a preset (from the workload YAML's presets) applies its "
        "hyperparameters, e.g. quick-test: a short run of the same pipeline."))


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
    preset = params.get("preset")
    return plan_requests(settings, source_uri=source_uri, channels=channels, run_id=run_id, hyperparameters=overrides,
                         preset=None if preset in (None, "", "full") else preset)


@task.short_circuit(ignore_downstream_trigger_rules=False)
def evaluate(training: dict, gate: dict) -> bool:
    """Gate: go on only if the job's metric clears the threshold this run planned (a config edit mid-run
    moves nothing); below it nothing is evaluated, registered or deployed."""
    from include.pipelines.steps import evaluate_gate

    return evaluate_gate(training["Training"], gate)


@task
def model_request(model: dict, training: dict) -> dict:
    """The model request, pointing at the artifact of the job that really ran (a retry renames it)."""
    container = {**model["PrimaryContainer"], "ModelDataUrl": training["Training"]["ModelArtifacts"]["S3ModelArtifacts"]}
    return {**model, "PrimaryContainer": container}


@task
def enable_autoscaling(autoscaling: dict) -> dict:
    """Register the endpoint's variant with Application Auto Scaling (invocations per instance); after each
    rollout, so a new variant is tracked too."""
    from include.pipelines.steps import register_autoscaling

    return register_autoscaling(autoscaling)


@task
def publish_model(training: dict, settings: dict, files: list[str]) -> dict:
    """Copy files of the trained model (e.g. best.pt) to the workload's stable models/latest/ in S3."""
    from include.pipelines.steps import publish_model_files

    return publish_model_files(settings, training["Training"], tuple(files))


@task
def transform_config(transform: dict, model: dict, version: dict) -> dict:
    """SageMakerTransformOperator's config: the planned job, and the planned model (its name, role and tags)
    running the registered version."""
    from include.pipelines.requests import package_model_request

    return {"Model": package_model_request(model, version["model_package_arn"]), "Transform": transform}
