"""No archive member lands outside its folder: model.tar.gz, sourcedir.tar.gz, submit directories.

The archives are the ones attackers publish: the symlink chain whose expansion exceeds PATH_MAX and
so defeats tarfile's ``data`` filter on this interpreter (CVE-2025-4517, built as CPython's own
``test_realpath_limit_attack`` builds it), a ``../`` member, an absolute path, a symlink pointing
outside, a hard link, a device.
"""
from __future__ import annotations

import io
import json
import os
import stat
import subprocess
import sys
import tarfile
import time
import uuid
from pathlib import Path

import pytest

from include.emulator.archives import (
    UnsafeArchiveMember,
    tarfile_filter_bypassable,
    unpack_tar,
)
from include.emulator.jobs.network import JOB_SITE_DIR
from tests.conftest import TEST_BUCKET, TEST_REGION, TEST_ROLE_ARN
from tests.emulator.hosting_fixtures import IMAGE as INFERENCE_IMAGE
from tests.emulator.hosting_fixtures import (
    HELPERS_PY,
    SCALER_PY,
    create_config,
    deploy,
    instance_variant,
    invoke_json,
    unique,
    upload,
)

TRAINING_IMAGE = "763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-training:2.5.1-cpu-py311-ubuntu22.04-sagemaker"
PREFIX = "archive-safety-tests"
TRAIN_PY = "import os\nopen(os.path.join(os.environ['SM_MODEL_DIR'], 'model.txt'), 'w').write('ok')\n"


# --- building archives ------------------------------------------------------------------------------

def _entry(name: str, *, content: bytes | None = None, type: bytes = tarfile.REGTYPE, link: str = "", mode: int = 0o644):
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.mode, info.mtime = type, link, mode, 1_700_000_000
    if content is not None:
        info.size = len(content)
    return info, io.BytesIO(content) if content is not None else None


def archive(*entries) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz", format=tarfile.PAX_FORMAT) as tar:
        for info, data in entries:
            tar.addfile(info, data)
    return buffer.getvalue()


def file_entry(name: str, content: str = "x", mode: int = 0o644):
    return _entry(name, content=content.encode(), mode=mode)


def directory_entry(name: str):
    return _entry(name, type=tarfile.DIRTYPE, mode=0o777)


def symlink_entry(name: str, target: str):
    return _entry(name, type=tarfile.SYMTYPE, link=target)


def hardlink_entry(name: str, target: str):
    return _entry(name, type=tarfile.LNKTYPE, link=target)


def realpath_limit_attack(destination: Path, marker: str) -> bytes:
    """CVE-2025-4517: 16 directories each reached by a one-letter symlink, sized so the unexpanded path
    fits in PATH_MAX but its expansion does not; realpath then stops expanding, a final link climbs
    out, and a hard link through it lets the archive overwrite (and create) files outside."""
    steps = "abcdefghijklmnop"
    max_path = os.pathconf(destination.parent if destination.parent.exists() else "/", "PC_PATH_MAX")
    component = "d" * ((max_path - (len(str(destination)) + 1)) // (len(steps) + 1))
    entries, path = [], ""
    for step in steps:
        entries.append(directory_entry(os.path.join(path, component)))
        entries.append(symlink_entry(os.path.join(path, step), component))
        path = os.path.join(path, component)
    link_path = os.path.join(*steps, "l" * 254)
    entries.append(symlink_entry(link_path, os.path.join(*[".."] * len(steps))))
    entries.append(symlink_entry("escape", os.path.join(link_path, "..")))
    entries.append(hardlink_entry("flaglink", os.path.join("escape", f"{marker}-flag")))
    entries.append(file_entry("flaglink", "overwrite"))
    entries.append(file_entry(f"escape/{marker}-newfile", "new"))
    return archive(*entries)


def hostile_archives(outside: Path, marker: str) -> dict[str, tuple[bytes, str]]:
    """Each attack as (archive bytes, the member the refusal must name)."""
    return {
        "dot-dot": (archive(file_entry("model.json"), file_entry(f"../../{marker}-dotdot.txt")), f"../../{marker}-dotdot.txt"),
        "absolute": (archive(file_entry(f"{outside}/{marker}-absolute.txt")), f"{outside}/{marker}-absolute.txt"),
        "symlink-out": (archive(symlink_entry("out", str(outside)), file_entry(f"out/{marker}-via-link.txt")), "out"),
        "hard-link": (archive(hardlink_entry("passwd", "/etc/passwd")), "passwd"),
        "device": (archive(_entry("null", type=tarfile.CHRTYPE)), "null"),
    }


def names_anywhere(root: Path, marker: str) -> list[Path]:
    return [path for path in root.rglob(f"*{marker}*")] if root.exists() else []


# --- the unpacking function -------------------------------------------------------------------------

def _unpack_bytes(data: bytes, destination: Path, tmp_path: Path) -> int:
    path = tmp_path / f"{uuid.uuid4().hex}.tar.gz"
    path.write_bytes(data)
    return unpack_tar(path, destination)


def test_a_legitimate_archive_unpacks_files_and_folders_with_safe_modes(tmp_path):
    data = archive(directory_entry("."), directory_entry("code"), file_entry("./model.json", '{"a": 1}'),
                   file_entry("code/inference.py", "print(1)"), file_entry("code/run.sh", "#!/bin/sh", mode=0o4777),
                   file_entry("deep/er/weights.bin", "w"))
    destination = tmp_path / "model"
    assert _unpack_bytes(data, destination, tmp_path) == 4
    assert sorted(p.relative_to(destination).as_posix() for p in destination.rglob("*")) == [
        "code", "code/inference.py", "code/run.sh", "deep", "deep/er", "deep/er/weights.bin", "model.json"]
    assert (destination / "model.json").read_text() == '{"a": 1}'
    run_sh = (destination / "code" / "run.sh").stat()
    assert stat.S_IMODE(run_sh.st_mode) == 0o755  # executable kept; setuid and group/other write dropped
    assert run_sh.st_mtime == 1_700_000_000


def test_a_later_member_of_the_same_name_replaces_the_file(tmp_path):
    destination = tmp_path / "code"
    _unpack_bytes(archive(file_entry("train.py", "old"), file_entry("train.py", "new")), destination, tmp_path)
    assert (destination / "train.py").read_text() == "new"


@pytest.mark.parametrize("attack", ["dot-dot", "absolute", "symlink-out", "hard-link", "device"])
def test_a_hostile_member_is_refused_by_name_and_nothing_is_written(tmp_path, attack):
    outside, marker = tmp_path / "outside", uuid.uuid4().hex[:8]
    outside.mkdir()
    data, member = hostile_archives(outside, marker)[attack]
    destination = tmp_path / "a" / "b" / "model"
    with pytest.raises(UnsafeArchiveMember) as excinfo:
        _unpack_bytes(data, destination, tmp_path)
    assert excinfo.value.member == member and f"'{member}'" in str(excinfo.value)
    assert names_anywhere(tmp_path, marker) == []
    assert not destination.exists() or list(destination.iterdir()) == []  # refused before anything is written


@pytest.mark.parametrize("member,why", [
    (directory_entry("a/../../x"), "'..' component"),
    (file_entry("/etc/cron.d/x"), "absolute path"),
    (_entry("pipe", type=tarfile.FIFOTYPE), "FIFO"),
    (_entry("disk", type=tarfile.BLKTYPE), "device"),
    (symlink_entry("inside", "model.json"), "symbolic link"),  # even one pointing inside
])
def test_every_kind_of_refusal_says_why(tmp_path, member, why):
    with pytest.raises(UnsafeArchiveMember, match=why):
        _unpack_bytes(archive(member), tmp_path / "dest", tmp_path)


def test_the_symlink_chain_that_defeats_realpath_is_refused(tmp_path):
    outer = tmp_path / "outer"
    destination = outer / "dest"
    destination.mkdir(parents=True)
    marker = uuid.uuid4().hex[:8]
    (outer / f"{marker}-flag").write_text("original")
    with pytest.raises(UnsafeArchiveMember, match="symbolic link") as excinfo:
        _unpack_bytes(realpath_limit_attack(destination, marker), destination, tmp_path)
    assert excinfo.value.member == "a"
    assert (outer / f"{marker}-flag").read_text() == "original"
    assert not (outer / f"{marker}-newfile").exists()
    assert list(destination.iterdir()) == []


@pytest.mark.skipif(not tarfile_filter_bypassable(), reason="this interpreter has the CVE-2025-4517 fix")
def test_the_same_archive_does_escape_tarfiles_data_filter_on_this_interpreter(tmp_path):
    """Proof that the archive above is the real attack: the stdlib filter lets it write outside."""
    outer = tmp_path / "outer"
    destination = outer / "dest"
    destination.mkdir(parents=True)
    marker = uuid.uuid4().hex[:8]
    (outer / f"{marker}-flag").write_text("original")
    with tarfile.open(fileobj=io.BytesIO(realpath_limit_attack(destination, marker))) as tar:
        tar.extractall(destination, filter="data")
    assert (outer / f"{marker}-flag").read_text() == "overwrite"
    assert (outer / f"{marker}-newfile").read_text() == "new"


def test_a_link_already_in_the_destination_is_not_followed(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    destination = tmp_path / "model"
    destination.mkdir()
    (destination / "code").symlink_to(outside)
    with pytest.raises(UnsafeArchiveMember, match="not a directory"):
        _unpack_bytes(archive(file_entry("code/inference.py")), destination, tmp_path)
    (destination / "weights.bin").symlink_to(outside / "weights.bin")
    with pytest.raises(UnsafeArchiveMember, match="would replace a directory or link"):
        _unpack_bytes(archive(file_entry("weights.bin")), destination, tmp_path)
    assert list(outside.iterdir()) == []


def test_a_file_cannot_become_a_folder_of_a_later_member(tmp_path):
    with pytest.raises(UnsafeArchiveMember, match="not a directory"):
        _unpack_bytes(archive(file_entry("a"), file_entry("a/b")), tmp_path / "dest", tmp_path)


def test_a_corrupt_archive_is_an_archive_error(tmp_path):
    from include.emulator.archives import ArchiveError

    with pytest.raises(ArchiveError, match="could not be unpacked"):
        _unpack_bytes(b"\x1f\x8b not really gzip", tmp_path / "dest", tmp_path)


@pytest.mark.parametrize("version,bypassable", [
    ((3, 11, 7), True), ((3, 11, 13), False), ((3, 10, 17), True), ((3, 10, 18), False), ((3, 9, 23), False),
    ((3, 12, 10), True), ((3, 12, 11), False), ((3, 13, 3), True), ((3, 13, 4), False), ((3, 14, 0), False),
    ((3, 8, 20), True),
])
def test_interpreters_with_a_bypassable_tarfile_filter_are_known(version, bypassable):
    assert tarfile_filter_bypassable(version) is bypassable


def test_make_setup_warns_on_this_interpreter_when_its_filter_is_bypassable():
    root = Path(__file__).resolve().parents[2]
    result = subprocess.run([sys.executable, "-m", "include.emulator.archives"], cwd=root,
                            capture_output=True, text=True, timeout=60, check=True)
    assert ("CVE-2025-4517" in result.stderr) is tarfile_filter_bypassable()
    assert "$(PY) -m include.emulator.archives" in (root / "Makefile").read_text()


def test_the_toolkits_own_extraction_is_the_safe_one_inside_a_job(tmp_path):
    """sagemaker_training.files unpacks with realpath checks; in a job process it uses archives.py."""
    outside, marker = tmp_path / "outside", uuid.uuid4().hex[:8]
    outside.mkdir()
    tarball = tmp_path / "sourcedir.tar.gz"
    tarball.write_bytes(archive(symlink_entry("out", str(outside)), file_entry(f"out/{marker}.txt")))
    script = ("import sys\nfrom sagemaker_training import files\n"
              "try:\n    files.download_and_extract(sys.argv[1], sys.argv[2])\n"
              "except Exception as exc:\n    print(type(exc).__name__, exc)\n")
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join([str(JOB_SITE_DIR), os.environ.get("PYTHONPATH", "")]),
                   "EMULATOR_JOB_HOSTS": "algo-1", "SAGEMAKER_BASE_DIR": str(tmp_path / "ml")}
    result = subprocess.run([sys.executable, "-c", script, str(tarball), str(tmp_path / "code")], env=environment,
                            capture_output=True, text=True, timeout=120)
    assert "UnsafeArchiveMember archive member 'out' is a symbolic link" in result.stdout, result.stdout + result.stderr
    assert names_anywhere(tmp_path, marker) == []


# --- through the local SageMaker: endpoints and training jobs ---------------------------------------

def _state_dir(emulator) -> Path:
    return Path(emulator.emulator.settings.state_dir)


def _attack(attack: str, tmp_path: Path, unpacked_in: Path) -> tuple[bytes, str, str]:
    """(archive, the member it must be refused for, the marker no file anywhere may be named after):
    the realpath-limit chain sized for unpacking in `unpacked_in`, or one of the plain attacks aimed at
    a folder beside the test's own."""
    outside, marker = tmp_path / "outside", uuid.uuid4().hex[:8]
    outside.mkdir()
    if attack == "realpath-limit":
        return realpath_limit_attack(unpacked_in, marker), "a", marker
    return (*hostile_archives(outside, marker)[attack], marker)


def _deploy_archive(sagemaker_client, s3_client, data: bytes, *, submit_directory: bytes | None = None,
                    check=None) -> dict:
    name = unique("hostile")
    environment = {"SAGEMAKER_PROGRAM": "inference.py"}
    model_uri = upload(s3_client, f"{name}/model.tar.gz", data)
    if submit_directory is not None:
        environment["SAGEMAKER_SUBMIT_DIRECTORY"] = upload(s3_client, f"{name}/sourcedir.tar.gz", submit_directory)
    sagemaker_client.create_model(ModelName=name, ExecutionRoleArn=TEST_ROLE_ARN,
                                  PrimaryContainer={"Image": INFERENCE_IMAGE, "ModelDataUrl": model_uri,
                                                    "Environment": environment})
    config = create_config(sagemaker_client, unique("hostile-cfg"), [instance_variant(name)])
    endpoint = unique("hostile-ep")
    try:
        described = deploy(sagemaker_client, endpoint, config)
        if check is not None:
            check(endpoint)
    finally:
        sagemaker_client.delete_endpoint(EndpointName=endpoint)
    return described


@pytest.mark.parametrize("attack", ["realpath-limit", "dot-dot", "absolute", "symlink-out", "hard-link"])
def test_a_hostile_model_archive_fails_the_endpoint_naming_the_member(emulator, sagemaker_client, s3_client, tmp_path, attack):
    # the realpath chain is sized for a model folder deep in the emulator's state
    data, member, marker = _attack(attack, tmp_path, _state_dir(emulator) / "endpoints" / ("x" * 60) / "model")
    described = _deploy_archive(sagemaker_client, s3_client, data)
    assert described["EndpointStatus"] == "Failed"
    assert "Failed to extract model data archive" in described["FailureReason"]
    assert f"archive member '{member}'" in described["FailureReason"]
    assert names_anywhere(_state_dir(emulator), marker) == [] and names_anywhere(tmp_path, marker) == []


def test_a_hostile_submit_directory_fails_the_endpoint_naming_the_member(emulator, sagemaker_client, s3_client, tmp_path):
    marker = uuid.uuid4().hex[:8]
    good_model = archive(file_entry("model.json", json.dumps({"scale": 1, "tag": "v1"})))
    hostile_code = archive(file_entry("inference.py", SCALER_PY), symlink_entry("helpers.py", f"/tmp/{marker}"))
    described = _deploy_archive(sagemaker_client, s3_client, good_model, submit_directory=hostile_code)
    assert described["EndpointStatus"] == "Failed"
    assert "archive member 'helpers.py' is a symbolic link" in described["FailureReason"]
    assert names_anywhere(_state_dir(emulator), marker) == []


@pytest.mark.slow
def test_a_legitimate_submit_directory_is_unpacked_beside_the_model_and_serves(sagemaker_client, runtime_client, s3_client):
    model = archive(directory_entry("."), file_entry("./model.json", json.dumps({"scale": 2, "tag": "v1"})))
    code = archive(file_entry("inference.py", SCALER_PY), file_entry("helpers.py", HELPERS_PY))
    answers = []
    described = _deploy_archive(sagemaker_client, s3_client, model, submit_directory=code,
                                check=lambda endpoint: answers.append(invoke_json(runtime_client, endpoint, {"values": [1]})[0]))
    assert described["EndpointStatus"] == "InService", described.get("FailureReason")
    assert answers == [{"tag": "v1", "outputs": [2]}]


def _training_request(name: str, source_uri: str, channel_uri: str) -> dict:
    return {
        "TrainingJobName": name,
        "AlgorithmSpecification": {"TrainingImage": TRAINING_IMAGE, "TrainingInputMode": "File"},
        "RoleArn": TEST_ROLE_ARN,
        "HyperParameters": {"sagemaker_program": json.dumps("train.py"),
                            "sagemaker_submit_directory": json.dumps(source_uri),
                            "sagemaker_region": json.dumps(TEST_REGION)},
        "InputDataConfig": [{"ChannelName": "train", "DataSource": {"S3DataSource": {
            "S3DataType": "S3Prefix", "S3Uri": channel_uri, "S3DataDistributionType": "FullyReplicated"}}}],
        "OutputDataConfig": {"S3OutputPath": f"s3://{TEST_BUCKET}/{PREFIX}/output"},
        "ResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 5},
        "StoppingCondition": {"MaxRuntimeInSeconds": 300},
    }


def _train(sagemaker_client, s3_client, source: bytes) -> dict:
    name = unique("hostile-src")
    s3_client.put_object(Bucket=TEST_BUCKET, Key=f"{PREFIX}/{name}/sourcedir.tar.gz", Body=source)
    s3_client.put_object(Bucket=TEST_BUCKET, Key=f"{PREFIX}/data/train/a.csv", Body=b"1\n")
    sagemaker_client.create_training_job(**_training_request(
        name, f"s3://{TEST_BUCKET}/{PREFIX}/{name}/sourcedir.tar.gz", f"s3://{TEST_BUCKET}/{PREFIX}/data/train"))
    deadline = time.monotonic() + 120
    while True:
        described = sagemaker_client.describe_training_job(TrainingJobName=name)
        if described["TrainingJobStatus"] in {"Completed", "Failed", "Stopped"}:
            return described
        assert time.monotonic() < deadline, f"training job {name} still {described['TrainingJobStatus']}"
        time.sleep(0.3)


@pytest.mark.parametrize("attack", ["realpath-limit", "dot-dot", "absolute", "symlink-out", "hard-link"])
def test_a_hostile_sourcedir_fails_the_training_job_naming_the_member(emulator, sagemaker_client, s3_client, tmp_path, attack):
    code_dir = _state_dir(emulator) / "training-jobs" / ("x" * 30) / "algo-1" / "code"
    source, member, marker = _attack(attack, tmp_path, code_dir)
    described = _train(sagemaker_client, s3_client, source)
    assert described["TrainingJobStatus"] == "Failed"
    assert "Could not unpack sagemaker_submit_directory" in described["FailureReason"]
    assert f"archive member '{member}'" in described["FailureReason"]
    assert names_anywhere(_state_dir(emulator), marker) == [] and names_anywhere(tmp_path, marker) == []


@pytest.mark.slow
def test_a_legitimate_sourcedir_is_staged_and_the_job_completes(sagemaker_client, s3_client):
    described = _train(sagemaker_client, s3_client, archive(directory_entry("."), file_entry("./train.py", TRAIN_PY)))
    assert described["TrainingJobStatus"] == "Completed", described.get("FailureReason")
