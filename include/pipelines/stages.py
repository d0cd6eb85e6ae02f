"""The stages every pipeline shares, as functions that add a group of tasks to the DAG being defined.

A DAG file then states only what is particular to its workload (its data, its smoke test, its
extras) and keeps its flow visible in one chain:

    settings, requests = stages.setup(WORKLOAD)
    train = stages.train(requests)
    gate = stages.gate(train, requests)
    promotion = stages.promote(WORKLOAD, requests, train, smoke_test=smoke_test)
    chain(train, gate, promotion.group, stages.report(settings, requests))

Promotion: evaluate.py scores the challenger and the champion on the same held-out data (a
processing job); the decision promotes only a challenger that clears the threshold and beats the
champion; every evaluated challenger becomes a registry version; a win is approved automatically
or by a person (the trigger form's `approval`); the standing endpoint then takes it through a
guarded update (canary, alarms, automatic rollback) and the smoke test runs against it live.
"""
from __future__ import annotations

import os

from datetime import timedelta
from typing import NamedTuple

from airflow.sdk import Param, TaskGroup, chain

from include.pipelines import promotion_tasks as p
from include.pipelines.tasks import evaluate, package_source, plan, resolve_settings, upload_data
from sagemaker_pipelines_plugin.approval import SageMakerModelApprovalOperator
from sagemaker_pipelines_plugin.processing import SageMakerResumableProcessingOperator
from sagemaker_pipelines_plugin.resources import (
    SageMakerCreateEndpointConfigOnceOperator,
    SageMakerCreateModelOnceOperator,
)
from sagemaker_pipelines_plugin.standing_endpoint import SageMakerDeployStandingEndpointOperator
from sagemaker_pipelines_plugin.training import SageMakerResumableTrainingOperator

# seconds between a deferred job's status checks: 10 s keeps a real account's Describe* calls well
# inside SageMaker's rate limits; a local SageMaker answers at once, so its harness and compose stack
# set a shorter one (a job's end is otherwise seen 5 s late on average, in every run)
CHECK_INTERVAL = int(os.environ.get("SAGEMAKER_PIPELINES_CHECK_INTERVAL", "10"))
APPROVAL_RETRY_DELAY = timedelta(seconds=10)


def promotion_params(workload) -> dict[str, Param]:
    """Trigger-form fields of a workload that promotes: who approves a win."""
    return {"approval": Param(workload.promotion.approval, enum=["auto", "manual"], description=(
        "auto: a challenger that wins is approved and rolled out; manual: a person approves it in the Airflow UI "
        f"(Required actions) within {workload.promotion.approval_timeout_hours:g} h, or it is rejected."))}


def setup(workload, *, upload=upload_data):
    """Settings, data and source in S3, every request of the run planned: (settings, requests)."""
    with TaskGroup("setup", prefix_group_id=False, tooltip="Settings, data and source in S3, every request planned"):
        settings = resolve_settings(workload.name)
        requests = plan(settings, upload(settings), package_source(settings))
    return settings, requests


def train(requests, *, config=None):
    """The training job (rejoined, not repeated, by a retry), its log in the task log."""
    return SageMakerResumableTrainingOperator(
        task_id="train", config=config if config is not None else requests["training"], deferrable=True,
        check_interval=CHECK_INTERVAL, print_log=True)


def gate(training, requests):
    """The run's planned gate on the job's own validation metric: below it, nothing is evaluated or deployed."""
    return evaluate(training.output, requests["gate"])


class Promotion(NamedTuple):
    group: TaskGroup  # what a DAG chains
    approved: list  # the tasks after which a version is Approved (auto, or by a person)
    deploy: object | None  # the standing endpoint's guarded update (None without an endpoint)
    smoke: object | None  # the live smoke test after it


def promote(workload, requests, training, *, smoke_test=None, settings=None, after_deploy=()) -> Promotion:
    """Evaluate, decide, register, approve and (with a standing endpoint) roll out."""
    promotion = requests["promotion"]
    with TaskGroup("promotion", prefix_group_id=False,
                   tooltip="Challenger vs champion on the same data; registry version; approval") as group:
        evaluation_plan = p.plan_evaluation(promotion, training.output)
        evaluation = SageMakerResumableProcessingOperator(
            task_id="evaluate_models", config=evaluation_plan["request"], deferrable=True,
            check_interval=CHECK_INTERVAL)
        decision = p.decide(promotion, evaluation.output, evaluation_plan["champion"])
        version = p.register_version(promotion, training.output, decision)
        route = p.route_approval(decision)
        approved = [p.approve_version(version, decision), _approval_by_a_person(workload, version)]
        chain(version, route, [p.reject_version(version, decision), *approved])
        deploy = smoke = None
        if workload.promotion.endpoint_name:
            deploy, smoke = rollout(promotion, version, approved, smoke_test=smoke_test, settings=settings,
                                    extras=after_deploy)
    return Promotion(group, approved, deploy, smoke)


# what a person sees under Required actions: the decision's reason and both figures (Jinja, rendered at run time)
_DECISION = "ti.xcom_pull(task_ids='decide')"
_VERSION = "ti.xcom_pull(task_ids='register_version')['version']"
APPROVAL_BODY = f"""**{{{{ {_DECISION}['reason'] }}}}**

| | {{{{ {_DECISION}['metric'] }}}} |
|---|---|
| challenger (version {{{{ {_VERSION} }}}}) | {{{{ '%.4f'|format({_DECISION}['challenger']) }}}} |
| champion (version {{{{ {_DECISION}['champion_version'] or 'none' }}}}) | {{{{ '%.4f'|format({_DECISION}['champion']) if {_DECISION}['champion'] is not none else 'no champion' }}}} |
| threshold | {{{{ {_DECISION}['threshold'] }}}} |

Approve to roll it out to the standing endpoint; Reject (or no answer in time) keeps the champion."""


def _approval_by_a_person(workload, version):
    return SageMakerModelApprovalOperator(
        task_id="await_approval", model_package_arn=version["model_package_arn"],
        subject=f"Promote {workload.name} version {{{{ {_VERSION} }}}}?", body=APPROVAL_BODY,
        response_timeout=timedelta(hours=workload.promotion.approval_timeout_hours),
        # a retry asks again (docs/promotion.md: Airflow 3.3 can lose an answer given within a second of
        # the question); the person who answered should see the question back within seconds
        retry_delay=APPROVAL_RETRY_DELAY)


def rollout(promotion, version, approved, *, smoke_test=None, settings=None, extras=()):
    """The approved version onto the standing endpoint: created the first time, else a guarded update
    whose alarms roll it back; a failed rollout rejects the version; then the smoke test, live."""
    with TaskGroup("rollout", prefix_group_id=False, tooltip="Guarded update of the standing endpoint, live smoke test"):
        names = p.standing_requests(promotion, version)
        model = SageMakerCreateModelOnceOperator(task_id="create_standing_model", config=names["model"])
        config = SageMakerCreateEndpointConfigOnceOperator(task_id="create_standing_endpoint_config",
                                                           config=names["endpoint_config"])
        deploy = SageMakerDeployStandingEndpointOperator(
            task_id="deploy_standing_endpoint", endpoint_name=names["endpoint_name"],
            endpoint_config_name=names["endpoint_config_name"], deployment_config=names["deployment_config"],
            alarms=names["alarms"], tags=names["endpoint_tags"], check_interval=2)
        chain(approved, names, model, config, deploy)
        deploy >> p.reject_failed_rollout()
        tail = deploy
        for extra in extras:
            tail >> extra
            tail = extra
        smoke = None
        if smoke_test is not None:
            smoke = smoke_test.override(task_id="smoke_test")(names["endpoint_name"], settings)
            tail >> smoke
    return deploy, smoke


def report(settings, requests):
    """The run report: a teardown of the run's settings, so it runs whatever happened and leaves the run's
    state to the tasks that decided it."""
    return p.run_report(settings, requests["promotion"]).as_teardown(setups=settings.operator)


