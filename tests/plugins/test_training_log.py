"""The training job's log reaches the task log once: deferrable, the operator prints the job's first
lines itself before it defers, so creating the job must not print them as well (the provider's hook
did, and every early line of every host showed twice)."""
from __future__ import annotations

import pytest

from sagemaker_pipelines_plugin.training import SageMakerResumableTrainingOperator, TrainingHook


class _Conn:
    def create_training_job(self, **config):
        return {"TrainingJobArn": f"arn:aws:sagemaker:us-east-1:123456789012:training-job/{config['TrainingJobName']}",
                "ResponseMetadata": {"HTTPStatusCode": 200}}


class _RecordingHook(TrainingHook):
    """TrainingHook with its boto3 client and its log printing stubbed out: which prints did it make?"""

    def __init__(self, **kwargs):
        super().__init__(aws_conn_id=None, **kwargs)
        self.printed: list[str] = []

    def get_conn(self):
        return _Conn()

    def check_training_config(self, config):
        pass

    def check_training_status_with_log(self, job_name, *args, **kwargs):
        self.printed.append(job_name)


@pytest.mark.parametrize("log_on_create, printed", [(True, ["job"]), (False, [])])
def test_creating_a_job_prints_its_log_only_when_asked(log_on_create, printed):
    hook = _RecordingHook(log_on_create=log_on_create)
    hook.create_training_job({"TrainingJobName": "job"}, wait_for_completion=False, print_log=True)
    assert hook.printed == printed


def test_print_log_false_still_prints_nothing():
    hook = _RecordingHook(log_on_create=True)
    hook.create_training_job({"TrainingJobName": "job"}, wait_for_completion=False, print_log=False)
    assert hook.printed == []


@pytest.mark.parametrize("deferrable, wait, log_on_create", [
    (True, True, False),  # the operator prints the log before deferring: the hook must not
    (False, True, True),  # the hook tails the log until the job ends: the only print
    (True, False, True),  # not waiting: the operator prints nothing of its own
])
def test_the_operator_leaves_the_first_print_to_whoever_prints_once(deferrable, wait, log_on_create):
    operator = SageMakerResumableTrainingOperator(task_id="train", config={"TrainingJobName": "job"},
                                                  deferrable=deferrable, wait_for_completion=wait)
    assert isinstance(operator.hook, TrainingHook) and operator.hook.log_on_create is log_on_create
