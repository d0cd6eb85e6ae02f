"""What ``sitecustomize`` sets up in every Python process of a local training job, beside name resolution.

- ``die_with_parent``: the kernel kills the process when its parent dies (Linux PR_SET_PDEATHSIG).
  The emulator's watch (``include/emulator/child_watch.py``) ends the job's session when the
  emulator dies, but torchrun starts each worker in a session of its own; this reaches them, and
  any other Python process that left the job's session.
- ``unpack_toolkit_archives_safely``: the toolkit's tar extraction goes through the emulator's
  archives.py, which no symlink chain defeats.
- ``report_torch_version_without_import``: the PyTorch toolkit's entry point imports torch in the
  toolkit's own process only to put ``torch.__version__`` in SM_DLC_TORCH_VERSION (seconds of a
  job's fixed cost on a small machine, and its exit); the same string is read from torch's
  ``version.py`` instead, which is what ``torch.__version__`` is made from.
- ``skip_pip_when_requirements_are_installed``: the toolkit runs ``pip install -r requirements.txt``
  before the script (every workload ships one); offline (PIP_NO_INDEX) pip can only find them
  installed, and starting pip to say so costs seconds of CPU. When every requirement and what it
  depends on is installed in a version it accepts, the toolkit logs that instead; anything else
  (an option line, a URL, a missing or mismatching package) goes to pip as before.
- ``defer_toolkit_ssh_import``: the toolkit's MPI and smdataparallel launchers import paramiko (with
  cryptography and invoke) when the toolkit loads, for the SSH that only an MPI job uses: nearly
  half of the toolkit's start-up CPU. In the toolkit's process, paramiko is loaded on first use.
- ``exit_toolkit_without_teardown``: the toolkit ends its process with ``sys.exit``, and the
  interpreter's teardown of every module it loaded (boto3, paramiko, ...) is a noticeable part of
  a short job. The exit keeps everything an exit must do (other threads joined, atexit handlers,
  stdio flushed, the same exit code) and skips only that teardown.
- ``bind_rendezvous_to_loopback``: torch's TCPStore server (torchrun's rendezvous on algo-1, and
  ``init_process_group``'s env:// and tcp:// stores) listens on every interface; on SageMaker the
  instances' network is private, here it would be this machine's. A store that serves a loopback
  address is handed a socket bound to 127.0.0.1 instead (``master_listen_fd``). A store built for a
  host name of the job (MASTER_ADDR or ``tcp://algo-1:...`` set by the script, however late) is
  built for 127.0.0.1: its C++ side resolves names itself, and without the preloaded library of
  ``host_names.py`` (no C compiler) it would not know ``algo-N``.
"""
import os
import socket
import sys

_LOOPBACK_NAMES = ("127.0.0.1", "localhost")
_JOB_HOSTS = frozenset(filter(None, os.environ.get("EMULATOR_JOB_HOSTS", "").lower().split(",")))
_HOST_ADDRESS = "127.0.0.1"


def _job_host_address(host_name):
    """127.0.0.1 for a host name of the job (any case, a trailing dot), else the name itself."""
    if isinstance(host_name, str) and host_name.lower().rstrip(".") in _JOB_HOSTS:
        return _HOST_ADDRESS
    return host_name


def die_with_parent():
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes
        import signal

        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, int(signal.SIGKILL), 0, 0, 0)
    except Exception:  # no prctl: the watch's end of the whole session still applies
        pass


def _loopback_listener(port):
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", int(port)))
    listener.listen(2048)
    return listener.detach()


def _loopback_store_class(tcp_store):
    positional = ("world_size", "is_master", "timeout", "wait_for_workers", "multi_tenant", "master_listen_fd", "use_libuv")

    class LoopbackTCPStore(tcp_store):
        """A TCPStore whose server, when it serves a loopback address, listens on 127.0.0.1 only."""

        def __init__(self, host_name, port, *args, **kwargs):
            kwargs.update(zip(positional, args))
            host_name = _job_host_address(host_name)
            if kwargs.get("is_master") and kwargs.get("master_listen_fd") is None and host_name in _LOOPBACK_NAMES:
                try:
                    kwargs["master_listen_fd"] = _loopback_listener(port)
                except OSError:  # the port is taken: let torch report it as it would
                    pass
            super().__init__(host_name, port, **kwargs)

    LoopbackTCPStore.__name__ = LoopbackTCPStore.__qualname__ = "TCPStore"
    return LoopbackTCPStore


def _patch_loaded(module):
    original = getattr(module, "TCPStore", None)
    if original is None or getattr(original, "_emulator_loopback", False):
        return
    patched = _loopback_store_class(original)
    patched._emulator_loopback = True
    for name, loaded in list(sys.modules.items()):  # torch.distributed's submodules bound the name already
        if (name == "torch.distributed" or name.startswith("torch.distributed.")) and getattr(loaded, "TCPStore", None) is original:
            loaded.TCPStore = patched


def patch_after_import(module_name, patch):
    """Call patch(module) in this process right after `module_name` is first imported."""
    class PatchingFinder:
        @staticmethod
        def find_spec(name, path=None, target=None):
            if name != module_name:
                return None
            import importlib.machinery

            spec = importlib.machinery.PathFinder.find_spec(name, path)
            if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
                return spec
            exec_module = spec.loader.exec_module

            def exec_and_patch(module):
                exec_module(module)
                patch(module)

            spec.loader.exec_module = exec_and_patch
            return spec

    sys.meta_path.insert(0, PatchingFinder())


def bind_rendezvous_to_loopback():
    patch_after_import("torch.distributed", _patch_loaded)


def unpack_toolkit_archives_safely():
    """The toolkit's own tar extraction (sagemaker_training.files) trusts realpath, which a symlink
    chain longer than PATH_MAX defeats (CVE-2025-4517): once that module loads, it unpacks with the
    emulator's archives.py instead. The runner stages sourcedir.tar.gz itself; this covers the rest."""
    archives_py = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, os.pardir, "archives.py")

    def safe_extractall(tar, path):
        import importlib.util

        spec = importlib.util.spec_from_file_location("_emulator_archives", archives_py)
        archives = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(archives)
        archives.extract_members(tar, path)

    def patch(files_module):
        files_module._safe_extractall = safe_extractall

    patch_after_import("sagemaker_training.files", patch)


def report_instance_figures():
    """SM_NUM_CPUS / SM_NUM_GPUS of the job's instance type (include.emulator.instance_types), not this
    machine's: sagemaker_training.environment counts them when it loads, so its counters answer the
    runner's EMULATOR_INSTANCE_NUM_CPUS / _GPUS."""
    cpus, gpus = os.environ.get("EMULATOR_INSTANCE_NUM_CPUS"), os.environ.get("EMULATOR_INSTANCE_NUM_GPUS")
    if not (cpus or gpus):
        return

    def patch(environment_module):
        if cpus:
            environment_module.num_cpus = lambda: int(cpus)
        if gpus:
            environment_module.num_gpus = lambda: int(gpus)

    patch_after_import("sagemaker_training.environment", patch)


def installed_torch_version():
    """``torch.__version__`` as ``import torch`` would give it, read from torch's ``version.py`` without
    importing torch (``torch.__version__`` is ``TorchVersion(version.__version__)``); None when torch is
    not installed as a package with such a file, or the file does not say it plainly."""
    try:
        import ast
        import importlib.util

        spec = importlib.util.find_spec("torch")  # a top-level package: found, not imported
        if spec is None or not spec.submodule_search_locations:
            return None
        for folder in spec.submodule_search_locations:
            path = os.path.join(folder, "version.py")
            if not os.path.isfile(path):
                continue
            with open(path, encoding="utf-8") as file:
                tree = ast.parse(file.read(), path)
            for statement in tree.body:
                if isinstance(statement, ast.Assign):
                    targets, value = statement.targets, statement.value
                elif isinstance(statement, ast.AnnAssign) and statement.value is not None:
                    targets, value = [statement.target], statement.value
                else:
                    continue
                if (any(isinstance(target, ast.Name) and target.id == "__version__" for target in targets)
                        and isinstance(value, ast.Constant) and isinstance(value.value, str)):
                    return value.value
    except Exception:
        return None
    return None


def report_torch_version_without_import():
    """sagemaker_pytorch_container.training sets SM_DLC_TORCH_VERSION by importing torch in the toolkit's
    process, which runs no torch code itself; the training script (a process of its own) imports torch
    when it needs it. Where torch's version can be read without the import, it is; otherwise the
    toolkit's own function runs (and imports torch, or logs why it cannot)."""
    def patch(training_module):
        original = getattr(training_module, "_set_torch_version_environment", None)
        if original is None:
            return

        def set_torch_version_environment():
            version = installed_torch_version()
            if version is None:
                return original()
            os.environ["SM_DLC_TORCH_VERSION"] = version

        training_module._set_torch_version_environment = set_torch_version_environment

    patch_after_import("sagemaker_pytorch_container.training", patch)


def _exit_now(code):
    """End the process as ``sys.exit(code)`` would, less the interpreter's teardown of its modules:
    in the interpreter's order, threading's exit hooks run and non-daemon threads are joined, then the
    atexit handlers (logging's flush, multiprocessing's children, weakref finalizers), and stdout and
    stderr are flushed."""
    import atexit
    import threading

    if code is None:
        status = 0
    elif isinstance(code, int):
        status = code
    else:  # sys.exit("message"): the message on stderr, status 1
        try:
            print(code, file=sys.stderr)
        except Exception:
            pass
        status = 1
    shutdown = getattr(threading, "_shutdown", None)
    if shutdown is not None and threading.current_thread() is threading.main_thread():
        shutdown()  # as the interpreter's exit begins: threading's exit hooks (thread pools), non-daemon threads joined
    else:
        current = threading.current_thread()
        for thread in threading.enumerate():
            if thread is not current and not thread.daemon and thread is not threading.main_thread():
                thread.join()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass
    os._exit(status & 0xFF)  # what the kernel keeps of any status sys.exit is given


def exit_toolkit_without_teardown():
    """sagemaker_training.trainer's last step, ``_exit_processes(code)``, logs a failure's code and calls
    ``sys.exit``; its SystemExit is caught here and the process ends through ``_exit_now`` instead."""
    def patch(trainer_module):
        original = getattr(trainer_module, "_exit_processes", None)
        if original is None:
            return

        def exit_processes(exit_code):
            try:
                original(exit_code)
            except SystemExit as exit:
                _exit_now(exit.code)

        trainer_module._exit_processes = exit_processes

    patch_after_import("sagemaker_training.trainer", patch)


_SSH_USERS = ("sagemaker_training.mpi", "sagemaker_training.smdataparallel")


def _install_deferred_module(name):
    """``name`` in sys.modules as its own module object, not yet executed: the first attribute that
    is looked up on it (``paramiko.SSHClient``) executes the module's code into that same object, so
    every ``import name`` made meanwhile ends up with the real module. Its spec, path and file are
    there from the start, as the import system reads them. Left alone when the module cannot be
    found, so that its import fails as it would."""
    import importlib.util
    import threading

    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return
    if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
        return
    module = importlib.util.module_from_spec(spec)
    lock = threading.RLock()

    def load(attribute):  # a module-level __getattr__ (PEP 562): asked only for what the module lacks
        with lock:
            if module.__dict__.get("__getattr__") is load:
                del module.__dict__["__getattr__"]
                spec._initializing = True
                try:
                    spec.loader.exec_module(module)
                except BaseException:
                    sys.modules.pop(name, None)  # as a failed import leaves it: a later import tries again
                    raise
                finally:
                    spec._initializing = False
        return getattr(module, attribute)

    module.__getattr__ = load
    sys.modules[name] = module


def defer_toolkit_ssh_import():
    """When the toolkit first imports one of its SSH-using launchers, paramiko (not yet imported) is
    deferred: ``import paramiko`` there binds it, ``paramiko.SSHClient`` in an MPI job loads it."""
    class DeferParamiko:
        @staticmethod
        def find_spec(name, path=None, target=None):
            if name in _SSH_USERS and "paramiko" not in sys.modules:
                _install_deferred_module("paramiko")
            return None  # the launcher itself is found and loaded as usual

    sys.meta_path.insert(0, DeferParamiko())


def _requirement_lines(text):
    """The requirement lines of a requirements file, as pip reads them (continuations joined, comments
    dropped); None when a line holds anything but a plain requirement (an option, a variable)."""
    import re

    lines = []
    for line in re.sub(r"\\\n", "", text).splitlines():
        line = re.sub(r"(^|\s)#.*$", "", line).strip()
        if not line:
            continue
        if line.startswith("-") or " -" in line or "${" in line:  # -r, -c, -e, --index-url, --hash, ...
            return None
        lines.append(line)
    return lines


def satisfied_requirements(requirements_file):
    """[(name, installed version)] when every requirement of ``requirements_file`` (a requirements.txt)
    and everything those depend on, with the extras they ask for, is installed in a version they
    accept, i.e. when ``pip install -r`` would change nothing; None when that cannot be told for sure
    (then pip must decide)."""
    try:
        from importlib import metadata

        from packaging.markers import default_environment
        from packaging.requirements import Requirement
        from packaging.utils import canonicalize_name

        with open(requirements_file, encoding="utf-8") as file:
            lines = _requirement_lines(file.read())
        if lines is None:
            return None
        environment = default_environment()

        def needed(requirement, extras):
            if requirement.marker is None:
                return True
            return any(requirement.marker.evaluate({**environment, "extra": extra}) for extra in ("", *extras))

        satisfied, seen = [], set()
        pending = [(Requirement(line), (), True) for line in lines]  # (requirement, extras asked of its parent, top level)
        while pending:
            requirement, extras, top_level = pending.pop(0)
            if not needed(requirement, extras):
                continue  # pip ignores it too ("markers ... don't match your environment")
            if requirement.url:
                return None  # name @ url: pip fetches it
            # PackageNotFoundError: pip's to report; the METADATA file read once for name, version and needs
            described = metadata.distribution(requirement.name).metadata
            version = described["Version"]
            if not requirement.specifier.contains(version, prereleases=True):
                return None
            if top_level:
                satisfied.append((described["Name"], version))
            key = (canonicalize_name(requirement.name), frozenset(requirement.extras))
            if key in seen:
                continue
            seen.add(key)
            wanted = tuple(sorted(requirement.extras))
            pending.extend((Requirement(dependency), wanted, False) for dependency in described.get_all("Requires-Dist") or ())
        return satisfied
    except Exception:  # not installed, unparsable, no packaging library: pip says what is wrong
        return None


def skip_pip_when_requirements_are_installed():
    """sagemaker_training.modules.install_requirements(path) runs pip; when ``satisfied_requirements``
    says pip would change nothing, it logs what is installed instead (a CodeArtifact index, named by
    CA_REPOSITORY_ARN, always goes to pip)."""
    def patch(modules):
        original = getattr(modules, "install_requirements", None)
        if original is None:
            return

        def install_requirements(path, capture_error=False):
            found = None
            if not os.environ.get(getattr(modules, "CA_REPOSITORY_ARN_ENV", "CA_REPOSITORY_ARN")):
                found = satisfied_requirements(os.path.join(path, "requirements.txt"))
            if found is None:
                return original(path, capture_error)
            logger = getattr(modules, "logger", None)
            message = ("[local-sagemaker] requirements.txt: every requirement is installed (%s); pip not run "
                       "(offline, it would find the same)" % (", ".join(f"{name} {version}" for name, version in found)
                                                              or "it names none"))
            if logger is not None:
                logger.info("Installing dependencies from requirements.txt")
                logger.info(message)
            else:
                print(message, flush=True)

        modules.install_requirements = install_requirements

    patch_after_import("sagemaker_training.modules", patch)
