"""
### Brain-to-Text diphone decoder: train on HDF5 streamed from S3, gate on DER, register, batch-decode

Packages `training_src/brain_to_text`, puts the recording sessions in S3 (the local profile's
synthetic ones; on AWS they are already there) and trains the GRU + CTC diphone decoder on
SageMaker. The job streams the trials it samples straight from S3 (`--data-s3-uri`): SageMaker
downloads nothing, so the data set may be far larger than the instance's disk. A model whose best
validation DER clears the workload's gate is registered as a new version in the SageMaker model
registry, and that registered version batch-decodes a held-out session; the last task reads the
decode back (one JSON line per trial) and reports its DER. No endpoint is created.

Trigger with `preset` = `quick-test` for a short training run through the same pipeline, or
`full` (the default) for the configured one.

Runs unchanged on AWS and on the local SageMaker (`make emulator`): the `aws_default` connection
decides. Settings live in `include/workloads/brain_to_text.yaml` (profiles `local` and `aws`).
"""
from __future__ import annotations

from airflow.providers.amazon.aws.operators.sagemaker import SageMakerRegisterModelVersionOperator
from airflow.sdk import Param, chain, dag, task

from include.pipelines.config import load_workload
from include.pipelines.tasks import (
    evaluate,
    model_version,
    package_source,
    pipeline_dag_arguments,
    pipeline_params,
    plan,
    preset_param,
    resolve_settings,
    transform_config,
    upload_data,
)
from sagemaker_pipelines_plugin.training import SageMakerResumableTrainingOperator
from sagemaker_pipelines_plugin.transform import SageMakerResumableTransformOperator

WORKLOAD = load_workload("brain_to_text")


@dag(**pipeline_dag_arguments(
    WORKLOAD,
    doc=__doc__,
    tags=["brain-to-text"],
    params=pipeline_params(
        omit=("epochs",),  # trained for num-training-batches, not epochs
        deploy=Param(True, type="boolean",
                     description="Register the model and batch-decode the held-out session when it passes the gate."),
        preset=preset_param(WORKLOAD.presets),
    ),
))
def brain_to_text_pipeline():
    @task
    def check_decode(decode: dict) -> dict:
        """Read the batch decode back: one JSON line per held-out trial, scored when the file is labelled."""
        from include.pipelines.smoke.brain_to_text import check_batch_decode

        return check_batch_decode(decode["Transform"])

    # setup
    settings = resolve_settings(WORKLOAD.name)
    requests = plan(settings, upload_data(settings), package_source(settings))

    # body
    train = SageMakerResumableTrainingOperator(
        task_id="train", config=requests["training"], deferrable=True, check_interval=10, print_log=True
    )
    gate = evaluate(train.output, settings)
    version = model_version(train.output, settings)
    # expand_kwargs: the version's image, artifact and metadata exist only once the job has run
    register = SageMakerRegisterModelVersionOperator.partial(task_id="register_model").expand_kwargs(version)
    decode = SageMakerResumableTransformOperator(
        task_id="batch_decode",
        config=transform_config(requests["transform"], register.output, settings),
        deferrable=True,
        check_interval=10,
    )
    report = check_decode(decode.output)

    chain(train, gate, version, register, decode, report)


brain_to_text_pipeline()
