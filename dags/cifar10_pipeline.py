"""
### CIFAR-10 ResNet-18: train, gate, deploy, smoke-test, tear down

Packages `training_src/cifar10`, uploads the data set, trains ResNet-18 (adapted to 32x32) on
SageMaker, and deploys the model only when its validation accuracy clears the workload's gate.
The endpoint answers a smoke test with real images and is deleted by a teardown task whatever
happens upstream, so no run leaves a paid endpoint behind.

Runs unchanged on AWS and on the local SageMaker (`make emulator`): the `aws_default` connection
decides. Settings live in `include/workloads/cifar10.yaml` (profiles `local` and `aws`).
"""
from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.providers.amazon.aws.operators.sagemaker import SageMakerEndpointOperator
from airflow.sdk import chain, dag, task

from include.pipelines.config import load_workload
from include.pipelines.tasks import (
    evaluate,
    model_request,
    package_source,
    pipeline_params,
    plan,
    resolve_settings,
    upload_data,
)
from sagemaker_pipelines_plugin.endpoints import SageMakerDeleteEndpointOperator
from sagemaker_pipelines_plugin.resources import (
    SageMakerCreateEndpointConfigOnceOperator,
    SageMakerCreateModelOnceOperator,
)
from sagemaker_pipelines_plugin.training import SageMakerResumableTrainingOperator

WORKLOAD = load_workload("cifar10")


@dag(
    schedule=WORKLOAD.schedule,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    tags=["sagemaker", "cifar10", "computer-vision"],
    default_args={"owner": WORKLOAD.owner, "retries": 2, "retry_delay": timedelta(minutes=1)},
    params=pipeline_params(),
)
def cifar10_pipeline():
    @task
    def smoke_test(endpoint_name: str) -> dict:
        """Send real test images to the endpoint and check it answers a class for each."""
        from include.pipelines.smoke.cifar10 import smoke_test

        return smoke_test(endpoint_name)

    # setup
    settings = resolve_settings(WORKLOAD.name)
    requests = plan(settings, upload_data(settings), package_source(settings))

    # body
    train = SageMakerResumableTrainingOperator(
        task_id="train", config=requests["training"], deferrable=True, check_interval=10, print_log=True
    )
    gate = evaluate(train.output, settings)
    model = SageMakerCreateModelOnceOperator(
        task_id="create_model", config=model_request(requests["model"], train.output)
    )
    endpoint_config = SageMakerCreateEndpointConfigOnceOperator(
        task_id="create_endpoint_config", config=requests["endpoint_config"]
    )
    endpoint = SageMakerEndpointOperator(
        task_id="deploy_endpoint", config=requests["endpoint"], operation="create", deferrable=True, check_interval=10
    )
    smoke = smoke_test(requests["endpoint_name"])

    # teardown: runs even when the smoke test fails
    delete_endpoint = SageMakerDeleteEndpointOperator(
        task_id="delete_endpoint", endpoint_name=requests["endpoint_name"]
    ).as_teardown(setups=endpoint)

    chain(train, gate, model, endpoint_config, endpoint, smoke, delete_endpoint)


cifar10_pipeline()
