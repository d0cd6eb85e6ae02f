"""The C half of a job's host names: ``host_names.c``, built once and preloaded into the job's processes.

A job's hosts (algo-1..N) must resolve wherever they are used: by Python, and by the C and C++
libraries the script loads (torch's TCPStore and gloo, NCCL, MPI), however late the script names
them (``MASTER_ADDR = "algo-1"`` set after start, ``init_method="tcp://algo-1:..."``). No /etc/hosts
entry may be added, and glibc's HOSTALIASES does not do it (glibc applies it only inside its DNS
module and then asks DNS for the alias, never /etc/hosts). So the job's processes get LD_PRELOAD of a
small library that looks the job's host names up as 127.0.0.1 and hands every other name to libc.

It is compiled with this machine's C compiler (``$CC``, else cc, gcc or clang) into
``<state_dir>/cache/``, once per source version, and checked in a throwaway process before any
job uses it. Without a compiler, or off Linux, there is no library: the job's ``sitecustomize``
still covers Python's lookups and torch.distributed's stores (see ``job_site``).
"""
from __future__ import annotations

import hashlib
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

log = logging.getLogger(__name__)

SOURCE = Path(__file__).resolve().parent / "host_names.c"
CACHE_FOLDER = "cache"
_CHECK = "import socket; print(socket.gethostbyname('algo-1'))"

_lock = threading.Lock()
_libraries: dict[Path, Path | None] = {}


def resolver_library(state_dir: Path, python: str) -> Path | None:
    """The preloadable library for jobs of this state directory, built on first use; None if it cannot be."""
    cache = Path(state_dir) / CACHE_FOLDER
    with _lock:
        if cache not in _libraries:
            _libraries[cache] = _build(cache, python)
        return _libraries[cache]


def preload_environment(library: Path | None, inherited: dict[str, str]) -> dict[str, str]:
    """LD_PRELOAD with ``library`` first (the job's own Environment may preload something too)."""
    if library is None:
        return {}
    entries = [str(library)] + [entry for entry in inherited.get("LD_PRELOAD", "").replace(":", " ").split() if entry != str(library)]
    return {"LD_PRELOAD": " ".join(entries)}


def _compiler() -> str | None:
    for candidate in (os.environ.get("CC"), "cc", "gcc", "clang"):
        if candidate and shutil.which(candidate):
            return shutil.which(candidate)
    return None


def _build(cache: Path, python: str) -> Path | None:
    if not sys.platform.startswith("linux"):
        return None
    source = SOURCE.read_bytes()
    library = cache / f"libemulator-host-names-{hashlib.sha256(source).hexdigest()[:16]}.so"
    if library.is_file() and _works(library, python):
        return library
    compiler = _compiler()
    if compiler is None:
        log.warning("no C compiler (cc, gcc, clang or $CC): a job's host names resolve for Python and torch.distributed only")
        return None
    cache.mkdir(parents=True, exist_ok=True)
    handle, partial = tempfile.mkstemp(prefix=library.name + ".", dir=cache)
    os.close(handle)
    try:
        built = subprocess.run(
            [compiler, "-shared", "-fPIC", "-O2", "-o", partial, str(SOURCE), "-ldl"],
            stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120,
        )
        if built.returncode != 0:
            log.warning("building %s failed: %s", SOURCE.name, (built.stderr or built.stdout).strip()[-2000:])
            return None
        os.replace(partial, library)  # atomic: a concurrent build of the same source is as good
    except (OSError, subprocess.SubprocessError) as error:
        log.warning("building %s failed: %s", SOURCE.name, error)
        return None
    finally:
        if os.path.exists(partial):
            os.unlink(partial)
    if not _works(library, python):
        log.warning("%s does not resolve host names when preloaded (noexec state directory?): not used", library)
        return None
    return library


def _works(library: Path, python: str) -> bool:
    """Whether a process that preloads ``library`` resolves a job's host name (an isolated, bare interpreter)."""
    try:
        checked = subprocess.run(
            [python, "-I", "-S", "-c", _CHECK], stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60,
            env={"EMULATOR_JOB_HOSTS": "algo-1", "LD_PRELOAD": str(library), "PATH": os.environ.get("PATH", os.defpath)},
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return checked.returncode == 0 and checked.stdout.strip() == "127.0.0.1" and "LD_PRELOAD" not in checked.stderr
