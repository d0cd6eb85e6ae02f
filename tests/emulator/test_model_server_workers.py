"""SAGEMAKER_MODEL_SERVER_WORKERS: worker processes per hosting instance, as the framework images' model servers run.

Each answer of the handler below names the process that served it and when it started and ended, so
a test sees parallelism in the answers themselves (distinct workers, overlapping intervals), never in
a wall-clock budget that a busy machine would break.
"""
from __future__ import annotations

import textwrap
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from include.emulator.serving.fleet import ModelServerFleet
from include.emulator.serving.model_server import WORKERS_ENV, worker_count
from tests.conftest import client_of, raw_request
from tests.emulator.hosting_fixtures import (
    HELPERS_PY,
    create_config,
    create_model,
    instance_variant,
    invoke_json,
    unique,
    wait_for_status,
)

SLEEPER_PY = textwrap.dedent(
    """
    import json, os, time

    from helpers import BadRequest

    def model_fn(model_dir):
        gate = os.environ.get("GATE_DIR")
        if gate:  # the test decides when this worker's model has loaded
            open(os.path.join(gate, f"loading-{os.getpid()}"), "w").close()
            while not os.path.exists(os.path.join(gate, f"release-{os.getpid()}")):
                time.sleep(0.05)
            open(os.path.join(gate, f"loaded-{os.getpid()}"), "w").close()
        if os.environ.get("FAIL_ONE_WORKER"):
            try:  # the first worker to get here fails, the others load
                os.close(os.open(os.path.join(model_dir, "claimed"), os.O_CREAT | os.O_EXCL))
            except FileExistsError:
                return {"loaded_by": os.getpid()}
            raise RuntimeError("out of memory loading the weights")
        return {"loaded_by": os.getpid()}

    def input_fn(body, content_type):
        return json.loads(body)

    def predict_fn(data, model):
        if data.get("fail"):
            raise ValueError(data["fail"])
        if data.get("bad"):
            raise BadRequest(data["bad"])
        if data.get("exit"):
            os._exit(3)
        started = time.time()
        time.sleep(data.get("sleep", 0))
        return {"pid": os.getpid(), "loaded_by": model["loaded_by"], "started": started, "ended": time.time()}

    def output_fn(prediction, accept):
        return json.dumps(prediction), "application/json"
    """
)
FILES = {"code/inference.py": SLEEPER_PY, "code/helpers.py": HELPERS_PY}


def _endpoint(sagemaker_client, s3_client, environment: dict, *, wait: bool = True) -> str:
    model = create_model(sagemaker_client, s3_client, unique("workers"), FILES, environment=environment)
    config = create_config(sagemaker_client, unique("workers-cfg"), [instance_variant(model)])
    endpoint = unique("workers-ep")
    sagemaker_client.create_endpoint(EndpointName=endpoint, EndpointConfigName=config)
    if wait:
        wait_for_status(sagemaker_client, endpoint, {"InService", "Failed"})
    return endpoint


def _concurrently(runtime_client, endpoint: str, count: int, sleep: float) -> list[dict]:
    with ThreadPoolExecutor(count) as pool:
        futures = [pool.submit(invoke_json, runtime_client, endpoint, {"sleep": sleep}) for _ in range(count)]
        return [future.result()[0] for future in futures]


def _processes_of(endpoint: str) -> list[psutil.Process]:
    """Every process whose command line names the endpoint's instance folders (front, workers, watch)."""
    found = []
    for process in psutil.process_iter(["cmdline"]):
        if any(f"/endpoints/{endpoint}/" in part for part in process.info["cmdline"] or []):
            found.append(process)
    return found


def _wait_until(condition, timeout: float, message: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, message
        time.sleep(0.1)


@pytest.mark.parametrize("value, expected", [(None, 1), ("", 1), (" ", 1), ("1", 1), ("4", 4), (" 3 ", 3)])
def test_worker_count_reads_the_variable_and_defaults_to_one(value, expected):
    assert worker_count({} if value is None else {WORKERS_ENV: value}) == expected


@pytest.mark.parametrize("value", ["four", "0", "-2", "1.5", "4_0", "0x4"])
def test_worker_count_refuses_anything_but_a_whole_number_of_at_least_one(value):
    with pytest.raises(ValueError, match=f"SAGEMAKER_MODEL_SERVER_WORKERS is {value!r}: it must be a whole number"):
        worker_count({WORKERS_ENV: value})


@pytest.mark.slow
def test_four_workers_answer_four_concurrent_requests_at_once(emulator, sagemaker_client, runtime_client, s3_client):
    fleet = emulator.emulator.store(ModelServerFleet)
    before = set(fleet.running_pids())
    endpoint = _endpoint(sagemaker_client, s3_client, {WORKERS_ENV: "4"})
    assert sagemaker_client.describe_endpoint(EndpointName=endpoint)["EndpointStatus"] == "InService"
    assert len(set(fleet.running_pids()) - before) == 1  # one instance, whose workers are its own processes

    answers = _concurrently(runtime_client, endpoint, 4, sleep=0.5)
    workers = {answer["pid"] for answer in answers}
    assert len(workers) == 4, answers
    assert all(answer["loaded_by"] == answer["pid"] for answer in answers)  # each worker loaded its own model
    # every request started before any ended: they ran side by side, not one after another
    assert max(answer["started"] for answer in answers) < min(answer["ended"] for answer in answers), answers

    # a handler's exception answers with its status and message, and every worker goes on serving
    with pytest.raises(ClientError) as excinfo:
        invoke_json(runtime_client, endpoint, {"bad": "the request needs 'values'"})
    assert excinfo.value.response["OriginalStatusCode"] == 400
    assert "the request needs 'values'" in excinfo.value.response["Error"]["Message"]
    with pytest.raises(ClientError) as excinfo:
        invoke_json(runtime_client, endpoint, {"fail": "weights are NaN"})
    assert excinfo.value.response["OriginalStatusCode"] == 500
    assert "weights are NaN" in excinfo.value.response["Error"]["Message"]
    again = _concurrently(runtime_client, endpoint, 4, sleep=0.2)
    assert {answer["pid"] for answer in again} == workers
    sagemaker_client.delete_endpoint(EndpointName=endpoint)


@pytest.mark.slow
def test_one_worker_by_default_answers_one_request_at_a_time(sagemaker_client, runtime_client, s3_client):
    endpoint = _endpoint(sagemaker_client, s3_client, {})
    answers = sorted(_concurrently(runtime_client, endpoint, 2, sleep=0.3), key=lambda answer: answer["started"])
    assert answers[0]["pid"] == answers[1]["pid"]
    assert answers[0]["ended"] <= answers[1]["started"], answers  # user handlers need not be thread-safe
    sagemaker_client.delete_endpoint(EndpointName=endpoint)


@pytest.mark.slow
def test_ping_answers_200_only_once_every_worker_has_loaded(emulator, sagemaker_client, runtime_client, s3_client,
                                                            tmp_path):
    endpoint = _endpoint(sagemaker_client, s3_client, {WORKERS_ENV: "2", "GATE_DIR": str(tmp_path)}, wait=False)
    _wait_until(lambda: len(list(tmp_path.glob("loading-*"))) == 2, 60, "the two workers never started loading")
    first, second = sorted(path.name.split("-")[1] for path in tmp_path.glob("loading-*"))
    (tmp_path / f"release-{first}").touch()
    _wait_until(lambda: (tmp_path / f"loaded-{first}").exists(), 10, "the released worker never loaded")

    instance_dir = next(Path(emulator.emulator.settings.state_dir, "endpoints", endpoint).iterdir())
    port = int((instance_dir / "server.port").read_text())
    for _ in range(5):  # one worker loaded, the other still loading: not healthy yet
        status, _, body = raw_request(f"http://127.0.0.1:{port}", "GET", "/ping")
        assert (status, b"model is loading" in body) == (503, True)
        assert sagemaker_client.describe_endpoint(EndpointName=endpoint)["EndpointStatus"] == "Creating"
        time.sleep(0.2)

    (tmp_path / f"release-{second}").touch()
    assert wait_for_status(sagemaker_client, endpoint, {"InService", "Failed"})["EndpointStatus"] == "InService"
    assert raw_request(f"http://127.0.0.1:{port}", "GET", "/ping")[0] == 200
    assert len({answer["pid"] for answer in _concurrently(runtime_client, endpoint, 2, sleep=0.3)}) == 2
    sagemaker_client.delete_endpoint(EndpointName=endpoint)


@pytest.mark.slow
@pytest.mark.parametrize("value", ["four", "0"])
def test_a_bad_worker_count_fails_the_endpoint_naming_the_variable(sagemaker_client, s3_client, value):
    endpoint = _endpoint(sagemaker_client, s3_client, {WORKERS_ENV: value})
    described = sagemaker_client.describe_endpoint(EndpointName=endpoint)
    assert described["EndpointStatus"] == "Failed"
    assert f"SAGEMAKER_MODEL_SERVER_WORKERS is '{value}': it must be a whole number of at least 1" in described["FailureReason"]
    sagemaker_client.delete_endpoint(EndpointName=endpoint)


@pytest.mark.slow
def test_one_worker_failing_to_load_fails_the_endpoint_and_stops_the_others(sagemaker_client, s3_client):
    endpoint = _endpoint(sagemaker_client, s3_client, {WORKERS_ENV: "3", "FAIL_ONE_WORKER": "1"})
    described = sagemaker_client.describe_endpoint(EndpointName=endpoint)
    assert described["EndpointStatus"] == "Failed"
    assert "did not pass the ping health check" in described["FailureReason"]
    assert "RuntimeError: out of memory loading the weights" in described["FailureReason"]
    _wait_until(lambda: not _processes_of(endpoint), 10, f"left running: {_processes_of(endpoint)}")
    sagemaker_client.delete_endpoint(EndpointName=endpoint)


@pytest.mark.slow
def test_a_worker_that_dies_takes_its_instance_down_and_a_replacement_serves(emulator, sagemaker_client, s3_client):
    runtime = client_of(emulator, "sagemaker-runtime", config=Config(retries={"total_max_attempts": 1}))
    endpoint = _endpoint(sagemaker_client, s3_client, {WORKERS_ENV: "2"})
    old = _processes_of(endpoint)
    assert len(old) >= 4  # the watch, the front and its two workers
    with pytest.raises(ClientError):
        invoke_json(runtime, endpoint, {"exit": True})
    _wait_until(lambda: not any(process.is_running() and process.status() != psutil.STATUS_ZOMBIE for process in old),
                10, "the instance's processes outlived its dead worker")

    def serves() -> bool:
        try:
            return invoke_json(runtime, endpoint, {})[0]["pid"] not in {process.pid for process in old}
        except ClientError:
            return False

    _wait_until(serves, 60, "no replacement instance came into service")
    assert sagemaker_client.describe_endpoint(EndpointName=endpoint)["EndpointStatus"] == "InService"
    sagemaker_client.delete_endpoint(EndpointName=endpoint)
