"""The network a job's hosts share: all of them are this machine, reached over loopback.

SageMaker's hosts find each other by name (algo-1, ...) on the instances' network interface. Here
``job_site/sitecustomize.py``, loaded by every Python process of the job, makes those names mean
127.0.0.1 (for torch's C++ store too, see there), the job gets a free port of its own for the
rendezvous the toolkit pins to 7777, and gloo is told to use the loopback interface. Nothing here
needs privileges: no /etc/hosts entry, no network namespace.
"""
from __future__ import annotations

import os
import socket
from pathlib import Path

JOB_SITE_DIR = Path(__file__).resolve().parent / "job_site"
LOOPBACK_INTERFACE = "lo"


def free_port() -> int:
    """A TCP port of 127.0.0.1 nobody listens on right now (the job's master port)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def network_environment(hosts: list[str], master_port: int, inherited: dict[str, str], python: str) -> dict[str, str]:
    """What to add to a host process's environment so the hosts reach each other locally."""
    path_entries = [str(JOB_SITE_DIR)] + [entry for entry in inherited.get("PYTHONPATH", "").split(os.pathsep) if entry]
    # the framework images have torchrun and python on PATH; here they sit beside the interpreter
    bin_dir = str(Path(python).parent)
    return {
        "PYTHONPATH": os.pathsep.join(path_entries),
        "PATH": os.pathsep.join([bin_dir, inherited.get("PATH", os.defpath)]),
        "EMULATOR_JOB_HOSTS": ",".join(hosts),
        "EMULATOR_JOB_MASTER_PORT": str(master_port),
        "GLOO_SOCKET_IFNAME": LOOPBACK_INTERFACE,
        "TP_SOCKET_IFNAME": LOOPBACK_INTERFACE,  # torch RPC's tensorpipe, for scripts that use it
    }
