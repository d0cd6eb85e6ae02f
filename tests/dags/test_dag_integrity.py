"""Every DAG in dags/ imports cleanly, is documented and owned, retries, and stays light at parse time."""
from __future__ import annotations

import datetime
import json
import subprocess
import sys
from pathlib import Path

import pendulum
import pytest

ROOT = Path(__file__).resolve().parents[2]
DAG_FILES = sorted((ROOT / "dags").glob("*.py"))
APPROVED_TAGS = {
    "sagemaker",
    "rollback",
    "cifar10",
    "acoustic-shield",
    "room-detection",
    "brain-to-text",
    "meld-sentiment",
    "computer-vision",
    "audio",
    "nlp",
    "maintenance",
}
HEAVY_MODULES = ("torch", "transformers", "ultralytics", "sagemaker", "h5py", "s3fs", "torchvision")


@pytest.fixture(scope="module")
def dagbag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(ROOT / "dags"))


def test_dag_files_exist():
    assert DAG_FILES, "dags/ holds no DAG file"


def test_no_import_errors(dagbag):
    assert not dagbag.import_errors, "\n".join(f"{f}: {e}" for f, e in dagbag.import_errors.items())


@pytest.mark.parametrize("dag_file", DAG_FILES, ids=lambda p: p.name)
def test_each_file_defines_the_dag_named_after_it(dagbag, dag_file):
    dag_ids = [d.dag_id for d in dagbag.dags.values() if Path(d.fileloc).name == dag_file.name]
    assert dag_ids == [dag_file.stem], f"{dag_file.name} should define exactly the DAG '{dag_file.stem}', has {dag_ids}"


def _dags(dagbag):
    return sorted(dagbag.dags.values(), key=lambda d: d.dag_id)


def test_dags_are_tagged_documented_owned_and_retry(dagbag):
    problems = []
    for dag in _dags(dagbag):
        where = f"{dag.dag_id} ({Path(dag.fileloc).name})"
        if not dag.tags:
            problems.append(f"{where}: no tags")
        unknown = set(dag.tags) - APPROVED_TAGS
        if unknown:
            problems.append(f"{where}: tags {sorted(unknown)} are not in the approved set {sorted(APPROVED_TAGS)}")
        if not (dag.doc_md or "").strip():
            problems.append(f"{where}: no doc_md (give the DAG file a docstring)")
        if not (dag.description or "").strip():
            problems.append(f"{where}: no description (set `description:` in its workload YAML)")
        for task in dag.tasks:
            if task.owner in (None, "", "airflow"):
                problems.append(f"{where}: task {task.task_id} has no owner")
            if (task.retries or 0) < 2:
                problems.append(f"{where}: task {task.task_id} retries {task.retries}, want 2 or more")
    assert not problems, "\n".join(problems)


def test_dags_with_endpoints_tear_them_down(dagbag):
    """A DAG that creates an endpoint deletes it in a teardown task, so a failed run leaves none."""
    for dag in _dags(dagbag):
        creates = [t for t in dag.tasks if t.task_type == "SageMakerEndpointOperator"]
        if creates:
            teardowns = [t for t in dag.tasks if t.is_teardown and t.task_type == "SageMakerDeleteEndpointOperator"]
            assert teardowns, f"{dag.dag_id} creates an endpoint but has no delete-endpoint teardown task"


# a Wednesday: the weekly pipelines' latest slot (Sunday) is three days past
SCHEDULE_CHECK_NOW = pendulum.datetime(2026, 3, 18, 12, tz="UTC")


def _scheduled(dagbag):
    from airflow.serialization.encoders import coerce_to_core_timetable

    return [(dag, coerce_to_core_timetable(dag.timetable)) for dag in _dags(dagbag)
            if coerce_to_core_timetable(dag.timetable).periodic]


def test_scheduled_dags_are_the_workloads_with_a_schedule(dagbag):
    from include.pipelines.config import load_workload

    expected = {f.stem for f in DAG_FILES
                if f.stem.endswith("_pipeline") and load_workload(f.stem.removesuffix("_pipeline")).schedule}
    assert {dag.dag_id for dag, _ in _scheduled(dagbag)} >= expected


@pytest.mark.parametrize("last_run", [None, datetime.timedelta(weeks=6)], ids=["never-run", "paused-for-weeks"])
def test_unpausing_a_scheduled_dag_runs_nothing_in_the_past(dagbag, monkeypatch, last_run):
    """The first run after unpausing is the next scheduled time, not last Sunday's full retraining."""
    import airflow.timetables.interval
    import airflow.timetables.trigger
    from airflow.timetables.base import DataInterval, TimeRestriction

    from sagemaker_pipelines_plugin import timetables

    for module in (timetables, airflow.timetables.trigger, airflow.timetables.interval):  # each reads utcnow
        if hasattr(module, "utcnow"):
            monkeypatch.setattr(module, "utcnow", lambda: SCHEDULE_CHECK_NOW)
    problems = []
    for dag, timetable in _scheduled(dagbag):
        last = None if last_run is None else DataInterval(SCHEDULE_CHECK_NOW - last_run, SCHEDULE_CHECK_NOW - last_run)
        info = timetable.next_dagrun_info(
            last_automated_data_interval=last,
            restriction=TimeRestriction(earliest=dag.start_date, latest=dag.end_date, catchup=dag.catchup),
        )
        if info is not None and info.run_after < SCHEDULE_CHECK_NOW:
            problems.append(f"{dag.dag_id} ({Path(dag.fileloc).name}): unpaused at {SCHEDULE_CHECK_NOW}, it would "
                            f"start the run of {info.run_after} at once ({type(timetable).__name__}, catchup={dag.catchup})")
    assert not problems, "\n".join(problems)


def test_dags_serialize_as_the_scheduler_and_api_server_read_them(dagbag):
    """The plugin registers what the serialized DAGs need: the custom timetable and the extra links."""
    from airflow.serialization.serialized_objects import DagSerialization

    for dag in _dags(dagbag):
        restored = DagSerialization.from_dict(DagSerialization.to_dict(dag))
        assert type(restored.timetable).__name__ == type(dag.timetable).__name__, dag.dag_id
        unlinked = [t.task_id for t in restored.tasks if t.task_type.startswith("SageMaker") and not t.extra_links]
        assert not unlinked, f"{dag.dag_id}: SageMaker tasks without an extra link: {unlinked}"


@pytest.mark.parametrize("dag_file", DAG_FILES, ids=lambda p: p.name)
def test_parsing_imports_nothing_heavy(dag_file):
    """Parsing must not import ML frameworks or the SageMaker SDK: the scheduler parses every few seconds."""
    script = f"""
import json, runpy, sys
sys.path[:0] = [{str(ROOT)!r}, {str(ROOT / 'dags')!r}, {str(ROOT / 'plugins')!r}]
runpy.run_path({str(dag_file)!r}, run_name="dag_file")
print(json.dumps([m for m in {HEAVY_MODULES!r} if m in sys.modules]))
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    heavy = json.loads(result.stdout.strip().splitlines()[-1])
    assert heavy == [], f"{dag_file.name} imports {heavy} at parse time; import them inside the task instead"


def test_a_lost_approval_is_asked_again_within_seconds(dagbag):
    """Airflow 3.3 can lose an answer given right after the question (docs/promotion.md); the retry asks again."""
    approvals = [dag.get_task("await_approval") for dag in _dags(dagbag) if "await_approval" in dag.task_dict]
    assert len(approvals) >= 4, [a.dag_id for a in approvals]
    slow = {a.dag_id: a.retry_delay for a in approvals if a.retry_delay.total_seconds() > 10}  # their count: the test above
    assert not slow, slow
