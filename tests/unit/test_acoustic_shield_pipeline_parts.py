"""The acoustic shield DAG's own pieces: its wiring, the smoke test's checks and bad bodies, and keep_endpoint."""
from __future__ import annotations

from pathlib import Path

import pytest

from include.datasets.acoustic_shield import LABELS
from include.pipelines.smoke import acoustic_shield as smoke

ROOT = Path(__file__).resolve().parents[2]
GOOD = {"label": "TireSkid", "confidence": 0.7,
        "probs": {"Normal": 0.1, "TireSkid": 0.7, "EmergencyBraking": 0.1, "CollisionImminent": 0.1}}


@pytest.fixture(scope="module")
def dag():
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(ROOT / "dags" / "acoustic_shield_pipeline.py"))
    assert not bag.import_errors, bag.import_errors
    return bag.dags["acoustic_shield_pipeline"]


def test_a_documented_answer_passes():
    assert smoke.check_answer(GOOD, LABELS) == []


@pytest.mark.parametrize("answer, problem", [
    ({**GOOD, "label": "Normal"}, "not the most probable"),
    ({**GOOD, "confidence": 0.5}, "confidence"),
    ({**GOOD, "probs": {**GOOD["probs"], "Normal": 0.3}}, "sum to"),
    ({**GOOD, "probs": {"Normal": 1.0}}, "one entry per class"),
    ({"label": "Normal"}, "exactly label, confidence and probs"),
    ({**GOOD, "extra": 1}, "exactly label, confidence and probs"),
    (["Normal"], "exactly label, confidence and probs"),
])
def test_answers_that_break_the_contract_are_named(answer, problem):
    problems = smoke.check_answer(answer, LABELS)
    assert problems and problem in " ".join(problems)


def test_bad_bodies_are_really_bad():
    assert smoke.bad_body("empty") == b""
    assert not smoke.bad_body("not_wav").startswith(b"RIFF")
    truncated = smoke.bad_body("truncated_wav")
    assert truncated.startswith(b"RIFF") and truncated[8:12] == b"WAVE" and len(truncated) < 44


def test_dag_runs_setup_body_and_teardown_in_order(dag):
    order = ["train", "evaluate", "create_model", "create_endpoint_config", "deploy_endpoint", "smoke_test",
             "publish_endpoint", "delete_endpoint"]
    for upstream, downstream in zip(order, order[1:]):
        assert downstream in dag.get_task(upstream).downstream_task_ids, (upstream, downstream)
    delete = dag.get_task("delete_endpoint")
    assert delete.is_teardown and "deploy_endpoint" in delete.upstream_task_ids


def test_publish_task_emits_the_endpoint_asset(dag):
    [asset] = dag.get_task("publish_endpoint").outlets
    assert asset.name == "acoustic_shield_endpoint"


def test_keep_endpoint_skips_the_teardown_and_only_then(dag):
    from airflow.sdk.exceptions import AirflowSkipException

    hook = dag.get_task("delete_endpoint")._pre_execute_hook
    assert dag.params["keep_endpoint"] is False
    hook({"params": {"keep_endpoint": False}})  # the default: delete
    with pytest.raises(AirflowSkipException, match="keep_endpoint"):
        hook({"params": {"keep_endpoint": True}})
