"""How the local SageMaker starts a process (a training, processing or transform job's container
process, a model server): from a minimal environment, and so that it cannot outlive the emulator.

``spawn`` starts the command in a session of its own under ``child_watch.py``, which kills the
whole session when the emulator's lifeline pipe closes, i.e. when the emulator exits however it
dies. torchrun starts its workers in sessions of their own; every Python process of a training job
also asks the kernel to kill it when its parent dies (``jobs/job_site``), which reaches those.

``minimal_environment`` is what such a process sees of the emulator's environment: what SageMaker
gives a container (the caller adds the job's or model's Environment and SageMaker's variables) plus
only what running without a container needs. Nothing else of the emulator's environment (secrets,
PYTHONPATH, AWS profiles) reaches a job.
"""
from __future__ import annotations

import os
import select
import subprocess
import sys
import threading
from pathlib import Path

WATCH_SCRIPT = Path(__file__).resolve().parent / "child_watch.py"

# what a process needs from the emulator's environment to run on this machine without a container
PASSED_THROUGH = (
    "PATH", "HOME", "USER", "LOGNAME", "LANG", "LANGUAGE", "LC_ALL", "LC_CTYPE", "TZ",
    "LD_LIBRARY_PATH", "CUDA_VISIBLE_DEVICES",  # the machine's libraries and the GPUs it lends a job
    "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "OMP_WAIT_POLICY",  # threads as the operator set them
)

_lifeline_lock = threading.Lock()
_lifeline: tuple[int, int] | None = None  # (read, write): only this process ever holds the write end


def _lifeline_fd() -> int:
    global _lifeline
    with _lifeline_lock:
        if _lifeline is None:
            _lifeline = os.pipe()  # both ends close on exec: no other program holds the write end
        return _lifeline[0]


def minimal_environment(*, python: str, aws: dict[str, str], tmp_dir: Path) -> dict[str, str]:
    """The base environment of every job process and model server: ``aws`` (the emulator's endpoint,
    region and credentials), the interpreter's folder first on PATH, ``PASSED_THROUGH``, and TMPDIR
    the process's own ``tmp_dir`` (a container's /tmp is its own, and goes with it), created here."""
    env = {name: os.environ[name] for name in PASSED_THROUGH if name in os.environ}
    tmp_dir.mkdir(parents=True, exist_ok=True)
    env["TMPDIR"] = str(tmp_dir)
    # the framework images have python (and torchrun) on PATH; here they sit beside the interpreter
    env["PATH"] = os.pathsep.join([str(Path(python).parent), env.get("PATH", os.defpath)])
    env.setdefault("LANG", "C.UTF-8")
    env.update(aws)
    # no ~/.aws of the user who started the server: a container has none either
    env.update(AWS_CONFIG_FILE=os.devnull, AWS_SHARED_CREDENTIALS_FILE=os.devnull)
    return env


def spawn(command: list[str], *, cwd: Path, env: dict[str, str], python: str = sys.executable) -> subprocess.Popen:
    """``command`` in a new session under the watch, output on one pipe (stdout and stderr together,
    as SageMaker interleaves them in one log stream). The Popen's pid is the watch's, the session's
    leader: signal the group to reach the command. Raises OSError when the command cannot start."""
    status_read, status_write = os.pipe()
    lifeline = _lifeline_fd()
    try:
        process = subprocess.Popen(
            [python, "-I", "-S", str(WATCH_SCRIPT), str(lifeline), str(status_write), "--", *command],
            cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            start_new_session=True, pass_fds=(lifeline, status_write),
        )
    except BaseException:
        os.close(status_read)
        raise
    finally:
        os.close(status_write)
    try:
        # the watch closes the pipe once the command runs (milliseconds), or writes why it could not
        ready, _, _ = select.select([status_read], [], [], 60)
        report = os.read(status_read, 65536) if ready else b""
    finally:
        os.close(status_read)
    if report:
        process.wait()
        process.stdout.close()
        errno, strerror, filename = report.decode("utf-8", "replace").split("\0", 2)
        raise OSError(int(errno), strerror, filename or None)
    return process
