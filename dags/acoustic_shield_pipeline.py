"""
### Acoustic shield (Wav2Vec2 audio classification): train, gate, promote, roll out, publish

Packages `training_src/acoustic_shield`, uploads the clips (audiofolder: `<Label>/*.wav`), and
fine-tunes Wav2Vec2 on SageMaker's Hugging Face training image to tell Normal driving from TireSkid,
EmergencyBraking and CollisionImminent sounds. A model whose validation macro-F1 clears the gate is
scored against the model serving now on the same held-out clips (`evaluate.py`, a processing job),
registered, and rolled out to the standing endpoint `acoustic-shield` by a canary update that alarms
roll back, only when it wins. The smoke test then sends clips of every class and bad bodies (not a
WAV, empty, truncated), which must get a 4xx while the endpoint keeps answering.

The serving endpoint's details are published as the `publish_endpoint` task's XCom and as an event on
the Airflow Asset `acoustic_shield_endpoint`, so consumers can schedule on each new model.

Runs unchanged on AWS and on the local SageMaker (`make emulator`): the `aws_default` connection
decides. Settings live in `include/workloads/acoustic_shield.yaml` (profiles `local` and `aws`).
"""
from __future__ import annotations

from airflow.sdk import Asset, chain, dag, task

from include.pipelines import stages
from include.pipelines.config import load_workload
from include.pipelines.tasks import pipeline_dag_arguments, pipeline_params

WORKLOAD = load_workload("acoustic_shield")
# consumers schedule on this asset; each event's extra holds the serving endpoint's details
ENDPOINT_ASSET = Asset(name="acoustic_shield_endpoint", uri="x-sagemaker-endpoint://acoustic_shield",
                       group="sagemaker-endpoint")


@dag(**pipeline_dag_arguments(WORKLOAD, doc=__doc__, tags=["acoustic-shield", "audio"],
                              params=pipeline_params(**stages.promotion_params(WORKLOAD))))
def acoustic_shield_pipeline():
    @task
    def smoke_test(endpoint_name: str, settings: dict) -> dict:
        """Send generated clips of every class and bad bodies; check the answers and the 4xx refusals."""
        from include.pipelines.smoke.acoustic_shield import smoke_test

        return smoke_test(endpoint_name)

    @task(outlets=[ENDPOINT_ASSET])
    def publish_endpoint(endpoint_name: str, outlet_events=None) -> dict:
        """Publish the serving endpoint's details for consumers: this XCom and an asset event."""
        from include.pipelines.steps import endpoint_details

        details = {**endpoint_details(endpoint_name), "content_type": "audio/wav", "accept": "application/json"}
        outlet_events[ENDPOINT_ASSET].extra = details
        return details

    settings, requests = stages.setup(WORKLOAD)
    train = stages.train(requests)
    gate = stages.gate(train, requests)
    promotion = stages.promote(WORKLOAD, requests, train, smoke_test=smoke_test, settings=settings)
    report = stages.report(settings, requests)
    chain(train, gate, promotion.group, report)
    chain(promotion.smoke, publish_endpoint(WORKLOAD.promotion.endpoint_name), report)


acoustic_shield_pipeline()
