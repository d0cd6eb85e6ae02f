"""Models, endpoint configs and endpoints on the local SageMaker: real model servers behind them."""
from __future__ import annotations

import json
import os
import time

import pytest
from botocore.exceptions import ClientError, WaiterError

from include.emulator.serving.fleet import ModelServerFleet
from tests.conftest import TEST_REGION, TEST_ROLE_ARN
from tests.emulator.hosting_fixtures import (
    FAILING_MODEL_FN_PY,
    IMAGE,
    create_config,
    create_model,
    deploy,
    instance_variant,
    invoke_json,
    scaler_files,
    unique,
    wait_for_status,
)

ACCOUNT = "123456789012"


def _arn(kind: str, name: str) -> str:
    return f"arn:aws:sagemaker:{TEST_REGION}:{ACCOUNT}:{kind}/{name.lower()}"


def _error(excinfo) -> tuple[str, str]:
    return excinfo.value.response["Error"]["Code"], excinfo.value.response["Error"]["Message"]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _server_pids(emulator) -> set[int]:
    return set(emulator.emulator.store(ModelServerFleet).running_pids())


# --- models and endpoint configs: records only, no servers -----------------------------------------

def test_model_lifecycle_and_duplicate(sagemaker_client, s3_client):
    name = create_model(sagemaker_client, s3_client, unique("Model"), scaler_files(2, "v1"))
    sagemaker_client.add_tags(ResourceArn=_arn("model", name), Tags=[{"Key": "team", "Value": "ml"}])

    described = sagemaker_client.describe_model(ModelName=name)
    assert described["ModelArn"] == _arn("model", name)
    assert described["PrimaryContainer"]["Image"] == IMAGE
    assert described["PrimaryContainer"]["Environment"] == {"SAGEMAKER_PROGRAM": "inference.py"}
    assert described["ExecutionRoleArn"] == TEST_ROLE_ARN
    listed = sagemaker_client.list_models(NameContains=name)["Models"]
    assert [model["ModelName"] for model in listed] == [name]

    with pytest.raises(ClientError) as excinfo:
        create_model(sagemaker_client, s3_client, name, scaler_files(2, "v1"))
    assert _error(excinfo) == ("ValidationException", f'Cannot create already existing model "{_arn("model", name)}".')

    sagemaker_client.delete_model(ModelName=name)
    with pytest.raises(ClientError) as excinfo:
        sagemaker_client.describe_model(ModelName=name)
    assert _error(excinfo) == ("ValidationException", f'Could not find model "{_arn("model", name)}".')
    assert sagemaker_client.list_tags(ResourceArn=_arn("model", name))["Tags"] == []


def test_create_model_needs_a_container(sagemaker_client):
    with pytest.raises(ClientError) as excinfo:
        sagemaker_client.create_model(ModelName=unique("bare"), ExecutionRoleArn=TEST_ROLE_ARN)
    code, message = _error(excinfo)
    assert code == "ValidationException" and "PrimaryContainer or Containers" in message


def test_endpoint_config_lifecycle(sagemaker_client, s3_client):
    model = create_model(sagemaker_client, s3_client, unique("cfg-model"), scaler_files(2, "v1"))
    name = unique("cfg")
    sagemaker_client.create_endpoint_config(
        EndpointConfigName=name,
        ProductionVariants=[{"VariantName": "AllTraffic", "ModelName": model,
                             "InstanceType": "ml.m5.large", "InitialInstanceCount": 1}],
        Tags=[{"Key": "workload", "Value": "test"}],
    )
    described = sagemaker_client.describe_endpoint_config(EndpointConfigName=name)
    assert described["EndpointConfigArn"] == _arn("endpoint-config", name)
    assert described["ProductionVariants"][0]["InitialVariantWeight"] == 1.0
    assert sagemaker_client.list_tags(ResourceArn=described["EndpointConfigArn"])["Tags"] == [
        {"Key": "workload", "Value": "test"}]
    assert name in [c["EndpointConfigName"] for c in sagemaker_client.list_endpoint_configs(NameContains=name)["EndpointConfigs"]]

    with pytest.raises(ClientError) as excinfo:
        create_config(sagemaker_client, name, [instance_variant(model)])
    assert _error(excinfo)[1] == f'Cannot create already existing endpoint configuration "{_arn("endpoint-config", name)}".'

    sagemaker_client.delete_endpoint_config(EndpointConfigName=name)
    with pytest.raises(ClientError) as excinfo:
        sagemaker_client.describe_endpoint_config(EndpointConfigName=name)
    assert _error(excinfo) == ("ValidationException",
                               f'Could not find endpoint configuration "{_arn("endpoint-config", name)}".')


def test_endpoint_config_refuses_unknown_model_and_bad_variants(sagemaker_client, s3_client):
    with pytest.raises(ClientError) as excinfo:
        create_config(sagemaker_client, unique("cfg"), [instance_variant("no-such-model")])
    assert _error(excinfo) == ("ValidationException", f'Could not find model "{_arn("model", "no-such-model")}".')

    model = create_model(sagemaker_client, s3_client, unique("cfg-model"), scaler_files(2, "v1"))
    with pytest.raises(ClientError) as excinfo:
        create_config(sagemaker_client, unique("cfg"), [instance_variant(model, "A"), instance_variant(model, "A")])
    assert "variant names must be unique" in _error(excinfo)[1]
    with pytest.raises(ClientError) as excinfo:
        create_config(sagemaker_client, unique("cfg"), [{"VariantName": "A", "ModelName": model}])
    assert "InstanceType and InitialInstanceCount, or a ServerlessConfig" in _error(excinfo)[1]


def test_unknown_endpoint_is_a_validation_exception(sagemaker_client):
    arn = _arn("endpoint", "no-such-endpoint")
    for call in (
        lambda: sagemaker_client.describe_endpoint(EndpointName="no-such-endpoint"),
        lambda: sagemaker_client.delete_endpoint(EndpointName="no-such-endpoint"),
        lambda: sagemaker_client.update_endpoint(EndpointName="no-such-endpoint", EndpointConfigName="x"),
    ):
        with pytest.raises(ClientError) as excinfo:
            call()
        assert _error(excinfo) == ("ValidationException", f'Could not find endpoint "{arn}".')
    with pytest.raises(ClientError) as excinfo:
        sagemaker_client.create_endpoint(EndpointName=unique("ep"), EndpointConfigName="no-such-config")
    assert "Could not find endpoint configuration" in _error(excinfo)[1]


def test_image_that_cannot_serve_locally_fails_the_endpoint(sagemaker_client, s3_client):
    image = "123456789012.dkr.ecr.us-east-1.amazonaws.com/my-custom-server:latest"
    model = create_model(sagemaker_client, s3_client, unique("custom"), scaler_files(2, "v1"), image=image)
    config = create_config(sagemaker_client, unique("custom-cfg"), [instance_variant(model)])
    endpoint = unique("custom-ep")

    described = deploy(sagemaker_client, endpoint, config)
    assert described["EndpointStatus"] == "Failed"
    assert image in described["FailureReason"] and "cannot serve on the local SageMaker" in described["FailureReason"]

    # an existing endpoint, even a failed one, refuses a second create in the words the provider matches
    with pytest.raises(ClientError) as excinfo:
        sagemaker_client.create_endpoint(EndpointName=endpoint, EndpointConfigName=config)
    code, message = _error(excinfo)
    assert code == "ValidationException"
    assert message.startswith("Cannot create already existing endpoint")
    assert message == f'Cannot create already existing endpoint "{_arn("endpoint", endpoint)}".'

    sagemaker_client.delete_endpoint(EndpointName=endpoint)
    sagemaker_client.get_waiter("endpoint_deleted").wait(EndpointName=endpoint, WaiterConfig={"Delay": 1, "MaxAttempts": 30})


def test_missing_model_data_fails_the_endpoint_with_the_s3_uri(sagemaker_client):
    model = unique("nodata")
    sagemaker_client.create_model(
        ModelName=model, ExecutionRoleArn=TEST_ROLE_ARN,
        PrimaryContainer={"Image": IMAGE, "ModelDataUrl": "s3://test-sagemaker-bucket/hosting-tests/absent/model.tar.gz"})
    config = create_config(sagemaker_client, unique("nodata-cfg"), [instance_variant(model)])
    endpoint = unique("nodata-ep")
    described = deploy(sagemaker_client, endpoint, config)
    assert described["EndpointStatus"] == "Failed"
    assert "Failed to download model data(bucket: test-sagemaker-bucket, key: hosting-tests/absent/model.tar.gz)" in described["FailureReason"]
    sagemaker_client.delete_endpoint(EndpointName=endpoint)


# --- endpoints with real model servers -------------------------------------------------------------

@pytest.mark.slow
def test_endpoint_comes_into_service_and_describes_its_variants(sagemaker_client, runtime_client, s3_client, logs_client):
    model = create_model(sagemaker_client, s3_client, unique("scaler"), scaler_files(3, "v1"))
    config = create_config(sagemaker_client, unique("scaler-cfg"), [instance_variant(model)])
    endpoint = unique("scaler-ep")

    response = sagemaker_client.create_endpoint(EndpointName=endpoint, EndpointConfigName=config,
                                                Tags=[{"Key": "ttl-hours", "Value": "1"}])
    assert response["EndpointArn"] == _arn("endpoint", endpoint)
    assert sagemaker_client.describe_endpoint(EndpointName=endpoint)["EndpointStatus"] == "Creating"
    sagemaker_client.get_waiter("endpoint_in_service").wait(EndpointName=endpoint, WaiterConfig={"Delay": 1, "MaxAttempts": 60})

    described = sagemaker_client.describe_endpoint(EndpointName=endpoint)
    assert described["EndpointStatus"] == "InService"
    assert described["EndpointConfigName"] == config
    assert "FailureReason" not in described
    assert described["LastModifiedTime"] >= described["CreationTime"]
    (variant,) = described["ProductionVariants"]
    assert variant["VariantName"] == "AllTraffic"
    assert (variant["CurrentWeight"], variant["DesiredWeight"]) == (1.0, 1.0)
    assert (variant["CurrentInstanceCount"], variant["DesiredInstanceCount"]) == (1, 1)
    assert variant["DeployedImages"][0]["SpecifiedImage"] == IMAGE
    assert sagemaker_client.list_tags(ResourceArn=described["EndpointArn"])["Tags"] == [{"Key": "ttl-hours", "Value": "1"}]
    listed = sagemaker_client.list_endpoints(NameContains=endpoint, StatusEquals="InService")["Endpoints"]
    assert [e["EndpointName"] for e in listed] == [endpoint]

    body, _ = invoke_json(runtime_client, endpoint, {"values": [1, 2]})
    assert body == {"tag": "v1", "outputs": [3, 6]}

    # the model server's output is in CloudWatch Logs, one stream per instance
    group = f"/aws/sagemaker/Endpoints/{endpoint}"
    deadline = time.monotonic() + 10
    while True:
        streams = logs_client.describe_log_streams(logGroupName=group)["logStreams"]
        messages = [event["message"] for stream in streams
                    for event in logs_client.get_log_events(logGroupName=group, logStreamName=stream["logStreamName"])["events"]]
        if any("POST /invocations 200" in message for message in messages) or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    assert [s["logStreamName"].split("/")[0] for s in streams] == ["AllTraffic"]
    assert streams[0]["logStreamName"].split("/")[1].startswith("i-")
    assert any("model loaded" in message for message in messages), messages
    assert any("POST /invocations 200" in message for message in messages), messages

    sagemaker_client.delete_endpoint(EndpointName=endpoint)


@pytest.mark.slow
def test_model_fn_failure_fails_endpoint_with_the_models_error(sagemaker_client, s3_client):
    model = create_model(sagemaker_client, s3_client, unique("broken"), {"code/inference.py": FAILING_MODEL_FN_PY})
    config = create_config(sagemaker_client, unique("broken-cfg"), [instance_variant(model)])
    endpoint = unique("broken-ep")

    described = deploy(sagemaker_client, endpoint, config)
    assert described["EndpointStatus"] == "Failed"
    reason = described["FailureReason"]
    assert "did not pass the ping health check" in reason and "AllTraffic" in reason
    assert "RuntimeError: weights file model.bin is corrupt" in reason
    assert "ProductionVariants" not in described
    with pytest.raises(WaiterError, match="terminal failure state"):
        sagemaker_client.get_waiter("endpoint_in_service").wait(EndpointName=endpoint, WaiterConfig={"Delay": 1, "MaxAttempts": 3})
    sagemaker_client.delete_endpoint(EndpointName=endpoint)


@pytest.mark.slow
def test_delete_endpoint_stops_its_model_server(emulator, sagemaker_client, runtime_client, s3_client):
    before = _server_pids(emulator)
    model = create_model(sagemaker_client, s3_client, unique("del"), scaler_files(1, "v1"))
    config = create_config(sagemaker_client, unique("del-cfg"), [instance_variant(model)])
    endpoint = unique("del-ep")
    assert deploy(sagemaker_client, endpoint, config)["EndpointStatus"] == "InService"
    (pid,) = _server_pids(emulator) - before
    assert _alive(pid)

    sagemaker_client.delete_endpoint(EndpointName=endpoint)
    assert sagemaker_client.describe_endpoint(EndpointName=endpoint)["EndpointStatus"] == "Deleting"
    sagemaker_client.get_waiter("endpoint_deleted").wait(EndpointName=endpoint, WaiterConfig={"Delay": 1, "MaxAttempts": 30})
    assert not _alive(pid)
    assert endpoint not in [e["EndpointName"] for e in sagemaker_client.list_endpoints(NameContains=endpoint)["Endpoints"]]
    with pytest.raises(ClientError) as excinfo:
        invoke_json(runtime_client, endpoint, {"values": [1]})
    assert _error(excinfo)[0] == "ValidationError"


@pytest.mark.slow
def test_update_to_a_good_config_serves_the_new_model(sagemaker_client, runtime_client, s3_client):
    old_model = create_model(sagemaker_client, s3_client, unique("blue"), scaler_files(2, "blue"))
    new_model = create_model(sagemaker_client, s3_client, unique("green"), scaler_files(10, "green"))
    old_config = create_config(sagemaker_client, unique("blue-cfg"), [instance_variant(old_model)])
    new_config = create_config(sagemaker_client, unique("green-cfg"), [instance_variant(new_model)])
    endpoint = unique("bg-ep")
    assert deploy(sagemaker_client, endpoint, old_config)["EndpointStatus"] == "InService"

    sagemaker_client.update_endpoint(EndpointName=endpoint, EndpointConfigName=new_config)
    during = sagemaker_client.describe_endpoint(EndpointName=endpoint)
    assert during["EndpointStatus"] == "Updating"
    assert during["EndpointConfigName"] == old_config
    assert during["PendingDeploymentSummary"]["EndpointConfigName"] == new_config
    # the old fleet serves while the new one starts
    assert invoke_json(runtime_client, endpoint, {"values": [1]})[0]["tag"] == "blue"
    with pytest.raises(ClientError) as excinfo:
        sagemaker_client.update_endpoint(EndpointName=endpoint, EndpointConfigName=new_config)
    assert _error(excinfo)[1] == f'Cannot update in-progress endpoint "{_arn("endpoint", endpoint)}".'

    after = wait_for_status(sagemaker_client, endpoint, {"InService"})
    assert after["EndpointConfigName"] == new_config
    assert "FailureReason" not in after
    assert invoke_json(runtime_client, endpoint, {"values": [1]})[0] == {"tag": "green", "outputs": [10]}
    sagemaker_client.delete_endpoint(EndpointName=endpoint)


@pytest.mark.slow
def test_blue_green_update_drops_no_request_under_concurrent_load(sagemaker_client, runtime_client, s3_client):
    import threading

    old_model = create_model(sagemaker_client, s3_client, unique("load-blue"), scaler_files(2, "blue"))
    new_model = create_model(sagemaker_client, s3_client, unique("load-green"), scaler_files(10, "green"))
    old_config = create_config(sagemaker_client, unique("load-blue-cfg"), [instance_variant(old_model)])
    new_config = create_config(sagemaker_client, unique("load-green-cfg"), [instance_variant(new_model)])
    endpoint = unique("load-ep")
    assert deploy(sagemaker_client, endpoint, old_config)["EndpointStatus"] == "InService"

    answers: list[str] = []
    failures: list[str] = []
    stop = threading.Event()

    def client_loop():
        while not stop.is_set():
            try:
                answers.append(invoke_json(runtime_client, endpoint, {"values": [1]})[0]["tag"])
            except Exception as error:  # any dropped or failed request is what this test looks for
                failures.append(repr(error))

    clients = [threading.Thread(target=client_loop) for _ in range(4)]
    for thread in clients:
        thread.start()
    try:
        time.sleep(0.5)
        sagemaker_client.update_endpoint(EndpointName=endpoint, EndpointConfigName=new_config)
        wait_for_status(sagemaker_client, endpoint, {"InService"})
        time.sleep(0.5)  # requests keep flowing after the switch
    finally:
        stop.set()
        for thread in clients:
            thread.join()
    sagemaker_client.delete_endpoint(EndpointName=endpoint)

    assert failures == [], failures[:5]
    # the old fleet served until the new one was healthy, then the new one took every request
    assert answers[0] == "blue" and answers[-1] == "green"
    assert answers.count("blue") > 4 and answers.count("green") > 4, answers


@pytest.mark.slow
def test_a_request_routed_just_before_an_update_retired_its_instance_reaches_the_new_fleet(
        emulator, sagemaker_client, runtime_client, s3_client, monkeypatch):
    from include.emulator import runtime
    from include.emulator.sagemaker.hosting import EndpointStore

    old_model = create_model(sagemaker_client, s3_client, unique("race-blue"), scaler_files(2, "blue"))
    new_model = create_model(sagemaker_client, s3_client, unique("race-green"), scaler_files(10, "green"))
    old_config = create_config(sagemaker_client, unique("race-blue-cfg"), [instance_variant(old_model)])
    new_config = create_config(sagemaker_client, unique("race-green-cfg"), [instance_variant(new_model)])
    endpoint = unique("race-ep")
    deploy(sagemaker_client, endpoint, old_config)
    old_deployment = emulator.emulator.store(EndpointStore).find(TEST_REGION, endpoint).deployment
    old_pids = {server.pid for server in old_deployment.processes()}

    sagemaker_client.update_endpoint(EndpointName=endpoint, EndpointConfigName=new_config)
    wait_for_status(sagemaker_client, endpoint, {"InService"})
    deadline = time.monotonic() + 30
    while any(_alive(pid) for pid in old_pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(_alive(pid) for pid in old_pids), "the old fleet was not retired"

    # the request read the endpoint's deployment before the switch and reaches the old instance after it
    current = runtime._serving_deployment
    snapshots = iter([old_deployment])
    monkeypatch.setattr(runtime, "_serving_deployment",
                        lambda ctx, name: next(snapshots, None) or current(ctx, name))
    assert invoke_json(runtime_client, endpoint, {"values": [1]})[0] == {"tag": "green", "outputs": [10]}
    sagemaker_client.delete_endpoint(EndpointName=endpoint)


@pytest.mark.slow
def test_failed_update_keeps_old_endpoint_serving(sagemaker_client, runtime_client, s3_client):
    good = create_model(sagemaker_client, s3_client, unique("good"), scaler_files(2, "good"))
    broken = create_model(sagemaker_client, s3_client, unique("broken"), {"code/inference.py": FAILING_MODEL_FN_PY})
    good_config = create_config(sagemaker_client, unique("good-cfg"), [instance_variant(good)])
    broken_config = create_config(sagemaker_client, unique("broken-cfg"), [instance_variant(broken)])
    endpoint = unique("rollback-ep")
    assert deploy(sagemaker_client, endpoint, good_config)["EndpointStatus"] == "InService"

    sagemaker_client.update_endpoint(EndpointName=endpoint, EndpointConfigName=broken_config)
    after = wait_for_status(sagemaker_client, endpoint, {"InService"})
    assert after["EndpointConfigName"] == good_config
    assert "weights file model.bin is corrupt" in after["FailureReason"]
    assert invoke_json(runtime_client, endpoint, {"values": [4]})[0] == {"tag": "good", "outputs": [8]}
    sagemaker_client.delete_endpoint(EndpointName=endpoint)


@pytest.mark.slow
def test_serverless_variant_is_served_by_one_server(emulator, sagemaker_client, runtime_client, s3_client):
    model = create_model(sagemaker_client, s3_client, unique("sls"), scaler_files(5, "serverless"))
    config = create_config(sagemaker_client, unique("sls-cfg"), [{
        "VariantName": "AllTraffic", "ModelName": model,
        "ServerlessConfig": {"MemorySizeInMB": 2048, "MaxConcurrency": 5}}])
    endpoint = unique("sls-ep")
    before = _server_pids(emulator)
    described = deploy(sagemaker_client, endpoint, config)
    assert described["EndpointStatus"] == "InService"
    variant = described["ProductionVariants"][0]
    assert variant["CurrentServerlessConfig"] == {"MemorySizeInMB": 2048, "MaxConcurrency": 5}
    assert "CurrentInstanceCount" not in variant
    assert len(_server_pids(emulator) - before) == 1
    assert invoke_json(runtime_client, endpoint, {"values": [1]})[0]["outputs"] == [5]
    sagemaker_client.delete_endpoint(EndpointName=endpoint)


@pytest.mark.slow
def test_emulator_stop_leaves_no_model_server_running(tmp_path, s3_client):
    """A second emulator of its own, so stopping it leaves the session's emulator alone."""
    import boto3

    from include.emulator.state import Settings
    from include.emulator.gateway import EmulatorServer

    server = EmulatorServer(Settings(port=0, state_dir=tmp_path / "state")).start()
    try:
        clients = {name: boto3.client(name, endpoint_url=server.endpoint_url, region_name=TEST_REGION,
                                      aws_access_key_id="testing", aws_secret_access_key="testing")
                   for name in ("sagemaker", "s3")}
        clients["s3"].create_bucket(Bucket="test-sagemaker-bucket")
        model = create_model(clients["sagemaker"], clients["s3"], unique("stop"), scaler_files(1, "v1"))
        config = create_config(clients["sagemaker"], unique("stop-cfg"), [instance_variant(model, count=2)])
        assert deploy(clients["sagemaker"], unique("stop-ep"), config)["EndpointStatus"] == "InService"
        pids = server.emulator.store(ModelServerFleet).running_pids()
        assert len(pids) == 2 and all(_alive(pid) for pid in pids)
    finally:
        server.stop()
    assert not any(_alive(pid) for pid in pids)


@pytest.mark.slow
def test_airflow_endpoint_operator_creates_then_updates(emulator, sagemaker_client, runtime_client, s3_client, monkeypatch):
    """The provider's SageMakerEndpointOperator: a second create on the same name becomes an update."""
    from airflow.providers.amazon.aws.operators.sagemaker import SageMakerEndpointOperator

    monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", json.dumps({
        "conn_type": "aws", "login": "testing", "password": "testing",
        "extra": {"region_name": TEST_REGION, "endpoint_url": emulator.endpoint_url}}))
    first = unique("af-v1")
    second = unique("af-v2")
    for name, scale in ((first, 2), (second, 7)):
        create_model(sagemaker_client, s3_client, name, scaler_files(scale, name))
    endpoint = unique("af-ep")

    def run(config: dict) -> dict:
        operator = SageMakerEndpointOperator(task_id="deploy", config=config, check_interval=1, max_ingestion_time=120)
        return operator.execute({})

    result = run({"EndpointConfig": {"EndpointConfigName": f"{first}-cfg", "ProductionVariants": [instance_variant(first)]},
                  "Endpoint": {"EndpointName": endpoint, "EndpointConfigName": f"{first}-cfg"}})
    assert result["Endpoint"]["EndpointStatus"] == "InService"
    assert invoke_json(runtime_client, endpoint, {"values": [1]})[0]["tag"] == first

    result = run({"EndpointConfig": {"EndpointConfigName": f"{second}-cfg", "ProductionVariants": [instance_variant(second)]},
                  "Endpoint": {"EndpointName": endpoint, "EndpointConfigName": f"{second}-cfg"}})
    assert result["Endpoint"]["EndpointConfigName"] == f"{second}-cfg"
    assert result["Endpoint"]["EndpointStatus"] == "InService"
    assert invoke_json(runtime_client, endpoint, {"values": [1]})[0] == {"tag": second, "outputs": [7]}
    sagemaker_client.delete_endpoint(EndpointName=endpoint)


@pytest.mark.slow
def test_delete_while_creating_leaves_nothing_running(emulator, sagemaker_client, s3_client):
    slow_loader = "import time\n\ndef model_fn(model_dir):\n    time.sleep(30)\n    return 1\n"
    model = create_model(sagemaker_client, s3_client, unique("slow"), {"code/inference.py": slow_loader})
    config = create_config(sagemaker_client, unique("slow-cfg"), [instance_variant(model)])
    endpoint = unique("slow-ep")
    before = _server_pids(emulator)
    sagemaker_client.create_endpoint(EndpointName=endpoint, EndpointConfigName=config)
    deadline = time.monotonic() + 20
    while not _server_pids(emulator) - before:  # the server is up and loading its model
        assert time.monotonic() < deadline, "the model server never started"
        time.sleep(0.1)
    (pid,) = _server_pids(emulator) - before
    assert sagemaker_client.describe_endpoint(EndpointName=endpoint)["EndpointStatus"] == "Creating"

    sagemaker_client.delete_endpoint(EndpointName=endpoint)
    sagemaker_client.get_waiter("endpoint_deleted").wait(EndpointName=endpoint, WaiterConfig={"Delay": 1, "MaxAttempts": 20})
    assert not _alive(pid)
