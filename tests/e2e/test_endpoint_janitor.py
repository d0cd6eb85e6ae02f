"""The endpoint janitor DAG, whole, in a real Airflow against the local SageMaker: of an expired, an
unexpired and a standing endpoint, one run deletes only the expired one (with its config, model and
scalable target) and says why it kept the others."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from include.local_airflow import DagRun
from include.pipelines.janitor import STANDING_ROLE_TAG, VARIANT_DIMENSION, is_missing
from include.pipelines.requests import EXPIRY_TAG
from tests.conftest import client_of
from tests.emulator.hosting_fixtures import (
    create_config,
    create_model,
    instance_variant,
    scaler_files,
    unique,
    wait_for_status,
)

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

DAG_ID = "endpoint_janitor"
PAST = "2020-01-01T00:00:00Z"


def _exists(call, **kwargs) -> bool:
    from botocore.exceptions import ClientError

    try:
        call(**kwargs)
    except ClientError as error:
        assert is_missing(error), error
        return False
    return True


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
        for key, endpoint_tags in tags.items():
            model = create_model(sagemaker_client, s3_client, unique(f"e2e-jan-{key}"), scaler_files(2, key))
            config = create_config(sagemaker_client, unique(f"e2e-jan-{key}-cfg"), [instance_variant(model)])
            name = unique(f"e2e-jan-{key}-ep")
            sagemaker_client.create_endpoint(EndpointName=name, EndpointConfigName=config, Tags=endpoint_tags)
            made[key] = {"endpoint": name, "config": config, "model": model}
        for parts in made.values():
            status = wait_for_status(sagemaker_client, parts["endpoint"], {"InService", "Failed"})["EndpointStatus"]
            assert status == "InService", parts
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
                                  "models": [made["expired"]["model"]], "scalable_targets": [target],
                                  "expired_at": PAST}
            log = run.log("sweep")
            for line in (f"Deregistered scalable target {target}", f"Deleted endpoint {made['expired']['endpoint']}",
                         f"Deleted endpoint config {made['expired']['config']}",
                         f"Deleted model {made['expired']['model']}"):
                assert line in log, line

        gone = made["expired"]
        assert not _exists(sagemaker_client.describe_endpoint, EndpointName=gone["endpoint"])
        assert not _exists(sagemaker_client.describe_endpoint_config, EndpointConfigName=gone["config"])
        assert not _exists(sagemaker_client.describe_model, ModelName=gone["model"])
        assert autoscaling.describe_scalable_targets(ServiceNamespace="sagemaker", ResourceIds=[target])["ScalableTargets"] == []
        for key in ("unexpired", "standing"):
            parts = made[key]
            assert sagemaker_client.describe_endpoint(EndpointName=parts["endpoint"])["EndpointStatus"] == "InService"
            assert _exists(sagemaker_client.describe_endpoint_config, EndpointConfigName=parts["config"])
            assert _exists(sagemaker_client.describe_model, ModelName=parts["model"])
    finally:
        for parts in made.values():
            if _exists(sagemaker_client.describe_endpoint, EndpointName=parts["endpoint"]):
                sagemaker_client.delete_endpoint(EndpointName=parts["endpoint"])

