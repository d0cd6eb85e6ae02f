"""Distributed training on the local SageMaker: InstanceCount 2 runs hosts algo-1 and algo-2 joined
by torchrun (the PyTorch toolkit's torch_distributed launcher) over gloo on loopback."""
from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
import textwrap

import pytest

from tests.conftest import TEST_BUCKET, TEST_REGION, TEST_ROLE_ARN
from tests.emulator.test_training_jobs import IMAGE, LOG_GROUP, read_tarball, wait_until_done

PREFIX = "ddp-tests"

# Each rank all-reduces its rank + 1 and takes one DDP step on the same data; the ranks must agree.
DDP_TRAIN_PY = textwrap.dedent(
    """
    import json, os, socket
    import torch
    import torch.distributed as dist

    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    total = torch.tensor([float(rank + 1)])
    dist.all_reduce(total)

    torch.manual_seed(0)
    model = torch.nn.parallel.DistributedDataParallel(torch.nn.Linear(2, 1))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    inputs = torch.tensor([[1.0, 2.0]]) * (rank + 1)  # different data per rank: DDP averages the gradients
    model(inputs).sum().backward()
    optimizer.step()
    weights = [round(w, 6) for w in model.module.weight.detach().flatten().tolist()]

    host = os.environ["SM_CURRENT_HOST"]
    print(f"rank={rank} world={world} host={host} allreduce={total.item()} weights={weights}", flush=True)
    record = {
        "rank": rank, "world": world, "allreduce": total.item(), "weights": weights,
        "current_host": host, "hosts": json.loads(os.environ["SM_HOSTS"]),
        "resolved_peer": socket.gethostbyname("algo-2"),
        "argv": os.sys.argv[1:],
    }
    with open(os.path.join(os.environ["SM_MODEL_DIR"], f"rank-{rank}.json"), "w") as f:
        json.dump(record, f)
    dist.destroy_process_group()
    """
)


@pytest.fixture(scope="module")
def ddp_source_uri(s3_client):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        data = DDP_TRAIN_PY.encode()
        info = tarfile.TarInfo("train.py")
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data))
    s3_client.put_object(Bucket=TEST_BUCKET, Key=f"{PREFIX}/source/sourcedir.tar.gz", Body=buffer.getvalue())
    s3_client.put_object(Bucket=TEST_BUCKET, Key=f"{PREFIX}/data/train/a.csv", Body=b"1,2\n")
    return f"s3://{TEST_BUCKET}/{PREFIX}/source/sourcedir.tar.gz"


def ddp_request(name: str, source_uri: str) -> dict:
    """What the SDK's PyTorch estimator sends for distribution={"torch_distributed": {"enabled": True}}."""
    return {
        "TrainingJobName": name,
        "AlgorithmSpecification": {"TrainingImage": IMAGE, "TrainingInputMode": "File"},
        "RoleArn": TEST_ROLE_ARN,
        "HyperParameters": {
            "epochs": "1",
            "sagemaker_program": json.dumps("train.py"),
            "sagemaker_submit_directory": json.dumps(source_uri),
            "sagemaker_region": json.dumps(TEST_REGION),
            "sagemaker_torch_distributed_enabled": "true",
        },
        "InputDataConfig": [
            {
                "ChannelName": "train",
                "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": f"s3://{TEST_BUCKET}/{PREFIX}/data/train"}},
            }
        ],
        "OutputDataConfig": {"S3OutputPath": f"s3://{TEST_BUCKET}/{PREFIX}/output"},
        "ResourceConfig": {"InstanceType": "ml.m5.xlarge", "InstanceCount": 2, "VolumeSizeInGB": 5},
        "StoppingCondition": {"MaxRuntimeInSeconds": 300},
    }


@pytest.fixture(scope="module")
def ddp_job(sagemaker_client, ddp_source_uri):
    sagemaker_client.create_training_job(**ddp_request("unit-ddp-two-hosts", ddp_source_uri))
    return wait_until_done(sagemaker_client, "unit-ddp-two-hosts", timeout=300)


@pytest.mark.slow
def test_two_host_job_completes_and_its_ranks_agree(ddp_job, s3_client):
    assert ddp_job["TrainingJobStatus"] == "Completed", ddp_job.get("FailureReason")
    saved = read_tarball(s3_client, ddp_job["ModelArtifacts"]["S3ModelArtifacts"])
    # SageMaker gathers every host's /opt/ml/model into the one model.tar.gz
    assert sorted(saved) == ["rank-0.json", "rank-1.json"]
    ranks = [json.loads(saved[f"rank-{rank}.json"]) for rank in (0, 1)]
    assert [r["world"] for r in ranks] == [2, 2]
    assert [r["allreduce"] for r in ranks] == [3.0, 3.0]  # 1 + 2, seen by both ranks
    assert ranks[0]["weights"] == ranks[1]["weights"]  # DDP averaged the gradients of different data
    assert [r["current_host"] for r in ranks] == ["algo-1", "algo-2"]
    assert all(r["hosts"] == ["algo-1", "algo-2"] for r in ranks)
    assert all(r["resolved_peer"] == "127.0.0.1" for r in ranks)  # host names mean this machine
    assert all("--epochs" in r["argv"] for r in ranks)  # hyperparameters reach every rank as flags


@pytest.mark.slow
def test_each_host_logs_to_its_own_stream(ddp_job, logs_client):
    streams = logs_client.describe_log_streams(logGroupName=LOG_GROUP, logStreamNamePrefix="unit-ddp-two-hosts/")["logStreams"]
    names = sorted(stream["logStreamName"] for stream in streams)
    assert [name.rsplit("-", 1)[0] for name in names] == ["unit-ddp-two-hosts/algo-1", "unit-ddp-two-hosts/algo-2"]
    logged = {}
    for name in names:
        events = logs_client.get_log_events(logGroupName=LOG_GROUP, logStreamName=name, startFromHead=True)["events"]
        logged[name.rsplit("-", 1)[0]] = "\n".join(event["message"] for event in events)
    assert "rank=0 world=2 host=algo-1 allreduce=3.0" in logged["unit-ddp-two-hosts/algo-1"]
    assert "rank=1 world=2 host=algo-2 allreduce=3.0" in logged["unit-ddp-two-hosts/algo-2"]
    # the toolkit launched torchrun with SageMaker's arguments on both hosts
    assert "torchrun --nnodes 2 --nproc_per_node 1 --master_addr algo-1 --master_port 7777 --node_rank 0" in logged["unit-ddp-two-hosts/algo-1"]
    assert "--node_rank 1" in logged["unit-ddp-two-hosts/algo-2"]


@pytest.mark.slow
def test_two_host_job_bills_per_instance(ddp_job):
    # BillableTimeInSeconds is per instance; the cluster's compute time is that times InstanceCount
    assert ddp_job["BillableTimeInSeconds"] == ddp_job["TrainingTimeInSeconds"]
    assert ddp_job["ResourceConfig"]["InstanceCount"] == 2


def test_job_site_rewrites_only_the_jobs_host_names(monkeypatch):
    import importlib.util

    from include.emulator.jobs.network import JOB_SITE_DIR

    monkeypatch.setenv("EMULATOR_JOB_HOSTS", "algo-1,algo-2")
    monkeypatch.setenv("EMULATOR_JOB_MASTER_PORT", "41234")
    spec = importlib.util.spec_from_file_location("job_site_under_test", JOB_SITE_DIR / "sitecustomize.py")
    module = importlib.util.module_from_spec(spec)
    import socket
    import sys

    saved = (socket.getaddrinfo, socket.gethostbyname, socket.gethostbyname_ex, list(sys.argv))
    try:
        spec.loader.exec_module(module)
        assert module._rewrite_arguments(
            ["--nnodes", "2", "--master_addr", "algo-1", "--master_port", "7777", "--master-port=7777", "train.py", "--master_addr=example.com"]
        ) == ["--nnodes", "2", "--master_addr", "127.0.0.1", "--master_port", "41234", "--master-port=41234", "train.py", "--master_addr=example.com"]
        assert socket.gethostbyname("algo-2") == "127.0.0.1"
        assert socket.getaddrinfo("algo-1", 80)[0][4][0] == "127.0.0.1"
    finally:
        socket.getaddrinfo, socket.gethostbyname, socket.gethostbyname_ex, sys.argv[:] = saved


# The toolkit's old style (its distributed_operations.py, the older pytorch_mnist/mnist.py): no
# launcher, the script runs on every host and sets the rendezvous up itself, after start, by name.
LATE_MASTER_TRAIN_PY = textwrap.dedent(
    """
    import _socket, json, os, sys
    import torch
    import torch.distributed as dist

    hosts = json.loads(os.environ["SM_HOSTS"])
    host = os.environ["SM_CURRENT_HOST"]
    rank = hosts.index(host)
    port = sys.argv[sys.argv.index("--port") + 1]
    os.environ["MASTER_ADDR"] = hosts[0]
    os.environ["MASTER_PORT"] = port
    # libc's own lookup (the socket module's getaddrinfo without the job's Python-level patch)
    try:
        c_resolved = _socket.getaddrinfo("algo-2", None)[0][4][0]
    except OSError as error:
        c_resolved = f"error {error}"
    dist.init_process_group("gloo", init_method=f"tcp://{hosts[0]}:{port}", rank=rank, world_size=len(hosts))
    total = torch.tensor([float(rank + 1)])
    dist.all_reduce(total)
    print(f"late-master rank={rank} host={host} allreduce={total.item()} c_resolved={c_resolved}", flush=True)
    dist.destroy_process_group()
    """
)


@pytest.mark.slow
def test_script_that_names_the_master_host_itself_completes(sagemaker_client, s3_client, logs_client):
    import shutil

    from include.emulator.jobs.network import free_port

    name = "unit-ddp-late-master-addr"
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        data = LATE_MASTER_TRAIN_PY.encode()
        info = tarfile.TarInfo("train.py")
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data))
    s3_client.put_object(Bucket=TEST_BUCKET, Key=f"{PREFIX}/late-master/sourcedir.tar.gz", Body=buffer.getvalue())
    s3_client.put_object(Bucket=TEST_BUCKET, Key=f"{PREFIX}/data/train/a.csv", Body=b"1,2\n")
    request = ddp_request(name, f"s3://{TEST_BUCKET}/{PREFIX}/late-master/sourcedir.tar.gz")
    del request["HyperParameters"]["sagemaker_torch_distributed_enabled"]  # no launcher: the script on every host
    request["HyperParameters"]["port"] = str(free_port())
    request["StoppingCondition"] = {"MaxRuntimeInSeconds": 120}  # a regression hangs in the rendezvous: fail, not wait
    sagemaker_client.create_training_job(**request)
    job = wait_until_done(sagemaker_client, name, timeout=240)
    assert job["TrainingJobStatus"] == "Completed", job.get("FailureReason")

    streams = logs_client.describe_log_streams(logGroupName=LOG_GROUP, logStreamNamePrefix=f"{name}/")["logStreams"]
    logged = {}
    for stream in streams:
        events = logs_client.get_log_events(logGroupName=LOG_GROUP, logStreamName=stream["logStreamName"], startFromHead=True)["events"]
        logged[stream["logStreamName"].rsplit("-", 1)[0]] = "\n".join(event["message"] for event in events)
    assert "late-master rank=0 host=algo-1 allreduce=3.0" in logged[f"{name}/algo-1"]
    assert "late-master rank=1 host=algo-2 allreduce=3.0" in logged[f"{name}/algo-2"]
    if any(shutil.which(compiler) for compiler in ("cc", "gcc", "clang")) and sys.platform.startswith("linux"):
        # the preloaded library answers libc itself, for every C and C++ library of the job
        assert all("c_resolved=127.0.0.1" in text for text in logged.values()), logged


def _bare_python(code: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-I", "-S", "-c", code], env=env, capture_output=True, text=True, timeout=60)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="LD_PRELOAD is Linux's")
def test_preloaded_library_resolves_only_the_jobs_host_names_in_libc(tmp_path):
    import shutil

    from include.emulator.jobs.host_names import resolver_library

    if not any(shutil.which(compiler) for compiler in ("cc", "gcc", "clang")):
        pytest.skip("no C compiler: the job's Python-level patch is all there is")
    library = resolver_library(tmp_path, sys.executable)
    assert library is not None and library.parent == tmp_path / "cache"
    assert resolver_library(tmp_path, sys.executable) == library  # built once
    lookup = textwrap.dedent(
        """
        import socket
        for name in ("algo-1", "ALGO-2.", "algo-3", "localhost"):
            try:
                print(name, socket.getaddrinfo(name, 80, type=socket.SOCK_STREAM)[0][4][0], socket.gethostbyname_ex(name)[2])
            except OSError:
                print(name, "unknown")
        """
    )
    job = _bare_python(lookup, {"LD_PRELOAD": str(library), "EMULATOR_JOB_HOSTS": "algo-1,algo-2"})
    assert job.stdout.split("\n")[:4] == [
        "algo-1 127.0.0.1 ['127.0.0.1']", "ALGO-2. 127.0.0.1 ['127.0.0.1']", "algo-3 unknown", "localhost 127.0.0.1 ['127.0.0.1']",
    ], job.stderr
    outside = _bare_python(lookup, {"LD_PRELOAD": str(library)})  # not a job's process: libc as it is
    assert outside.stdout.split("\n")[:2] == ["algo-1 unknown", "ALGO-2. unknown"], outside.stderr


def test_job_environment_preloads_the_library_before_the_jobs_own():
    from pathlib import Path

    from include.emulator.jobs.network import network_environment

    library = Path("/state/cache/libemulator-host-names-0123.so")
    env = network_environment(["algo-1", "algo-2"], 41234, {"LD_PRELOAD": "libjemalloc.so"}, sys.executable, library)
    assert env["LD_PRELOAD"] == f"{library} libjemalloc.so"
    assert "LD_PRELOAD" not in network_environment(["algo-1"], 41234, {}, sys.executable, None)


def test_torch_store_named_by_a_job_host_is_served_on_loopback_without_the_library():
    from include.emulator.jobs.network import JOB_SITE_DIR, free_port

    port = free_port()
    script = textwrap.dedent(
        f"""
        import os
        os.environ["MASTER_ADDR"] = "algo-1"  # late: after the job's sitecustomize ran
        import torch.distributed as dist
        store = dist.TCPStore(os.environ["MASTER_ADDR"], {port}, 1, True)
        store.set("k", "v")
        print(store.host, store.get("k").decode())
        """
    )
    env = {"PYTHONPATH": str(JOB_SITE_DIR), "EMULATOR_JOB_HOSTS": "algo-1,algo-2", "PATH": os.environ.get("PATH", "")}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split() == ["127.0.0.1", "v"]
