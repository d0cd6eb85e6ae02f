"""InvokeEndpoint on the local SageMaker, and the handler contract its model servers follow."""
from __future__ import annotations

import io
import json
import textwrap

import numpy as np
import pytest
from botocore.exceptions import ClientError

from include.emulator import runtime
from include.emulator.serving import model_server
from include.emulator.serving.handlers import InferenceHandlers, decode_body, error_message, error_status
from tests.conftest import TEST_REGION
from tests.emulator.hosting_fixtures import (
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


def _error(excinfo) -> tuple[str, str]:
    return excinfo.value.response["Error"]["Code"], excinfo.value.response["Error"]["Message"]


@pytest.fixture(scope="module")
def scaler_endpoint(sagemaker_client, s3_client):
    """One endpoint for the module: the scaler model (x3, tag "rt") on one instance."""
    model = create_model(sagemaker_client, s3_client, unique("rt-scaler"), scaler_files(3, "rt"))
    config = create_config(sagemaker_client, unique("rt-cfg"), [instance_variant(model)])
    endpoint = unique("rt-ep")
    described = deploy(sagemaker_client, endpoint, config)
    assert described["EndpointStatus"] == "InService", described.get("FailureReason")
    yield endpoint
    sagemaker_client.delete_endpoint(EndpointName=endpoint)


# --- errors that need no model server --------------------------------------------------------------

def test_unknown_endpoint_is_a_validation_error(runtime_client):
    with pytest.raises(ClientError) as excinfo:
        runtime_client.invoke_endpoint(EndpointName="no-such-endpoint", Body=b"{}", ContentType="application/json")
    assert _error(excinfo) == ("ValidationError", f"Endpoint no-such-endpoint of account {ACCOUNT} not found.")
    assert excinfo.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400


def test_endpoint_not_in_service_is_a_validation_error(sagemaker_client, runtime_client, s3_client):
    image = "123456789012.dkr.ecr.us-east-1.amazonaws.com/not-a-framework-image:1"
    model = create_model(sagemaker_client, s3_client, unique("rt-failed"), scaler_files(1, "x"), image=image)
    endpoint = unique("rt-failed-ep")
    assert deploy(sagemaker_client, endpoint, create_config(sagemaker_client, unique("rt-failed-cfg"),
                                                            [instance_variant(model)]))["EndpointStatus"] == "Failed"
    with pytest.raises(ClientError) as excinfo:
        invoke_json(runtime_client, endpoint, {"values": [1]})
    code, message = _error(excinfo)
    assert code == "ValidationError" and "is not in service" in message and "Failed" in message
    sagemaker_client.delete_endpoint(EndpointName=endpoint)


# --- one endpoint, many requests -------------------------------------------------------------------

@pytest.mark.slow
def test_invoke_answers_json_with_the_variant_header(scaler_endpoint, runtime_client):
    body, response = invoke_json(runtime_client, scaler_endpoint, {"values": [1, 2.5]})
    assert body == {"tag": "rt", "outputs": [3, 7.5]}
    assert response["ContentType"] == "application/json"
    assert response["InvokedProductionVariant"] == "AllTraffic"
    assert "CustomAttributes" not in response


@pytest.mark.slow
def test_custom_attributes_pass_both_ways(scaler_endpoint, runtime_client):
    _, response = invoke_json(runtime_client, scaler_endpoint, {"values": [1]}, CustomAttributes="trace=abc")
    assert response["CustomAttributes"] == "seen=trace=abc"


@pytest.mark.slow
def test_handler_exception_is_a_model_error_and_the_server_keeps_serving(scaler_endpoint, runtime_client):
    with pytest.raises(ClientError) as excinfo:
        invoke_json(runtime_client, scaler_endpoint, {"fail": "cannot scale a negative tensor"})
    code, message = _error(excinfo)
    response = excinfo.value.response
    assert code == "ModelError"
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 424
    assert message.startswith('Received server error (500) from primary with message "')
    assert "cannot scale a negative tensor" in message
    assert f"/aws/sagemaker/Endpoints/{scaler_endpoint} in account {ACCOUNT}" in message
    assert response["OriginalStatusCode"] == 500
    assert "cannot scale a negative tensor" in response["OriginalMessage"]
    assert response["LogStreamArn"] == (
        f"arn:aws:logs:{TEST_REGION}:{ACCOUNT}:log-group:/aws/sagemaker/Endpoints/{scaler_endpoint}")

    assert invoke_json(runtime_client, scaler_endpoint, {"values": [2]})[0]["outputs"] == [6]


@pytest.mark.slow
def test_exception_with_status_code_400_is_a_client_error(scaler_endpoint, runtime_client):
    with pytest.raises(ClientError) as excinfo:
        invoke_json(runtime_client, scaler_endpoint, {"no": "values"})
    code, message = _error(excinfo)
    assert code == "ModelError"
    assert excinfo.value.response["OriginalStatusCode"] == 400
    assert message.startswith('Received client error (400) from primary with message "')
    assert "the request needs 'values'" in message


@pytest.mark.slow
def test_bad_bodies_never_stop_the_server(scaler_endpoint, runtime_client):
    for body, content_type in ((b"{not json", "application/json"), (b"\xff\xfe\x00", "application/json"),
                               (b"1,2", "text/csv")):
        with pytest.raises(ClientError) as excinfo:
            runtime_client.invoke_endpoint(EndpointName=scaler_endpoint, Body=body, ContentType=content_type)
        assert _error(excinfo)[0] == "ModelError"
    assert invoke_json(runtime_client, scaler_endpoint, {"values": [1]})[0]["outputs"] == [3]


@pytest.mark.slow
def test_payload_over_6_mb_is_refused(scaler_endpoint, runtime_client):
    with pytest.raises(ClientError) as excinfo:
        runtime_client.invoke_endpoint(EndpointName=scaler_endpoint, Body=b" " * (6 * 1024 * 1024 + 1),
                                       ContentType="application/json")
    assert excinfo.value.response["ResponseMetadata"]["HTTPStatusCode"] == 413
    assert "HTTP content length exceeded 6291456 bytes" in str(excinfo.value)


@pytest.mark.slow
def test_slow_container_times_out_as_model_error(scaler_endpoint, runtime_client, monkeypatch):
    monkeypatch.setattr(runtime, "INVOCATION_TIMEOUT_S", 0.5)  # SageMaker's 60 s, shortened for the test
    with pytest.raises(ClientError) as excinfo:
        invoke_json(runtime_client, scaler_endpoint, {"values": [1], "sleep": 1.5})
    code, message = _error(excinfo)
    assert code == "ModelError" and "Your invocation timed out while waiting for a response from container primary" in message
    monkeypatch.setattr(runtime, "INVOCATION_TIMEOUT_S", 60.0)
    assert invoke_json(runtime_client, scaler_endpoint, {"values": [1]})[0]["outputs"] == [3]


# --- routing --------------------------------------------------------------------------------------

@pytest.mark.slow
def test_weighted_variants_both_receive_traffic_and_target_variant_is_honoured(sagemaker_client, runtime_client, s3_client):
    model_a = create_model(sagemaker_client, s3_client, unique("rt-a"), scaler_files(1, "a"))
    model_b = create_model(sagemaker_client, s3_client, unique("rt-b"), scaler_files(2, "b"))
    config = create_config(sagemaker_client, unique("rt-ab-cfg"),
                           [instance_variant(model_a, "VariantA", weight=1), instance_variant(model_b, "VariantB", weight=1)])
    endpoint = unique("rt-ab-ep")
    described = deploy(sagemaker_client, endpoint, config)
    assert described["EndpointStatus"] == "InService", described.get("FailureReason")
    assert [v["VariantName"] for v in described["ProductionVariants"]] == ["VariantA", "VariantB"]

    seen = {}
    for _ in range(40):
        body, response = invoke_json(runtime_client, endpoint, {"values": [1]})
        seen.setdefault(response["InvokedProductionVariant"], set()).add(body["tag"])
    assert seen == {"VariantA": {"a"}, "VariantB": {"b"}}

    for _ in range(5):
        body, response = invoke_json(runtime_client, endpoint, {"values": [1]}, TargetVariant="VariantB")
        assert (response["InvokedProductionVariant"], body["tag"]) == ("VariantB", "b")
    with pytest.raises(ClientError) as excinfo:
        invoke_json(runtime_client, endpoint, {"values": [1]}, TargetVariant="VariantC")
    assert _error(excinfo)[0] == "ValidationError" and "VariantC" in _error(excinfo)[1]

    # all traffic to VariantA, as UpdateEndpointWeightsAndCapacities asks
    sagemaker_client.update_endpoint_weights_and_capacities(EndpointName=endpoint, DesiredWeightsAndCapacities=[
        {"VariantName": "VariantA", "DesiredWeight": 1.0}, {"VariantName": "VariantB", "DesiredWeight": 0.0}])
    described = wait_for_status(sagemaker_client, endpoint, {"InService"})
    assert [v["CurrentWeight"] for v in described["ProductionVariants"]] == [1.0, 0.0]
    assert {invoke_json(runtime_client, endpoint, {"values": [1]})[1]["InvokedProductionVariant"] for _ in range(10)} == {"VariantA"}
    sagemaker_client.delete_endpoint(EndpointName=endpoint)


@pytest.mark.slow
def test_endpoint_still_creating_is_not_invocable(sagemaker_client, runtime_client, s3_client):
    slow_loader = textwrap.dedent(
        """
        import time
        def model_fn(model_dir):
            time.sleep(3)
            return "ready"
        def transform_fn(model, input_data, content_type, accept):
            return '"' + model + '"', "application/json"
        """)
    model = create_model(sagemaker_client, s3_client, unique("rt-slow"), {"code/inference.py": slow_loader})
    endpoint = unique("rt-slow-ep")
    sagemaker_client.create_endpoint(EndpointName=endpoint, EndpointConfigName=create_config(
        sagemaker_client, unique("rt-slow-cfg"), [instance_variant(model)]))
    with pytest.raises(ClientError) as excinfo:
        invoke_json(runtime_client, endpoint, {})
    assert _error(excinfo)[0] == "ValidationError" and "Creating" in _error(excinfo)[1]
    sagemaker_client.get_waiter("endpoint_in_service").wait(EndpointName=endpoint, WaiterConfig={"Delay": 1, "MaxAttempts": 30})
    assert invoke_json(runtime_client, endpoint, {})[0] == "ready"
    sagemaker_client.delete_endpoint(EndpointName=endpoint)


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:`torch.jit:FutureWarning")
def test_default_handlers_serve_a_torchscript_model(sagemaker_client, runtime_client, s3_client):
    """No inference.py: the PyTorch image's defaults load model.pt and run it on the decoded body."""
    import torch

    layer = torch.nn.Linear(2, 1)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[1.0, 10.0]]))
        layer.bias.fill_(0.5)
    buffer = io.BytesIO()
    torch.jit.save(torch.jit.script(layer), buffer)
    model = create_model(sagemaker_client, s3_client, unique("rt-torch"), {"model.pt": buffer.getvalue()})
    endpoint = unique("rt-torch-ep")
    described = deploy(sagemaker_client, endpoint,
                       create_config(sagemaker_client, unique("rt-torch-cfg"), [instance_variant(model)]))
    assert described["EndpointStatus"] == "InService", described.get("FailureReason")

    body, response = invoke_json(runtime_client, endpoint, [[1.0, 2.0], [0.0, 1.0]])
    assert body == [[21.5], [10.5]]
    csv = runtime_client.invoke_endpoint(EndpointName=endpoint, Body=b"1,2\n", ContentType="text/csv", Accept="text/csv")
    assert csv["ContentType"] == "text/csv"
    assert float(csv["Body"].read().decode().strip()) == 21.5
    sagemaker_client.delete_endpoint(EndpointName=endpoint)


# --- the handler contract, without a server --------------------------------------------------------

def _handlers(tmp_path, script: str, program: str = "inference.py") -> InferenceHandlers:
    (tmp_path / "code").mkdir(exist_ok=True)
    (tmp_path / "code" / program).write_text(textwrap.dedent(script))
    handlers = InferenceHandlers(tmp_path, program=program)
    handlers.load()
    return handlers


def test_transform_fn_gets_text_bodies_and_default_accept(tmp_path):
    handlers = _handlers(tmp_path, """
        import json
        def model_fn(model_dir):
            return "upper"
        def transform_fn(model, input_data, content_type, accept):
            return json.dumps({"text": input_data.upper(), "accept": accept})
        """, program="serve.py")
    body, content_type = handlers.invoke(b'"hello"', "application/json", None)
    assert json.loads(body) == {"text": '"HELLO"', "accept": "application/json"}
    assert content_type == "application/json"


def test_handlers_with_a_context_argument_receive_the_request(tmp_path):
    handlers = _handlers(tmp_path, """
        def model_fn(model_dir, context):
            return context.system_properties["model_dir"]
        def input_fn(input_data, content_type, context):
            return context.get_request_header(0, "x-amzn-sagemaker-custom-attributes")
        def predict_fn(data, model):
            return {"attributes": data, "model_dir": model}
        """)
    from include.emulator.serving.handlers import InferenceContext

    context = InferenceContext(tmp_path, {"X-Amzn-SageMaker-Custom-Attributes": "a=1"})
    body, content_type = handlers.invoke(b"{}", "application/json", "application/json", context)
    assert json.loads(body) == {"attributes": "a=1", "model_dir": str(tmp_path)}


def test_transform_fn_together_with_input_fn_is_refused(tmp_path):
    with pytest.raises(ValueError, match="Cannot use transform_fn implementation in conjunction"):
        _handlers(tmp_path, """
            def model_fn(model_dir): return 1
            def input_fn(data, content_type): return data
            def transform_fn(model, data, content_type, accept): return data
            """)


def test_error_status_follows_the_exceptions_status_code():
    from sagemaker_inference.errors import GenericInferenceToolkitError

    class Teapot(Exception):
        status_code = 418

    class Odd(Exception):
        status_code = "400"

    assert error_status(Teapot("short and stout")) == 418
    assert error_status(GenericInferenceToolkitError(400, "bad shape")) == 400
    assert error_message(GenericInferenceToolkitError(400, "bad shape")) == "bad shape"
    assert error_status(Odd()) == 500
    assert error_status(ValueError("x")) == 500


def test_npy_bodies_never_unpickle():
    safe = io.BytesIO()
    np.save(safe, np.arange(3))
    assert decode_body(safe.getvalue(), "application/x-npy").tolist() == [0, 1, 2]
    pickled = io.BytesIO()
    np.save(pickled, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match="allow_pickle"):
        decode_body(pickled.getvalue(), "application/x-npy")


def test_model_server_refuses_a_non_loopback_address(tmp_path):
    with pytest.raises(SystemExit):
        model_server.main(["--model-dir", str(tmp_path), "--host", "0.0.0.0"])
