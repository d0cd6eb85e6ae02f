"""Routing: one WSGI app on one port. SageMaker, sagemaker-runtime and IAM's SimulatePrincipalPolicy
(which moto lacks) are ours; everything else (S3, CloudWatch Logs, IAM, STS, Application Auto
Scaling) goes to moto's server backends, and only to those. Every request passes the request gate
(request_gate.py) first."""
from __future__ import annotations

import io
import json
import logging
import re
import threading

from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from . import protocol
from .state import Emulator, Settings
from .errors import AwsError, UnknownOperation
from .request_gate import RequestGate

log = logging.getLogger(__name__)

_INVOKE_PATH = re.compile(r"^/endpoints/(?P<name>[^/]+)/invocations$")
_SCOPE = re.compile(r"Credential=[^/]+/\d{8}/(?P<region>[^/]+)/(?P<service>[^/]+)/aws4_request")
# X-Amz-Target prefixes of the awsJson services moto answers for us (CloudWatch Logs, Application
# Auto Scaling, CloudWatch); any other target, moto's own SageMaker mock's included, is unknown here
MOTO_TARGET_PREFIXES = frozenset({"Logs_20140328", "AnyScaleFrontendService", "GraniteServiceVersion20100801"})
# moto's backends that we serve (S3, CloudWatch Logs, IAM, STS, Application Auto Scaling, CloudWatch);
# its others (its SageMaker, sagemaker-runtime, /moto-api, instance metadata, ...) are never reached
MOTO_BACKENDS = frozenset({"s3", "logs", "iam", "sts", "applicationautoscaling", "cloudwatch"})
# a resource's Describe* answer for a person (the Airflow extra links point here): read-only
_DESCRIBE_PATH = re.compile(r"^/_emulator/describe/(?P<resource>[A-Za-z]+)$")
DESCRIBABLE = {  # Describe<resource> -> its name parameter
    "TrainingJob": "TrainingJobName",
    "HyperParameterTuningJob": "HyperParameterTuningJobName",
    "TransformJob": "TransformJobName",
    "ProcessingJob": "ProcessingJobName",
    "Model": "ModelName",
    "EndpointConfig": "EndpointConfigName",
    "Endpoint": "EndpointName",
    "ModelPackageGroup": "ModelPackageGroupName",
    "ModelPackage": "ModelPackageName",
}


def _scope(request: Request) -> tuple[str | None, str | None]:
    match = _SCOPE.search(request.headers.get("Authorization", ""))
    return (match["region"], match["service"]) if match else (None, None)


class Gateway:
    def __init__(self, emulator: Emulator):
        from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

        from . import sagemaker  # noqa: F401  (registers the operations)

        def backend_app(backend):
            return create_backend_app(backend) if backend in MOTO_BACKENDS else _unserved(backend)

        self.emulator = emulator
        self._moto = DomainDispatcherApplication(backend_app)

    def __call__(self, environ, start_response):
        request = Request(environ)
        region, service = _scope(request)
        target = request.headers.get("X-Amz-Target", "")
        prefix, dot, operation = target.partition(".")
        if target and not (dot and prefix in {"SageMaker", *MOTO_TARGET_PREFIXES}):
            response = _unknown_operation(f"Operation {target[:200]} is not supported by the local SageMaker.")
        elif prefix == "SageMaker":
            response = self._sagemaker(request, operation, region)
        elif target:
            return self._moto(environ, start_response)
        elif request.method == "POST" and _INVOKE_PATH.match(request.path) and service in (None, "sagemaker"):
            response = self._invoke(request, _INVOKE_PATH.match(request.path)["name"], region)
        elif request.path == "/_emulator/health":
            response = Response(json.dumps({"status": "ok"}), content_type="application/json")
        elif describe := _DESCRIBE_PATH.match(request.path):
            response = self._describe_page(request, describe["resource"])
        elif service == "iam" and (simulation := self._iam_simulation(request, environ)) is not None:
            response = simulation
        else:
            return self._moto(environ, start_response)
        return response(environ, start_response)

    def _iam_simulation(self, request: Request, environ) -> Response | None:
        """SimulatePrincipalPolicy's answer, or None for any other IAM action (moto answers those)."""
        from . import iam_simulation

        body = request.get_data()
        environ["wsgi.input"] = io.BytesIO(body)  # read once here: moto reads the request again
        params = iam_simulation.query_parameters(request.query_string.decode("utf-8", errors="replace"), body)
        if not iam_simulation.is_simulation(params):
            return None
        try:
            status, headers, payload = iam_simulation.answer(params)
        except Exception as exc:  # a bug of ours must still answer as AWS would, and be logged
            log.exception("IAM SimulatePrincipalPolicy failed")
            status, headers, payload = iam_simulation.error_answer(iam_simulation.ServiceFailure(f"Internal error: {exc}"))
        return Response(payload, status=status, headers=headers)

    def _sagemaker(self, request: Request, operation: str, region: str | None) -> Response:
        from .sagemaker.operations import dispatch

        ctx = self.emulator.context(region)
        try:
            body = protocol.parse_json_body(request.get_data())
            status, headers, payload = protocol.json_response(dispatch(ctx, operation, body))
        except AwsError as error:
            status, headers, payload = protocol.json_error(error)
        except Exception as exc:  # a bug of ours must still answer as AWS would, and be logged
            log.exception("SageMaker.%s failed", operation)
            status, headers, payload = protocol.json_error(AwsError(f"Internal error: {exc}"))
        return Response(payload, status=status, headers=headers)

    def _describe_page(self, request: Request, resource: str) -> Response:
        """GET /_emulator/describe/<Resource>?name=...&region=...: Describe<Resource>'s answer, indented."""
        from .sagemaker.operations import dispatch

        if request.method not in ("GET", "HEAD"):
            return _page({"message": "read-only: use GET"}, 405, Allow="GET, HEAD")
        if resource not in DESCRIBABLE:
            return _page({"message": f"no such resource {resource!r}; one of {', '.join(DESCRIBABLE)}"}, 404)
        name = request.args.get("name", "")
        if not name:
            return _page({"message": f"give the {DESCRIBABLE[resource]} as ?name=..."}, 400)
        try:
            ctx = self.emulator.context(request.args.get("region") or None)
            status, _, payload = protocol.json_response(dispatch(ctx, f"Describe{resource}", {DESCRIBABLE[resource]: name}))
        except AwsError as error:
            status, _, payload = protocol.json_error(error)
        except Exception as exc:  # a bug of ours must still answer, and be logged
            log.exception("Describe%s %s failed", resource, name)
            status, _, payload = protocol.json_error(AwsError(f"Internal error: {exc}"))
        return _page(json.loads(payload), status)

    def _invoke(self, request: Request, endpoint_name: str, region: str | None) -> Response:
        from .runtime import invoke_endpoint

        ctx = self.emulator.context(region)
        try:
            status, headers, payload = invoke_endpoint(ctx, endpoint_name, request)
        except AwsError as error:
            status, headers, payload = protocol.rest_json_error(error)
        except Exception as exc:
            log.exception("InvokeEndpoint %s failed", endpoint_name)
            status, headers, payload = protocol.rest_json_error(AwsError(f"Internal error: {exc}"))
        return Response(payload, status=status, headers=headers)


def _unknown_operation(message: str) -> Response:
    status, headers, payload = protocol.json_error(UnknownOperation(message))
    return Response(payload, status=status, headers=headers)


def _unserved(backend: str):
    """The WSGI app that stands in for a moto backend we do not serve."""

    def app(environ, start_response):
        log.warning("refused a request for moto's %s backend: %s %s", backend, environ.get("REQUEST_METHOD"),
                    json.dumps(environ.get("PATH_INFO", "")[:200]))
        return _unknown_operation(f"The local SageMaker does not serve this operation ({backend}).")(environ, start_response)

    return app


def _page(body: dict, status: int, **headers: str) -> Response:
    return Response(json.dumps(body, indent=2, sort_keys=True) + "\n", status=status, content_type="application/json",
                    headers={"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff", **headers})


class _QuietHandler:
    """moto's handler (it keeps S3 metadata headers intact) without a log line per request."""

    @staticmethod
    def based_on(handler_class):
        class Handler(handler_class):
            def log_request(self, code="-", size="-"):
                if str(code).startswith("5"):
                    super().log_request(code, size)

        return Handler


class EmulatorServer:
    """The gateway on a port of 127.0.0.1, in a background thread (tests) or the foreground."""

    def __init__(self, settings: Settings | None = None):
        self.emulator = Emulator(settings)
        settings = self.emulator.settings
        if settings.host not in ("127.0.0.1", "localhost", "::1") and not settings.allow_container_network:
            raise ValueError("the local SageMaker binds to the loopback interface only")
        from moto.moto_server.werkzeug_app import MotoRequestHandler

        # every request passes the gate first: only those addressed to this server, sent by no web page
        app = RequestGate(Gateway(self.emulator), allowed_hosts=settings.allowed_hosts, allowed_origins=settings.allowed_origins)
        self._server = make_server(
            settings.host, settings.port, app, threaded=True, request_handler=_QuietHandler.based_on(MotoRequestHandler)
        )
        self.emulator.port = self._server.server_port
        self._thread: threading.Thread | None = None

    @property
    def endpoint_url(self) -> str:
        return self.emulator.endpoint_url

    def start(self) -> "EmulatorServer":
        self._start_monitoring()
        self._thread = threading.Thread(target=self._server.serve_forever, name="emulator", daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self._start_monitoring()
        self._server.serve_forever()

    def _start_monitoring(self) -> None:
        """The endpoint metrics publisher and the alarm evaluator run while the server does (shutdown stops them)."""
        from .alarms import AlarmEvaluator
        from .endpoint_metrics import EndpointMetrics

        self.emulator.store(EndpointMetrics)
        self.emulator.store(AlarmEvaluator)

    def stop(self) -> None:
        self.emulator.shutdown()
        self._server.shutdown()
        self._server.server_close()
