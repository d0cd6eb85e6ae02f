"""
### Acoustic shield (Wav2Vec2 audio classification): train, gate, deploy, smoke-test, publish, tear down

Packages `training_src/acoustic_shield`, uploads the clips (audiofolder: `<Label>/*.wav`), and
fine-tunes Wav2Vec2 on SageMaker's Hugging Face training image to tell Normal driving from TireSkid,
EmergencyBraking and CollisionImminent sounds. The model is deployed to a real-time endpoint
(`audio/wav` in, `{"label", "confidence", "probs"}` out) only when its validation macro-F1 clears the
workload's gate. The smoke test sends generated clips of every class and bad bodies (not a WAV,
empty, truncated), which must get a 4xx while the endpoint keeps answering.

The endpoint's details (name, variant, model data, ARN) are published as the `publish_endpoint`
task's XCom and as an event on the Airflow Asset `acoustic_shield_endpoint` (details in the event's
extra), so consumers can schedule on it. The endpoint is meant to live for the smoke test: a teardown
task deletes it whatever happens upstream, so no run leaves a paid endpoint behind. To keep it, trigger
with `keep_endpoint: true`: the teardown is then skipped, and the endpoint stays until you delete it
or the janitor removes it at its `expires-at` tag (endpoint.ttl_hours).

Runs unchanged on AWS and on the local SageMaker (`make emulator`): the `aws_default` connection
decides. Settings live in `include/workloads/acoustic_shield.yaml` (profiles `local` and `aws`).
"""
from __future__ import annotations

from airflow.providers.amazon.aws.operators.sagemaker import SageMakerEndpointOperator
from airflow.sdk import Asset, chain, dag, task

from include.pipelines.config import load_workload
from include.pipelines.tasks import (
    evaluate,
    keep_endpoint_param,
    model_request,
    package_source,
    pipeline_dag_arguments,
    pipeline_params,
    plan,
    resolve_settings,
    skip_when_keeping_endpoint,
    upload_data,
)
from sagemaker_pipelines_plugin.endpoints import SageMakerDeleteEndpointOperator
from sagemaker_pipelines_plugin.resources import (
    SageMakerCreateEndpointConfigOnceOperator,
    SageMakerCreateModelOnceOperator,
)
from sagemaker_pipelines_plugin.training import SageMakerResumableTrainingOperator

WORKLOAD = load_workload("acoustic_shield")
# consumers schedule on this asset; each event's extra holds the endpoint details of one run
ENDPOINT_ASSET = Asset(name="acoustic_shield_endpoint", uri="x-sagemaker-endpoint://acoustic_shield",
                       group="sagemaker-endpoint")


@dag(**pipeline_dag_arguments(
    WORKLOAD,
    doc=__doc__,
    tags=["acoustic-shield", "audio"],
    params=pipeline_params(keep_endpoint=keep_endpoint_param()),
))
def acoustic_shield_pipeline():
    @task
    def smoke_test(endpoint_name: str) -> dict:
        """Send generated clips of every class and bad bodies; check the answers and the 4xx refusals."""
        from include.pipelines.smoke.acoustic_shield import smoke_test

        return smoke_test(endpoint_name)

    @task(outlets=[ENDPOINT_ASSET])
    def publish_endpoint(endpoint_name: str, outlet_events=None, params=None) -> dict:
        """Publish the smoke-tested endpoint's details for consumers: this XCom and an asset event."""
        from include.pipelines.steps import endpoint_details

        details = {
            **endpoint_details(endpoint_name),
            "content_type": "audio/wav",
            "accept": "application/json",
            "kept_after_run": bool(params.get("keep_endpoint")),  # false: the teardown deletes it at the end of this run
        }
        outlet_events[ENDPOINT_ASSET].extra = details
        return details

    # setup
    settings = resolve_settings(WORKLOAD.name)
    requests = plan(settings, upload_data(settings), package_source(settings))

    # body
    train = SageMakerResumableTrainingOperator(
        task_id="train", config=requests["training"], deferrable=True, check_interval=10, print_log=True
    )
    gate = evaluate(train.output, settings)
    model = SageMakerCreateModelOnceOperator(task_id="create_model", config=model_request(requests["model"], train.output))
    endpoint_config = SageMakerCreateEndpointConfigOnceOperator(
        task_id="create_endpoint_config", config=requests["endpoint_config"]
    )
    endpoint = SageMakerEndpointOperator(
        task_id="deploy_endpoint", config=requests["endpoint"], operation="create", deferrable=True, check_interval=10
    )
    smoke = smoke_test(requests["endpoint_name"])
    publish = publish_endpoint(requests["endpoint_name"])

    # teardown: runs even when the smoke test fails; skipped only when triggered with keep_endpoint
    delete_endpoint = SageMakerDeleteEndpointOperator(
        task_id="delete_endpoint", endpoint_name=requests["endpoint_name"], pre_execute=skip_when_keeping_endpoint
    ).as_teardown(setups=endpoint)

    chain(train, gate, model, endpoint_config, endpoint, smoke, publish, delete_endpoint)


acoustic_shield_pipeline()
