"""IAM SimulatePrincipalPolicy, which moto does not implement (it answers 500).

The SageMaker Python SDK calls it to check an execution role before it starts a job. The local
SageMaker enforces no IAM policy: every action of every principal succeeds here. So the honest
answer, and the one this module gives, is "allowed" for every action on every resource, for a
user, group or role that exists in (moto's) IAM. A principal that does not exist is refused with
NoSuchEntity, and an ARN that names no user, group or role with InvalidInput, as IAM does; the
SDK's next check (the role's trust policy, read with GetRole) needs the role to exist anyway.

Wire format: IAM's query protocol (form-encoded ``Action=SimulatePrincipalPolicy&...`` in, XML out).
"""
from __future__ import annotations

import re
import uuid
from urllib.parse import parse_qsl
from xml.sax.saxutils import escape

from include.aws_shapes import request_problems, service_model

from .errors import AwsError

OPERATION = "SimulatePrincipalPolicy"
XML_NAMESPACE = "https://iam.amazonaws.com/doc/2010-05-08/"
DEFAULT_MAX_ITEMS = 100  # IAM's default page size
ALLOWED = "allowed"
_PRINCIPAL_ARN = re.compile(r"^arn:(?P<partition>aws[\w-]*):iam::(?P<account>\d{12}):(?P<kind>user|group|role)(?P<path>/.*)?/(?P<name>[^/]+)$")


class IamError(AwsError):
    status = 400


class NoSuchEntity(IamError):
    code = "NoSuchEntity"
    status = 404


class InvalidInput(IamError):
    code = "InvalidInput"


class IamValidationError(IamError):
    code = "ValidationError"


class ServiceFailure(IamError):
    code = "ServiceFailure"
    status = 500


def query_parameters(query_string: str, body: bytes) -> dict[str, str]:
    """The flat ``Name.member.N`` parameters of a query-protocol request (URL and form body)."""
    params = dict(parse_qsl(query_string, keep_blank_values=True))
    params.update(parse_qsl(body.decode("utf-8", errors="replace"), keep_blank_values=True))
    return params


def is_simulation(params: dict[str, str]) -> bool:
    return params.get("Action") == OPERATION


def answer(params: dict[str, str]) -> tuple[int, dict, bytes]:
    """The HTTP answer (status, headers, XML body) to a SimulatePrincipalPolicy request."""
    request_id = str(uuid.uuid4())
    try:
        result = simulate_principal_policy(_from_query(_input_shape(), params, ""))
    except IamError as error:
        return error_answer(error, request_id)
    body = (
        f'<{OPERATION}Response xmlns="{XML_NAMESPACE}"><{OPERATION}Result>{_to_xml(result)}</{OPERATION}Result>'
        f"<ResponseMetadata><RequestId>{request_id}</RequestId></ResponseMetadata></{OPERATION}Response>"
    )
    return 200, _XML_HEADERS, body.encode()


def simulate_principal_policy(request: dict) -> dict:
    """The result members for ``request`` (botocore's parameter names): one EvaluationResult per
    action and resource, all allowed, paged by MaxItems and Marker."""
    problems = request_problems("iam", OPERATION, request)
    if problems:
        noun = "error" if len(problems) == 1 else "errors"
        raise IamValidationError(f"{len(problems)} validation {noun} detected: " + "; ".join(problems))
    _require_principal(request["PolicySourceArn"])

    resources = request.get("ResourceArns") or []
    results = [
        _evaluation(action, resource, resource_specific=bool(resources))
        for action in request["ActionNames"]
        for resource in resources or ["*"]
    ]
    start = _offset(request.get("Marker"), len(results))
    end = start + request.get("MaxItems", DEFAULT_MAX_ITEMS)
    page = {"EvaluationResults": results[start:end], "IsTruncated": end < len(results)}
    if end < len(results):
        page["Marker"] = str(end)
    return page


def _evaluation(action: str, resource: str, *, resource_specific: bool) -> dict:
    # no policy statement decides anything here: nothing matched, no context key was missing
    result = {"EvalActionName": action, "EvalResourceName": resource, "EvalDecision": ALLOWED,
              "MatchedStatements": [], "MissingContextValues": []}
    if resource_specific:  # as IAM answers when ResourceArns were named
        result["ResourceSpecificResults"] = [
            {"EvalResourceName": resource, "EvalResourceDecision": ALLOWED, "MatchedStatements": [], "MissingContextValues": []}
        ]
    return result


def _require_principal(arn: str) -> None:
    """The user, group or role ``arn`` names must exist in moto's IAM, as IAM requires."""
    from moto.iam.models import iam_backends

    match = _PRINCIPAL_ARN.match(arn)
    if match is None:  # e.g. an STS assumed-role ARN: IAM wants the role's own ARN
        raise InvalidInput(f"Invalid Entity Arn: {arn}")
    backend = iam_backends[match["account"]][match["partition"]]
    entities = {"user": lambda: backend.users.values(), "group": lambda: backend.groups.values(), "role": backend.get_roles}
    if not any(entity.arn == arn for entity in entities[match["kind"]]()):
        raise NoSuchEntity(f"The {match['kind']} with name {match['name']} cannot be found.")


def _offset(marker: str | None, total: int) -> int:
    if marker is None:
        return 0
    if not marker.isdigit() or int(marker) > total:
        raise InvalidInput(f"Invalid Marker: {marker}")
    return int(marker)


# --- the query protocol ---------------------------------------------------------------------------

_XML_HEADERS = {"Content-Type": "text/xml"}


def _input_shape():
    return service_model("iam").operation_model(OPERATION).input_shape


def _from_query(shape, params: dict[str, str], prefix: str):
    """Rebuild botocore's parameters from flat query keys (``ActionNames.member.1``, ``MaxItems``);
    None when nothing was sent for ``prefix``. Values that do not parse are kept as text, so the
    validation names them."""
    kind = shape.type_name
    if kind == "structure":
        members = {}
        for name, member in shape.members.items():
            value = _from_query(member, params, f"{prefix}.{name}" if prefix else name)
            if value is not None:
                members[name] = value
        return members if members or not prefix else None
    if kind == "list":
        if params.get(prefix) == "":  # botocore sends an empty list as "Name="
            return []
        items = []
        while (item := _from_query(shape.member, params, f"{prefix}.member.{len(items) + 1}")) is not None:
            items.append(item)
        return items or None
    raw = params.get(prefix)
    if raw is None:
        return None
    if kind in ("integer", "long"):
        return int(raw) if re.fullmatch(r"-?\d+", raw) else raw
    if kind == "boolean":
        return {"true": True, "false": False}.get(raw.lower(), raw)
    return raw


def _to_xml(value) -> str:
    if isinstance(value, dict):
        return "".join(f"<{name}>{_to_xml(item)}</{name}>" for name, item in value.items() if item is not None)
    if isinstance(value, list):
        return "".join(f"<member>{_to_xml(item)}</member>" for item in value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return escape(str(value))


def error_answer(error: IamError, request_id: str | None = None) -> tuple[int, dict, bytes]:
    """An IAM error as the query protocol carries it (botocore reads Code and Message)."""
    fault = "Receiver" if error.status >= 500 else "Sender"
    body = (
        f'<ErrorResponse xmlns="{XML_NAMESPACE}"><Error><Type>{fault}</Type><Code>{error.code}</Code>'
        f"<Message>{escape(error.message)}</Message></Error><RequestId>{request_id or uuid.uuid4()}</RequestId>"
        "</ErrorResponse>"
    )
    return error.status, _XML_HEADERS, body.encode()
