"""
### CIFAR-10 ResNet-18: tune, train (DDP, spot), gate, deploy with autoscaling, smoke-test, batch transform

Packages `training_src/cifar10`, uploads the data set, runs a Bayesian hyperparameter search, then
trains ResNet-18 (adapted to 32x32) with the best hyperparameters across two instances (DDP) on
spot capacity with checkpoints. The model is deployed only when its validation accuracy clears the
workload's gate: the endpoint gets autoscaling, answers a smoke test with real images, and is
deleted by a teardown task whatever happens upstream, so no run leaves a paid endpoint behind.
A batch transform scores the test set with the same model.

Runs unchanged on AWS and on the local SageMaker (`make emulator`): the `aws_default` connection
decides. Settings live in `include/workloads/cifar10.yaml` (profiles `local` and `aws`).
"""
from __future__ import annotations

from airflow.providers.amazon.aws.operators.sagemaker import SageMakerEndpointOperator
from airflow.sdk import Param, TaskGroup, chain, dag, task
from airflow.sdk.bases.operator import TriggerRule

from include.pipelines.config import load_workload
from include.pipelines.tasks import (
    evaluate,
    model_request,
    package_source,
    pipeline_dag_arguments,
    pipeline_params,
    plan,
    resolve_settings,
    upload_data,
)
from sagemaker_pipelines_plugin.endpoints import SageMakerDeleteEndpointOperator
from sagemaker_pipelines_plugin.resources import (
    SageMakerCreateEndpointConfigOnceOperator,
    SageMakerCreateModelOnceOperator,
    SageMakerDeleteModelIfPresentOperator,
)
from sagemaker_pipelines_plugin.training import SageMakerResumableTrainingOperator
from sagemaker_pipelines_plugin.transform import SageMakerResumableTransformOperator
from sagemaker_pipelines_plugin.tuning import SageMakerResumableTuningOperator

WORKLOAD = load_workload("cifar10")


@dag(**pipeline_dag_arguments(
    WORKLOAD,
    doc=__doc__,
    tags=["cifar10", "computer-vision"],
    params=pipeline_params(
        tune=Param(True, type="boolean", description="Search hyperparameters first (Bayesian) and train with the best."),
    ),
))
def cifar10_pipeline():
    @task.short_circuit(ignore_downstream_trigger_rules=False)
    def tuning_enabled(params=None) -> bool:
        """Tune only when the run asks for it (the trigger form's `tune`)."""
        return bool(params.get("tune", True))

    @task(trigger_rule=TriggerRule.NONE_FAILED)
    def final_training_request(training: dict, ti=None) -> dict:
        """The planned training job with the best tuning job's hyperparameters (as planned when not tuned)."""
        from include.pipelines.steps import training_with_tuned_hyperparameters

        tuning = ti.xcom_pull(task_ids="tune")
        return training_with_tuned_hyperparameters(training, tuning["Tuning"] if tuning else None)

    @task
    def enable_autoscaling(autoscaling: dict) -> dict:
        """Register the endpoint variant with Application Auto Scaling (invocations per instance)."""
        from include.pipelines.steps import register_autoscaling

        return register_autoscaling(autoscaling)

    @task
    def smoke_test(endpoint_name: str) -> dict:
        """Send real test images to the endpoint and check it answers a class for each."""
        from include.pipelines.smoke.cifar10 import smoke_test

        return smoke_test(endpoint_name)

    @task
    def prepare_batch_input(settings: dict, channels: dict) -> dict:
        """Write the test set as JSON lines (one image a line) for the batch transform."""
        from include.pipelines.steps import prepare_cifar10_batch_input

        return prepare_cifar10_batch_input(settings)

    @task
    def check_batch_output(transform: dict, settings: dict) -> dict:
        """One prediction per test image, each a CIFAR-10 class; logs the batch accuracy."""
        from include.pipelines.steps import check_cifar10_batch_output

        return check_cifar10_batch_output(settings, transform["Transform"])

    # Task groups keep the graph readable: plan's requests reach each group as one edge, not ten.
    # prefix_group_id=False keeps the task ids (and the job names derived from them) as they were.
    with TaskGroup("setup", prefix_group_id=False, tooltip="Settings, data and source in S3, every request planned"):
        settings = resolve_settings(WORKLOAD.name)
        channels = upload_data(settings)
        requests = plan(settings, channels, package_source(settings))

    # body: tune, then train the final model with the best hyperparameters
    with TaskGroup("tuning", prefix_group_id=False, tooltip="Bayesian search; its best hyperparameters for the final job"):
        tune = SageMakerResumableTuningOperator(
            task_id="tune", config=requests["tuning"], deferrable=True, check_interval=10
        )
        training_config = final_training_request(requests["training"])
        chain(requests["tuning"], tuning_enabled(), tune, training_config)
    train = SageMakerResumableTrainingOperator(
        task_id="train", config=training_config, deferrable=True, check_interval=10, print_log=True
    )
    gate = evaluate(train.output, settings, requests["gate"])

    with TaskGroup("deploy", prefix_group_id=False, tooltip="Endpoint with autoscaling, smoke test, teardown"):
        model = SageMakerCreateModelOnceOperator(
            task_id="create_model", config=model_request(requests["model"], train.output)
        )
        endpoint_config = SageMakerCreateEndpointConfigOnceOperator(
            task_id="create_endpoint_config", config=requests["endpoint_config"]
        )
        endpoint = SageMakerEndpointOperator(
            task_id="deploy_endpoint", config=requests["endpoint"], operation="create", deferrable=True,
            check_interval=10,
        )
        autoscaling = enable_autoscaling(requests["autoscaling"])
        smoke = smoke_test(requests["endpoint_name"])
        # teardown: runs even when the smoke test fails; deregisters autoscaling before deleting
        delete_endpoint = SageMakerDeleteEndpointOperator(
            task_id="delete_endpoint", endpoint_name=requests["endpoint_name"]
        ).as_teardown(setups=endpoint)
        chain(model, endpoint_config, endpoint, autoscaling, smoke, delete_endpoint)

    with TaskGroup("batch", prefix_group_id=False, tooltip="Batch transform of the test set on a model of its own"):
        # the transform creates and owns a model of its own, so the endpoint's teardown cannot pull it away
        batch_model = model_request.override(task_id="batch_model_request")(requests["batch_model"], train.output)
        transform = SageMakerResumableTransformOperator(
            task_id="batch_transform", config={"Model": batch_model, "Transform": requests["transform"]},
            deferrable=True, check_interval=10, check_if_model_exists=False,
        )
        batch_scores = check_batch_output(transform.output, settings)
        delete_batch_model = SageMakerDeleteModelIfPresentOperator(
            task_id="delete_batch_model", config=batch_model
        ).as_teardown(setups=transform)
        batch_input = prepare_batch_input(settings, channels)
        chain([batch_model, batch_input], transform, batch_scores, delete_batch_model)

    chain(train, gate, [model, batch_model, batch_input])

cifar10_pipeline()
