"""The real-Airflow harness's reading of what the REST API returns (its services run in tests/e2e)."""
from __future__ import annotations

from include.local_airflow import _decoded, log_line


def test_a_failed_task_s_log_entry_shows_the_exception_it_carries():
    entry = {"event": "Task failed with exception", "level": "error", "error_detail": [
        {"exc_type": "AirflowException", "exc_value": "Training job failed: AlgorithmError: ExecuteUserScriptError",
         "frames": [{"filename": "sagemaker.py", "lineno": 1, "name": "execute"}]}]}
    assert log_line(entry) == ("Task failed with exception\n"
                               "AirflowException: Training job failed: AlgorithmError: ExecuteUserScriptError")


def test_plain_entries_are_their_event():
    assert log_line({"event": "epoch=1 val_accuracy=0.5", "level": "info"}) == "epoch=1 val_accuracy=0.5"
    assert log_line("::group::Pre Execute") == "::group::Pre Execute"


def test_xcom_values_are_decoded_once_or_twice_as_stored():
    assert _decoded('{"a": 1}') == {"a": 1}
    assert _decoded('"{\\"a\\": 1}"') == {"a": 1}
    assert _decoded({"a": 1}) == {"a": 1}
    assert _decoded("not json") == "not json"
