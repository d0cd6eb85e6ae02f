"""The top process of every job and model server: runs the real command, and ends its whole process
group the moment the local SageMaker is gone, however it died (``kill -9`` included).

Run by path with ``python -I -S child_watch.py <lifeline fd> <status fd> -- <command...>`` (see
``include.emulator.child_processes.spawn``); it imports nothing but the standard library. The
lifeline is the read end of a pipe whose write end only the emulator holds, so end of file on it
means "the emulator has exited": the kernel closes the pipe for a process that dies, and the watch
reads it in a thread of its own, so it cannot miss it (a parent pid poll could, and a watch that
logs to the emulator's pipe died of BrokenPipe first). The status pipe tells the emulator whether
the command could be started (``errno\\0strerror\\0filename``), as ``subprocess.Popen`` would.

SIGTERM is the emulator's stop (sent to the whole group, so the command gets it directly): the
watch waits for the command to exit and exits the same way, so the emulator sees the command's own
exit code or signal.
"""
import os
import signal
import subprocess
import sys
import threading


def _end_group_when_parent_is_gone(lifeline: int) -> None:
    try:
        while os.read(lifeline, 4096):
            pass
    except OSError:
        pass
    os.killpg(os.getpgrp(), signal.SIGKILL)  # this process too: nothing of the job may outlive the emulator


def _exit_like(code: int) -> None:
    if code < 0:  # the command died of a signal: die of the same one, so the emulator sees the same code
        signum = -code
        if signum not in (signal.SIGKILL, signal.SIGSTOP):
            signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)
        os._exit(128 + signum)
    os._exit(code)


def main(argv: list[str]) -> None:
    lifeline, status, separator, *command = argv
    assert separator == "--" and command, "usage: child_watch.py LIFELINE_FD STATUS_FD -- COMMAND..."
    lifeline, status = int(lifeline), int(status)
    threading.Thread(target=_end_group_when_parent_is_gone, args=(lifeline,), daemon=True).start()
    # a handler (not SIG_IGN, which exec would pass on): the command gets the group's SIGTERM itself
    signal.signal(signal.SIGTERM, lambda *_: None)
    try:
        child = subprocess.Popen(command)
    except OSError as exc:
        os.write(status, f"{exc.errno or 0}\0{exc.strerror or exc}\0{exc.filename or ''}".encode())
        os._exit(127)
    os.close(status)
    _exit_like(child.wait())


if __name__ == "__main__":
    main(sys.argv[1:])
