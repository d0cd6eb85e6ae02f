"""Source tarballs are byte-for-byte reproducible and content-addressed; uploads skip what S3 has."""
from __future__ import annotations

import dataclasses
import hashlib
import io
import os
import tarfile
from pathlib import Path

import pytest

from include.emulator.archives import UnsafeArchiveMember

from include.pipelines import data as data_mod
from include.pipelines.config import load_workload
from include.pipelines.packaging import SHARED_SOURCE_DIR, package_source, sync_directory, upload_source

BUCKET = "packaging-test-bucket"


def _write_source(root: Path) -> Path:
    (root / "pkg").mkdir(parents=True)
    (root / "train.py").write_text("print('train')\n")
    (root / "requirements.txt").write_text("numpy\n")
    (root / "pkg" / "model.py").write_text("MODEL = 1\n")
    (root / "run.sh").write_text("#!/bin/sh\necho hi\n")
    (root / "run.sh").chmod(0o775)
    (root / "__pycache__").mkdir()
    (root / "__pycache__" / "train.cpython-311.pyc").write_bytes(b"\x00junk")
    (root / "pkg" / "stale.pyc").write_bytes(b"\x00junk")
    (root / ".DS_Store").write_bytes(b"junk")
    return root


def _members(archive: bytes) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
        return {m.name: m for m in tar.getmembers()}


def test_archive_is_byte_identical_across_runs_and_touched_mtimes(tmp_path):
    source = _write_source(tmp_path / "src")
    first = package_source(source)
    assert package_source(source) == first
    for path in source.rglob("*"):
        os.utime(path, (1_000_000_000, 1_700_000_000))
    assert package_source(source) == first


def test_archive_does_not_depend_on_creation_order_or_location(tmp_path):
    a = _write_source(tmp_path / "a")
    b = tmp_path / "elsewhere" / "b"
    (b / "pkg").mkdir(parents=True)
    # same files, written in another order, in another folder, with another umask's modes
    (b / "run.sh").write_text("#!/bin/sh\necho hi\n")
    (b / "run.sh").chmod(0o700)
    (b / "pkg" / "model.py").write_text("MODEL = 1\n")
    (b / "requirements.txt").write_text("numpy\n")
    (b / "train.py").write_text("print('train')\n")
    (b / "train.py").chmod(0o600)
    assert package_source(b) == package_source(a)


def test_archive_changes_with_content(tmp_path):
    source = _write_source(tmp_path / "src")
    before = package_source(source)
    (source / "train.py").write_text("print('train v2')\n")
    assert package_source(source) != before


def test_archive_excludes_caches_and_normalises_metadata(tmp_path):
    archive = package_source(_write_source(tmp_path / "src"))
    members = _members(archive)
    assert sorted(members) == ["pkg/model.py", "requirements.txt", "run.sh", "train.py"]
    for info in members.values():
        assert (info.mtime, info.uid, info.gid, info.uname, info.gname) == (0, 0, 0, "", "")
        assert info.isfile()
    assert members["run.sh"].mode == 0o755 and members["train.py"].mode == 0o644
    header = archive[:10]
    assert header[4:8] == b"\x00\x00\x00\x00"  # gzip mtime 0
    assert not header[3] & 0x08  # no file name stored in the gzip header
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
        assert tar.extractfile("pkg/model.py").read() == b"MODEL = 1\n"


def test_missing_source_folder_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        package_source(tmp_path / "nope")


def test_the_shared_modules_go_beside_the_workloads_own_files(tmp_path):
    source = _write_source(tmp_path / "src")
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "helpers.py").write_text("HELP = 1\n")
    members = _members(package_source(source, shared))
    assert sorted(members) == ["helpers.py", "pkg/model.py", "requirements.txt", "run.sh", "train.py"]
    assert package_source(source, shared) == package_source(source, shared)

    (shared / "train.py").write_text("print('shadow')\n")
    with pytest.raises(ValueError, match=r"train.py has the name of the shared module .*shared/train.py"):
        package_source(source, shared)


def test_every_workloads_train_py_finds_the_hyperparameter_parser_in_its_archive():
    for workload in ("acoustic_shield", "brain_to_text", "cifar10", "meld_sentiment", "room_detection"):
        cfg = load_workload(workload)
        members = _members(package_source(cfg.source_path, SHARED_SOURCE_DIR))
        assert members[cfg.source.entry_point].isfile() and "sagemaker_hyperparameters.py" in members, workload


@pytest.fixture
def s3(s3_client):
    """An empty bucket on the session's local SageMaker (moto's mock_aws would reset the emulator's state)."""
    try:
        s3_client.create_bucket(Bucket=BUCKET)
    except s3_client.exceptions.BucketAlreadyOwnedByYou:
        for page in s3_client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET):
            for item in page.get("Contents", []):
                s3_client.delete_object(Bucket=BUCKET, Key=item["Key"])
    return s3_client


class _CountingS3:
    """Wraps a client to count the uploads it is asked to make."""

    def __init__(self, client):
        self._client, self.puts = client, 0

    def put_object(self, **kwargs):
        self.puts += 1
        return self._client.put_object(**kwargs)

    def __getattr__(self, name):
        return getattr(self._client, name)


def test_upload_source_is_content_addressed_and_skips_the_second_upload(tmp_path, s3):
    source = _write_source(tmp_path / "src")
    counting = _CountingS3(s3)
    uri = upload_source(counting, BUCKET, "pipelines/cifar10", source)
    digest = hashlib.sha256(package_source(source, SHARED_SOURCE_DIR)).hexdigest()[:16]
    assert uri == f"s3://{BUCKET}/pipelines/cifar10/source/{digest}/sourcedir.tar.gz"
    body = s3.get_object(Bucket=BUCKET, Key=uri.split(f"{BUCKET}/", 1)[1])["Body"].read()
    assert body == package_source(source, SHARED_SOURCE_DIR)

    os.utime(source / "train.py", (0, 2_000_000_000))  # touched, not changed
    assert upload_source(counting, BUCKET, "pipelines/cifar10", source) == uri
    assert counting.puts == 1

    (source / "train.py").write_text("print('changed')\n")
    changed = upload_source(counting, BUCKET, "pipelines/cifar10", source)
    assert changed != uri and counting.puts == 2


def test_sync_directory_uploads_only_what_changed(tmp_path, s3):
    local = tmp_path / "data"
    (local / "nested").mkdir(parents=True)
    (local / "a.bin").write_bytes(b"a" * 100)
    (local / "nested" / "b.bin").write_bytes(b"b" * 50)

    first = sync_directory(s3, local, BUCKET, "wl/data")
    assert (first["uploaded"], first["skipped"], first["bytes_uploaded"]) == (2, 0, 150)
    assert first["uri"] == f"s3://{BUCKET}/wl/data"
    assert s3.get_object(Bucket=BUCKET, Key="wl/data/nested/b.bin")["Body"].read() == b"b" * 50

    again = sync_directory(s3, local, BUCKET, "wl/data")
    assert (again["uploaded"], again["skipped"]) == (0, 2)

    (local / "a.bin").write_bytes(b"A" * 100)  # same size, new content
    (local / "c.bin").write_bytes(b"c")
    third = sync_directory(s3, local, BUCKET, "wl/data")
    assert (third["uploaded"], third["skipped"], third["bytes_uploaded"]) == (2, 1, 101)
    assert s3.get_object(Bucket=BUCKET, Key="wl/data/a.bin")["Body"].read() == b"A" * 100

    (local / "c.bin").unlink()
    assert sync_directory(s3, local, BUCKET, "wl/data")["extra"] == 1  # left alone, reported


def test_sync_recognises_a_multipart_upload_by_its_recorded_md5(tmp_path, s3):
    local = tmp_path / "data"
    local.mkdir()
    big = local / "big.bin"
    big.write_bytes(os.urandom(6 * 1024 * 1024))
    md5 = hashlib.md5(big.read_bytes()).hexdigest()
    from boto3.s3.transfer import TransferConfig

    s3.upload_file(str(big), BUCKET, "wl/data/big.bin", ExtraArgs={"Metadata": {"md5": md5}},
                   Config=TransferConfig(multipart_threshold=5 * 1024 * 1024, multipart_chunksize=5 * 1024 * 1024))
    assert "-" in s3.head_object(Bucket=BUCKET, Key="wl/data/big.bin")["ETag"]
    assert sync_directory(s3, local, BUCKET, "wl/data")["skipped"] == 1


def test_generated_training_data_lands_where_the_channels_point(tmp_path, s3):
    cfg = load_workload("cifar10", "local").with_overrides(bucket=BUCKET)
    result = data_mod.upload_training_data(s3, cfg, tmp_path)
    assert result["uploaded"] == 7  # data_batch_1..5, test_batch, batches.meta
    channel = cfg.channel_uris()["train"]
    prefix = channel.removeprefix(f"s3://{BUCKET}/")
    keys = {o["Key"].removeprefix(prefix + "/") for o in s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix)["Contents"]}
    assert {"data_batch_1", "data_batch_5", "test_batch", "batches.meta"} <= keys
    assert data_mod.upload_training_data(s3, cfg, tmp_path)["skipped"] == 7  # same seed, same bytes


def _archive(path: Path, members: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, payload in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    return path


def test_published_archive_is_downloaded_unpacked_and_synced_once(tmp_path, s3, monkeypatch):
    archive = _archive(tmp_path / "cifar-10-python.tar.gz", {
        "cifar-10-batches-py/data_batch_1": b"rows", "cifar-10-batches-py/batches.meta": b"meta"})
    aws = load_workload("cifar10", "aws").with_overrides(bucket=BUCKET)
    # a file:// URL stands in for the https:// one (the config itself accepts only s3/http/https)
    cfg = dataclasses.replace(aws, data=dataclasses.replace(aws.data, source_uri=archive.as_uri()))
    result = data_mod.upload_training_data(s3, cfg, tmp_path / "work")
    assert result["uploaded"] == 2
    channel_key = cfg.channel_uris()["train"].removeprefix(f"s3://{BUCKET}/")
    assert s3.get_object(Bucket=BUCKET, Key=f"{channel_key}/data_batch_1")["Body"].read() == b"rows"

    def no_download(*args, **kwargs):
        raise AssertionError("downloaded again although the same source was synced")

    monkeypatch.setattr(data_mod, "download_archive", no_download)
    assert data_mod.upload_training_data(s3, cfg, tmp_path / "work")["uploaded"] == 0


def test_archive_members_may_not_escape_the_folder(tmp_path):
    archive = _archive(tmp_path / "set.tar.gz", {"cifar-10-batches-py/data_batch_1": b"rows", "../escape.txt": b"x"})
    # refused before anything is written, by name: tarfile's own filter is bypassable here (CVE-2025-4517)
    with pytest.raises(UnsafeArchiveMember, match=r"'\.\./escape\.txt' has a '\.\.' component"):
        data_mod.download_archive(archive.as_uri(), tmp_path / "out")
    assert not (tmp_path / "out" / "cifar-10-batches-py" / "data_batch_1").exists()
    assert not (tmp_path / "escape.txt").exists()
