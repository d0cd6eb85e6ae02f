"""
### CIFAR-10 ResNet-18: tune, train (DDP, spot), gate, promote with autoscaling, batch transform

Packages `training_src/cifar10`, uploads the data set, runs a Bayesian hyperparameter search, then
trains ResNet-18 (adapted to 32x32) with the best hyperparameters across two instances (DDP) on
spot capacity with checkpoints. A model whose validation accuracy clears the gate is scored against
the model serving now on the same test batch (`evaluate.py`, a processing job), registered, and
rolled out to the standing endpoint `cifar10-classifier` (canary, alarms that roll it back,
autoscaling) only when it wins; the smoke test then sends it real images. A batch transform scores
the test set with the new model, on a model of its own.

Runs unchanged on AWS and on the local SageMaker (`make emulator`): the `aws_default` connection
decides. Settings live in `include/workloads/cifar10.yaml` (profiles `local` and `aws`).
"""
from __future__ import annotations

from airflow.sdk import Param, TaskGroup, chain, dag, task
from airflow.sdk.bases.operator import TriggerRule

from include.pipelines import stages
from include.pipelines.config import load_workload
from include.pipelines.tasks import enable_autoscaling, model_request, pipeline_dag_arguments, pipeline_params
from sagemaker_pipelines_plugin.resources import SageMakerDeleteModelIfPresentOperator
from sagemaker_pipelines_plugin.transform import SageMakerResumableTransformOperator
from sagemaker_pipelines_plugin.tuning import SageMakerResumableTuningOperator

WORKLOAD = load_workload("cifar10")


@dag(**pipeline_dag_arguments(WORKLOAD, doc=__doc__, tags=["cifar10", "computer-vision"], params=pipeline_params(
    tune=Param(True, type="boolean", description="Search hyperparameters first (Bayesian) and train with the best."),
    **stages.promotion_params(WORKLOAD),
)))
def cifar10_pipeline():
    @task.short_circuit(ignore_downstream_trigger_rules=False)
    def tuning_enabled(params=None) -> bool:
        """Tune only when the run asks for it (the trigger form's `tune`)."""
        return bool(params.get("tune", True))

    @task(trigger_rule=TriggerRule.NONE_FAILED)
    def final_training_request(training: dict, ti=None) -> dict:
        """The planned training job with the best tuning job's hyperparameters (as planned when not tuned)."""
        from include.pipelines.steps import training_with_tuned_hyperparameters

        tuning = ti.xcom_pull(task_ids="tune")  # None when tuning was skipped
        return training_with_tuned_hyperparameters(training, tuning["Tuning"] if tuning else None)

    @task
    def smoke_test(endpoint_name: str, settings: dict) -> dict:
        """Send real test images to the endpoint and check it answers a class for each."""
        from include.pipelines.smoke.cifar10 import smoke_test

        return smoke_test(endpoint_name)

    @task
    def prepare_batch_input(settings: dict) -> dict:
        """Write the test set as JSON lines (one image a line) for the batch transform."""
        from include.pipelines.steps import prepare_cifar10_batch_input

        return prepare_cifar10_batch_input(settings)

    @task
    def check_batch_output(transform: dict, settings: dict) -> dict:
        """One prediction per test image, each a CIFAR-10 class; logs the batch accuracy."""
        from include.pipelines.steps import check_cifar10_batch_output

        return check_cifar10_batch_output(settings, transform["Transform"])

    settings, requests = stages.setup(WORKLOAD)
    with TaskGroup("tuning", prefix_group_id=False, tooltip="Bayesian search; its best hyperparameters for the final job"):
        tune = SageMakerResumableTuningOperator(task_id="tune", config=requests["tuning"], deferrable=True,
                                                check_interval=stages.CHECK_INTERVAL)
        training_config = final_training_request(requests["training"])
        chain(requests["tuning"], tuning_enabled(), tune, training_config)
    train = stages.train(requests, config=training_config)
    gate = stages.gate(train, requests)
    promotion = stages.promote(WORKLOAD, requests, train, smoke_test=smoke_test, settings=settings,
                               after_deploy=[enable_autoscaling(requests["autoscaling"])])

    with TaskGroup("batch", prefix_group_id=False, tooltip="Batch transform of the test set on a model of its own") as batch:
        batch_model = model_request.override(task_id="batch_model_request")(requests["batch_model"], train.output)
        transform = SageMakerResumableTransformOperator(
            task_id="batch_transform", config={"Model": batch_model, "Transform": requests["transform"]},
            deferrable=True, check_interval=stages.CHECK_INTERVAL, check_if_model_exists=False)
        delete_batch_model = SageMakerDeleteModelIfPresentOperator(
            task_id="delete_batch_model", config=batch_model).as_teardown(setups=transform)
        chain([batch_model, prepare_batch_input(settings)], transform, check_batch_output(transform.output, settings),
              delete_batch_model)

    chain(train, gate, [promotion.group, batch], stages.report(settings, requests))


cifar10_pipeline()
