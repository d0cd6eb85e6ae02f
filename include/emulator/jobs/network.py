"""The network a job's hosts share: all of them are this machine, reached over loopback.

SageMaker's hosts find each other by name (algo-1, ...) on the instances' network interface. Here
those names mean 127.0.0.1 in every process of the job: a preloaded library (``host_names.py``)
answers libc's lookups, for C and C++ libraries and Python alike, and ``job_site/sitecustomize.py``,
loaded by every Python process of the job, answers Python's and torch.distributed's even without it.
The job gets a free port of its own for the rendezvous the toolkit pins to 7777, and gloo is told
to use the loopback interface. Nothing here needs privileges: no /etc/hosts entry, no network
namespace.
"""
from __future__ import annotations

import os
import socket
from pathlib import Path

from .host_names import preload_environment

JOB_SITE_DIR = Path(__file__).resolve().parent / "job_site"
LOOPBACK_INTERFACE = "lo"


def free_port() -> int:
    """A TCP port of 127.0.0.1 nobody listens on right now (the job's master port)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def network_environment(hosts: list[str], master_port: int, inherited: dict[str, str], python: str,
                        resolver: Path | None = None) -> dict[str, str]:
    """What to add to a host process's environment so the hosts reach each other locally
    (``resolver``: the library of ``host_names.resolver_library``, preloaded when there is one)."""
    path_entries = [str(JOB_SITE_DIR)] + [entry for entry in inherited.get("PYTHONPATH", "").split(os.pathsep) if entry]
    # the framework images have torchrun and python on PATH; here they sit beside the interpreter
    bin_dir = str(Path(python).parent)
    return {
        **preload_environment(resolver, inherited),
        "PYTHONPATH": os.pathsep.join(path_entries),
        "PATH": os.pathsep.join([bin_dir, inherited.get("PATH", os.defpath)]),
        "EMULATOR_JOB_HOSTS": ",".join(hosts),
        "EMULATOR_JOB_MASTER_PORT": str(master_port),
        "GLOO_SOCKET_IFNAME": LOOPBACK_INTERFACE,
        "TP_SOCKET_IFNAME": LOOPBACK_INTERFACE,  # torch RPC's tensorpipe, for scripts that use it
    }
