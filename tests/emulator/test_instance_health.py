"""Endpoint instances are health-checked as on SageMaker: a dead one takes no traffic and is replaced."""
from __future__ import annotations

import contextlib
import json
import os
import signal
import textwrap
import time

import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from include.emulator.sagemaker.hosting import EndpointStore
from include.emulator.serving.fleet import ModelServerFleet
from tests.conftest import TEST_BUCKET, TEST_REGION, client_of, start_emulator
from tests.emulator.hosting_fixtures import create_config, create_model, deploy, instance_variant, invoke_json, unique

pytestmark = pytest.mark.slow

# each answer names the process that served it, so a test sees which instance took the request
PID_PY = textwrap.dedent(
    """
    import json, os

    def model_fn(model_dir):
        return None

    def input_fn(body, content_type):
        return json.loads(body)

    def predict_fn(data, model):
        return {"pid": os.getpid()}

    def output_fn(prediction, accept):
        return json.dumps(prediction), "application/json"
    """
)


@pytest.fixture(scope="module")
def health_emulator(tmp_path_factory):
    """An emulator of its own that health-checks every 0.3 s and replaces after 2 failed pings."""
    server = start_emulator(tmp_path_factory.mktemp("health-state"), health_check_interval_s=0.3,
                            health_check_failures=2)

    def client(name, **kwargs):
        return client_of(server, name, **kwargs)

    clients = {name: client(name) for name in ("sagemaker", "s3", "logs")}
    # one attempt: the test sees each 503 itself rather than botocore retrying it
    clients["runtime"] = client("sagemaker-runtime", config=Config(retries={"total_max_attempts": 1}))
    clients["s3"].create_bucket(Bucket=TEST_BUCKET)
    try:
        yield server, clients
    finally:
        server.stop()


@contextlib.contextmanager
def replacements_held(server):
    """Take every job slot, so a replacement instance waits to load its model until the block ends."""
    slots = server.emulator.job_slots
    taken = 0
    try:
        for _ in range(server.emulator.settings.max_concurrent_jobs):
            assert slots.acquire(timeout=30), "a job slot stayed busy"
            taken += 1
        yield
    finally:
        for _ in range(taken):
            slots.release()


def _two_instance_endpoint(server, clients) -> str:
    model = create_model(clients["sagemaker"], clients["s3"], unique("pid"), {"code/inference.py": PID_PY})
    config = create_config(clients["sagemaker"], unique("pid-cfg"), [instance_variant(model, count=2)])
    endpoint = unique("health-ep")
    described = deploy(clients["sagemaker"], endpoint, config)
    assert described["EndpointStatus"] == "InService", described.get("FailureReason")
    return endpoint


def _servers(server, endpoint):
    return list(server.emulator.store(EndpointStore).find(TEST_REGION, endpoint).deployment.variants["AllTraffic"].servers)


def _answering_pids(clients, endpoint, requests: int = 10) -> list[int]:
    return [invoke_json(clients["runtime"], endpoint, {"x": 1})[0]["pid"] for _ in range(requests)]


def _instance_counts(clients, endpoint) -> tuple[str, int, int]:
    described = clients["sagemaker"].describe_endpoint(EndpointName=endpoint)
    (variant,) = described["ProductionVariants"]
    return described["EndpointStatus"], variant["CurrentInstanceCount"], variant["DesiredInstanceCount"]


def _model_pid(instance) -> int:
    """The pid of the instance's model server itself (``instance.pid`` is the watch process above it)."""
    status, _, body = instance.invoke(b'{"x": 1}', {"Content-Type": "application/json"}, 10)
    assert status == 200, body
    return json.loads(body)["pid"]


def _kill(instance) -> int:
    """kill -9 the instance's model server, as a crash would; its pid."""
    pid = _model_pid(instance)
    os.kill(pid, signal.SIGKILL)
    assert instance.exited(within_s=10)
    return pid


def _wait_for_healthy(clients, endpoint, count: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while _instance_counts(clients, endpoint) != ("InService", count, count):
        assert time.monotonic() < deadline, f"still {_instance_counts(clients, endpoint)}"
        time.sleep(0.2)


def _log_messages(clients, endpoint) -> list[str]:
    logs = clients["logs"]
    group = f"/aws/sagemaker/Endpoints/{endpoint}"
    return [event["message"] for stream in logs.describe_log_streams(logGroupName=group)["logStreams"]
            for event in logs.get_log_events(logGroupName=group, logStreamName=stream["logStreamName"])["events"]]


def test_a_killed_instance_takes_no_traffic_and_is_replaced(health_emulator):
    server, clients = health_emulator
    endpoint = _two_instance_endpoint(server, clients)
    victim, survivor = _servers(server, endpoint)
    survivor_pid = _model_pid(survivor)
    assert set(_answering_pids(clients, endpoint)) == {_model_pid(victim), survivor_pid}

    with replacements_held(server):
        victim_pid = _kill(victim)
        # every request succeeds: the one that meets the dead instance is routed again to the healthy one
        assert _answering_pids(clients, endpoint) == [survivor_pid] * 10
        assert _instance_counts(clients, endpoint) == ("InService", 1, 2)

    _wait_for_healthy(clients, endpoint, 2)
    replacement = next(instance for instance in _servers(server, endpoint) if instance is not survivor)
    replacement_pid = _model_pid(replacement)
    assert replacement_pid not in (victim_pid, survivor_pid)
    assert replacement.instance_id != victim.instance_id
    assert replacement.log_stream.startswith("AllTraffic/i-")
    assert set(_answering_pids(clients, endpoint)) == {survivor_pid, replacement_pid}

    deadline = time.monotonic() + 10
    while True:  # the endpoint's log says what happened, in both instances' streams
        messages = _log_messages(clients, endpoint)
        if (any(f"Replaced by instance {replacement.instance_id}" in message for message in messages)
                and any(f"replacement of instance {victim.instance_id}" in message for message in messages)):
            break
        assert time.monotonic() < deadline, messages
        time.sleep(0.3)
    clients["sagemaker"].delete_endpoint(EndpointName=endpoint)


def test_with_every_instance_dead_invoke_is_service_unavailable_until_replaced(health_emulator):
    server, clients = health_emulator
    endpoint = _two_instance_endpoint(server, clients)
    old_pids = set()

    with replacements_held(server):
        for instance in _servers(server, endpoint):
            old_pids.add(_kill(instance))
        with pytest.raises(ClientError) as excinfo:
            invoke_json(clients["runtime"], endpoint, {"x": 1})
        error = excinfo.value.response
        assert error["Error"]["Code"] == "ServiceUnavailable"
        assert error["ResponseMetadata"]["HTTPStatusCode"] == 503
        assert "no healthy instance" in error["Error"]["Message"]
        deadline = time.monotonic() + 10
        while _instance_counts(clients, endpoint) != ("InService", 0, 2):  # SageMaker does not flip the status
            assert time.monotonic() < deadline, _instance_counts(clients, endpoint)
            time.sleep(0.1)

    _wait_for_healthy(clients, endpoint, 2)
    pids = set(_answering_pids(clients, endpoint))
    assert len(pids) == 2 and not pids & old_pids
    clients["sagemaker"].delete_endpoint(EndpointName=endpoint)


def test_a_deleted_endpoint_is_not_healed(health_emulator):
    server, clients = health_emulator
    fleet = server.emulator.store(ModelServerFleet)
    before = set(fleet.running_pids())
    endpoint = _two_instance_endpoint(server, clients)
    victim, _ = _servers(server, endpoint)

    with replacements_held(server):
        _kill(victim)
        deadline = time.monotonic() + 10
        while _instance_counts(clients, endpoint)[1] != 1:  # the monitor has seen it; its replacement waits
            assert time.monotonic() < deadline, _instance_counts(clients, endpoint)
            time.sleep(0.1)
        clients["sagemaker"].delete_endpoint(EndpointName=endpoint)

    clients["sagemaker"].get_waiter("endpoint_deleted").wait(EndpointName=endpoint,
                                                             WaiterConfig={"Delay": 1, "MaxAttempts": 30})
    time.sleep(1.0)  # several health-check periods: nothing comes back
    assert set(fleet.running_pids()) <= before


def test_an_updating_endpoint_is_not_healed_and_its_new_fleet_serves(health_emulator):
    server, clients = health_emulator
    endpoint = _two_instance_endpoint(server, clients)
    old_deployment = server.emulator.store(EndpointStore).find(TEST_REGION, endpoint).deployment
    victim, survivor = _servers(server, endpoint)
    survivor_pid = _model_pid(survivor)
    model = create_model(clients["sagemaker"], clients["s3"], unique("pid-v2"), {"code/inference.py": PID_PY})
    new_config = create_config(clients["sagemaker"], unique("pid-v2-cfg"), [instance_variant(model, count=2)])

    with replacements_held(server):
        victim_pid = _kill(victim)
        assert _answering_pids(clients, endpoint, 4) == [survivor_pid] * 4
        clients["sagemaker"].update_endpoint(EndpointName=endpoint, EndpointConfigName=new_config)
        assert _answering_pids(clients, endpoint, 4) == [survivor_pid] * 4  # the old fleet serves meanwhile

    _wait_for_healthy(clients, endpoint, 2)
    assert clients["sagemaker"].describe_endpoint(EndpointName=endpoint)["EndpointConfigName"] == new_config
    assert victim in old_deployment.variants["AllTraffic"].servers  # never replaced: the update retired it
    assert not set(_answering_pids(clients, endpoint)) & {victim_pid, survivor_pid}
    clients["sagemaker"].delete_endpoint(EndpointName=endpoint)
