"""
### Brain-to-Text diphone decoder: train on HDF5 streamed from S3, gate on DER, promote, batch-decode

Packages `training_src/brain_to_text`, puts the recording sessions in S3 (the local profile's
synthetic ones; on AWS they are already there) and trains the GRU + CTC diphone decoder on
SageMaker. The job streams the trials it samples straight from S3 (`--data-s3-uri`): SageMaker
downloads nothing, so the data set may be far larger than the instance's disk. A model whose best
validation DER clears the gate is scored against the approved champion on the same held-out trials
(`evaluate.py`, a processing job) and registered; it is approved only when it wins. No endpoint is
created: the approved champion (the new version when it won, the earlier one when it lost)
batch-decodes a held-out session, and the last task reads the decode back (one JSON line per trial)
and reports its DER.

Trigger with `preset` = `quick-test` for a short training run through the same pipeline, or
`full` (the default) for the configured one.

Runs unchanged on AWS and on the local SageMaker (`make emulator`): the `aws_default` connection
decides. Settings live in `include/workloads/brain_to_text.yaml` (profiles `local` and `aws`).
"""
from __future__ import annotations

from airflow.sdk import Param, chain, dag, task
from airflow.sdk.bases.operator import TriggerRule

from include.pipelines import stages
from include.pipelines.config import load_workload
from include.pipelines.promotion_tasks import approved_champion
from include.pipelines.tasks import pipeline_dag_arguments, pipeline_params, preset_param, transform_config
from sagemaker_pipelines_plugin.transform import SageMakerResumableTransformOperator

WORKLOAD = load_workload("brain_to_text")


@dag(**pipeline_dag_arguments(WORKLOAD, doc=__doc__, tags=["brain-to-text"], params=pipeline_params(
    omit=("epochs",),  # trained for num-training-batches, not epochs
    deploy=Param(True, type="boolean", description="Approve a winning model and batch-decode with the champion."),
    preset=preset_param(WORKLOAD.presets),
    **stages.promotion_params(WORKLOAD),
)))
def brain_to_text_pipeline():
    @task
    def check_decode(decode: dict) -> dict:
        """Read the batch decode back: one JSON line per held-out trial, scored when the file is labelled."""
        from include.pipelines.smoke.brain_to_text import check_batch_decode

        return check_batch_decode(decode["Transform"])

    settings, requests = stages.setup(WORKLOAD)
    train = stages.train(requests)
    gate = stages.gate(train, requests)
    promotion = stages.promote(WORKLOAD, requests, train)
    # after the decision either way: the version that is the champion now decodes
    champion = approved_champion.override(trigger_rule=TriggerRule.NONE_FAILED)(requests["promotion"])
    decode = SageMakerResumableTransformOperator(
        task_id="batch_decode", config=transform_config(requests["transform"], requests["batch_model"], champion),
        deferrable=True, check_interval=stages.CHECK_INTERVAL)
    chain(train, gate, promotion.group, champion, decode, check_decode(decode.output),
          stages.report(settings, requests))


brain_to_text_pipeline()
