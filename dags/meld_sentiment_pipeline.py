"""
### MELD multimodal sentiment: train, gate on weighted F1, deploy, smoke-test, tear down

Packages `training_src/meld_sentiment`, uploads MELD's CSVs and mp4 clips (train and validation
channels), and trains a text (BERT) + video (r3d_18; small encoders from scratch locally) + audio (mel
spectrogram) model with late fusion and heads for the 7 emotions and 3 sentiments, with balanced class
weights, on SageMaker. TensorBoard
scalars go to `s3://<bucket>/<s3_prefix>/tensorboard/<job>/`. The model is deployed only when the best
epoch's validation emotion weighted F1 clears the workload's gate. The endpoint must answer utterances
(text plus clip as base64 or S3 URI) with emotion and sentiment probabilities and refuse a broken clip
with a client error; a teardown task deletes it whatever happens upstream.

Runs unchanged on AWS and on the local SageMaker (`make emulator`): the `aws_default` connection
decides. Settings live in `include/workloads/meld_sentiment.yaml` (profiles `local` and `aws`).
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
    resolve_settings,
    upload_data,
)
from sagemaker_pipelines_plugin.endpoints import SageMakerDeleteEndpointOperator
from sagemaker_pipelines_plugin.resources import (
    SageMakerCreateEndpointConfigOnceOperator,
    SageMakerCreateModelOnceOperator,
)
from sagemaker_pipelines_plugin.training import SageMakerResumableTrainingOperator

WORKLOAD = load_workload("meld_sentiment")


@dag(**pipeline_dag_arguments(
    WORKLOAD,
    doc=__doc__,
    tags=["meld-sentiment", "nlp", "audio", "computer-vision"],
    params=pipeline_params(),
))
def meld_sentiment_pipeline():
    @task
    def smoke_test(endpoint_name: str, settings: dict) -> dict:
        """Send utterances with clips (base64 and by S3 URI), check the answers; a broken clip must get a 4xx."""
        from include.pipelines.smoke.meld_sentiment import smoke_test

        clip_prefix = f"s3://{settings['bucket']}/{settings['prefix']}/smoke-test"
        return smoke_test(endpoint_name, clip_s3_prefix=clip_prefix)

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
    smoke = smoke_test(requests["endpoint_name"], settings)

    # teardown: runs even when the smoke test fails
    delete_endpoint = SageMakerDeleteEndpointOperator(
        task_id="delete_endpoint", endpoint_name=requests["endpoint_name"]
    ).as_teardown(setups=endpoint)

    chain(train, gate, model, endpoint_config, endpoint, smoke, delete_endpoint)


meld_sentiment_pipeline()
