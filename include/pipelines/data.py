"""Put a workload's training data where its channels point: s3://<bucket>/<s3_prefix>/data/.

Three kinds of `data:` source:
- generator: a function that writes a small synthetic data set locally (the local profile);
- source_uri https://...: a published archive, downloaded and unpacked once (tar extraction with
  filter="data", so no member lands outside the folder);
- source_uri s3://...: already in S3, used in place; nothing to upload.
The upload is a sync, so an unchanged data set costs one listing, not a re-upload.
"""
from __future__ import annotations

import importlib
import json
import logging
import shutil
import tarfile
import tempfile
import urllib.request
from pathlib import Path

from include.emulator.archives import unpack_tar  # standard library only: safe on the Airflow side

from .config import ConfigError, WorkloadConfig
from .packaging import sync_directory

log = logging.getLogger(__name__)

MANIFEST = "data-manifest.json"  # beside data/, records which source_uri the synced data came from


def generate_locally(cfg: WorkloadConfig, dest: Path) -> Path:
    """Run `data.generator` (\"package.module:function\") with its kwargs into `dest`: the local profile only."""
    module_name, function_name = cfg.data.generator.split(":")
    if cfg.profile != "local":
        # the generators need h5py, soundfile, Pillow or ffmpeg, which an Airflow with requirements.txt lacks
        raise ConfigError(
            f"workload {cfg.name}", f"profiles.{cfg.profile}.data.generator",
            f"{cfg.data.generator} writes a synthetic data set for the local profile only (with the libraries "
            f"of requirements-synthetic-data.txt). On AWS, put the data set in S3 and set "
            f"profiles.{cfg.profile}.data.source_uri to it (an s3:// URI is used in place, an https:// archive is "
            f"downloaded and synced once); to rehearse with the synthetic set, write it with "
            f"`python -m {module_name} OUT_DIR` where requirements-synthetic-data.txt is installed and upload "
            f"OUT_DIR to that location.")
    generate = getattr(importlib.import_module(module_name), function_name)
    generate(dest, **cfg.data.generator_kwargs)
    return dest


def download_archive(url: str, dest: Path) -> Path:
    """Download `url` and unpack it into `dest` (a tar archive), or keep it as one file."""
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(suffix=Path(url).name, dir=dest.parent) as download:
        with urllib.request.urlopen(url, timeout=60) as response:  # noqa: S310 - https/http only, by config pattern
            shutil.copyfileobj(response, download)
        download.flush()
        if tarfile.is_tarfile(download.name):
            # not extractall(filter="data"): this Python's filter can be bypassed (CVE-2025-4517)
            unpack_tar(download.name, dest)
        else:
            shutil.copy(download.name, dest / Path(url).name)
    return dest


def _manifest_key(cfg: WorkloadConfig) -> str:
    return f"{cfg.s3_prefix}/{MANIFEST}"


def _synced_source(s3_client, cfg: WorkloadConfig) -> str | None:
    from botocore.exceptions import ClientError

    try:
        body = s3_client.get_object(Bucket=cfg.bucket, Key=_manifest_key(cfg))["Body"].read()
        return json.loads(body).get("source_uri")
    except (ClientError, ValueError):
        return None


def upload_training_data(s3_client, cfg: WorkloadConfig, work_dir: Path) -> dict:
    """Make the data set and sync it to cfg.data_uri; returns the sync counts and the channel URIs."""
    data_uri = cfg.data_uri
    result = {"uri": data_uri, "uploaded": 0, "skipped": 0, "bytes_uploaded": 0, "channels": cfg.channel_uris()}
    source = cfg.data.source_uri
    if source and source.startswith("s3://"):
        log.info("Data for %s is already in S3 at %s", cfg.name, source)
        return result
    if source and _synced_source(s3_client, cfg) == source:
        log.info("Data from %s was synced to %s before; not downloading it again", source, data_uri)
        return result
    local = Path(work_dir) / "data"
    if local.exists():
        shutil.rmtree(local)
    if source:
        download_archive(source, local)
    else:
        generate_locally(cfg, local)
    key_prefix = data_uri.removeprefix(f"s3://{cfg.bucket}/")
    result.update(sync_directory(s3_client, local, cfg.bucket, key_prefix))
    if source:
        s3_client.put_object(Bucket=cfg.bucket, Key=_manifest_key(cfg), Body=json.dumps({"source_uri": source}).encode(),
                             ContentType="application/json")
    result["uri"] = data_uri
    return result


def list_data_files(s3_client, cfg: WorkloadConfig) -> list[str]:
    """Every object under cfg.data_uri, as paths relative to it (what the channels hold), sorted."""
    bucket, _, prefix = cfg.data_uri.removeprefix("s3://").partition("/")
    prefix = prefix.strip("/")
    paginator = s3_client.get_paginator("list_objects_v2")
    keys = []
    for page in paginator.paginate(Bucket=bucket, Prefix=f"{prefix}/" if prefix else ""):
        keys += [obj["Key"][len(prefix) + 1 if prefix else 0:] for obj in page.get("Contents", [])]
    return sorted(keys)
