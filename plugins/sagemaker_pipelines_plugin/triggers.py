"""The trigger our job operators defer to: killing the deferred task stops its SageMaker job.

Airflow 3.3 calls a trigger's on_kill() when the triggerer cancels it because a user acted on the
task (marked it failed or success, cleared it, marked its run failed), and not when the triggerer
shuts down or the trigger times out. The provider's SageMakerTrigger has no on_kill, so a job whose
deferred task was killed would go on running, and billing, with nobody waiting for it.

The triggerer also cancels a trigger down that path when the scheduler handed it to another
triggerer (this one missed its heartbeats): the task instance is then still deferred, and the job
still waited for, so it is left running.
"""
from __future__ import annotations

import asyncio

from airflow.providers.amazon.aws.triggers.sagemaker import SageMakerTrigger

# by SageMakerTrigger's job_type: the SageMaker API's describe and stop operations for that kind of job
JOB_OPERATIONS = {
    "training": ("describe_training_job", "stop_training_job"),
    "tuning": ("describe_hyper_parameter_tuning_job", "stop_hyper_parameter_tuning_job"),
    "transform": ("describe_transform_job", "stop_transform_job"),
    "processing": ("describe_processing_job", "stop_processing_job"),
}
STOPPABLE = ("InProgress",)  # a Stopping job is on its way already


def stop_operation(job_type: str) -> str:
    """The SageMaker client method that stops a job of this SageMakerTrigger job_type."""
    return JOB_OPERATIONS[job_type.lower()][1]


# Strong references to the stops under way (the event loop keeps only weak ones to its tasks)
_STOPPING: set[asyncio.Task] = set()


class SageMakerJobTrigger(SageMakerTrigger):
    """SageMakerTrigger that stops its job when the deferred task is killed, as on_kill does on a worker."""

    async def on_kill(self) -> None:
        # Airflow 3.3's triggerer cancels a cancelled trigger again at each of its syncs until the trigger
        # ends, and that cancels on_kill itself, mid-call, within a second or so (seen in a real triggerer:
        # the job went on running). The stop runs as a task of its own, which those cancellations cannot reach.
        stop = asyncio.ensure_future(self.stop_job_unless_still_deferred())
        _STOPPING.add(stop)
        stop.add_done_callback(_STOPPING.discard)
        await asyncio.shield(stop)

    async def stop_job_unless_still_deferred(self) -> None:
        if await self.task_still_deferred():
            self.log.info("Task still deferred (the trigger moved to another triggerer): %s job %s keeps running.",
                          self.job_type, self.job_name)
            return
        describe, stop = JOB_OPERATIONS[self.job_type.lower()]
        name_arg = {self._get_waiter_arg_name(self.job_type): self.job_name}
        hook = self.hook()
        async with await hook.get_async_conn() as client:
            status = (await getattr(client, describe)(**name_arg))[self._get_response_status_key(self.job_type)]
            if status not in STOPPABLE:
                self.log.info("%s job %s is %s: nothing to stop.", self.job_type, self.job_name, status)
                return
            self.log.info("Stopping %s job %s: its deferred task was killed.", self.job_type, self.job_name)
            await getattr(client, stop)(**name_arg)

    async def task_still_deferred(self) -> bool:
        """Whether the task instance is deferred still, read through the triggerer's Execution API.

        When it cannot be read, the triggerer's word (a user acted on the task) stands.
        """
        ti = self.task_instance
        if ti is None:
            return False
        from asgiref.sync import sync_to_async
        from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance

        map_index = ti.map_index if ti.map_index is not None else -1
        try:
            states = await sync_to_async(RuntimeTaskInstance.get_task_states)(
                dag_id=ti.dag_id, task_ids=[ti.task_id], run_ids=[ti.run_id], map_index=map_index
            )
        except Exception as error:
            self.log.warning("Could not read the state of %s (%s); taking the cancellation as a kill.", ti.task_id, error)
            return False
        key = ti.task_id if map_index < 0 else f"{ti.task_id}_{map_index}"  # how the Execution API keys them
        return states.get(ti.run_id, {}).get(key) == "deferred"
