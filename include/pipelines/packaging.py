"""Reproducible source tarballs and S3 uploads that skip what is already there.

`package_source` writes the same bytes for the same files, whatever their mtimes, owners or the
order the file system lists them in, so the tarball's SHA-256 names its content and an unchanged
`training_src/<workload>/` is never uploaded twice. The modules every workload shares
(`training_src/shared/`) go in beside the workload's own files, so train.py imports them as siblings.
"""
from __future__ import annotations

import gzip
import hashlib
import io
import logging
import os
import tarfile
from pathlib import Path

log = logging.getLogger(__name__)

SOURCE_ARCHIVE = "sourcedir.tar.gz"
SOURCE_FILES = "files"  # beside the archive: its members one by one
FILES_COMPLETE = ".complete"
EXCLUDED_DIRS = {"__pycache__", ".git", ".ipynb_checkpoints", ".pytest_cache", ".mypy_cache"}
EXCLUDED_FILES = {".DS_Store"}
EXCLUDED_SUFFIXES = (".pyc", ".pyo")
_CHUNK = 1024 * 1024
SHARED_SOURCE_DIR = Path(__file__).resolve().parents[2] / "training_src" / "shared"


def _source_files(source_dir: Path) -> list[Path]:
    files = []
    for root, dirs, names in os.walk(source_dir, followlinks=False):
        dirs[:] = [d for d in dirs if d not in EXCLUDED_DIRS]
        for name in names:
            if name in EXCLUDED_FILES or name.endswith(EXCLUDED_SUFFIXES):
                continue
            path = Path(root, name)
            if path.is_file():  # follows a symlink to a file; broken links and sockets are left out
                files.append(path)
    return sorted(files, key=lambda p: p.relative_to(source_dir).as_posix())


def _archive_members(source_dir: Path, shared_dir: Path | None) -> list[tuple[str, Path]]:
    members = {path.relative_to(source_dir).as_posix(): path for path in _source_files(source_dir)}
    if shared_dir is not None:
        for path in _source_files(shared_dir):
            name = path.relative_to(shared_dir).as_posix()
            if name in members:
                raise ValueError(f"{members[name]} has the name of the shared module {path}: rename one of them, "
                                 "or the container would run only one of the two")
            members[name] = path
    return sorted(members.items())


def package_source(source_dir: Path, shared_dir: Path | None = None) -> bytes:
    """sourcedir.tar.gz of `source_dir` (plus `shared_dir`'s files at its top): byte-identical whenever
    the file contents are the same."""
    source_dir = Path(source_dir)
    for folder in (source_dir, shared_dir):
        if folder is not None and not Path(folder).is_dir():
            raise FileNotFoundError(f"source folder {folder} does not exist")
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, path in _archive_members(source_dir, shared_dir and Path(shared_dir)):
            data = path.read_bytes()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = 0
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            info.mode = 0o755 if path.stat().st_mode & 0o111 else 0o644  # only the executable bit survives
            tar.addfile(info, io.BytesIO(data))
    compressed = io.BytesIO()
    # filename="" and mtime=0 keep the gzip header free of the build's path and time
    with gzip.GzipFile(filename="", mode="wb", fileobj=compressed, mtime=0, compresslevel=9) as gz:
        gz.write(raw.getvalue())
    return compressed.getvalue()


def _split_prefix(prefix: str) -> str:
    return prefix.strip("/")


def _exists(s3_client, bucket: str, key: str) -> bool:
    from botocore.exceptions import ClientError

    try:
        s3_client.head_object(Bucket=bucket, Key=key)
        return True
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
            return False
        raise


def upload_source(s3_client, bucket: str, prefix: str, source_dir: Path,
                  shared_dir: Path | None = SHARED_SOURCE_DIR) -> str:
    """Upload the tarball of `source_dir` and the shared modules to <prefix>/source/<sha256[:16]>/sourcedir.tar.gz
    unless it is there; its s3:// URI."""
    archive = package_source(source_dir, shared_dir)
    digest = hashlib.sha256(archive).hexdigest()[:16]
    key = "/".join(p for p in (_split_prefix(prefix), "source", digest, SOURCE_ARCHIVE) if p)
    uri = f"s3://{bucket}/{key}"
    if _exists(s3_client, bucket, key):
        log.info("Source %s unchanged, already at %s", source_dir, uri)
        return uri
    s3_client.put_object(Bucket=bucket, Key=key, Body=archive, ContentType="application/gzip",
                         Metadata={"sha256": hashlib.sha256(archive).hexdigest()})
    log.info("Uploaded %s (%d bytes) to %s", source_dir, len(archive), uri)
    return uri


def source_files_uri(source_uri: str) -> str:
    """Where upload_source_files put the unpacked files of the tarball at `source_uri`."""
    return source_uri.rsplit("/", 1)[0] + "/" + SOURCE_FILES


def upload_source_files(s3_client, source_uri: str, source_dir: Path, shared_dir: Path | None = SHARED_SOURCE_DIR) -> str:
    """The tarball's members as single objects beside it (<hash>/files/...), for a processing job, which
    downloads inputs but unpacks nothing; the same members, so evaluate.py sees what train.py saw."""
    bucket, key = source_uri.removeprefix("s3://").split("/", 1)
    prefix = source_files_uri(source_uri).removeprefix(f"s3://{bucket}/")
    marker = f"{prefix}/{FILES_COMPLETE}"
    if _exists(s3_client, bucket, marker):
        return source_files_uri(source_uri)
    for name, path in _archive_members(Path(source_dir), shared_dir and Path(shared_dir)):
        s3_client.put_object(Bucket=bucket, Key=f"{prefix}/{name}", Body=path.read_bytes())
    # written last: a task that died half-way uploads them all again
    s3_client.put_object(Bucket=bucket, Key=marker, Body=b"")
    log.info("Uploaded the files of %s to s3://%s/%s/", source_dir, bucket, prefix)
    return source_files_uri(source_uri)


def _md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _remote_objects(s3_client, bucket: str, prefix: str) -> dict[str, dict]:
    listing = {}
    paginator = s3_client.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=bucket, Prefix=f"{prefix}/" if prefix else ""):
        for obj in page.get("Contents", []):
            listing[obj["Key"]] = obj
    return listing


def _same_content(s3_client, bucket: str, key: str, remote: dict, size: int, md5: str) -> bool:
    if remote["Size"] != size:
        return False
    etag = remote.get("ETag", "").strip('"')
    if etag == md5:
        return True
    if "-" in etag:  # a multipart upload's ETag is not the MD5; ours record it in metadata
        metadata = s3_client.head_object(Bucket=bucket, Key=key).get("Metadata", {})
        return metadata.get("md5") == md5
    return False


def sync_directory(s3_client, local_dir: Path, bucket: str, prefix: str) -> dict:
    """Upload `local_dir` under s3://bucket/prefix/, skipping files whose size and MD5 already match.

    Objects under the prefix that the folder does not have are left alone (and counted as `extra`).
    Returns {"uploaded", "skipped", "bytes_uploaded", "extra", "uri"}.
    """
    from boto3.s3.transfer import TransferConfig

    local_dir = Path(local_dir)
    if not local_dir.is_dir():
        raise FileNotFoundError(f"data folder {local_dir} does not exist")
    prefix = _split_prefix(prefix)
    remote = _remote_objects(s3_client, bucket, prefix)
    transfer = TransferConfig(multipart_threshold=64 * _CHUNK)
    uploaded = skipped = bytes_uploaded = 0
    local_keys = set()
    for path in _source_files(local_dir):
        key = "/".join(p for p in (prefix, path.relative_to(local_dir).as_posix()) if p)
        local_keys.add(key)
        size, md5 = path.stat().st_size, _md5(path)
        if key in remote and _same_content(s3_client, bucket, key, remote[key], size, md5):
            skipped += 1
            continue
        s3_client.upload_file(str(path), bucket, key, ExtraArgs={"Metadata": {"md5": md5}}, Config=transfer)
        uploaded += 1
        bytes_uploaded += size
    extra = len(set(remote) - local_keys)
    uri = f"s3://{bucket}/{prefix}" if prefix else f"s3://{bucket}"
    log.info("Synced %s to %s: %d uploaded (%d bytes), %d unchanged, %d extra objects left alone",
             local_dir, uri, uploaded, bytes_uploaded, skipped, extra)
    return {"uploaded": uploaded, "skipped": skipped, "bytes_uploaded": bytes_uploaded, "extra": extra, "uri": uri}
