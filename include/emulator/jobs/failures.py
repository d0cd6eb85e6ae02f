"""FailureReason as SageMaker builds it: the algorithm's output/failure file, else its error output;
and ``JobFailure``, which any runner raises when its job cannot go on."""
from __future__ import annotations

import re
import signal
from pathlib import Path

MAX_FAILURE_REASON = 1024  # Describe*Job returns at most the first 1024 characters (ExitMessage too)


class JobFailure(Exception):
    """The job cannot go on; the message is its FailureReason."""


# the toolkit's own wrappers around the script's error; the script's exception is what a reader needs
_TOOLKIT_ERRORS = {
    "ClientError",
    "ExecuteUserScriptError",
    "InstallModuleError",
    "InstallRequirementsError",
    "ImportModuleError",
    "SMTrainingCompilerConfigurationError",
    "ChildFailedError",  # torchrun's, after a worker died of its own exception
}
_KILLED_SCRIPT = re.compile(r"^ExitCode -(?P<signal>\d+)$", re.MULTILINE)  # the toolkit's report of a signal
_EXCEPTION_LINE = re.compile(r"^(?:[A-Za-z_][\w]*\.)*(?P<name>[A-Za-z_]\w*(?:Error|Exception|Interrupt|Exit))(?::.*)?$")


def _rejoined(log_lines: list[str]) -> list[str]:
    """Undo the toolkit's split of ``ValueError`` / ``:`` / ``bad lr``: it relays the script's output
    in read() chunks, and an unbuffered interpreter writes an exception's name and message apart."""
    lines: list[str] = []
    awaiting_message = False
    for line in log_lines:
        previous = lines[-1].strip() if lines else ""
        if line.startswith(":") and _EXCEPTION_LINE.match(previous) and ":" not in previous:
            lines[-1] = previous + line.rstrip()
            awaiting_message = line.strip() == ":"
        elif awaiting_message and line.strip():
            lines[-1] = f"{lines[-1]} {line.strip()}"
            awaiting_message = False
        else:
            lines.append(line)
    return lines


def script_exception(log_lines: list[str]) -> str | None:
    """The line naming the exception the script died of (``ValueError: bad lr``): the end of the
    last traceback in its output, else the last line that looks like one."""
    log_lines = _rejoined(log_lines)
    # newest traceback first; the toolkit's own (ExecuteUserScriptError) comes after the script's, and
    # a chained exception's last traceback names the exception the script raised in the end
    for start in range(len(log_lines) - 1, -1, -1):
        if log_lines[start].startswith("Traceback (most recent call last)"):
            for line in log_lines[start + 1 :]:
                if not line.startswith((" ", "\t")) and _EXCEPTION_LINE.match(line.strip()):
                    if _is_script_exception(line.strip()):
                        return line.strip()
                    break  # the toolkit's wrapper: look at the traceback before it
    candidates = [line.strip() for line in log_lines if _is_script_exception(line.strip())]
    with_message = [line for line in candidates if ":" in line]
    return (with_message or candidates or [None])[-1]


def _is_script_exception(text: str) -> bool:
    match = _EXCEPTION_LINE.match(text)
    return bool(match) and match["name"] not in _TOOLKIT_ERRORS


def _error_excerpt(log_lines: list[str]) -> str:
    """The last traceback in the output, or its last lines when there is none."""
    start = max(0, len(log_lines) - 20)
    for index in range(len(log_lines) - 1, -1, -1):
        if log_lines[index].startswith("Traceback (most recent call last)"):
            start = index
            break
    return "\n".join(log_lines[start:]).strip()


def recorded_exception(directory: Path) -> str | None:
    """The exception the first of a host's processes died of, as its sitecustomize recorded it
    (``dataset.TrialDataError: <message>``), passing over the toolkit's and torchrun's wrappers."""
    if not directory.is_dir():
        return None
    for path in sorted(directory.glob("*.txt")):
        text = path.read_text(encoding="utf-8", errors="replace").strip()
        name = text.split(":", 1)[0].strip().rsplit(".", 1)[-1]
        if text and name not in _TOOLKIT_ERRORS:
            return text
    return None


def algorithm_failure_reason(failure_file_text: str | None, log_lines: list[str], exit_code: int,
                             recorded: str | None = None) -> str:
    """``AlgorithmError: <output/failure or error output>, exit code: N``, capped at 1024 characters
    and always holding the script's own exception line (the toolkit's failure file mangles it).

    ``recorded`` is that line as the script's process recorded it; without it, it is read from the
    log, where the toolkit's relaying may have split it."""
    exception = recorded or script_exception(log_lines)
    if exit_code < 0:  # the host's process itself was killed: its last output says nothing about why
        detail = f"the training process was killed by {signal_name(-exit_code)}"
        if failure_file_text and failure_file_text.strip():
            detail = f"{detail}\n{failure_file_text.strip()}"
        if exception and exception not in detail:
            detail = f"{detail}\n{exception}"
        return cap_keeping(f"AlgorithmError: {detail}", exception)
    detail = (failure_file_text or "").strip() or _error_excerpt(log_lines) or "the training process exited without output"
    killed = _KILLED_SCRIPT.search(detail)
    if killed:  # the toolkit's ExecuteUserScriptError of a script that died of a signal
        detail = f"the training script was killed by {signal_name(int(killed['signal']))}\n{detail}"
    if exception and exception not in detail:
        detail = f"{detail}\n{exception}"
    return cap_keeping(f"AlgorithmError: {detail}, exit code: {exit_code}", exception)


def signal_name(signum: int) -> str:
    """``signal 9 (SIGKILL)``, as a FailureReason names what ended a process."""
    try:
        return f"signal {signum} ({signal.Signals(signum).name})"
    except ValueError:
        return f"signal {signum}"


def cap_keeping(reason: str, must_keep: str | None, limit: int = MAX_FAILURE_REASON) -> str:
    if len(reason) <= limit and (not must_keep or must_keep in reason):
        return reason
    if not must_keep or must_keep in reason[:limit]:
        return reason[:limit]
    must_keep = must_keep[: limit // 2]
    separator = "\n...\n"
    return reason[: limit - len(separator) - len(must_keep)] + separator + must_keep
