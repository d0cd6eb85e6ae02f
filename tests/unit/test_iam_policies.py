"""deploy/iam/*.json: valid IAM policies whose every action is a real AWS operation, least privilege,
and an Airflow role policy that allows every AWS call the DAGs, include/pipelines and plugins make.

Action names are checked against botocore's service models: for these services an IAM action is
named after its API operation, except S3's few (ListBucket) kept in S3_ACTIONS_WITHOUT_OPERATION.
"""
from __future__ import annotations

import fnmatch
import json
import re
from functools import lru_cache
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
IAM_DIR = ROOT / "deploy" / "iam"
AIRFLOW_POLICY = IAM_DIR / "airflow-role-policy.json"
EXECUTION_POLICY = IAM_DIR / "sagemaker-execution-role-policy.json"
TRUST_POLICY = IAM_DIR / "sagemaker-execution-role-trust-policy.json"
PERMISSION_POLICIES = (AIRFLOW_POLICY, EXECUTION_POLICY)
CODE_DIRS = ("dags", "include/pipelines", "plugins")

# IAM action prefix -> the botocore services whose operations it names
SERVICES = {
    "sagemaker": ("sagemaker", "sagemaker-runtime"),
    "s3": ("s3",),
    "logs": ("logs",),
    "application-autoscaling": ("application-autoscaling",),
    "cloudwatch": ("cloudwatch",),
    "iam": ("iam",),
    "sts": ("sts",),
    "servicequotas": ("service-quotas",),
    "ecr": ("ecr",),
}
# S3 actions that name no single operation, and the operations they grant
S3_ACTIONS_WITHOUT_OPERATION = {"ListBucket": ("ListObjectsV2", "ListObjects", "HeadBucket")}
# S3 operations that an action of another name grants
S3_OPERATION_ACTIONS = {
    "ListObjectsV2": ("s3:ListBucket",), "ListObjects": ("s3:ListBucket",), "HeadBucket": ("s3:ListBucket",),
    "HeadObject": ("s3:GetObject",), "CopyObject": ("s3:GetObject", "s3:PutObject"),
    "CreateMultipartUpload": ("s3:PutObject",), "UploadPart": ("s3:PutObject",), "CompleteMultipartUpload": ("s3:PutObject",),
}
# helper methods (boto3's transfer manager, the provider's S3Hook) -> the actions their requests need
HELPER_ACTIONS = {
    "upload_file": ("s3:PutObject",), "upload_fileobj": ("s3:PutObject",),
    "download_file": ("s3:GetObject",), "download_fileobj": ("s3:GetObject",),
    "load_bytes": ("s3:PutObject",), "load_string": ("s3:PutObject",), "load_file": ("s3:PutObject",),
    "read_key": ("s3:GetObject",), "check_for_key": ("s3:GetObject",), "check_for_bucket": ("s3:ListBucket",),
    "list_keys": ("s3:ListBucket",),
}
# what the Amazon provider's classes the code uses call on its behalf (its hooks/sagemaker.py,
# operators/sagemaker.py, triggers and waiters); the test checks the provider still calls each
PROVIDER_ACTIONS = {
    "SageMakerTrainingOperator": ("sagemaker:CreateTrainingJob", "sagemaker:DescribeTrainingJob",
                                  "logs:DescribeLogStreams", "logs:GetLogEvents", "s3:ListBucket", "s3:GetObject"),
    "SageMakerTuningOperator": ("sagemaker:CreateHyperParameterTuningJob", "sagemaker:DescribeHyperParameterTuningJob",
                                "s3:ListBucket", "s3:GetObject"),
    "SageMakerTransformOperator": ("sagemaker:CreateTransformJob", "sagemaker:DescribeTransformJob", "sagemaker:CreateModel",
                                   "sagemaker:DescribeModel", "s3:ListBucket", "s3:GetObject"),
    "SageMakerProcessingOperator": ("sagemaker:CreateProcessingJob", "sagemaker:DescribeProcessingJob",
                                    "sagemaker:ListProcessingJobs"),
    "SageMakerModelOperator": ("sagemaker:CreateModel",),
    "SageMakerEndpointConfigOperator": ("sagemaker:CreateEndpointConfig",),
    "SageMakerEndpointOperator": ("sagemaker:CreateModel", "sagemaker:CreateEndpointConfig", "sagemaker:CreateEndpoint",
                                  "sagemaker:UpdateEndpoint", "sagemaker:DescribeEndpoint"),
    "SageMakerRegisterModelVersionOperator": ("sagemaker:CreateModelPackageGroup", "sagemaker:CreateModelPackage",
                                              "sagemaker:DeleteModelPackageGroup"),
    "SageMakerDeleteModelOperator": ("sagemaker:DeleteModel",),
    "SageMakerTrigger": ("sagemaker:DescribeTrainingJob", "sagemaker:DescribeHyperParameterTuningJob",
                         "sagemaker:DescribeTransformJob", "sagemaker:DescribeProcessingJob", "sagemaker:DescribeEndpoint"),
}
# calls that need no permission at all (GetCallerIdentity works even under an explicit deny)
NEEDS_NO_PERMISSION = {"sts:GetCallerIdentity"}
# actions that are permissions only, named after no API operation
PERMISSION_ONLY = {"iam:PassRole"}
# actions without resource-level permissions: the only ones a Resource "*" may carry
RESOURCELESS = {
    "sagemaker:List*", "application-autoscaling:*", "cloudwatch:DescribeAlarms", "cloudwatch:PutMetricData",
    "ecr:GetAuthorizationToken", "servicequotas:ListServiceQuotas", "servicequotas:ListAWSDefaultServiceQuotas",
}
CONDITION_OPERATORS = {"StringEquals", "StringNotEquals", "StringLike", "StringNotLike", "ArnEquals", "ArnLike",
                       "ArnNotEquals", "ArnNotLike", "Bool", "NumericEquals", "NumericLessThan", "IpAddress"}
ARN_SERVICE = {"cloudwatch": "cloudwatch", "servicequotas": "servicequotas"}  # action prefix -> the service in its ARNs


def load(path: Path) -> dict:
    return json.loads(path.read_text())


def as_list(value) -> list:
    return [value] if isinstance(value, str) else list(value)


@lru_cache(maxsize=None)
def operations(prefix: str) -> frozenset[str]:
    """Every API operation an IAM action prefix names, from botocore's service models."""
    import botocore.session

    session = botocore.session.get_session()
    names = {name for service in SERVICES[prefix] for name in session.get_service_model(service).operation_names}
    if prefix == "s3":
        names |= set(S3_ACTIONS_WITHOUT_OPERATION)
    return frozenset(names)


@lru_cache(maxsize=None)
def snake_operations() -> dict[str, set[str]]:
    """boto3 method name -> the IAM actions ("prefix:Operation") of that name, over every prefix above."""
    from botocore import xform_name

    found: dict[str, set[str]] = {}
    for prefix in SERVICES:
        for operation in operations(prefix):
            found.setdefault(xform_name(operation), set()).add(f"{prefix}:{operation}")
    return found


def statements(path: Path) -> list[dict]:
    return load(path)["Statement"]


def allowed_actions(path: Path) -> list[str]:
    return [action for s in statements(path) if s["Effect"] == "Allow" for action in as_list(s["Action"])]


def is_allowed(action: str, path: Path = AIRFLOW_POLICY) -> bool:
    return any(fnmatch.fnmatchcase(action, pattern) for pattern in allowed_actions(path))


# ---- grammar -----------------------------------------------------------------------------------

@pytest.mark.parametrize("path", sorted(IAM_DIR.glob("*.json")), ids=lambda p: p.name)
def test_policy_grammar(path):
    policy = load(path)
    assert set(policy) <= {"Version", "Id", "Statement"}, f"{path.name}: unknown top-level keys {set(policy)}"
    assert policy["Version"] == "2012-10-17", f"{path.name}: Version must be 2012-10-17"
    assert isinstance(policy["Statement"], list) and policy["Statement"], f"{path.name}: Statement must be a non-empty list"
    sids = [s.get("Sid") for s in policy["Statement"]]
    assert len(set(sids)) == len(sids), f"{path.name}: duplicate Sids {sids}"
    trust = path == TRUST_POLICY
    for statement in policy["Statement"]:
        where = f"{path.name} {statement.get('Sid')}"
        assert set(statement) <= {"Sid", "Effect", "Action", "Resource", "Principal", "Condition"}, where
        assert re.fullmatch(r"[A-Za-z0-9]+", statement.get("Sid", "")), f"{where}: Sid must be alphanumeric"
        assert statement["Effect"] in ("Allow", "Deny"), where
        assert as_list(statement["Action"]), f"{where}: no Action"
        if trust:
            assert "Principal" in statement and "Resource" not in statement, f"{where}: a trust policy names a Principal"
        else:
            assert as_list(statement["Resource"]) and "Principal" not in statement, f"{where}: needs a Resource"
            for resource in as_list(statement["Resource"]):
                assert resource == "*" or re.fullmatch(r"arn:aws:[a-z0-9-]+:[a-z0-9*-]*:(\d{12}|\*)?:\S+", resource), \
                    f"{where}: {resource} is not an ARN"
        for operator, keys in statement.get("Condition", {}).items():
            assert operator in CONDITION_OPERATORS, f"{where}: unknown condition operator {operator}"
            assert isinstance(keys, dict) and keys, where


@pytest.mark.parametrize("path", sorted(IAM_DIR.glob("*.json")), ids=lambda p: p.name)
def test_every_action_names_a_real_operation(path):
    unknown = []
    for action in allowed_actions(path):
        prefix, _, name = action.partition(":")
        assert prefix in SERVICES, f"{path.name}: {action}: add the {prefix} service to SERVICES to check it"
        if action in PERMISSION_ONLY:
            continue
        matches = fnmatch.filter(operations(prefix), name)
        if not matches:
            unknown.append(action)
    assert not unknown, f"{path.name}: no such operation: {unknown}"


@pytest.mark.parametrize("path", PERMISSION_POLICIES, ids=lambda p: p.name)
def test_least_privilege(path):
    for statement in statements(path):
        where = f"{path.name} {statement['Sid']}"
        for action in as_list(statement["Action"]):
            assert action != "*" and not action.endswith(":*"), f"{where}: {action} grants a whole service"
        if "*" in as_list(statement["Resource"]):
            wide = [a for a in as_list(statement["Action"]) if not any(fnmatch.fnmatchcase(a, r) for r in RESOURCELESS)]
            assert not wide, f"{where}: {wide} support resource-level permissions; name the resources instead of *"
        else:
            prefixes = {a.split(":")[0] for a in as_list(statement["Action"])}
            services = {r.split(":")[2] for r in as_list(statement["Resource"])}
            assert services <= {ARN_SERVICE.get(p, p) for p in prefixes}, f"{where}: resources of {services} for {prefixes}"


# ---- the roles -----------------------------------------------------------------------------------

def aws_profile_settings() -> set[tuple[str, str]]:
    """(role_arn, bucket) placeholders of the workloads' aws profiles: the values the policies must name."""
    found = set()
    for path in (ROOT / "include" / "workloads").glob("*.yaml"):
        aws = yaml.safe_load(path.read_text())["profiles"]["aws"]
        found.add((aws["role_arn"], aws["bucket"]))
    return found


def test_policies_name_the_role_and_bucket_of_the_workload_files():
    [(role_arn, bucket)] = aws_profile_settings()
    account = role_arn.split(":")[4]
    for path in (*PERMISSION_POLICIES, TRUST_POLICY):
        text = path.read_text()
        assert set(re.findall(r"\b\d{12}\b", text)) == {account}, f"{path.name}: another account than {account}"
    for path in PERMISSION_POLICIES:
        resources = {r for s in statements(path) for r in as_list(s["Resource"])}
        assert {f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"} <= resources, f"{path.name}: bucket {bucket}"
    passing = [s for s in statements(AIRFLOW_POLICY) if "iam:PassRole" in as_list(s["Action"])]
    assert [s["Resource"] for s in passing] == [role_arn]


def test_airflow_may_pass_only_the_execution_role_and_only_to_sagemaker():
    [statement] = [s for s in statements(AIRFLOW_POLICY) if "iam:PassRole" in as_list(s["Action"])]
    assert as_list(statement["Action"]) == ["iam:PassRole"]
    assert "*" not in statement["Resource"]
    assert statement["Condition"] == {"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}}


def test_execution_role_trusts_only_sagemaker_of_its_account():
    [statement] = statements(TRUST_POLICY)
    assert statement["Principal"] == {"Service": "sagemaker.amazonaws.com"}
    assert as_list(statement["Action"]) == ["sts:AssumeRole"]
    assert "aws:SourceAccount" in statement["Condition"]["StringEquals"]


def test_execution_role_pulls_images_writes_logs_and_metrics():
    for action in ("ecr:GetAuthorizationToken", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "logs:CreateLogStream",
                   "logs:PutLogEvents", "cloudwatch:PutMetricData", "s3:GetObject", "s3:PutObject", "s3:ListBucket"):
        assert is_allowed(action, EXECUTION_POLICY), f"the SageMaker execution role cannot {action}"


# ---- the code's calls ----------------------------------------------------------------------------

def code_files() -> list[Path]:
    return sorted(path for directory in CODE_DIRS for path in (ROOT / directory).rglob("*.py"))


def called_actions() -> dict[str, set[str]]:
    """Where each AWS call is made -> the IAM actions it may need (a set of alternatives for a name
    several services share). Method calls (`.describe_endpoint(`) and operation names in strings
    (paginators, the JobKind describe names) both count, but not `self.<name>(` of a method the
    code defines itself (RejoinEarlierTryMixin.describe_job is no SageMaker DescribeJob); helper
    methods map through HELPER_ACTIONS."""
    texts = {path: path.read_text() for path in code_files()}
    own = {name for text in texts.values() for name in re.findall(r"\bdef ([a-z]\w*)\(", text)}
    found: dict[str, set[str]] = {}
    for path, text in texts.items():
        calls = {name for receiver, name in re.findall(r"(\w+)?\.([a-z][a-z0-9]*_[a-z0-9_]+)\(", text)
                 if not (receiver in ("self", "cls", "super") and name in own)}
        names = calls | set(re.findall(r"[\"']([a-z][a-z0-9]*_[a-z0-9_]+)[\"']", text))
        for name in names:
            if name in HELPER_ACTIONS:
                for action in HELPER_ACTIONS[name]:
                    found.setdefault(action, set()).add(f"{path.relative_to(ROOT)}: {name}")
                continue
            candidates = snake_operations().get(name, set()) - NEEDS_NO_PERMISSION
            if not candidates:
                continue
            required = set()
            for action in candidates:
                prefix, operation = action.split(":")
                required |= set(S3_OPERATION_ACTIONS.get(operation, (action,))) if prefix == "s3" else {action}
            found.setdefault(" | ".join(sorted(required)), set()).add(f"{path.relative_to(ROOT)}: {name}")
    return found


def provider_classes_in_use() -> set[str]:
    text = "\n".join(path.read_text() for path in code_files())
    return {name for name in PROVIDER_ACTIONS if re.search(rf"\b{name}\b", text)}


def test_the_scan_finds_the_calls_it_is_meant_to_find():
    """A guard on the scanner itself: calls known to be in the code show up."""
    found = called_actions()
    for action in ("sagemaker:DescribeEndpoint", "sagemaker:InvokeEndpoint", "application-autoscaling:RegisterScalableTarget",
                   "s3:ListBucket", "s3:PutObject", "iam:GetRole", "servicequotas:ListServiceQuotas"):
        assert any(action in key.split(" | ") for key in found), f"the scan missed {action}"
    assert {"SageMakerEndpointOperator", "SageMakerTrigger"} <= provider_classes_in_use()


def test_airflow_role_allows_every_call_the_code_makes():
    missing = []
    for alternatives, places in sorted(called_actions().items()):
        # a name several services share (say, a tag call) needs one of them
        if not any(is_allowed(action) for action in alternatives.split(" | ")):
            missing.append(f"{alternatives} (called in {', '.join(sorted(places))})")
    assert not missing, "deploy/iam/airflow-role-policy.json does not allow:\n" + "\n".join(missing)


def test_airflow_role_allows_what_the_providers_operators_call_for_us():
    needed = {action for name in provider_classes_in_use() for action in PROVIDER_ACTIONS[name]}
    # SageMaker authorizes a Create* request that carries Tags with sagemaker:AddTags as well
    if any(action.startswith("sagemaker:Create") for action in needed):
        needed.add("sagemaker:AddTags")
    missing = sorted(action for action in needed if not is_allowed(action))
    assert not missing, f"deploy/iam/airflow-role-policy.json lacks what the provider calls: {missing}"


def test_provider_still_makes_the_calls_the_table_lists():
    """PROVIDER_ACTIONS stays true to the installed provider: each SageMaker operation is called in its code."""
    import airflow.providers.amazon.aws as aws
    from botocore import xform_name

    base = Path(aws.__file__).parent
    provider = "\n".join((base / part).read_text() for part in (
        "hooks/sagemaker.py", "operators/sagemaker.py", "triggers/sagemaker.py", "waiters/sagemaker.json"))
    for name, actions in PROVIDER_ACTIONS.items():
        for action in actions:
            prefix, operation = action.split(":")
            if prefix == "sagemaker":
                assert xform_name(operation) in provider or operation in provider, f"{name}: the provider no longer calls {operation}"
