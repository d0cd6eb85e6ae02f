"""Moving job data between S3 and a host folder: channels in, model and output tarballs out."""
from __future__ import annotations

import json
import posixpath
import tarfile
import tempfile
from pathlib import Path, PurePosixPath
from urllib.parse import urlparse

from ..archives import ArchiveError, unpack_tar

SUBMIT_DIRECTORY = "sagemaker_submit_directory"


class StagingError(Exception):
    """Input or output data could not be moved; the message is the job's FailureReason."""


def parse_s3_uri(uri: str) -> tuple[str, str]:
    parsed = urlparse(uri)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise StagingError(f"ClientError: '{uri}' is not an s3:// URI; the local SageMaker reads and writes S3 through s3:// URIs only.")
    return parsed.netloc, parsed.path.lstrip("/")


def _safe_relative(path: str) -> PurePosixPath | None:
    """A key's path below the channel folder, or None when it would leave it."""
    relative = PurePosixPath(path.lstrip("/"))
    if not relative.parts or any(part in ("..", ".") for part in relative.parts):
        return None
    return relative


def _list_keys(s3, bucket: str, prefix: str) -> list[str]:
    keys = []
    try:
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            keys.extend(item["Key"] for item in page.get("Contents", []) if not item["Key"].endswith("/"))
    except s3.exceptions.NoSuchBucket:
        return []  # answered as SageMaker does: no objects under that URL
    except Exception as exc:
        raise StagingError(f"ClientError: Data download failed: could not list s3://{bucket}/{prefix}: {exc}") from exc
    return sorted(keys)


def _relative_to_prefix(key: str, prefix: str) -> str:
    # s3://b/data/train holds data/train/a.csv -> a.csv; s3://b/data/train.csv itself -> train.csv;
    # a partial name (s3://b/data/tr matching data/train.csv) keeps the name below the folder
    if key == prefix:
        return posixpath.basename(key)
    if not prefix or prefix.endswith("/") or key[len(prefix)] == "/":
        return key[len(prefix):].lstrip("/")
    return key[len(posixpath.dirname(prefix)):].lstrip("/")


def _no_objects(uri: str, region: str, role_arn: str) -> StagingError:
    bucket = urlparse(uri).netloc
    return StagingError(
        f'ClientError: No S3 objects found under S3 URL "{uri}" given in input data source. Please ensure that '
        f"the bucket exists in the selected region ({region}), that objects exist under that S3 prefix, and that "
        f'the role "{role_arn}" has "s3:ListBucket" permissions on bucket "{bucket}".'
    )


def download_channel(
    s3,
    channel: dict,
    destination: Path,
    *,
    region: str,
    role_arn: str,
    host_index: int = 0,
    host_count: int = 1,
    should_stop=lambda: False,
) -> int:
    """Download one channel's S3 data into ``destination``; returns the number of files.

    S3Prefix and ManifestFile data types; FullyReplicated gives every host all objects,
    ShardedByS3Key gives host i every n-th object, as SageMaker does.
    """
    name = channel["ChannelName"]
    data_source = channel.get("DataSource", {})
    source = data_source.get("S3DataSource")
    if source is None:
        kind = next(iter(data_source), "an empty DataSource")
        raise StagingError(f"ClientError: Channel '{name}' uses {kind}; the local SageMaker reads channels from S3 only.")
    uri, data_type = source["S3Uri"], source["S3DataType"]
    bucket, prefix = parse_s3_uri(uri)

    if data_type == "S3Prefix":
        files = [(bucket, key, _relative_to_prefix(key, prefix)) for key in _list_keys(s3, bucket, prefix)]
    elif data_type == "ManifestFile":
        files = _manifest_files(s3, uri, bucket, prefix)
    else:
        raise StagingError(
            f"ClientError: Channel '{name}' uses S3DataType {data_type}, which the local SageMaker does not support; "
            "use S3Prefix or ManifestFile."
        )
    if not files:
        raise _no_objects(uri, region, role_arn)
    if source.get("S3DataDistributionType", "FullyReplicated") == "ShardedByS3Key":
        files = files[host_index::host_count]

    destination.mkdir(parents=True, exist_ok=True)
    for source_bucket, key, relative_name in files:
        if should_stop():
            break
        relative = _safe_relative(relative_name)
        if relative is None:
            raise StagingError(f"ClientError: s3://{source_bucket}/{key} of channel '{name}' would land outside its folder.")
        target = destination.joinpath(*relative.parts)
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            s3.download_file(source_bucket, key, str(target))
        except Exception as exc:
            uri = f"s3://{source_bucket}/{key}"
            raise StagingError(f"ClientError: Data download failed: could not read {uri} for channel '{name}': {exc}") from exc
    return len(files)


def _manifest_files(s3, uri: str, bucket: str, key: str) -> list[tuple[str, str, str]]:
    """A manifest is a JSON list: {"prefix": "s3://bucket/prefix/"} followed by keys relative to it."""
    try:
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        entries = json.loads(body)
    except Exception as exc:
        raise StagingError(f"ClientError: Could not read the manifest file {uri}: {exc}") from exc
    if not (isinstance(entries, list) and entries and isinstance(entries[0], dict) and "prefix" in entries[0]):
        raise StagingError(f'ClientError: Manifest file {uri} must be a JSON list starting with {{"prefix": "s3://..."}}.')
    prefix_bucket, prefix = parse_s3_uri(entries[0]["prefix"])
    files = []
    for relative in entries[1:]:
        if not isinstance(relative, str):
            raise StagingError(f"ClientError: Manifest file {uri} holds a non-string entry: {relative!r}.")
        files.append((prefix_bucket, prefix + relative, relative))
    return files


def submit_directory_uri(hyperparameters: dict) -> str | None:
    """The S3 URI of ``sagemaker_submit_directory`` (JSON-encoded, as the SDK sends it), if it names one."""
    value = hyperparameters.get(SUBMIT_DIRECTORY)
    if not isinstance(value, str):
        return None
    try:
        value = json.loads(value)
    except ValueError:
        pass  # a bare string, which the toolkit accepts too
    return value if isinstance(value, str) and value.startswith("s3://") else None


def unpack_submit_directory(s3, hyperparameters: dict, code_dir: Path) -> int:
    """Unpack the job's sourcedir.tar.gz into the host's code folder (/opt/ml/code); returns the file count.

    The toolkit unpacks it only into an empty code folder, and its own extraction trusts realpath
    (CVE-2025-4517); staged here, with ``include.emulator.archives``, an archive holding a link, a
    device or a path outside the folder fails the job naming that member, before any code runs."""
    uri = submit_directory_uri(hyperparameters)
    if uri is None:
        return 0
    bucket, key = parse_s3_uri(uri)
    code_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=code_dir.parent, prefix=".sourcedir-") as scratch:
        archive = Path(scratch) / "sourcedir.tar.gz"
        try:
            s3.download_file(bucket, key, str(archive))
        except Exception as exc:
            raise StagingError(f"ClientError: Could not download {SUBMIT_DIRECTORY} {uri}: {exc}") from exc
        try:
            return unpack_tar(archive, code_dir)
        except ArchiveError as exc:
            raise StagingError(f"ClientError: Could not unpack {SUBMIT_DIRECTORY} {uri}: {exc}") from exc


def directory_has_files(directory: Path) -> bool:
    return directory.is_dir() and any(path.is_file() for path in directory.rglob("*"))


def make_tarball(directory: Path, tarball: Path) -> Path:
    """Tar and gzip the contents of ``directory`` (entries relative to it, as SageMaker packs /opt/ml/model)."""
    tarball.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(tarball, "w:gz") as archive:
        for path in sorted(directory.iterdir()):
            archive.add(path, arcname=path.name)
    return tarball


def upload_tarball(s3, directory: Path, tarball: Path, uri: str) -> str:
    bucket, key = parse_s3_uri(uri)
    make_tarball(directory, tarball)
    s3.upload_file(str(tarball), bucket, key)
    return uri


def upload_directory(s3, directory: Path, uri_prefix: str) -> str:
    """Upload every file below ``directory`` under ``uri_prefix`` (OutputDataConfig CompressionType NONE)."""
    bucket, prefix = parse_s3_uri(uri_prefix)
    for path in sorted(directory.rglob("*")):
        if path.is_file():
            s3.upload_file(str(path), bucket, prefix + path.relative_to(directory).as_posix())
    return uri_prefix


def folder_prefix(uri: str) -> tuple[str, str]:
    """(bucket, key prefix ending in '/') for an S3 URI that names a folder, such as CheckpointConfig.S3Uri."""
    bucket, prefix = parse_s3_uri(uri)
    return bucket, (prefix.rstrip("/") + "/") if prefix.strip("/") else ""


def download_folder(s3, uri: str, destination: Path) -> int:
    """Every object below the folder ``uri`` into ``destination``, keeping the layout; returns the count."""
    bucket, prefix = folder_prefix(uri)
    keys = _list_keys(s3, bucket, prefix)
    destination.mkdir(parents=True, exist_ok=True)
    for key in keys:
        relative = _safe_relative(key[len(prefix):])
        if relative is None:
            raise StagingError(f"ClientError: s3://{bucket}/{key} would land outside {destination}.")
        target = destination.joinpath(*relative.parts)
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            s3.download_file(bucket, key, str(target))
        except Exception as exc:
            raise StagingError(f"ClientError: Data download failed: could not read s3://{bucket}/{key}: {exc}") from exc
    return len(keys)


def make_merged_tarball(directories: list[Path], tarball: Path) -> Path:
    """Tar and gzip the contents of several hosts' folders as one tree (SageMaker aggregates every
    host's /opt/ml/model into one model.tar.gz); where two hosts wrote the same name, the first wins."""
    tarball.parent.mkdir(parents=True, exist_ok=True)
    added: set[str] = set()
    with tarfile.open(tarball, "w:gz") as archive:
        for directory in directories:
            if not directory.is_dir():
                continue
            for path in sorted(directory.rglob("*")):
                name = path.relative_to(directory).as_posix()
                if name not in added and (path.is_file() or path.is_dir()):
                    archive.add(path, arcname=name, recursive=False)
                    added.add(name)
    return tarball


def upload_merged_tarball(s3, directories: list[Path], tarball: Path, uri: str) -> str:
    bucket, key = parse_s3_uri(uri)
    make_merged_tarball(directories, tarball)
    s3.upload_file(str(tarball), bucket, key)
    return uri
