"""A job's container process: its own process group, output pumped line by line to a callback."""
from __future__ import annotations

import logging
import os
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Callable

from ..child_processes import spawn

log = logging.getLogger(__name__)

_MAX_LINE_BYTES = 256 * 1024  # a longer line is split, as CloudWatch splits long events


class ContainerProcess:
    """Runs ``command`` in a new session, so stopping it reaches every process the script started.

    ``on_exit`` (optional) is called, from a thread of its own, the moment the process exits: a
    runner that waits for several processes wakes then instead of at its next poll. The process is
    not reaped there (``os.waitid`` with ``WNOWAIT``): ``poll``, ``wait`` and ``finish`` still read
    its exit code as before."""

    def __init__(self, command: list[str], *, cwd: Path, env: dict[str, str], on_line: Callable[[str], None],
                 on_exit: Callable[[], None] | None = None):
        # its own session under a watch that ends it if the emulator dies (see child_processes.spawn)
        self._process = spawn(command, cwd=cwd, env=env)
        self._on_line = on_line
        self._pump = threading.Thread(target=self._pump_output, name=f"output:{self._process.pid}", daemon=True)
        self._pump.start()
        if on_exit is not None:
            threading.Thread(target=self._notify_exit, args=(on_exit,), name=f"exit:{self._process.pid}",
                             daemon=True).start()

    @property
    def pid(self) -> int:
        return self._process.pid

    def poll(self) -> int | None:
        return self._process.poll()

    def wait(self, timeout: float | None = None) -> int | None:
        try:
            return self._process.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def interrupt(self) -> None:
        """SIGTERM to the whole group (what SageMaker sends before it stops a container)."""
        self._signal_group(signal.SIGTERM)

    def terminate(self, grace_seconds: float) -> int:
        """SIGTERM to the whole group, SIGKILL to whatever is left after the grace period."""
        self.interrupt()
        deadline = time.monotonic() + grace_seconds
        while self._process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.finish()

    def finish(self) -> int:
        """Kill what the container left behind (as SageMaker tears the container down) and drain the output."""
        self._signal_group(signal.SIGKILL)
        code = self._process.wait()
        self._wait_until_group_is_gone(timeout=5)
        self._pump.join(timeout=10)
        return code

    def _wait_until_group_is_gone(self, timeout: float) -> None:
        # the script's own children die asynchronously and are reaped by init, not by us
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                os.killpg(self._process.pid, 0)
            except ProcessLookupError:
                return
            except PermissionError:
                pass
            time.sleep(0.02)
        log.warning("processes of group %s still exist after SIGKILL", self._process.pid)

    def _signal_group(self, signum: int) -> None:
        try:
            os.killpg(self._process.pid, signum)  # the session leader's pid is the group id
        except (ProcessLookupError, PermissionError):
            pass

    def _notify_exit(self, on_exit: Callable[[], None]) -> None:
        try:
            if hasattr(os, "waitid") and hasattr(os, "WNOWAIT"):
                # blocks until the process exits, and leaves it to be reaped by poll()/wait()
                os.waitid(os.P_PID, self._process.pid, os.WEXITED | os.WNOWAIT)
            else:
                self._pump.join()  # no waitid: the end of its output is the nearest sign
        except ChildProcessError:
            pass  # already reaped (poll() saw it first)
        except OSError:
            log.debug("waiting for pid %s to exit failed", self._process.pid, exc_info=True)
        try:
            on_exit()
        except Exception:
            log.exception("the exit callback of pid %s failed", self._process.pid)

    def _pump_output(self) -> None:
        stream = self._process.stdout
        try:
            while True:
                raw = stream.readline(_MAX_LINE_BYTES)
                if not raw:
                    break
                try:
                    self._on_line(raw.decode("utf-8", "replace").rstrip("\r\n"))
                except Exception:  # a bad line must not stop the rest of the log
                    log.exception("handling a line of output of pid %s failed", self._process.pid)
        finally:
            stream.close()
