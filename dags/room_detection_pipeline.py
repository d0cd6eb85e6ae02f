"""
### Room detection (YOLOv8): train, gate on mAP50, promote, roll out serverless, publish

Syncs the floor-plan data set (images and labels per split, plus `dataset.yaml`) to S3 and logs its
counts per split, packages `training_src/room_detection`, and trains YOLOv8 with ultralytics on
SageMaker (spot capacity with checkpoints on AWS). A model whose best.pt clears the mAP50 gate is
scored against the model serving now on the same held-out plans (`evaluate.py`, a processing job),
registered, and rolled out to the standing serverless endpoint `room-detection` (all at once, as
SageMaker updates serverless variants, behind alarms) only when it wins. The endpoint must answer
floor plans with room boxes and refuse a truncated image with a client error; then the promoted
model's `best.pt` is published to `s3://<bucket>/<s3_prefix>/models/latest/`.

Runs unchanged on AWS and on the local SageMaker (`make emulator`): the `aws_default` connection
decides. Settings live in `include/workloads/room_detection.yaml` (profiles `local` and `aws`).
"""
from __future__ import annotations

from airflow.sdk import chain, dag, task

from include.pipelines import stages
from include.pipelines.config import load_workload
from include.pipelines.tasks import pipeline_dag_arguments, pipeline_params, publish_model

WORKLOAD = load_workload("room_detection")


@dag(**pipeline_dag_arguments(WORKLOAD, doc=__doc__, tags=["room-detection", "computer-vision"],
                              params=pipeline_params(**stages.promotion_params(WORKLOAD))))
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
    def smoke_test(endpoint_name: str, settings: dict) -> dict:
        """Send floor plans as PNG and JPEG, check the room boxes; a truncated image must get a 4xx."""
        from include.pipelines.smoke.room_detection import smoke_test

        return smoke_test(endpoint_name)

    settings, requests = stages.setup(WORKLOAD, upload=upload_data)
    train = stages.train(requests)
    gate = stages.gate(train, requests)
    promotion = stages.promote(WORKLOAD, requests, train, smoke_test=smoke_test, settings=settings)
    report = stages.report(settings, requests)
    chain(train, gate, promotion.group, report)
    chain(promotion.smoke, publish_model(train.output, settings, files=["best.pt"]), report)


room_detection_pipeline()
