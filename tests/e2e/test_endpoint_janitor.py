"""The endpoint janitor DAG, whole, in a real Airflow against the local SageMaker: of an expired, an
unexpired and a standing endpoint, one run deletes only the expired one (with its config, model and
scalable target) and says why it kept the others."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from include.local_airflow import DagRun
from include.pipelines.janitor import STANDING_ROLE_TAG, VARIANT_DIMENSION
from include.pipelines.requests import EXPIRY_TAG
from tests.conftest import client_of
from tests.janitor_fixtures import PAST, delete_endpoints, exists, make_endpoint, wait_in_service

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

DAG_ID = "endpoint_janitor"


def _removed_by_any_run(airflow) -> set[str]:
    """The endpoints any finished run of the DAG removed: an hourly slot that came due as the DAG was
    unpaused may have run (max_active_runs 1: one after the other) just before or after ours."""
    runs = airflow.api("GET", f"dags/{DAG_ID}/dagRuns", query={"limit": 100})["dag_runs"]
    names = set()
    for other in runs:
        if other["state"] == "success":
            result = airflow.xcom(DagRun(airflow, DAG_ID, other["dag_run_id"]), "sweep") or {}
            names |= {entry["endpoint"] for entry in result.get("removed", [])}
    return names


def test_janitor_removes_only_the_expired_endpoint(airflow, emulator, sagemaker_client, s3_client):
    autoscaling = client_of(emulator, "application-autoscaling")
    future = (datetime.now(timezone.utc) + timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
    tags = {
        "expired": [{"Key": EXPIRY_TAG, "Value": PAST}],
        "unexpired": [{"Key": EXPIRY_TAG, "Value": future}],
        "standing": [{"Key": EXPIRY_TAG, "Value": PAST}, {"Key": STANDING_ROLE_TAG[0], "Value": STANDING_ROLE_TAG[1]}],
    }
    made = {}
    try:
        for key, endpoint_tags in tags.items():  # all starting at once, then waited for
            make_endpoint(sagemaker_client, s3_client, made, "e2e-jan", key, endpoint_tags, wait=False)
        for parts in made.values():
            wait_in_service(sagemaker_client, parts["endpoint"])
        target = f"endpoint/{made['expired']['endpoint']}/variant/AllTraffic"
        autoscaling.register_scalable_target(ServiceNamespace="sagemaker", ResourceId=target,
                                             ScalableDimension=VARIANT_DIMENSION, MinCapacity=1, MaxCapacity=2)

        run = airflow.run(DAG_ID, conf={"dry_run": False}, timeout=300)
        assert run.succeeded, run.report()
        assert run.states == {"sweep": "success"}

        result = run.xcom("sweep")
        assert result["dry_run"] is False
        ours = {parts["endpoint"]: key for key, parts in made.items()}
        kept = {ours[e["endpoint"]]: e["why"] for e in result["kept"] if e["endpoint"] in ours}
        assert kept == {"unexpired": f"not expired: {EXPIRY_TAG} {future}",
                        "standing": "standing endpoint (endpoint-role=standing)"}
        assert {ours[e["endpoint"]] for e in result["removed"] if e["endpoint"] in ours} <= {"expired"}
        assert made["expired"]["endpoint"] in _removed_by_any_run(airflow)
        removed = [e for e in result["removed"] if e["endpoint"] == made["expired"]["endpoint"]]
        if removed:  # our run was the one that found it
            assert removed[0] == {"endpoint": made["expired"]["endpoint"], "endpoint_config": made["expired"]["config"],
                                  "models": made["expired"]["models"], "scalable_targets": [target],
                                  "expired_at": PAST}
            log = run.log("sweep")
            for line in (f"Deregistered scalable target {target}", f"Deleted endpoint {made['expired']['endpoint']}",
                         f"Deleted endpoint config {made['expired']['config']}",
                         f"Deleted model {made['expired']['models'][0]}"):
                assert line in log, line

        gone = made["expired"]
        assert not exists(sagemaker_client.describe_endpoint, EndpointName=gone["endpoint"])
        assert not exists(sagemaker_client.describe_endpoint_config, EndpointConfigName=gone["config"])
        assert not exists(sagemaker_client.describe_model, ModelName=gone["models"][0])
        assert autoscaling.describe_scalable_targets(ServiceNamespace="sagemaker", ResourceIds=[target])["ScalableTargets"] == []
        for key in ("unexpired", "standing"):
            parts = made[key]
            assert sagemaker_client.describe_endpoint(EndpointName=parts["endpoint"])["EndpointStatus"] == "InService"
            assert exists(sagemaker_client.describe_endpoint_config, EndpointConfigName=parts["config"])
            assert exists(sagemaker_client.describe_model, ModelName=parts["models"][0])
    finally:
        delete_endpoints(sagemaker_client, made)

