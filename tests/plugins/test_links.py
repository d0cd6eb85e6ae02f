"""Extra links: the plugin registers one for every SageMaker task, and a task instance whose XCom holds
a job name links to that job in the AWS console, or on the local SageMaker when aws_default points there."""
from __future__ import annotations

import json
import sys
import urllib.request
from types import SimpleNamespace

import pytest
from airflow.providers.amazon.aws.operators import sagemaker as provider

from sagemaker_pipelines_plugin import links
from sagemaker_pipelines_plugin.endpoints import SageMakerDeleteEndpointOperator
from sagemaker_pipelines_plugin.resources import SageMakerCreateModelOnceOperator, SageMakerDeleteModelIfPresentOperator
from sagemaker_pipelines_plugin.training import SageMakerResumableTrainingOperator
from sagemaker_pipelines_plugin.transform import SageMakerResumableTransformOperator
from sagemaker_pipelines_plugin.tuning import SageMakerResumableTuningOperator
from tests.conftest import TEST_REGION

TEST_JOB = "cifar10-train-0123456789"
TEST_AWS_REGION = "eu-west-1"
TEST_GROUP = "links-test-group"
TI_KEY = SimpleNamespace(dag_id="cifar10_pipeline", task_id="train", run_id="manual__1", try_number=1, map_index=-1)


@pytest.fixture
def xcom(monkeypatch):
    """The task instance's XComs (key -> value), in place of the worker's or the database's."""
    values: dict = {}
    monkeypatch.setattr(links, "_xcom", lambda ti_key, key, *, in_task: values.get(key))
    return values


@pytest.fixture
def rendered(monkeypatch):
    """The task instance's rendered template fields, as the api-server would read them."""
    fields: dict = {}
    monkeypatch.setattr(links, "_rendered_request", lambda ti_key: fields)
    return fields


@pytest.fixture
def on_aws(monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", json.dumps(
        {"conn_type": "aws", "login": "testing", "password": "testing", "extra": {"region_name": TEST_AWS_REGION}}))


def _console(path: str, name: str, region: str = TEST_AWS_REGION) -> str:
    return f"https://{region}.console.aws.amazon.com/sagemaker/home?region={region}#/{path}/{name}"


def _training(name: str = "planned-name") -> SageMakerResumableTrainingOperator:
    return SageMakerResumableTrainingOperator(task_id="train", config={"TrainingJobName": name})


# --- the plugin ----------------------------------------------------------------------------------
def test_plugin_loads_from_the_plugins_folder_with_its_links_and_timetable():
    from airflow import plugins_manager

    info = {p["name"]: p for p in plugins_manager.get_plugin_info(attrs_to_dump=["source", "timetables"])}
    assert str(info["sagemaker_pipelines"]["source"]) == "$PLUGINS_FOLDER/sagemaker_pipelines.py"
    # .airflowignore: the package's modules are not imported a second time under their bare file names
    assert not {"rejoin", "training", "links", "timetables"} & set(sys.modules)
    registered = {type(link) for link in plugins_manager.get_operator_extra_links()}
    assert set(links.ALL_LINKS) <= registered
    assert "sagemaker_pipelines_plugin.timetables.UpcomingCronTimetable" in plugins_manager.get_timetables_plugins()


@pytest.mark.parametrize(("operator", "link_name"), [
    (provider.SageMakerTrainingOperator, "SageMaker Training Job"),
    (SageMakerResumableTrainingOperator, "SageMaker Training Job"),
    (provider.SageMakerTuningOperator, "SageMaker Tuning Job"),
    (SageMakerResumableTuningOperator, "SageMaker Tuning Job"),
    (provider.SageMakerTransformOperator, "Amazon SageMaker Transform Job Details"),
    (SageMakerResumableTransformOperator, "Amazon SageMaker Transform Job Details"),
    (provider.SageMakerProcessingOperator, "SageMaker Processing Job"),
    (provider.SageMakerModelOperator, "SageMaker Model"),
    (SageMakerCreateModelOnceOperator, "SageMaker Model"),
    (provider.SageMakerDeleteModelOperator, "SageMaker Model"),
    (SageMakerDeleteModelIfPresentOperator, "SageMaker Model"),
    (provider.SageMakerEndpointConfigOperator, "SageMaker Endpoint Config"),
    (provider.SageMakerEndpointOperator, "SageMaker Endpoint"),
    (SageMakerDeleteEndpointOperator, "SageMaker Endpoint"),
    (provider.SageMakerRegisterModelVersionOperator, "SageMaker Model Registry"),
])
def test_every_sagemaker_operator_gets_a_link(operator, link_name):
    from airflow import plugins_manager

    names = {link.name for link in plugins_manager.get_operator_extra_links() if operator in link.operators}
    assert names == {link_name}


def test_our_operators_carry_their_links_so_the_worker_stores_the_url():
    for operator in (SageMakerResumableTrainingOperator, SageMakerResumableTuningOperator,
                     SageMakerResumableTransformOperator, SageMakerCreateModelOnceOperator, SageMakerDeleteEndpointOperator):
        assert any(isinstance(link, links.SageMakerResourceLink) for link in operator.operator_extra_links), operator


# --- the URLs ------------------------------------------------------------------------------------
def test_a_finished_training_task_links_to_its_job_in_the_console(xcom, rendered, on_aws):
    xcom["return_value"] = {"Training": {"TrainingJobName": TEST_JOB, "TrainingJobStatus": "Completed"}}
    assert links.SageMakerTrainingJobLink().get_link(_training(), ti_key=TI_KEY) == _console("jobs", TEST_JOB)


def test_a_finished_training_task_links_to_the_local_sagemaker_when_aws_default_points_there(emulator, xcom, rendered):
    xcom["return_value"] = {"Training": {"TrainingJobName": TEST_JOB}}
    url = links.SageMakerTrainingJobLink().get_link(_training(), ti_key=TI_KEY)
    assert url == f"{emulator.endpoint_url}/_emulator/describe/TrainingJob?name={TEST_JOB}&region={TEST_REGION}"


def test_the_local_link_opens_the_resources_description(emulator, sagemaker_client, xcom, rendered):
    sagemaker_client.create_model_package_group(ModelPackageGroupName=TEST_GROUP)
    rendered["package_group_name"] = TEST_GROUP  # registering: only the group is known yet
    operator = provider.SageMakerRegisterModelVersionOperator(
        task_id="register_model", image_uri="image", model_url="s3://b/model.tar.gz", package_group_name=TEST_GROUP
    )
    url = links.SageMakerModelVersionLink().get_link(operator, ti_key=TI_KEY)
    with urllib.request.urlopen(url, timeout=30) as response:
        assert json.loads(response.read())["ModelPackageGroupName"] == TEST_GROUP


def test_a_running_retry_links_to_the_job_it_rejoined_or_resubmitted(monkeypatch, xcom, on_aws):
    """On the worker, when the try defers: the live operator holds the name the try really used."""
    monkeypatch.setattr(links, "_in_task_process", lambda: True)
    operator = _training(TEST_JOB)
    operator.set_job_name(f"{TEST_JOB}-retry1")
    assert links.SageMakerTrainingJobLink().get_link(operator, ti_key=TI_KEY) == _console("jobs", f"{TEST_JOB}-retry1")


def test_a_resumed_try_keeps_the_url_it_stored_when_it_deferred(monkeypatch, xcom, on_aws):
    """A try resumed after deferring renders its request anew (the planned name): the stored URL wins."""
    monkeypatch.setattr(links, "_in_task_process", lambda: True)
    link = links.SageMakerTrainingJobLink()
    xcom[link.xcom_key] = _console("jobs", f"{TEST_JOB}-retry1")
    assert link.get_link(_training(TEST_JOB), ti_key=TI_KEY) == _console("jobs", f"{TEST_JOB}-retry1")


def test_the_api_server_links_a_running_provider_task_from_its_rendered_request(xcom, rendered, on_aws):
    rendered["config"] = {"EndpointName": "cifar10-endpoint-0123456789", "EndpointConfigName": "cfg"}
    operator = provider.SageMakerEndpointOperator(task_id="deploy_endpoint", config={})
    url = links.SageMakerEndpointLink().get_link(operator, ti_key=TI_KEY)
    assert url == _console("endpoints", "cifar10-endpoint-0123456789")


def test_the_region_of_the_result_serves_when_the_connection_names_none(monkeypatch, xcom, rendered):
    monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", json.dumps({"conn_type": "aws"}))
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    xcom["return_value"] = {"Model": {"ModelName": "m1", "ModelArn": "arn:aws:sagemaker:ap-south-1:123456789012:model/m1"}}
    operator = SageMakerCreateModelOnceOperator(task_id="create_model", config={})
    assert links.SageMakerModelLink().get_link(operator, ti_key=TI_KEY) == _console("models", "m1", "ap-south-1")


def test_a_registered_version_links_to_its_group_in_the_console(xcom, rendered, on_aws):
    xcom["return_value"] = f"arn:aws:sagemaker:{TEST_AWS_REGION}:123456789012:model-package/{TEST_GROUP}/3"
    operator = provider.SageMakerRegisterModelVersionOperator(
        task_id="register_model", image_uri="image", model_url="s3://b/model.tar.gz", package_group_name=TEST_GROUP
    )
    assert links.SageMakerModelVersionLink().get_link(operator, ti_key=TI_KEY) == _console("model-registry", TEST_GROUP)


def test_the_provider_transforms_persisted_name_is_used_while_it_runs(xcom, rendered, on_aws):
    xcom["sagemaker_transform_job_details"] = {"job_name": "batch-1", "region_name": TEST_AWS_REGION}
    operator = provider.SageMakerTransformOperator(task_id="batch_transform", config={})
    assert links.SageMakerTransformLink().get_link(operator, ti_key=TI_KEY) == _console("transform-jobs", "batch-1")


def test_a_task_that_named_nothing_has_no_link(xcom, rendered, on_aws):
    operator = SageMakerDeleteEndpointOperator(task_id="delete_endpoint", endpoint_name="{{ ti.xcom_pull() }}")
    assert links.SageMakerDeletedEndpointLink().get_link(operator, ti_key=TI_KEY) == ""
