"""Lay out a variant instance's model directory as SageMaker lays out ``/opt/ml/model``.

The model archive (ModelDataUrl, or ModelDataSource) is downloaded from S3 and unpacked into
``model/``; a ``SAGEMAKER_SUBMIT_DIRECTORY`` that names an S3 tarball is unpacked into
``model/code/``, where the inference toolkit looks for the user's script. Archives are unpacked
by ``include.emulator.archives``: regular files and directories only, none outside the folder; an
archive holding anything else fails the endpoint with a FailureReason that names the member.
"""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Callable

from ..archives import ArchiveError, unpack_tar
from .specs import ContainerSpec


class ArtifactError(Exception):
    """The model data could not be fetched or unpacked; the message is the endpoint's FailureReason."""


def parse_s3_uri(uri: str) -> tuple[str, str]:
    if not uri.startswith("s3://") or "/" not in uri[5:]:
        raise ArtifactError(f"'{uri}' is not an S3 URI of the form s3://bucket/key.")
    bucket, key = uri[5:].split("/", 1)
    return bucket, key


def _download_failure(bucket: str, key: str, exc: Exception) -> ArtifactError:
    return ArtifactError(
        f"Failed to download model data(bucket: {bucket}, key: {key}). Please ensure that there is an "
        f"object located at the URL and that the role passed to CreateModel has permissions to download "
        f"the model. ({exc})"
    )


def _unpack_archive(s3, uri: str, destination: Path, say: Callable[[str], None]) -> None:
    bucket, key = parse_s3_uri(uri)
    destination.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=destination.parent, suffix=".tar.gz", delete=False) as handle:
        archive = Path(handle.name)
    try:
        say(f"Downloading {uri}")
        try:
            s3.download_file(bucket, key, str(archive))
        except Exception as exc:  # botocore ClientError, missing bucket, ...
            raise _download_failure(bucket, key, exc) from exc
        try:
            unpack_tar(archive, destination)
        except ArchiveError as exc:
            raise ArtifactError(f"Failed to extract model data archive from {uri}: {exc}") from exc
        say(f"Unpacked {uri} ({archive.stat().st_size} bytes) into {destination}")
    finally:
        archive.unlink(missing_ok=True)


def _copy_prefix(s3, uri: str, destination: Path, say: Callable[[str], None]) -> None:
    bucket, prefix = parse_s3_uri(uri)
    destination.mkdir(parents=True, exist_ok=True)
    root = destination.resolve()
    count = 0
    try:
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                relative = item["Key"][len(prefix):].lstrip("/")
                if not relative or relative.endswith("/"):
                    continue
                target = (destination / relative).resolve()
                if root not in target.parents:  # a key like "../x" must not escape the model dir
                    raise ArtifactError(f"S3 key '{item['Key']}' would be written outside the model directory.")
                target.parent.mkdir(parents=True, exist_ok=True)
                s3.download_file(bucket, item["Key"], str(target))
                count += 1
    except ArtifactError:
        raise
    except Exception as exc:
        raise _download_failure(bucket, prefix, exc) from exc
    if count == 0:
        raise ArtifactError(f"No model data found under {uri}.")
    say(f"Copied {count} objects from {uri} into {destination}")


def prepare_model_dir(s3, container: ContainerSpec, model_dir: Path, say: Callable[[str], None]) -> None:
    """Fill ``model_dir`` (and ``model_dir/code``) from the container's model data and source."""
    if model_dir.exists():
        shutil.rmtree(model_dir)
    model_dir.mkdir(parents=True)
    if container.model_data_url:
        _unpack_archive(s3, container.model_data_url, model_dir, say)
    elif container.model_data_source:
        source = container.model_data_source.get("S3DataSource") or {}
        uri = source.get("S3Uri", "")
        if source.get("CompressionType") == "Gzip":
            _unpack_archive(s3, uri, model_dir, say)
        elif source.get("S3DataType") == "S3Object":
            bucket, key = parse_s3_uri(uri)
            try:
                s3.download_file(bucket, key, str(model_dir / Path(key).name))
            except Exception as exc:
                raise _download_failure(bucket, key, exc) from exc
            say(f"Copied {uri} into {model_dir}")
        else:
            _copy_prefix(s3, uri, model_dir, say)
    submit_directory = container.environment.get("SAGEMAKER_SUBMIT_DIRECTORY", "")
    if submit_directory.startswith("s3://"):
        _unpack_archive(s3, submit_directory, model_dir / "code", say)
    # any other value (the SDK's "/opt/ml/model/code") means the code already sits in the model archive
