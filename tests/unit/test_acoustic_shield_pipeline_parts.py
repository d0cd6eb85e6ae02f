"""The acoustic shield DAG's own pieces: its wiring, the smoke test's checks and bad bodies, the published asset."""
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


def test_dag_trains_gates_promotes_then_publishes_the_serving_endpoint(dag):
    order = ["train", "evaluate", "plan_evaluation", "evaluate_models", "decide", "register_version", "route_approval",
             "approve_version", "standing_requests", "create_standing_model", "create_standing_endpoint_config",
             "deploy_standing_endpoint", "smoke_test", "publish_endpoint", "run_report"]
    for upstream, downstream in zip(order, order[1:]):
        assert downstream in dag.get_task(upstream).downstream_task_ids, (upstream, downstream)
    # a person may approve instead, and a lost decision rejects the version
    assert {"approve_version", "await_approval", "reject_version"} <= dag.get_task("route_approval").downstream_task_ids
    assert "standing_requests" in dag.get_task("await_approval").downstream_task_ids
    # the report runs whatever happened and leaves the run's state to the tasks that decided it
    report = dag.get_task("run_report")
    assert report.is_teardown and "resolve_settings" in report.upstream_task_ids


def test_publish_task_emits_the_endpoint_asset(dag):
    [asset] = dag.get_task("publish_endpoint").outlets
    assert asset.name == "acoustic_shield_endpoint"
