"""Stopping a run stops what it pays for: a task killed on a worker, timed out, or killed while
deferred stops its SageMaker job on the local SageMaker; a triggerer that only restarts or hands
the trigger to another triggerer leaves the job running."""
from __future__ import annotations

import asyncio
import datetime as dt
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

import pytest
from airflow.executors.workloads.task import TaskInstanceDTO
from airflow.jobs.triggerer_job_runner import TriggerRunner
from airflow.sdk.bases.operator import TRIGGER_FAIL_REPR, TriggerFailureReason
from airflow.sdk.exceptions import AirflowTaskTimeout, TaskDeferralTimeout, TaskDeferred
from airflow.sdk.execution_time import task_runner
from airflow.sdk.execution_time.comms import GetTaskStates, TaskStatesResult

from sagemaker_pipelines_plugin.training import SageMakerResumableTrainingOperator
from sagemaker_pipelines_plugin.transform import SageMakerResumableTransformOperator
from sagemaker_pipelines_plugin.triggers import SageMakerJobTrigger
from sagemaker_pipelines_plugin.tuning import SageMakerResumableTuningOperator
from tests.conftest import TEST_BUCKET
from tests.emulator.hosting_fixtures import unique, upload
from tests.emulator.test_training_jobs import source_uri, train_channel_uri  # noqa: F401 (fixtures)
from tests.emulator.test_training_jobs import training_request, wait_until_done
from tests.emulator.test_transform_jobs import _summer_model, _transform_request, _wait
from tests.emulator.test_tuning_jobs import children, tune_source_uri, tuning_request, wait_for_tuning  # noqa: F401

pytestmark = pytest.mark.slow
TEST_DAG_ID, TEST_RUN_ID = "cifar10_pipeline", "manual__2026-01-01T00:00:00+00:00"
TRIGGER_ID = 7
POLLING = 2.0  # seconds a trigger gets to start polling its job before it is cancelled


def _context(try_number: int) -> dict:
    return {"ti": SimpleNamespace(try_number=try_number)}


def _training_operator(name: str, source_uri: str, channel_uri: str, **kwargs) -> SageMakerResumableTrainingOperator:
    kwargs.setdefault("deferrable", False)
    return SageMakerResumableTrainingOperator(
        task_id="train", config=training_request(name, source_uri, channel_uri, sleep=120), check_interval=1,
        print_log=False, **kwargs)


def _wait_until_in_progress(describe, status_key: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if describe()[status_key] == "InProgress":
                return
        except Exception:  # not created yet
            pass
        assert time.monotonic() < deadline, "the job never started"
        time.sleep(0.2)


def test_killing_a_task_that_waits_on_a_worker_stops_its_training_job(sagemaker_client, source_uri, train_channel_uri):
    name = unique("stop-kill")
    operator = _training_operator(name, source_uri, train_channel_uri)
    with ThreadPoolExecutor(1) as pool:
        waiting = pool.submit(operator.execute, _context(1))
        _wait_until_in_progress(lambda: sagemaker_client.describe_training_job(TrainingJobName=name), "TrainingJobStatus")

        operator.on_kill()  # what Airflow's SIGTERM handler calls while execute() waits

        assert wait_until_done(sagemaker_client, name, timeout=60)["TrainingJobStatus"] == "Stopped"
        waiting.exception(timeout=60)  # the wait ends too


def test_an_execution_timeout_on_a_worker_stops_the_job(sagemaker_client, source_uri, train_channel_uri):
    name = unique("stop-timeout")
    operator = _training_operator(name, source_uri, train_channel_uri, execution_timeout=dt.timedelta(seconds=6))

    with pytest.raises(AirflowTaskTimeout):  # Airflow's own timeout wrapper around execute()
        task_runner._run_execute_callable(_context(1), operator.execute, operator)

    assert wait_until_done(sagemaker_client, name, timeout=60)["TrainingJobStatus"] == "Stopped"


def test_killing_a_task_that_waits_on_a_transform_job_stops_it(sagemaker_client, s3_client):
    model, job = _summer_model(sagemaker_client, s3_client, model_fn_sleep=60), unique("stop-tf")
    prefix = unique("stop-tf-in")
    upload(s3_client, f"{prefix}/x.csv", b"1\n")
    operator = SageMakerResumableTransformOperator(
        task_id="batch_transform", check_interval=1, check_if_model_exists=False, config={"Transform": _transform_request(
            job, model, f"s3://{TEST_BUCKET}/hosting-tests/{prefix}/", f"s3://{TEST_BUCKET}/{unique('stop-tf-out')}")})
    with ThreadPoolExecutor(1) as pool:
        waiting = pool.submit(operator.execute, _context(1))
        _wait_until_in_progress(lambda: sagemaker_client.describe_transform_job(TransformJobName=job), "TransformJobStatus")

        operator.on_kill()

        assert _wait(sagemaker_client, job, timeout=60)["TransformJobStatus"] == "Stopped"
        waiting.exception(timeout=60)


def test_a_deferral_that_times_out_stops_the_job_its_try_rejoined(sagemaker_client, source_uri, train_channel_uri):
    name = unique("stop-defer-timeout")
    sagemaker_client.create_training_job(**training_request(name, source_uri, train_channel_uri, sleep=120))  # try 1's
    timeout = dt.timedelta(minutes=45)

    with pytest.raises(TaskDeferred) as deferred:  # try 2 rejoins it, deferred
        _training_operator(name, source_uri, train_channel_uri, deferrable=True, execution_timeout=timeout).execute(_context(2))
    assert isinstance(deferred.value.trigger, SageMakerJobTrigger)
    assert deferred.value.timeout == timeout, "a deferred task must still time out at its execution_timeout"

    # the deferral timed out: the scheduler resumes the task on a worker (a fresh operator) to fail it
    resumed = _training_operator(name, source_uri, train_channel_uri, deferrable=True, execution_timeout=timeout)
    with pytest.raises(TaskDeferralTimeout):
        resumed.resume_execution(TRIGGER_FAIL_REPR, {"error": TriggerFailureReason.TRIGGER_TIMEOUT}, _context(2))

    assert wait_until_done(sagemaker_client, name, timeout=60)["TrainingJobStatus"] == "Stopped"


# ---- deferred: the triggerer's own run_trigger() and cancel paths, with its Execution API answering the TI's state


class ExecutionApiStub:
    """Stands in for the triggerer's supervisor comms: answers GetTaskStates with one state for the task."""

    def __init__(self, state: str):
        self.state, self.asked = state, []

    def send(self, msg):
        assert isinstance(msg, GetTaskStates), f"the trigger asked the supervisor for {msg!r}"
        self.asked.append(msg)
        time.sleep(0.2)  # a round trip to the api-server, during which the triggerer may cancel again
        return TaskStatesResult(task_states={TEST_RUN_ID: {msg.task_ids[0]: self.state}})


def _task_instance(task_id: str) -> TaskInstanceDTO:
    return TaskInstanceDTO(id=uuid.uuid4(), task_id=task_id, dag_id=TEST_DAG_ID, run_id=TEST_RUN_ID, try_number=1,
                           dag_version_id=uuid.uuid4(), map_index=-1, queue="default", pool_slots=1, priority_weight=1)


def _as_the_triggerer_loads_it(deferred: TaskDeferred, task_id: str):
    """The trigger rebuilt from its serialized form, as the triggerer inflates it, with its task instance."""
    classpath, kwargs = deferred.trigger.serialize()
    trigger = TriggerRunner().get_trigger_by_classpath(classpath)(**kwargs)
    trigger.task_instance = _task_instance(task_id)
    return trigger


async def _user_action(runner: TriggerRunner) -> None:
    """How the triggerer cancels a trigger whose row went away (task marked failed/success or cleared)."""
    runner.to_cancel.append(TRIGGER_ID)
    await runner.cancel_triggers()


async def _user_action_resent(runner: TriggerRunner) -> None:
    """As Airflow 3.3's triggerer really does it: the cancellation is sent again at each sync until the
    trigger ends, and each one lands in on_kill if it is still running."""
    task = runner.triggers[TRIGGER_ID]["task"]
    for _ in range(100):
        runner.to_cancel.append(TRIGGER_ID)
        await runner.cancel_triggers()
        await asyncio.sleep(0.02)
        if task.done():
            return


async def _shutdown(runner: TriggerRunner) -> None:
    """How a stopping triggerer's event loop cancels what still runs: without a message."""
    runner.triggers[TRIGGER_ID]["task"].cancel()


def _defer_then(trigger, cancel) -> None:
    """Run the trigger in Airflow's TriggerRunner.run_trigger until it polls its job, then cancel it."""
    async def scenario():
        runner = TriggerRunner()
        runner.triggers[TRIGGER_ID] = {"name": "test trigger", "events": 0, "is_watcher": False}
        task = runner.triggers[TRIGGER_ID]["task"] = asyncio.create_task(runner.run_trigger(TRIGGER_ID, trigger))
        await asyncio.sleep(POLLING)
        assert not task.done(), f"the trigger stopped waiting on a running job: {runner.events}"
        await cancel(runner)
        with pytest.raises(asyncio.CancelledError):
            await task
        # the triggerer's event loop lives on after a trigger ends: let what the trigger left running finish
        await asyncio.gather(*(t for t in asyncio.all_tasks() if t is not asyncio.current_task()))

    asyncio.run(scenario())


def test_a_deferred_training_job_outlives_a_triggerer_restart_and_handoff_but_not_a_kill(
        monkeypatch, sagemaker_client, source_uri, train_channel_uri):
    name = unique("stop-deferred")
    with pytest.raises(TaskDeferred) as deferred:
        _training_operator(name, source_uri, train_channel_uri, deferrable=True).execute(_context(1))

    def status() -> str:
        return sagemaker_client.describe_training_job(TrainingJobName=name)["TrainingJobStatus"]

    # the triggerer restarts: the trigger is cancelled without on_kill, another triggerer picks it up
    restarting = ExecutionApiStub("deferred")
    monkeypatch.setattr(task_runner, "SUPERVISOR_COMMS", restarting, raising=False)
    _defer_then(_as_the_triggerer_loads_it(deferred.value, "train"), _shutdown)
    assert restarting.asked == [] and status() == "InProgress"

    # the trigger was handed to another triggerer (this one missed heartbeats): the task is still deferred
    handed_over = ExecutionApiStub("deferred")
    monkeypatch.setattr(task_runner, "SUPERVISOR_COMMS", handed_over)
    _defer_then(_as_the_triggerer_loads_it(deferred.value, "train"), _user_action)
    assert [(m.dag_id, m.task_ids, m.run_ids, m.map_index) for m in handed_over.asked] == [
        (TEST_DAG_ID, ["train"], [TEST_RUN_ID], -1)]
    assert status() == "InProgress"

    # a user marks the deferred task failed
    marked_failed = ExecutionApiStub("failed")
    monkeypatch.setattr(task_runner, "SUPERVISOR_COMMS", marked_failed)
    _defer_then(_as_the_triggerer_loads_it(deferred.value, "train"), _user_action_resent)
    assert len(marked_failed.asked) == 1
    assert wait_until_done(sagemaker_client, name, timeout=60)["TrainingJobStatus"] == "Stopped"


RANGES = {"CategoricalParameterRanges": [{"Name": "optimizer", "Values": ["sgd", "adam"]}]}


def test_marking_the_run_failed_while_tuning_is_deferred_stops_the_tuning_job_and_its_children(
        monkeypatch, sagemaker_client, tune_source_uri):
    name = unique("stop-tune")
    timeout = dt.timedelta(hours=2)
    operator = SageMakerResumableTuningOperator(
        task_id="tune", check_interval=1, deferrable=True, execution_timeout=timeout,
        config=tuning_request(name, tune_source_uri, "Grid", RANGES, max_jobs=None, parallel=1, epochs=2, epoch_seconds=60))
    with pytest.raises(TaskDeferred) as deferred:  # the provider's own defer, after it submitted the job
        operator.execute(_context(1))
    assert type(deferred.value.trigger) is SageMakerJobTrigger
    assert deferred.value.timeout == timeout, "the provider sets no deferral timeout for tuning; ours is execution_timeout"

    monkeypatch.setattr(task_runner, "SUPERVISOR_COMMS", ExecutionApiStub("failed"), raising=False)
    _defer_then(_as_the_triggerer_loads_it(deferred.value, "tune"), _user_action_resent)

    assert wait_for_tuning(sagemaker_client, name, timeout=90)["HyperParameterTuningJobStatus"] == "Stopped"
    assert {child["TrainingJobStatus"] for child in children(sagemaker_client, name)} <= {"Stopped"}
