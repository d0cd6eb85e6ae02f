"""What ``sitecustomize`` sets up in every Python process of a local training job, beside name resolution.

- ``die_with_parent``: the kernel kills the process when its parent dies (Linux PR_SET_PDEATHSIG).
  The emulator's watch (``include/emulator/child_watch.py``) ends the job's session when the
  emulator dies, but torchrun starts each worker in a session of its own; this reaches them, and
  any other Python process that left the job's session.
- ``unpack_toolkit_archives_safely``: the toolkit's tar extraction goes through the emulator's
  archives.py, which no symlink chain defeats.
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
