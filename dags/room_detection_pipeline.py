"""
### Room detection (YOLOv8): train, gate on mAP50, deploy serverless, smoke-test, publish, tear down

Syncs the floor-plan data set (images and labels per split, plus `dataset.yaml`) to S3 and logs its
counts per split, packages `training_src/room_detection`, and trains YOLOv8 with ultralytics on
SageMaker (spot capacity with checkpoints on AWS). The model is deployed to a serverless endpoint
only when best.pt's validation mAP50 clears the workload's gate. The endpoint must answer floor
plans with room boxes and refuse a truncated image with a client error; then the model's `best.pt`
is published to `s3://<bucket>/<s3_prefix>/models/latest/`, and a teardown task deletes the endpoint
whatever happens upstream.

Runs unchanged on AWS and on the local SageMaker (`make emulator`): the `aws_default` connection
decides. Settings live in `include/workloads/room_detection.yaml` (profiles `local` and `aws`).
"""
from __future__ import annotations

from airflow.providers.amazon.aws.operators.sagemaker import SageMakerEndpointOperator
from airflow.sdk import chain, dag, task

from include.pipelines.config import load_workload
from include.pipelines.tasks import (
    evaluate,
    model_request,
    package_source,
    pipeline_dag_arguments,
    pipeline_params,
    plan,
    publish_model,
    resolve_settings,
)
from sagemaker_pipelines_plugin.endpoints import SageMakerDeleteEndpointOperator
from sagemaker_pipelines_plugin.resources import (
    SageMakerCreateEndpointConfigOnceOperator,
    SageMakerCreateModelOnceOperator,
)
from sagemaker_pipelines_plugin.training import SageMakerResumableTrainingOperator

WORKLOAD = load_workload("room_detection")


@dag(**pipeline_dag_arguments(
    WORKLOAD,
    doc=__doc__,
    tags=["room-detection", "computer-vision"],
    params=pipeline_params(),
))
def room_detection_pipeline():
    @task
    def upload_data(settings: dict) -> dict:
        """Sync images, labels and dataset.yaml to S3 (unchanged files skipped); log images and labels per split."""
        import logging

        from include.datasets.room_detection import check_splits, describe_counts, split_counts
        from include.pipelines.steps import data_files, upload_dataset

        channels = upload_dataset(settings)
        counts = split_counts(data_files(settings))
        logging.getLogger(__name__).info("Data set %s per split: %s", channels["train"], describe_counts(counts))
        check_splits(counts, where=channels["train"])
        return channels

    @task
    def smoke_test(endpoint_name: str) -> dict:
        """Send floor plans as PNG and JPEG, check the room boxes; a truncated image must get a 4xx."""
        from include.pipelines.smoke.room_detection import smoke_test

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
    publish = publish_model(train.output, settings, files=["best.pt"])

    # teardown: runs even when the smoke test fails
    delete_endpoint = SageMakerDeleteEndpointOperator(
        task_id="delete_endpoint", endpoint_name=requests["endpoint_name"]
    ).as_teardown(setups=endpoint)

    chain(train, gate, model, endpoint_config, endpoint, smoke, [publish, delete_endpoint])


room_detection_pipeline()
