"""sagemaker-runtime InvokeEndpoint: pass a request to one of the endpoint's model servers.

The variant is picked by weight (or X-Amzn-SageMaker-Target-Variant), the instance round robin among
the healthy ones; with none healthy the answer is ServiceUnavailable (503) until a replacement is.
A container's error answer becomes ModelError (424) with OriginalStatusCode, OriginalMessage and
LogStreamArn, in SageMaker's words; the answer names the variant in
x-Amzn-Invoked-Production-Variant and passes X-Amzn-SageMaker-Custom-Attributes both ways.
"""
from __future__ import annotations

import json
import logging
import time
import uuid

from .endpoint_metrics import record_invocation
from .errors import ModelError, RuntimeValidationError, ServiceUnavailable
from .sagemaker.hosting import EndpointStore
from .serving.fleet import (InvocationTimeout, ModelServerUnavailable, NoHealthyInstance, ServerRetired,
                            UnknownVariant, log_group_name)

log = logging.getLogger(__name__)

MAX_PAYLOAD_BYTES = 6 * 1024 * 1024  # InvokeEndpoint's limit for real-time endpoints
MAX_SERVERLESS_PAYLOAD_BYTES = 4 * 1024 * 1024
INVOCATION_TIMEOUT_S = 60.0  # SageMaker gives a container 60 s to answer
_ROUTING_ATTEMPTS = 3  # a request that meets a retired or dead instance is routed again, this many times in all
_EXIT_GRACE_S = 1.0  # a killed server's socket closes just before its process can be reaped
# an update keeps the old fleet serving, and so do its rollback and a rollback that failed half way
SERVING_STATUSES = {"InService", "Updating", "SystemUpdating", "RollingBack", "UpdateRollbackFailed"}

CUSTOM_ATTRIBUTES = "X-Amzn-SageMaker-Custom-Attributes"
_FORWARDED_HEADERS = ("Content-Type", "Accept", CUSTOM_ATTRIBUTES, "X-Amzn-SageMaker-Inference-Id")


def _log_hint(ctx, endpoint_name: str) -> str:
    region = ctx.region
    return (f"See https://{region}.console.aws.amazon.com/cloudwatch/home?region={region}#logEventViewer:"
            f"group={log_group_name(endpoint_name)} in account {ctx.account_id} for more information.")


def _log_group_arn(ctx, endpoint_name: str) -> str:
    return f"arn:aws:logs:{ctx.region}:{ctx.account_id}:log-group:{log_group_name(endpoint_name)}"


def _model_error(ctx, endpoint_name: str, status: int, text: str) -> ModelError:
    kind = "client" if 400 <= status < 500 else "server"
    return ModelError(
        f'Received {kind} error ({status}) from primary with message "{text}". {_log_hint(ctx, endpoint_name)}',
        OriginalStatusCode=status,
        OriginalMessage=text,
        LogStreamArn=_log_group_arn(ctx, endpoint_name),
    )


def _unavailable(ctx, endpoint_name: str, variant: str, exc: Exception) -> ModelError:
    log.warning("endpoint %s variant %s: %s", endpoint_name, variant, exc)
    return ModelError(
        f'Received server error (0) from primary with message "The container is not answering: {exc}.". '
        f"{_log_hint(ctx, endpoint_name)}",
        LogStreamArn=_log_group_arn(ctx, endpoint_name),
    )


def _payload_too_large(limit: int) -> tuple[int, dict, bytes]:
    # SageMaker's front end refuses an oversize body with a bare 413, before any error code exists
    body = json.dumps({"message": f"HTTP content length exceeded {limit} bytes."}).encode()
    return 413, {"Content-Type": "application/json"}, body


def _serving_deployment(ctx, endpoint_name: str):
    record = ctx.emulator.store(EndpointStore).find(ctx.region, endpoint_name)
    if record is None:
        raise RuntimeValidationError(f"Endpoint {endpoint_name} of account {ctx.account_id} not found.")
    with record.lock:
        status = record.status
    # while an update shifts traffic, the old fleet or the new one, by the new one's share (each call picks again,
    # so a request routed again after meeting a retired instance follows the traffic where it went)
    deployment = record.serving_deployment()
    if deployment is None or status not in SERVING_STATUSES:
        raise RuntimeValidationError(
            f"Endpoint {endpoint_name} of account {ctx.account_id} is not in service: its status is {status}. "
            "Invoke it once DescribeEndpoint shows InService.")
    return deployment


def _route(ctx, deployment, endpoint_name: str, target: str | None):
    try:
        return deployment.route(target)
    except UnknownVariant:
        raise RuntimeValidationError(
            f'Invalid target variant "{target}" for endpoint {endpoint_name}: '
            f"its variants are {', '.join(deployment.variants)}.") from None
    except NoHealthyInstance as exc:
        log.warning("endpoint %s: no healthy instance in variant %s", endpoint_name, exc)
        raise ServiceUnavailable(
            f"Endpoint {endpoint_name} of account {ctx.account_id} has no healthy instance to serve the request "
            f"(production variant {exc}); unhealthy instances are being replaced. Try your call again. "
            f"{_log_hint(ctx, endpoint_name)}") from None


def invoke_endpoint(ctx, endpoint_name: str, request) -> tuple[int, dict, bytes]:
    """Answer one InvokeEndpoint request: (status, headers, body), or raise an AwsError."""
    started = time.monotonic()
    target = request.headers.get("X-Amzn-SageMaker-Target-Variant")
    deployment = _serving_deployment(ctx, endpoint_name)
    variant, server = _route(ctx, deployment, endpoint_name, target)

    body = request.get_data()
    if deployment.variants[variant].spec.is_serverless:
        if len(body) > MAX_SERVERLESS_PAYLOAD_BYTES:
            request_id = request.headers.get("X-Amzn-SageMaker-Inference-Id") or str(uuid.uuid4())
            raise RuntimeValidationError(f"Request {request_id} has oversize body.")
    elif len(body) > MAX_PAYLOAD_BYTES:
        return _payload_too_large(MAX_PAYLOAD_BYTES)

    headers = {name: request.headers[name] for name in _FORWARDED_HEADERS if request.headers.get(name)}
    for attempt in range(1, _ROUTING_ATTEMPTS + 1):
        try:
            model_started = time.monotonic()
            answer_status, answer_headers, answer = server.invoke(body, headers, INVOCATION_TIMEOUT_S)
            break
        except ModelServerUnavailable as exc:
            # an update retired the instance between routing and sending, or its process died (before or
            # during the request): the load balancer sends the request to a healthy instance of the fleet
            # that serves now, as SageMaker's does, rather than dropping it
            if not isinstance(exc, ServerRetired):
                if not server.exited(_EXIT_GRACE_S):
                    raise _unavailable(ctx, endpoint_name, variant, exc) from None
                deployment.report_dead(server)
            if attempt == _ROUTING_ATTEMPTS:
                raise _unavailable(ctx, endpoint_name, variant, exc) from None
            deployment = _serving_deployment(ctx, endpoint_name)
            variant, server = _route(ctx, deployment, endpoint_name, target)
        except InvocationTimeout:
            record_invocation(ctx, endpoint_name, deployment, variant, None, started, model_started)
            raise ModelError(
                'Received server error (0) from primary with message "Your invocation timed out while waiting for a '
                "response from container primary. Review the latency metrics for each container in Amazon CloudWatch, "
                f'resolve the issue, and try again.". {_log_hint(ctx, endpoint_name)}',
                LogStreamArn=_log_group_arn(ctx, endpoint_name),
            ) from None

    record_invocation(ctx, endpoint_name, deployment, variant, answer_status, started, model_started)
    if not 200 <= answer_status < 300:
        raise _model_error(ctx, endpoint_name, answer_status, answer.decode("utf-8", errors="replace"))

    lowered = {key.lower(): value for key, value in answer_headers.items()}
    response_headers = {
        "Content-Type": lowered.get("content-type", "application/octet-stream"),
        "x-Amzn-Invoked-Production-Variant": variant,
    }
    if lowered.get(CUSTOM_ATTRIBUTES.lower()):
        response_headers[CUSTOM_ATTRIBUTES] = lowered[CUSTOM_ATTRIBUTES.lower()]
    return 200, response_headers, answer
