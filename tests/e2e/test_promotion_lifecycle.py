"""A model's whole life on one standing endpoint, in a real Airflow against a local SageMaker of its own:
the first promotion creates the endpoint; a worse challenger is rejected with the champion untouched; a
canary whose alarm goes off is rolled back, fails the run loudly and loses no request; a person rejects
one win and approves the next through the HITL API; the rollback DAG puts the earlier version back.

CIFAR-10, untuned (one and two epochs on the synthetic set): each run trains in about a minute, and a
second epoch reliably beats the first on the same held-out batch. The runs build on each other, so the
tests below run in file order and share them."""
from __future__ import annotations

import threading
import time

import pytest

from include.local_airflow import LocalAirflow
from tests.conftest import client_of, start_emulator

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

DAG_ID = "cifar10_pipeline"
ENDPOINT = "cifar10-classifier"
GROUP = "cifar10"
ALARM = f"{ENDPOINT}-5xx-errors"
ONE_EPOCH = {"tune": False, "epochs": 1}
TWO_EPOCHS = {"tune": False, "epochs": 2}
WEAKER = {"tune": False, "epochs": 1, "hyperparameters": {"learning-rate": 0.01}}


@pytest.fixture(scope="module")
def local(tmp_path_factory):
    """A local SageMaker and a real Airflow of this module's own: its registry and endpoint start empty."""
    emulator = start_emulator(tmp_path_factory.mktemp("lifecycle-emulator"))
    try:
        with LocalAirflow(tmp_path_factory.mktemp("lifecycle-airflow"), emulator.endpoint_url) as airflow:
            yield emulator, airflow
    finally:
        emulator.stop()


@pytest.fixture(scope="module")
def airflow(local):
    return local[1]


@pytest.fixture(scope="module")
def sm(local):
    return client_of(local[0], "sagemaker")


@pytest.fixture(scope="module")
def runtime(local):
    return client_of(local[0], "sagemaker-runtime")


@pytest.fixture(scope="module")
def cloudwatch(local):
    return client_of(local[0], "cloudwatch")


def _serving(sm) -> str:
    endpoint = sm.describe_endpoint(EndpointName=ENDPOINT)
    assert endpoint["EndpointStatus"] == "InService", endpoint
    return endpoint["EndpointConfigName"]


def _version(sm, number: int) -> dict:
    arn = next(s["ModelPackageArn"] for s in sm.list_model_packages(ModelPackageGroupName=GROUP)["ModelPackageSummaryList"]
               if s["ModelPackageVersion"] == number)
    return sm.describe_model_package(ModelPackageName=arn)


def _image_body() -> bytes:
    from include.datasets.cifar10 import sample_images
    from include.pipelines.smoke import png_bytes

    [(_, image)] = sample_images(1)
    return png_bytes(image)


@pytest.fixture(scope="module")
def first(airflow):
    """No champion: one epoch clears the threshold, is approved, and creates the standing endpoint."""
    return airflow.run(DAG_ID, conf=ONE_EPOCH, timeout=1200)


def test_a_first_promotion_creates_the_standing_endpoint(first, sm):
    assert first.succeeded, first.report()
    decision = first.xcom("decide")
    assert decision["promote"] and decision["champion"] is None and "no champion yet" in decision["reason"]
    assert first.xcom("deploy_standing_endpoint")["action"] == "created"
    assert _serving(sm) == f"{ENDPOINT}-v1"
    version = _version(sm, 1)
    assert version["ModelApprovalStatus"] == "Approved"
    assert version["ModelMetrics"]["ModelQuality"]["Statistics"]["S3Uri"].endswith("/evaluation.json")
    metadata = version["CustomerMetadataProperties"]
    assert metadata["training-job"] == first.xcom("train")["Training"]["TrainingJobName"]
    assert metadata["dag-run"] == first.run_id and "sourcedir.tar.gz" in metadata["source"]
    assert first.xcom("smoke_test")
    report = first.xcom("run_report")
    assert report["outcome"] == "promoted" and report["report"].endswith(".html") and report["cost_usd"] > 0
    tags = {t["Key"]: t["Value"] for t in sm.list_tags(ResourceArn=sm.describe_endpoint(EndpointName=ENDPOINT)["EndpointArn"])["Tags"]}
    assert tags["endpoint-role"] == "standing" and "expires-at" not in tags  # the janitor never removes it


@pytest.fixture(scope="module")
def worse(first, airflow):
    return airflow.run(DAG_ID, conf=WEAKER, timeout=1200)


def test_a_worse_challenger_is_rejected_and_the_champion_untouched(worse, sm):
    assert worse.succeeded, worse.report()  # a rejection is a normal outcome, not a failure
    report = worse.xcom("run_report")
    assert report["outcome"] == "rejected", report
    decision = worse.xcom("decide")
    if decision is None:  # too weak to clear the training job's own gate: nothing evaluated or registered
        assert worse.states["evaluate"] == "success" and worse.states["evaluate_models"] == "skipped", worse.states
        assert "gate" in report["reason"]
    else:  # cleared the gate, then lost to the champion on the same held-out data
        assert not decision["promote"] and decision["champion_version"] == 1, decision
        assert decision["challenger"] <= decision["champion"], decision
        assert f"{decision['challenger']:.4f}" in worse.log("decide") and f"{decision['champion']:.4f}" in worse.log("decide")
        version = _version(sm, worse.xcom("register_version")["version"])
        assert version["ModelApprovalStatus"] == "Rejected" and decision["reason"] in version["ApprovalDescription"]
    assert worse.states["deploy_standing_endpoint"] == "skipped" and worse.states["smoke_test"] == "skipped"
    assert _serving(sm) == f"{ENDPOINT}-v1"


@pytest.fixture(scope="module")
def tripped(worse, airflow, sm, runtime, cloudwatch):
    """A winning challenger whose canary trips the 5XX alarm while it bakes, with traffic throughout."""
    body, outcomes, stop = _image_body(), [], threading.Event()

    def traffic():
        while not stop.is_set():
            try:
                runtime.invoke_endpoint(EndpointName=ENDPOINT, ContentType="image/png", Accept="application/json",
                                        Body=body)["Body"].read()
                outcomes.append("ok")
            except Exception as error:  # every failed request counts against the rollout
                outcomes.append(repr(error))
            time.sleep(0.2)

    def trip_the_canary():
        # a burst that lasts while the canary bakes: SetAlarmState holds only until the alarm's next
        # evaluation (as on AWS), and one set just before a period ends is undone within the second the
        # deployment takes to look at its alarms again (seen under load: the canary then rolled out)
        deadline, tripped = time.monotonic() + 900, False
        while not stop.is_set() and time.monotonic() < deadline:
            pending = sm.describe_endpoint(EndpointName=ENDPOINT).get("PendingDeploymentSummary") or {}
            statuses = [s["Status"] for v in pending.get("ProductionVariants", []) for s in v.get("VariantStatus", [])]
            if "Baking" in statuses:
                cloudwatch.set_alarm_state(AlarmName=ALARM, StateValue="ALARM", StateReason="rehearsed 5XX burst")
                tripped = True
            elif tripped:
                return  # the deployment has stopped baking: rolled back, as the test asserts
            time.sleep(0.2)

    threads = [threading.Thread(target=traffic, daemon=True), threading.Thread(target=trip_the_canary, daemon=True)]
    for thread in threads:
        thread.start()
    try:
        run = airflow.run(DAG_ID, conf=TWO_EPOCHS, timeout=1200)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
    return run, outcomes


def test_a_canary_that_trips_its_alarm_rolls_back_and_fails_the_run_loudly(tripped, sm):
    run, outcomes = tripped
    assert not run.succeeded and run.state == "failed", run.report()
    assert run.xcom("decide")["promote"], run.xcom("decide")
    assert run.states["deploy_standing_endpoint"] == "failed"
    log = run.log("deploy_standing_endpoint")
    assert "rolled back" in log.lower() and ALARM in log, log[-3000:]
    # SageMaker's own word on it, and the champion serving as before
    endpoint = sm.describe_endpoint(EndpointName=ENDPOINT)
    assert endpoint["EndpointConfigName"] == f"{ENDPOINT}-v1" and ALARM in endpoint["FailureReason"]
    assert run.states["reject_failed_rollout"] == "success"
    version = _version(sm, run.xcom("register_version")["version"])
    assert version["ModelApprovalStatus"] == "Rejected" and "rollout failed" in version["ApprovalDescription"]
    assert run.states["smoke_test"] == "upstream_failed"
    assert run.xcom("run_report")["outcome"] == "rolled_back"
    assert outcomes and all(o == "ok" for o in outcomes), [o for o in outcomes if o != "ok"][:3]


def _answer_approval(airflow, option: str, conf: dict):
    run = airflow.trigger(DAG_ID, conf={**conf, "approval": "manual"})
    answered = []

    def on_change(task_id, old, new):
        # every time the question is shown, as a person at the UI's Required actions would: Airflow 3.3's
        # scheduler can lose an answer given within a second or so of the question (it fails the resumed
        # try as "state changed externally"), and the retry asks again (docs/promotion.md)
        if task_id == "await_approval" and new == "awaiting_input":
            detail = airflow.api("GET", f"dags/{DAG_ID}/dagRuns/{run.run_id}/taskInstances/await_approval/-1/hitlDetails")
            answered.append(detail)
            airflow.respond(run, "await_approval", option)

    return airflow.wait(run, timeout=1200, on_change=on_change), answered


@pytest.fixture(scope="module")
def refused(tripped, airflow):
    return _answer_approval(airflow, "Reject", TWO_EPOCHS)


def test_a_person_rejects_a_win_and_the_champion_serves_on(refused, sm):
    run, answered = refused
    assert run.succeeded, run.report()
    assert answered
    detail = answered[-1]
    decision = run.xcom("decide")
    assert decision["promote"]
    # the question shows both figures
    assert f"{decision['challenger']:.4f}" in detail["body"] and f"{decision['champion']:.4f}" in detail["body"]
    version = _version(sm, run.xcom("register_version")["version"])
    assert version["ModelApprovalStatus"] == "Rejected" and version["ApprovalDescription"].startswith("Reject by")
    assert run.states["deploy_standing_endpoint"] == "skipped" and _serving(sm) == f"{ENDPOINT}-v1"
    assert run.xcom("run_report")["outcome"] == "approval_rejected"


@pytest.fixture(scope="module")
def approved(refused, airflow):
    return _answer_approval(airflow, "Approve", TWO_EPOCHS)


def test_a_person_approves_a_win_and_the_canary_rolls_it_out(approved, sm):
    run, answered = approved
    assert run.succeeded, run.report()
    assert answered
    number = run.xcom("register_version")["version"]
    version = _version(sm, number)
    assert version["ModelApprovalStatus"] == "Approved" and version["ApprovalDescription"].startswith("Approve by")
    rollout = run.xcom("deploy_standing_endpoint")
    assert rollout["action"] == "updated" and rollout["previous_endpoint_config_name"] == f"{ENDPOINT}-v1"
    routing = rollout["deployment_config"]["BlueGreenUpdatePolicy"]["TrafficRoutingConfiguration"]
    assert routing["Type"] == "CANARY"
    assert {a["AlarmName"] for a in rollout["deployment_config"]["AutoRollbackConfiguration"]["Alarms"]} >= {ALARM}
    endpoint = sm.describe_endpoint(EndpointName=ENDPOINT)
    assert endpoint["EndpointConfigName"] == f"{ENDPOINT}-v{number}" and "PendingDeploymentSummary" not in endpoint
    assert run.states["smoke_test"] == "success" and run.xcom("run_report")["outcome"] == "promoted"


@pytest.fixture(scope="module")
def rolled_back(approved, airflow):
    return airflow.run("cifar10_rollback", timeout=600)


def test_the_rollback_dag_puts_the_previous_version_back(rolled_back, sm):
    assert rolled_back.succeeded, rolled_back.report()
    assert rolled_back.xcom("choose_version")["endpoint_config_name"] == f"{ENDPOINT}-v1"
    assert rolled_back.xcom("deploy_standing_endpoint")["action"] == "updated"
    assert _serving(sm) == f"{ENDPOINT}-v1" and rolled_back.states["smoke_test"] == "success"


def test_the_registry_shows_every_version_with_its_metrics_and_status(rolled_back, worse, sm):
    versions = sm.list_model_packages(ModelPackageGroupName=GROUP, SortBy="CreationTime")["ModelPackageSummaryList"]
    statuses = [v["ModelApprovalStatus"] for v in sorted(versions, key=lambda v: v["ModelPackageVersion"])]
    # first, (the worse one, when it cleared the gate), rolled back, refused by a person, approved
    rejected_worse = ["Rejected"] if worse.xcom("decide") else []
    assert statuses == ["Approved", *rejected_worse, "Rejected", "Rejected", "Approved"]
    for summary in versions:
        package = sm.describe_model_package(ModelPackageName=summary["ModelPackageArn"])
        assert "evaluation-accuracy" in package["CustomerMetadataProperties"]
        assert package["ModelMetrics"]["ModelQuality"]["Statistics"]["ContentType"] == "application/json"
