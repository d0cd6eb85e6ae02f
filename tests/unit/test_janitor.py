"""The endpoint janitor (include/pipelines/janitor.py) against the local SageMaker: real models, endpoint
configs and endpoints (each a running model server) and Application Auto Scaling targets.

One set of endpoints is swept twice, a dry run and then a real one; each test looks at one of them.
"""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from include.pipelines.janitor import STANDING_ROLE_TAG, VARIANT_DIMENSION, sweep_expired_endpoints, why_kept
from include.pipelines.requests import EXPIRY_TAG
from tests.conftest import client_of
from tests.emulator.test_autoscaling import _register_variant_scaling
from tests.janitor_fixtures import PAST, delete_endpoints, exists, make_endpoint

pytestmark = pytest.mark.slow  # model servers behind every endpoint

NOW = datetime.now(timezone.utc)
FUTURE = (NOW + timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%SZ")


def _tags(**values: str) -> list[dict[str, str]]:
    return [{"Key": key, "Value": value} for key, value in values.items()]


def _expiring(when: str, **more: str) -> list[dict[str, str]]:
    return [{"Key": EXPIRY_TAG, "Value": when}, *_tags(**more)]


STANDING = {"Key": STANDING_ROLE_TAG[0], "Value": STANDING_ROLE_TAG[1]}


@pytest.fixture(scope="module")
def autoscaling_client(emulator):
    return client_of(emulator, "application-autoscaling")


def _targets(autoscaling_client, endpoint: str) -> list[str]:
    resource_id = f"endpoint/{endpoint}/variant/AllTraffic"
    found = autoscaling_client.describe_scalable_targets(ServiceNamespace="sagemaker", ResourceIds=[resource_id])
    return [t["ResourceId"] for t in found["ScalableTargets"]]


def _state(sagemaker_client, autoscaling_client, world: dict) -> dict:
    """What of each endpoint's resources exists now."""
    state = {}
    for key, parts in world.items():
        state[key] = {
            "endpoint": exists(sagemaker_client.describe_endpoint, EndpointName=parts["endpoint"]),
            "config": exists(sagemaker_client.describe_endpoint_config, EndpointConfigName=parts["config"]),
            "models": {m: exists(sagemaker_client.describe_model, ModelName=m) for m in parts["models"]},
            "targets": _targets(autoscaling_client, parts["endpoint"]),
        }
    return state


@pytest.fixture(scope="module")
def world(sagemaker_client, s3_client, autoscaling_client):
    """Endpoints of every kind the janitor meets, each with its own config and model (the `shared` one
    also runs `unexpired`'s model); `expired` has a scalable target with a policy."""
    made: dict[str, dict] = {}

    def build(key: str, tags: list[dict], **options) -> dict:
        return make_endpoint(sagemaker_client, s3_client, made, "jan", key, tags, **options)

    try:
        expired = build("expired", _expiring(PAST, workload="janitor-test"))
        _register_variant_scaling(autoscaling_client, expired["endpoint"])  # a target with a policy
        unexpired = build("unexpired", _expiring(FUTURE))
        build("standing", [*_expiring(PAST), STANDING])
        build("untagged", _tags(workload="janitor-test"))
        build("shared", _expiring(PAST), extra_models=(unexpired["models"][0],))
        # deleted by hand before the sweep: one's config and model, the other's model
        gone = build("gone", _expiring(PAST))
        sagemaker_client.delete_endpoint_config(EndpointConfigName=gone["config"])
        sagemaker_client.delete_model(ModelName=gone["models"][0])
        sagemaker_client.delete_model(ModelName=build("modelless", _expiring(PAST))["models"][0])
        # still starting when the janitor looks: busy
        build("busy", _expiring(PAST, **{"emulator:fault": "slow-start:120"}), wait=False)
        yield made
    finally:
        delete_endpoints(sagemaker_client, made)
        for parts in made.values():
            for resource_id in _targets(autoscaling_client, parts["endpoint"]):
                autoscaling_client.deregister_scalable_target(ServiceNamespace="sagemaker", ResourceId=resource_id,
                                                              ScalableDimension=VARIANT_DIMENSION)


@pytest.fixture(scope="module")
def sweeps(world, sagemaker_client, autoscaling_client):
    """A dry run, the state after it, a real sweep and the state after that."""
    before = _state(sagemaker_client, autoscaling_client, world)
    dry = sweep_expired_endpoints(sagemaker_client, autoscaling_client, dry_run=True)
    after_dry = _state(sagemaker_client, autoscaling_client, world)
    real = sweep_expired_endpoints(sagemaker_client, autoscaling_client, poll_interval=0.2, wait_timeout=60)
    after = _state(sagemaker_client, autoscaling_client, world)
    return {"before": before, "dry": dry, "after_dry": after_dry, "real": real, "after": after}


def _ours(result: dict, world: dict, key: str) -> dict[str, dict]:
    """The `removed` or `kept` entries of this module's endpoints, by their key in `world`."""
    names = {parts["endpoint"]: k for k, parts in world.items()}
    return {names[e["endpoint"]]: e for e in result[key] if e["endpoint"] in names}


def test_expired_endpoint_goes_with_its_config_model_and_scalable_target(sweeps, world):
    parts = world["expired"]
    assert sweeps["before"]["expired"]["targets"] == [f"endpoint/{parts['endpoint']}/variant/AllTraffic"]
    entry = _ours(sweeps["real"], world, "removed")["expired"]
    assert entry == {"endpoint": parts["endpoint"], "endpoint_config": parts["config"], "models": parts["models"],
                     "scalable_targets": [f"endpoint/{parts['endpoint']}/variant/AllTraffic"], "expired_at": PAST}
    assert sweeps["after"]["expired"] == {"endpoint": False, "config": False,
                                          "models": {parts["models"][0]: False}, "targets": []}
    assert sweeps["real"]["dry_run"] is False


def test_unexpired_standing_and_untagged_endpoints_stay(sweeps, world):
    kept = _ours(sweeps["real"], world, "kept")
    assert kept["unexpired"]["why"] == f"not expired: {EXPIRY_TAG} {FUTURE}"
    assert kept["standing"]["why"] == "standing endpoint (endpoint-role=standing)"  # expired, yet standing
    assert kept["untagged"]["why"] == f"no {EXPIRY_TAG} tag"
    for key in ("unexpired", "standing", "untagged"):
        state = sweeps["after"][key]
        assert state["endpoint"] and state["config"] and all(state["models"].values()), (key, state)
        assert key not in _ours(sweeps["real"], world, "removed")


def test_busy_endpoint_is_skipped_even_when_expired(sweeps, world):
    kept = _ours(sweeps["real"], world, "kept")
    assert kept["busy"]["why"] == f"expired at {PAST} but busy (Creating); a later run removes it"
    assert sweeps["after"]["busy"]["endpoint"] and sweeps["after"]["busy"]["config"]


def test_model_another_endpoint_still_runs_stays(sweeps, world):
    shared, unexpired_model = world["shared"], world["unexpired"]["models"][0]
    own_model = shared["models"][0]
    entry = _ours(sweeps["real"], world, "removed")["shared"]
    assert entry["endpoint_config"] == shared["config"] and entry["models"] == [own_model]
    assert sweeps["after"]["shared"]["models"] == {own_model: False, unexpired_model: True}
    assert not sweeps["after"]["shared"]["endpoint"] and not sweeps["after"]["shared"]["config"]


def test_config_and_model_deleted_meanwhile_are_no_error(sweeps, world):
    removed = _ours(sweeps["real"], world, "removed")
    assert removed["gone"]["endpoint_config"] is None and removed["gone"]["models"] == []
    assert removed["modelless"]["endpoint_config"] == world["modelless"]["config"]
    assert removed["modelless"]["models"] == []  # gone already: not removed by this run
    assert _ours(sweeps["dry"], world, "removed")["modelless"]["models"] == world["modelless"]["models"]
    for key in ("gone", "modelless"):
        assert not sweeps["after"][key]["endpoint"] and not sweeps["after"][key]["config"]


def test_dry_run_reports_the_same_and_removes_nothing(sweeps, world):
    dry, real = sweeps["dry"], sweeps["real"]
    assert dry["dry_run"] is True
    assert sorted(_ours(dry, world, "removed")) == sorted(_ours(real, world, "removed")) == [
        "expired", "gone", "modelless", "shared"]
    assert _ours(dry, world, "removed")["expired"] == _ours(real, world, "removed")["expired"]
    assert _ours(dry, world, "kept") == _ours(real, world, "kept")
    assert sweeps["after_dry"] == sweeps["before"]


def test_a_second_sweep_finds_nothing_more_of_ours(sweeps, world, sagemaker_client, autoscaling_client):
    again = sweep_expired_endpoints(sagemaker_client, autoscaling_client, poll_interval=0.2, wait_timeout=60)
    assert _ours(again, world, "removed") == {}
    assert sorted(_ours(again, world, "kept")) == ["busy", "standing", "unexpired", "untagged"]


# --- the verdict alone -------------------------------------------------------------------------

@pytest.mark.parametrize(("tags", "status", "why"), [
    ({EXPIRY_TAG: "2026-01-01T00:00:00Z"}, "InService", None),
    ({EXPIRY_TAG: "2026-01-01T00:00:00"}, "Failed", None),  # no offset: UTC
    ({EXPIRY_TAG: "2026-01-01T00:00:00+00:00"}, "OutOfService", None),
    ({EXPIRY_TAG: "2026-06-01T00:00:00Z"}, "InService", f"not expired: {EXPIRY_TAG} 2026-06-01T00:00:00Z"),
    ({EXPIRY_TAG: "2026-01-01T00:00:00Z"}, "Updating", "expired at 2026-01-01T00:00:00Z but busy (Updating); "
                                                       "a later run removes it"),
    ({EXPIRY_TAG: "2026-01-01T00:00:00Z", "endpoint-role": "standing"}, "InService",
     "standing endpoint (endpoint-role=standing)"),
    ({EXPIRY_TAG: "2026-01-01T00:00:00Z", "endpoint-role": "temporary"}, "InService", None),
    ({EXPIRY_TAG: "next tuesday"}, "InService", f"unreadable {EXPIRY_TAG} tag 'next tuesday'"),
    ({}, "InService", f"no {EXPIRY_TAG} tag"),
])
def test_why_kept(tags, status, why):
    assert why_kept(tags, status, datetime(2026, 3, 1, tzinfo=timezone.utc))[0] == why


class _DeleteFails:
    """The SageMaker client, except that DeleteEndpoint of one endpoint is throttled."""

    def __init__(self, client, endpoint: str):
        self._client, self._endpoint = client, endpoint

    def __getattr__(self, name):
        return getattr(self._client, name)

    def delete_endpoint(self, EndpointName):
        from botocore.exceptions import ClientError

        if EndpointName == self._endpoint:
            raise ClientError({"Error": {"Code": "ThrottlingException", "Message": "Rate exceeded"}}, "DeleteEndpoint")
        return self._client.delete_endpoint(EndpointName=EndpointName)


def test_one_endpoint_that_will_not_go_does_not_keep_the_others(sweeps, sagemaker_client, s3_client, autoscaling_client):
    from include.pipelines.janitor import JanitorError

    made: dict[str, dict] = {}
    try:
        stuck, free = (make_endpoint(sagemaker_client, s3_client, made, "jan", key, _expiring(PAST))["endpoint"]
                       for key in ("stuck", "free"))
        with pytest.raises(JanitorError, match=f"could not remove 1 expired endpoint\\(s\\): {stuck}: .*Rate exceeded"):
            sweep_expired_endpoints(_DeleteFails(sagemaker_client, stuck), autoscaling_client, poll_interval=0.2,
                                    wait_timeout=60)
        assert not exists(sagemaker_client.describe_endpoint, EndpointName=free)
        assert exists(sagemaker_client.describe_endpoint, EndpointName=stuck)
        # the retry removes it
        again = sweep_expired_endpoints(sagemaker_client, autoscaling_client, poll_interval=0.2, wait_timeout=60)
        assert stuck in [e["endpoint"] for e in again["removed"]]
    finally:
        delete_endpoints(sagemaker_client, made)
