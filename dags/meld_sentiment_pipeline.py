"""
### MELD multimodal sentiment: train, gate on weighted F1, promote, roll out, smoke-test

Packages `training_src/meld_sentiment`, uploads MELD's CSVs and mp4 clips (train and validation
channels), and trains a text (BERT) + video (r3d_18; small encoders from scratch locally) + audio (mel
spectrogram) model with late fusion and heads for the 7 emotions and 3 sentiments, with balanced class
weights, on SageMaker. TensorBoard scalars go to `s3://<bucket>/<s3_prefix>/tensorboard/<job>/`.
A model whose validation emotion weighted F1 clears the gate is scored against the model serving now
on the same held-out utterances (`evaluate.py`, a processing job), registered, and rolled out to the
standing endpoint `meld-sentiment` by a canary update that alarms roll back, only when it wins. The
endpoint must answer utterances (text plus clip as base64 or S3 URI) with emotion and sentiment
probabilities and refuse a broken clip with a client error.

Runs unchanged on AWS and on the local SageMaker (`make emulator`): the `aws_default` connection
decides. Settings live in `include/workloads/meld_sentiment.yaml` (profiles `local` and `aws`).
"""
from __future__ import annotations

from airflow.sdk import chain, dag, task

from include.pipelines import stages
from include.pipelines.config import load_workload
from include.pipelines.tasks import pipeline_dag_arguments, pipeline_params

WORKLOAD = load_workload("meld_sentiment")


@dag(**pipeline_dag_arguments(WORKLOAD, doc=__doc__, tags=["meld-sentiment", "nlp", "audio", "computer-vision"],
                              params=pipeline_params(**stages.promotion_params(WORKLOAD))))
def meld_sentiment_pipeline():
    @task
    def smoke_test(endpoint_name: str, settings: dict) -> dict:
        """Send utterances with clips (base64 and by S3 URI), check the answers; a broken clip must get a 4xx."""
        from include.pipelines.smoke.meld_sentiment import smoke_test

        clip_prefix = f"s3://{settings['bucket']}/{settings['prefix']}/smoke-test"
        return smoke_test(endpoint_name, clip_s3_prefix=clip_prefix)

    settings, requests = stages.setup(WORKLOAD)
    train = stages.train(requests)
    gate = stages.gate(train, requests)
    promotion = stages.promote(WORKLOAD, requests, train, smoke_test=smoke_test, settings=settings)
    chain(train, gate, promotion.group, stages.report(settings, requests))


meld_sentiment_pipeline()
