"""Who may talk to the local SageMaker: requests addressed to the address it listens on, sent by no web page.

Any web page can make a browser send requests to 127.0.0.1: cross-origin (they carry `Origin`) or
through a DNS name rebound to 127.0.0.1 (their `Host` is that name). One unsigned CreateProcessingJob
runs its ContainerEntrypoint, so such requests are refused here, in front of every route (SageMaker,
sagemaker-runtime, moto's services, /_emulator/*), and no CORS preflight is answered unless a
setting allows that origin.
"""
from __future__ import annotations

import ipaddress
import json
import logging
import re

from . import protocol
from .errors import AccessDenied

log = logging.getLogger(__name__)

# docker-compose.yaml's service name: what the Airflow containers address the emulator as
COMPOSE_HOST_NAMES = ("sagemaker-emulator",)
_HOST = re.compile(r"^(?:\[(?P<ipv6>[0-9A-Fa-f:.]+)\]|(?P<name>[A-Za-z0-9.-]+))(?::(?P<port>[0-9]{1,5}))?$")
_ORIGIN = re.compile(r"^[a-z][a-z0-9+.-]*://[^/?#\s]+$")
_HEADER_LIST = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~, -]*$")
_CORS_METHODS = "GET, HEAD, PUT, POST, DELETE"
_CORS_EXPOSED = "ETag, x-amzn-ErrorType, x-amzn-RequestId, x-amz-request-id, x-amz-version-id"


def normalize_origin(origin: str) -> str:
    """``scheme://host[:port]`` in lower case, as browsers send it; ValueError for anything else."""
    normalized = origin.strip().rstrip("/").lower()
    if not _ORIGIN.match(normalized):
        raise ValueError(f"not a web origin (scheme://host[:port]): {origin!r}")
    return normalized


def host_name(host_header: str) -> str | None:
    """The name a Host header addresses, lower case and without port; None when it is malformed."""
    match = _HOST.match(host_header)
    if not match or (match["port"] and int(match["port"]) > 65535):
        return None
    return (match["ipv6"] or match["name"]).lower()


def is_loopback(name: str) -> bool:
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


class RequestGate:
    """WSGI middleware: a 403 AccessDeniedException for a foreign Host, a disallowed Origin or a preflight."""

    def __init__(self, app, *, allowed_hosts=(), allowed_origins=()):
        self.app = app
        self.allowed_hosts = frozenset(name.lower() for name in allowed_hosts)
        self.allowed_origins = frozenset(normalize_origin(origin) for origin in allowed_origins)

    def refusal(self, environ) -> str | None:
        """Why this request is refused, or None when it may pass."""
        host = environ.get("HTTP_HOST", "")
        name = host_name(host)
        if name is None or not (is_loopback(name) or name in self.allowed_hosts):
            return "Requests must be addressed to the local SageMaker's own address (Host: 127.0.0.1 or localhost)."
        origin = environ.get("HTTP_ORIGIN")
        if origin is not None and not self._origin_allowed(origin):
            return "Cross-origin requests are refused: the local SageMaker answers no web page (see --allow-origin)."
        if environ.get("REQUEST_METHOD") == "OPTIONS" and origin is None:
            return "CORS preflight requests are not answered."
        return None

    def _origin_allowed(self, origin: str) -> bool:
        try:
            return normalize_origin(origin) in self.allowed_origins
        except ValueError:
            return False

    def __call__(self, environ, start_response):
        reason = self.refusal(environ)
        if reason:
            log.warning("refused %s %s (Host %s, Origin %s): %s", environ.get("REQUEST_METHOD"),
                        json.dumps(environ.get("PATH_INFO", "")[:200]), json.dumps(environ.get("HTTP_HOST", "")[:200]),
                        json.dumps(environ.get("HTTP_ORIGIN", "")[:200]), reason)
            return _answer(start_response, *protocol.json_error(AccessDenied(reason)))
        origin = environ.get("HTTP_ORIGIN")
        if origin is None:
            return self.app(environ, _without_cors(start_response))
        if environ.get("REQUEST_METHOD") == "OPTIONS":
            return _answer(start_response, 204, _preflight_headers(origin, environ), b"")
        return self.app(environ, _without_cors(start_response, {
            "Access-Control-Allow-Origin": origin, "Access-Control-Expose-Headers": _CORS_EXPOSED, "Vary": "Origin",
        }))


def _preflight_headers(origin: str, environ) -> dict:
    requested = environ.get("HTTP_ACCESS_CONTROL_REQUEST_HEADERS", "")
    headers = {"Access-Control-Allow-Origin": origin, "Access-Control-Allow-Methods": _CORS_METHODS,
               "Access-Control-Max-Age": "600", "Vary": "Origin"}
    if requested and _HEADER_LIST.match(requested):
        headers["Access-Control-Allow-Headers"] = requested
    return headers


def _without_cors(start_response, cors: dict | None = None):
    """start_response that drops the CORS headers moto adds (it allows every origin) and sets ours."""

    def start(status, headers, exc_info=None):
        kept = [(key, value) for key, value in headers if not key.lower().startswith("access-control-")]
        return start_response(status, kept + list((cors or {}).items()), exc_info)

    return start


def _answer(start_response, status: int, headers: dict, payload: bytes):
    reason = {204: "No Content", 403: "Forbidden"}.get(status, "")
    start_response(f"{status} {reason}", [*headers.items(), ("Content-Length", str(len(payload)))])
    return [payload]
