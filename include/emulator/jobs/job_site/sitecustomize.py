"""Loaded at start-up by every Python process of a local training job (its folder is on PYTHONPATH).

On SageMaker each host is a container that reaches the others by name (algo-1, algo-2, ...). Here
every host is this machine, and no /etc/hosts entry may be added, so this module makes the job's
host names mean loopback before any code of the job runs:

- Python lookups of a host name (``socket.getaddrinfo`` and friends) answer 127.0.0.1: the toolkit,
  the script and torch's Python side resolve ``algo-1`` as on SageMaker.
- torch's C++ TCPStore and gloo resolve names outside Python. The library the job's processes
  preload (``../host_names.py``) answers them, but it needs a C compiler, so where a host name is
  handed to them it is also replaced first: ``--master_addr algo-N`` on a command line (what the
  PyTorch toolkit and the SDK's drivers give torchrun) and the MASTER_ADDR variable become
  127.0.0.1 here, and a TCPStore built later for a host name (MASTER_ADDR or ``tcp://algo-N:...``
  set by the script) is built for 127.0.0.1 (``_emulator_job_process``). SageMaker's fixed master
  port 7777 becomes this job's own free port, so jobs never collide.

It also records the exception a process dies of (EMULATOR_EXCEPTION_DIR): the toolkit relays the
script's output in read() chunks that can split any line, so the runner takes the exception that
names the FailureReason from here rather than from the relayed log.

It does nothing outside a job (EMULATOR_JOB_HOSTS unset), and hands over to any other
sitecustomize further along sys.path.
"""
import os
import socket
import sys

_HOSTS = frozenset(filter(None, os.environ.get("EMULATOR_JOB_HOSTS", "").split(",")))
_JOB_PORT = os.environ.get("EMULATOR_JOB_MASTER_PORT", "")
_LOOPBACK = "127.0.0.1"
_SAGEMAKER_MASTER_PORT = "7777"  # what the PyTorch toolkit and the SDK drivers always pass


def _local(host):
    return _LOOPBACK if isinstance(host, str) and host in _HOSTS else host


def _patch_name_resolution():
    getaddrinfo, gethostbyname, gethostbyname_ex = socket.getaddrinfo, socket.gethostbyname, socket.gethostbyname_ex

    def local_getaddrinfo(host, *args, **kwargs):
        return getaddrinfo(_local(host), *args, **kwargs)

    def local_gethostbyname(host):
        return gethostbyname(_local(host))

    def local_gethostbyname_ex(host):
        if host in _HOSTS:
            return host, [], [_LOOPBACK]
        return gethostbyname_ex(host)

    socket.getaddrinfo = local_getaddrinfo
    socket.gethostbyname = local_gethostbyname
    socket.gethostbyname_ex = local_gethostbyname_ex


def _local_port(port):
    return _JOB_PORT if _JOB_PORT and port == _SAGEMAKER_MASTER_PORT else port


def _rewrite_arguments(argv):
    """--master_addr/--master-addr and --master_port/--master-port, as separate or ``=`` arguments."""
    rewritten, pending = [], None
    for argument in argv:
        if pending:
            rewritten.append(_local(argument) if pending == "addr" else _local_port(argument))
            pending = None
            continue
        name, equals, value = argument.partition("=")
        kind = {"--master_addr": "addr", "--master-addr": "addr", "--master_port": "port", "--master-port": "port"}.get(name)
        if kind and equals:
            rewritten.append(f"{name}={_local(value) if kind == 'addr' else _local_port(value)}")
        else:
            rewritten.append(argument)
            pending = kind
    return rewritten


def _rewrite_environment():
    if os.environ.get("MASTER_ADDR") in _HOSTS:
        os.environ["MASTER_ADDR"] = _LOOPBACK
    if "MASTER_PORT" in os.environ:
        os.environ["MASTER_PORT"] = _local_port(os.environ["MASTER_PORT"])


def _record_uncaught_exceptions(directory):
    previous = sys.excepthook

    def record(kind, value, traceback):
        try:
            import time
            import traceback as tracebacks

            text = "".join(tracebacks.format_exception_only(kind, value)).strip()
            os.makedirs(directory, exist_ok=True)
            # one file per process, named so that sorting puts the earliest death first
            path = os.path.join(directory, f"{time.time_ns():020d}-{os.getpid()}.txt")
            with open(path, "w", encoding="utf-8") as file:
                file.write(text)
        except Exception:  # recording is a convenience: the process's own report must still happen
            pass
        previous(kind, value, traceback)

    sys.excepthook = record


def _run_next_sitecustomize():
    import importlib.machinery
    import importlib.util

    here = os.path.dirname(os.path.abspath(__file__))
    rest = [path for path in sys.path if os.path.abspath(path or os.curdir) != here]
    spec = importlib.machinery.PathFinder.find_spec("sitecustomize", rest)
    if spec is not None and spec.loader is not None and spec.origin != os.path.abspath(__file__):
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)


if os.environ.get("EMULATOR_EXCEPTION_DIR"):
    _record_uncaught_exceptions(os.environ["EMULATOR_EXCEPTION_DIR"])
if _HOSTS:
    _patch_name_resolution()
    _rewrite_environment()
    sys.argv[:] = _rewrite_arguments(sys.argv)
if _HOSTS and __name__ == "sitecustomize":  # a job's process: dies with its parent, unpacks safely, rendezvous on loopback
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    try:
        import _emulator_job_process
    finally:
        del sys.path[0]
    _emulator_job_process.die_with_parent()
    _emulator_job_process.unpack_toolkit_archives_safely()
    _emulator_job_process.bind_rendezvous_to_loopback()
    _emulator_job_process.report_instance_figures()
    _emulator_job_process.report_torch_version_without_import()
    _emulator_job_process.skip_pip_when_requirements_are_installed()
    _emulator_job_process.defer_toolkit_ssh_import()
    _emulator_job_process.exit_toolkit_without_teardown()
_run_next_sitecustomize()
