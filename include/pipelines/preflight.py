"""Preflight: can this account run the pipelines? Checked before a run spends anything.

For each workload: the SageMaker execution role exists, is in the connection's account and trusts
sagemaker.amazonaws.com; the bucket exists in the connection's region (and an s3:// data source
holds objects); the training and inference images resolve for the region; and the account's
SageMaker quotas (Service Quotas) cover the configured instance types and counts. Every check
yields findings; `run_preflight` (the aws_preflight DAG's task) prints one report and fails when
any finding blocks a run.

On the local SageMaker (profile "local") nothing checks roles, the DAGs create the bucket, and
there are no quotas: those findings are warnings or skipped, never blocking.
"""
from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import asdict, dataclass

from botocore.exceptions import ClientError

from .config import PLACEHOLDER_MARKER, ConfigError, WorkloadConfig, load_workload, profile_for_endpoint_url

log = logging.getLogger(__name__)

SAGEMAKER_PRINCIPAL = "sagemaker.amazonaws.com"
TRUST_POLICY_FILE = "deploy/iam/sagemaker-execution-role-trust-policy.json"
QUOTA_SERVICE_CODE = "sagemaker"

OK, MISSING, WARNING, SKIPPED = "ok", "missing", "warning", "skipped"


@dataclass(frozen=True)
class Finding:
    """One result of one check. `missing` blocks a run; `warning` is worth reading; `skipped` did not apply."""

    workload: str
    check: str  # role, bucket, data, images, quota, settings
    status: str
    message: str

    @property
    def blocking(self) -> bool:
        return self.status == MISSING


class PreflightFailed(RuntimeError):
    """Something a run needs is missing; the message is the whole report."""


# ---- role --------------------------------------------------------------------------------------

def _as_list(value) -> list:
    return [value] if isinstance(value, (str, dict)) else list(value or [])


def _trusts_sagemaker(trust_policy: dict | str) -> bool:
    """Whether an Allow statement lets sagemaker.amazonaws.com call sts:AssumeRole."""
    if isinstance(trust_policy, str):  # IAM sends it URL-encoded; boto3 usually decodes it already
        import json
        from urllib.parse import unquote

        trust_policy = json.loads(unquote(trust_policy))
    for statement in _as_list(trust_policy.get("Statement")):
        principal = statement.get("Principal")
        services = _as_list(principal.get("Service")) if isinstance(principal, dict) else []
        actions = _as_list(statement.get("Action"))
        if (statement.get("Effect") == "Allow" and SAGEMAKER_PRINCIPAL in services
                and any(action in ("sts:AssumeRole", "sts:*", "*") for action in actions)):
            return True
    return False


def check_role(iam, role_arn: str, *, workload: str, account_id: str | None, strict: bool = True) -> list[Finding]:
    """The execution role exists in the caller's account and SageMaker may assume it."""
    problem = MISSING if strict else WARNING
    name = role_arn.rsplit("/", 1)[-1]
    role_account = role_arn.split(":")[4] if role_arn.count(":") >= 5 else ""
    if account_id and role_account != account_id:
        # GetRole would look the name up in the caller's account: another role, or none
        return [Finding(workload, "role", problem,
                        f"{role_arn} belongs to account {role_account}, the connection's account is {account_id}: "
                        "iam:PassRole passes only roles of the caller's own account to SageMaker")]
    findings = []
    try:
        role = iam.get_role(RoleName=name)["Role"]
    except ClientError as error:
        code = error.response.get("Error", {}).get("Code", "")
        if code == "NoSuchEntity":
            local = "" if strict else " (the local SageMaker does not check roles)"
            findings.append(Finding(workload, "role", problem,
                                    f"execution role {name} does not exist{local}; create it with the trust policy "
                                    f"{TRUST_POLICY_FILE} (docs/deploy.md), or set the Variable sagemaker_role_arn"))
        else:
            findings.append(Finding(workload, "role", WARNING, f"cannot read execution role {name} ({code}); "
                                    "allow iam:GetRole on it to check it here"))
        return findings
    if not _trusts_sagemaker(role.get("AssumeRolePolicyDocument") or {}):
        findings.append(Finding(workload, "role", problem,
                                f"execution role {name} does not trust {SAGEMAKER_PRINCIPAL}: SageMaker cannot assume it; "
                                f"give it the trust policy {TRUST_POLICY_FILE}"))
    if not findings:
        findings.append(Finding(workload, "role", OK, f"{role['Arn']} exists and trusts {SAGEMAKER_PRINCIPAL}"))
    return findings


# ---- bucket and data ---------------------------------------------------------------------------

def bucket_region(s3, bucket: str) -> str:
    """The bucket's region, as GetBucketLocation names it (None means us-east-1, "EU" eu-west-1)."""
    location = s3.get_bucket_location(Bucket=bucket).get("LocationConstraint")
    return {None: "us-east-1", "": "us-east-1", "EU": "eu-west-1"}.get(location, location)


def check_bucket(s3, bucket: str, region: str, *, workload: str, strict: bool = True) -> list[Finding]:
    """The bucket exists, this identity can reach it, and it is in the region the jobs run in."""
    try:
        s3.head_bucket(Bucket=bucket)
    except ClientError as error:
        code = str(error.response.get("Error", {}).get("Code", ""))
        if code in ("404", "NoSuchBucket", "NotFound"):
            if not strict:
                return [Finding(workload, "bucket", WARNING, f"bucket {bucket} does not exist yet; the DAG creates it")]
            return [Finding(workload, "bucket", MISSING,
                            f"bucket {bucket} does not exist; create it in {region} "
                            f"(aws s3api create-bucket --bucket {bucket} --region {region}{_location_argument(region)}) "
                            "or set the Variable sagemaker_bucket")]
        if code in ("403", "AccessDenied", "Forbidden"):
            return [Finding(workload, "bucket", MISSING,
                            f"bucket {bucket} exists but this identity may not use it (403): it belongs to another "
                            "account, or the Airflow role lacks s3:ListBucket on it (deploy/iam/airflow-role-policy.json)")]
        raise
    found = bucket_region(s3, bucket)
    if found != region:
        return [Finding(workload, "bucket", MISSING,
                        f"bucket {bucket} is in {found}, the connection's region is {region}: SageMaker jobs read and "
                        f"write S3 in their own region; use a bucket in {region} or set the connection's region_name to {found}")]
    return [Finding(workload, "bucket", OK, f"s3://{bucket} exists in {region}")]


def _location_argument(region: str) -> str:
    return "" if region == "us-east-1" else f" --create-bucket-configuration LocationConstraint={region}"


def check_data_source(s3, cfg: WorkloadConfig) -> list[Finding]:
    """An s3:// data source (used in place, not synced by the DAG) holds at least one object."""
    source = cfg.data.source_uri or ""
    if not source.startswith("s3://"):
        return []
    bucket, _, prefix = source.removeprefix("s3://").partition("/")
    try:
        listing = s3.list_objects_v2(Bucket=bucket, Prefix=prefix.rstrip("/") + "/" if prefix else "", MaxKeys=1)
    except ClientError as error:
        code = error.response.get("Error", {}).get("Code", "")
        return [Finding(cfg.name, "data", MISSING, f"cannot list the data at {source} ({code})")]
    if not listing.get("KeyCount"):
        return [Finding(cfg.name, "data", MISSING, f"no objects under {source}: upload the data set there or point "
                        f"profiles.{cfg.profile}.data.source_uri in include/workloads/{cfg.name}.yaml at it")]
    return [Finding(cfg.name, "data", OK, f"data found under {source}")]


# ---- images ------------------------------------------------------------------------------------

def check_images(cfg: WorkloadConfig, region: str) -> list[Finding]:
    """The training image, and the inference image when the workload serves or transforms, exist for the region."""
    from . import images

    lookups = [("training", lambda: images.training_image_uri(cfg, region))]
    if cfg.endpoint is not None or cfg.transform is not None:
        lookups.append(("inference", lambda: images.inference_image_uri(cfg, region)))
    if cfg.transform is not None and cfg.endpoint is not None and cfg.transform.instance_type != cfg.endpoint.instance_type:
        lookups.append(("transform", lambda: images.inference_image_uri(cfg, region, instance_type=cfg.transform.instance_type)))
    findings = []
    for scope, lookup in lookups:
        try:
            findings.append(Finding(cfg.name, "images", OK, f"{scope} image {lookup()}"))
        except ValueError as error:
            findings.append(Finding(cfg.name, "images", MISSING, f"{scope} image: {error}"))
    return findings


# ---- quotas ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class QuotaNeed:
    """Instances of one kind a workload needs at once, and what for."""

    quota_name: str  # Service Quotas' name, e.g. "ml.g4dn.xlarge for spot training job usage"
    count: int
    purpose: str
    blocking: bool = True  # False: only needed for a blue/green update, a warning when short


def quota_needs(cfg: WorkloadConfig) -> list[QuotaNeed]:
    """What the workload's jobs and endpoint need at once, per quota (tuning and training run one after the other)."""
    training = cfg.training
    usage = "spot training job usage" if training.use_spot else "training job usage"
    needs = [QuotaNeed(f"{training.instance_type} for {usage}", training.instance_count, "the training job")]
    if cfg.tuning is not None:
        per_job = cfg.tuning.instance_count or training.instance_count
        needs.append(QuotaNeed(f"{training.instance_type} for {usage}", per_job * cfg.tuning.max_parallel_jobs,
                               f"tuning ({cfg.tuning.max_parallel_jobs} parallel jobs of {per_job})"))
    if cfg.transform is not None:
        needs.append(QuotaNeed(f"{cfg.transform.instance_type} for transform job usage", cfg.transform.instance_count,
                               "the batch transform"))
    endpoint = cfg.endpoint
    if endpoint is not None and endpoint.serverless is None and endpoint.instance_type:
        most = max(endpoint.initial_instance_count, endpoint.autoscaling.max_capacity if endpoint.autoscaling else 0)
        name = f"{endpoint.instance_type} for endpoint usage"
        needs.append(QuotaNeed(name, most, "the endpoint" + (" at its autoscaling maximum" if endpoint.autoscaling else "")))
        # a blue/green update runs the new fleet beside the old one until traffic has moved
        needs.append(QuotaNeed(name, 2 * most, "a blue/green update of the endpoint", blocking=False))
    # one quota, several needs: the largest counts (they do not run at once)
    largest: dict[tuple[str, bool], QuotaNeed] = {}
    for need in needs:
        key = (need.quota_name, need.blocking)
        if key not in largest or need.count > largest[key].count:
            largest[key] = need
    return list(largest.values())


def account_quotas(quotas_client) -> dict[str, dict]:
    """Quota name -> {"value", "code"}: the account's applied SageMaker quotas, AWS's defaults where none is applied."""
    found: dict[str, dict] = {}
    # applied values first: ListServiceQuotas leaves out quotas whose applied value AWS does not know,
    # and for those the default (second) is what the account has
    applied = quotas_client.get_paginator("list_service_quotas").paginate(ServiceCode=QUOTA_SERVICE_CODE)
    defaults = quotas_client.get_paginator("list_aws_default_service_quotas").paginate(ServiceCode=QUOTA_SERVICE_CODE)
    for pages in (applied, defaults):
        for page in pages:
            for quota in page.get("Quotas", []):
                found.setdefault(quota["QuotaName"], {"value": quota.get("Value"), "code": quota.get("QuotaCode")})
    return found


def check_quotas(needs: dict[str, list[QuotaNeed]], quotas: dict[str, dict], region: str) -> list[Finding]:
    """Each workload's needs against the account's quotas; a warning when all workloads at once would exceed one."""
    findings = []
    for workload, workload_needs in needs.items():
        for need in workload_needs:
            quota = quotas.get(need.quota_name)
            if quota is None or quota["value"] is None:
                findings.append(Finding(workload, "quota", WARNING,
                                        f"no Service Quotas entry {need.quota_name!r} in {region}: the instance type may not be "
                                        f"offered there for this use; {need.purpose} needs {need.count}"))
                continue
            value = int(quota["value"])
            if need.count <= value:
                findings.append(Finding(workload, "quota", OK, f"{need.quota_name}: {value}, {need.purpose} needs {need.count}"))
                continue
            status = MISSING if need.blocking else WARNING
            findings.append(Finding(workload, "quota", status,
                                    f"{need.quota_name} is {value} in {region}, {need.purpose} needs {need.count}: request an "
                                    f"increase of quota {quota['code']} (Service Quotas > Amazon SageMaker) or lower the "
                                    f"instance count in include/workloads/{workload}.yaml"))
    totals: dict[str, dict[str, int]] = defaultdict(dict)
    for workload, workload_needs in needs.items():
        for need in workload_needs:
            if need.blocking:
                totals[need.quota_name][workload] = max(need.count, totals[need.quota_name].get(workload, 0))
    for name, per_workload in sorted(totals.items()):
        quota = quotas.get(name)
        if len(per_workload) > 1 and quota and quota["value"] is not None and sum(per_workload.values()) > int(quota["value"]):
            who = ", ".join(f"{w} {n}" for w, n in sorted(per_workload.items()))
            findings.append(Finding("(all)", "quota", WARNING,
                                    f"{name} is {int(quota['value'])}: {who} need {sum(per_workload.values())} when they run at "
                                    "once; those runs will wait for capacity or fail with ResourceLimitExceeded"))
    return findings


# ---- the whole check ---------------------------------------------------------------------------

def settings_findings(cfg: WorkloadConfig) -> list[Finding]:
    """Placeholders ("replace-me") still in the role, bucket or data source: nothing else can be checked for them."""
    try:
        cfg.require_real_settings()
    except ConfigError as error:
        return [Finding(cfg.name, "settings", MISSING, str(error))]
    return []


def check_workload(cfg: WorkloadConfig, *, region: str, clients: dict, account_id: str | None) -> list[Finding]:
    """Every per-workload check (all but quotas, which are read once for all workloads)."""
    strict = cfg.profile == "aws"
    findings = settings_findings(cfg) if strict else []
    placeholders = set(cfg.placeholder_settings()) if strict else set()
    if "role_arn" not in placeholders:
        findings += check_role(clients["iam"], cfg.role_arn, workload=cfg.name, account_id=account_id, strict=strict)
    if "bucket" not in placeholders:
        findings += check_bucket(clients["s3"], cfg.bucket, region, workload=cfg.name, strict=strict)
    if strict and PLACEHOLDER_MARKER not in (cfg.data.source_uri or "").lower():
        findings += check_data_source(clients["s3"], cfg)
    findings += check_images(cfg, region)
    return findings


def collect_findings(configs: list[WorkloadConfig], *, region: str, clients: dict, account_id: str | None,
                     quotas_apply: bool = True) -> list[Finding]:
    """All findings for the workloads; `clients` maps "iam", "s3" and "service-quotas" to boto3 clients.
    Quotas are read for the aws-profile workloads, unless `quotas_apply` is False (the local SageMaker)."""
    findings = []
    for cfg in configs:
        findings += check_workload(cfg, region=region, clients=clients, account_id=account_id)
    strict = [cfg for cfg in configs if cfg.profile == "aws" and quotas_apply]
    for cfg in configs:
        if cfg not in strict:
            findings.append(Finding(cfg.name, "quota", SKIPPED, "the local SageMaker has no quotas"))
    if strict:
        try:
            quotas = account_quotas(clients["service-quotas"])
        except ClientError as error:
            findings.append(Finding("(all)", "quota", WARNING, _quota_read_problem(error)))
        else:
            findings += check_quotas({cfg.name: quota_needs(cfg) for cfg in strict}, quotas, region)
    return findings


def _quota_read_problem(error) -> str:
    code = error.response.get("Error", {}).get("Code", "")
    if "AccessDenied" in code:
        return ("cannot read SageMaker quotas (AccessDenied): allow servicequotas:ListServiceQuotas and "
                "servicequotas:ListAWSDefaultServiceQuotas (deploy/iam/airflow-role-policy.json) to check them")
    return f"cannot read SageMaker quotas: Service Quotas answered {code or 'an error'}; check them in the console"


def format_report(findings: list[Finding], *, profile: str, region: str, account_id: str | None) -> str:
    """One report a person reads top to bottom: each workload's checks, then what blocks a run."""
    blocking = [f for f in findings if f.blocking]
    warnings = [f for f in findings if f.status == WARNING]
    lines = [f"SageMaker preflight: profile {profile}, region {region}, account {account_id or 'unknown'}: "
             f"{len(blocking)} missing, {len(warnings)} warnings"]
    by_workload: dict[str, list[Finding]] = defaultdict(list)
    for finding in findings:
        by_workload[finding.workload].append(finding)
    for workload, items in by_workload.items():
        lines.append(workload)
        lines += [f"  [{f.status.upper() if f.blocking else f.status}] {f.check}: {f.message}" for f in items]
    if blocking:
        lines.append("Missing (each blocks a run):")
        lines += [f"  - {f.workload}: {f.check}: {f.message}" for f in blocking]
    else:
        lines.append("Nothing missing: the pipelines can run here.")
    return "\n".join(lines)


def _workload_configs(workloads: list[str], profile: str) -> list[WorkloadConfig]:
    from airflow.sdk import Variable

    configs = []
    for name in workloads:
        cfg = load_workload(name, profile)
        if profile == "aws":
            # the same overrides resolve_settings applies at run time
            cfg = cfg.with_overrides(role_arn=Variable.get("sagemaker_role_arn", default=None),
                                     bucket=Variable.get("sagemaker_bucket", default=None))
        configs.append(cfg)
    return configs


def run_preflight(workloads: list[str], *, requested_profile: str = "aws", aws_conn_id: str = "aws_default") -> dict:
    """The aws_preflight task: check the workloads through the Airflow connection, log the report, and
    raise PreflightFailed (the report as its message) when anything blocking is missing."""
    from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook

    hook = AwsBaseHook(aws_conn_id=aws_conn_id)
    endpoint_url = hook.conn_config.endpoint_url
    profile = profile_for_endpoint_url(endpoint_url) if requested_profile == "auto" else requested_profile
    region = hook.region_name or hook.conn_config.region_name or "us-east-1"
    clients = {service: AwsBaseHook(aws_conn_id=aws_conn_id, client_type=service).get_conn()
               for service in ("iam", "s3", "sts", "service-quotas")}
    account_id = clients["sts"].get_caller_identity()["Account"]
    # the aws profile checked through the local SageMaker (a rehearsal): it serves no quotas
    quotas_apply = profile_for_endpoint_url(endpoint_url) == "aws"
    findings = collect_findings(_workload_configs(workloads, profile), region=region, clients=clients, account_id=account_id,
                                quotas_apply=quotas_apply)
    report = format_report(findings, profile=profile, region=region, account_id=account_id)
    log.info("%s", report)
    if any(f.blocking for f in findings):
        raise PreflightFailed(report)
    return {"profile": profile, "region": region, "account": account_id, "findings": [asdict(f) for f in findings]}
