"""One call for a SageMaker Python SDK (v3) session that works against the local SageMaker offline.

    from include.emulator.sdk_session import local_session
    session = local_session("http://127.0.0.1:4566", region="us-east-1")
    bucket = session.default_bucket()              # sagemaker-us-east-1-123456789012, created locally
    account = session.account_id()                 # the local account
    role = get_execution_role(session)             # arn:aws:iam::123456789012:role/SageMakerExecutionRole

Why it is needed: the SDK builds most clients from its boto3 session, which AWS_ENDPOINT_URL does
point at the local SageMaker, but its STS calls (``account_id()``, ``default_bucket()``'s bucket
name, ``get_caller_identity_arn()`` behind ``get_execution_role()``) pass an explicit
``endpoint_url=sts_regional_endpoint(region)``, which wins over AWS_ENDPOINT_URL: they go to the
real STS, and fail offline. The boto3 session returned here sends *every* client and resource it
builds to the local endpoint, whatever endpoint the caller names.

The role: ``get_execution_role()`` answers the role the caller's credentials are a session of, as
in a SageMaker notebook. So ``local_session`` creates the execution role in the local IAM (with
SageMaker's trust policy, which the SDK reads before a job starts) if it is not there, assumes it
with the local STS, and signs the session's requests with those temporary credentials. The local
SageMaker enforces no IAM policy, so the role needs none attached.

``set_environment`` (default True) also sets AWS_ENDPOINT_URL and AWS_DEFAULT_REGION for this
process, since parts of the SDK (its log tailer) and most notebooks' own ``boto3.client(...)``
calls build a default session of their own.
"""
from __future__ import annotations

import inspect
import json
import os

import boto3
import boto3.session

DEFAULT_ENDPOINT_URL = "http://127.0.0.1:4566"  # `make emulator`'s port
DEFAULT_ROLE_NAME = "SageMakerExecutionRole"
SAGEMAKER_TRUST_POLICY = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Principal": {"Service": "sagemaker.amazonaws.com"}, "Action": "sts:AssumeRole"}],
}
_CLIENT_PARAMETERS = inspect.signature(boto3.session.Session.client)
_RESOURCE_PARAMETERS = inspect.signature(boto3.session.Session.resource)


class LocalBotoSession(boto3.session.Session):
    """A boto3 session whose every client and resource goes to one endpoint (the local SageMaker's)."""

    def __init__(self, endpoint_url: str, **kwargs):
        super().__init__(**kwargs)
        self.endpoint_url = endpoint_url

    def client(self, *args, **kwargs):
        bound = _CLIENT_PARAMETERS.bind(self, *args, **kwargs)
        bound.arguments["endpoint_url"] = self.endpoint_url  # over the SDK's sts_regional_endpoint(...)
        return super().client(*bound.args[1:], **bound.kwargs)

    def resource(self, *args, **kwargs):
        bound = _RESOURCE_PARAMETERS.bind(self, *args, **kwargs)
        bound.arguments["endpoint_url"] = self.endpoint_url
        return super().resource(*bound.args[1:], **bound.kwargs)


def _credentials(access_key: str | None, secret_key: str | None) -> tuple[str, str]:
    if access_key and secret_key:
        return access_key, secret_key
    found = boto3.session.Session().get_credentials()
    if found is not None and found.access_key and found.secret_key:
        return found.access_key, found.secret_key
    return "testing", "testing"  # the local SageMaker checks no signature; moto's usual test keys


def ensure_execution_role(iam_client, role_name: str = DEFAULT_ROLE_NAME) -> str:
    """The role's ARN, creating it in the local IAM with SageMaker's trust policy if it is absent."""
    try:
        return iam_client.get_role(RoleName=role_name)["Role"]["Arn"]
    except iam_client.exceptions.NoSuchEntityException:
        return iam_client.create_role(RoleName=role_name, AssumeRolePolicyDocument=json.dumps(SAGEMAKER_TRUST_POLICY),
                                      Description="SageMaker execution role (local SageMaker)")["Role"]["Arn"]


def local_boto_session(endpoint_url: str = DEFAULT_ENDPOINT_URL, region: str = "us-east-1", *,
                       role_name: str | None = DEFAULT_ROLE_NAME, aws_access_key_id: str | None = None,
                       aws_secret_access_key: str | None = None) -> LocalBotoSession:
    """A boto3 session on the local SageMaker; with ``role_name``, signed as a session of that role."""
    access_key, secret_key = _credentials(aws_access_key_id, aws_secret_access_key)
    base = LocalBotoSession(endpoint_url, region_name=region, aws_access_key_id=access_key,
                            aws_secret_access_key=secret_key)
    if not role_name:
        return base
    role_arn = ensure_execution_role(base.client("iam"), role_name)
    assumed = base.client("sts").assume_role(RoleArn=role_arn, RoleSessionName="local-sagemaker-notebook")
    credentials = assumed["Credentials"]
    return LocalBotoSession(endpoint_url, region_name=region, aws_access_key_id=credentials["AccessKeyId"],
                            aws_secret_access_key=credentials["SecretAccessKey"],
                            aws_session_token=credentials["SessionToken"])


def local_session(endpoint_url: str | None = None, region: str | None = None, *,
                  role_name: str | None = DEFAULT_ROLE_NAME, default_bucket: str | None = None,
                  set_environment: bool = True, **credentials):
    """A ``sagemaker.core.helper.session_helper.Session`` whose boto session, SageMaker and runtime
    clients, S3 and STS all speak to the local SageMaker at ``endpoint_url``.

    ``endpoint_url`` defaults to AWS_ENDPOINT_URL, else http://127.0.0.1:4566; ``region`` to
    AWS_DEFAULT_REGION, else us-east-1. ``default_bucket`` overrides the SDK's
    ``sagemaker-{region}-{account}``. ``credentials``: aws_access_key_id / aws_secret_access_key.
    """
    from sagemaker.core.helper.session_helper import Session

    endpoint_url = endpoint_url or os.environ.get("AWS_ENDPOINT_URL") or DEFAULT_ENDPOINT_URL
    region = region or os.environ.get("AWS_DEFAULT_REGION") or os.environ.get("AWS_REGION") or "us-east-1"
    if set_environment:
        os.environ["AWS_ENDPOINT_URL"] = endpoint_url
        os.environ.setdefault("AWS_DEFAULT_REGION", region)
    boto_session = local_boto_session(endpoint_url, region, role_name=role_name, **credentials)
    return Session(
        boto_session=boto_session,
        sagemaker_client=boto_session.client("sagemaker"),
        sagemaker_runtime_client=boto_session.client("sagemaker-runtime"),
        default_bucket=default_bucket,
    )
