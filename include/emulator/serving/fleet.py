"""The model server processes behind endpoints: start them, route to them, stop them.

One ``ModelServerProcess`` per variant instance (``run_model_server.py`` on a free port of 127.0.0.1,
with the model's SAGEMAKER_MODEL_SERVER_WORKERS worker processes under it), its stdout (and its
workers') streamed to CloudWatch Logs group ``/aws/sagemaker/Endpoints/<endpoint>``, stream
``<variant>/<instance id>`` (the emulator's shared ``cloudwatch.LogWriter``). A ``Deployment`` is
every instance of one endpoint config, and routes requests by variant weight to instances that are
in service (passed /ping and have not failed a health check since; ``health.HealthMonitor`` checks
them and replaces those that fail). ``ModelServerFleet`` (one per emulator,
``emulator.store(ModelServerFleet)``) brings deployments up and down; its ``shutdown()`` stops every
process it started.
"""
from __future__ import annotations

import collections
import dataclasses
import http.client
import itertools
import logging
import os
import random
import secrets
import shutil
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping

from ..child_processes import spawn
from ..cloudwatch import LogWriter
from ..faults import NO_FAULTS, FaultTagError, Faults, endpoint_variant_faults
from ..images import UnsupportedImage, check_inference_image, inference_handler_service, version_warnings
from .artifacts import ArtifactError, prepare_model_dir
from .specs import VariantSpec

log = logging.getLogger(__name__)

SERVER_SCRIPT = Path(__file__).resolve().parent / "run_model_server.py"  # loads model_server without the project
_MAX_REASON_CHARS = 1024  # FailureReason's limit in the SageMaker API
_STOP_GRACE_S = 5.0


def log_group_name(endpoint_name: str) -> str:
    return f"/aws/sagemaker/Endpoints/{endpoint_name}"


class DeploymentFailed(Exception):
    """The deployment cannot serve; ``reason`` is what DescribeEndpoint shows as FailureReason."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason[:_MAX_REASON_CHARS]


class DeploymentCancelled(DeploymentFailed):
    pass


class ModelServerUnavailable(Exception):
    """The instance's server cannot be reached (it exited, or is stopping)."""


class ServerRetired(ModelServerUnavailable):
    """The instance was taken out of service before the request reached it (an update replaced it)."""


class InvocationTimeout(Exception):
    pass


class NoHealthyInstance(Exception):
    """No instance of the variant (or of any variant) is in service right now."""


def health_check_failure(variant: str, error: str) -> str:
    head = f"The primary container for production variant {variant} did not pass the ping health check: "
    tail = ". Please check CloudWatch logs for this endpoint."
    room = _MAX_REASON_CHARS - len(head) - len(tail)
    error = error.strip().rstrip(".")
    if len(error) > room:
        error = error[: room - 3] + "..."
    return head + error + tail


class ModelServerProcess:
    """One variant instance: the model server subprocess, its port and its log stream."""

    def __init__(self, *, endpoint_name: str, variant: VariantSpec, instance_dir: Path, python: str,
                 environment: dict[str, str], log_writer: Callable[[str], LogWriter]):
        self.endpoint_name = endpoint_name
        self.variant = variant
        self.instance_dir = instance_dir
        self.model_dir = instance_dir / "model"
        self.instance_id = "i-" + secrets.token_hex(9)[:17]
        self.log_stream = f"{variant.name}/{self.instance_id}"
        self._python = python
        self._environment = environment
        self._writer = log_writer(self.log_stream)
        self._process: subprocess.Popen | None = None
        self._pump: threading.Thread | None = None
        self._tail: collections.deque[str] = collections.deque(maxlen=40)
        self._port: int | None = None
        self._inflight = 0
        self._idle = threading.Condition()
        self._stopped = False
        # takes traffic: passed /ping, and no health check or request has found it dead or failing since
        self.in_service = False
        self.out_of_service_reason: str | None = None
        self._failed_pings = 0

    def say(self, message: str) -> None:
        """A line of our own (download, start, stop) into the instance's log stream."""
        self._writer.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} [local-sagemaker] {message}")

    @property
    def port_file(self) -> Path:
        return self.instance_dir / "server.port"

    @property
    def failure_file(self) -> Path:
        return self.instance_dir / "failure"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> None:
        for stale in (self.port_file, self.failure_file):
            stale.unlink(missing_ok=True)
        command = [
            self._python, "-P", str(SERVER_SCRIPT),  # -P: not this folder, nor the project, on sys.path
            "--model-dir", str(self.model_dir),
            "--host", "127.0.0.1",
            "--port-file", str(self.port_file),
            "--failure-file", str(self.failure_file),
            # the image's defaults: sagemaker-inference's (PyTorch) or the Hugging Face toolkit's
            "--handler-service", inference_handler_service(self.variant.container.image),
        ]
        self.say(f"Starting model server for {self.variant.model_name} ({self.variant.container.image})")
        for warning in version_warnings(self.variant.container.image):
            self.say(warning)
        # its own session (stop() takes any children with it) under a watch that ends it when the
        # emulator dies, however it dies (see include.emulator.child_processes)
        self._process = spawn(command, cwd=self.instance_dir, env=self._environment, python=self._python)
        self._pump = threading.Thread(target=self._pump_output, name=f"pump:{self.log_stream}", daemon=True)
        self._pump.start()

    def _pump_output(self) -> None:
        assert self._process is not None and self._process.stdout is not None
        for raw in iter(self._process.stdout.readline, b""):
            line = raw.decode("utf-8", errors="replace").rstrip("\n")
            self._tail.append(line)
            self._writer.write(line)
        self._process.stdout.close()

    def _read_port(self) -> int | None:
        if self._port is None and self.port_file.exists():
            self._port = int(self.port_file.read_text().strip())
        return self._port

    def _ping(self) -> bool:
        port = self._read_port()
        if port is None:
            return False
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        try:
            connection.request("GET", "/ping")
            return connection.getresponse().status == 200
        except OSError:
            return False
        finally:
            connection.close()

    def exit_reason(self) -> str:
        """Why the server exited: the model's own error if it wrote one, else its last output."""
        if self._pump is not None:
            self._pump.join(timeout=2)
        if self.failure_file.exists():
            return self.failure_file.read_text().strip()
        code = self._process.returncode if self._process else None
        tail = " | ".join(line for line in list(self._tail)[-5:] if line.strip())
        return f"model server exited with code {code}" + (f": {tail}" if tail else "")

    def wait_until_healthy(self, timeout_s: float, should_stop: Callable[[], bool]) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            if should_stop():
                raise DeploymentCancelled("deployment cancelled")
            if self._process is None or self._process.poll() is not None:
                raise DeploymentFailed(health_check_failure(self.variant.name, self.exit_reason()))
            if self._ping():
                self.say(f"Passed the ping health check on 127.0.0.1:{self._port}")
                self.in_service = True
                return
            if time.monotonic() > deadline:
                raise DeploymentFailed(health_check_failure(
                    self.variant.name, f"no answer to /ping within {timeout_s:g} seconds"))
            time.sleep(0.1)

    def health_check(self, failure_threshold: int) -> str | None:
        """None while healthy; else why not: the process exited, or ``failure_threshold`` pings in a row failed."""
        if not self.running():
            return self._unavailable_reason()
        if self._ping():
            self._failed_pings = 0
            return None
        self._failed_pings += 1
        if self._failed_pings >= failure_threshold:
            return f"{self._failed_pings} consecutive /ping health checks failed"
        return None

    def exited(self, within_s: float = 0.0) -> bool:
        """Whether the process has exited (waiting up to ``within_s``: a killed one closes its socket first)."""
        if self._process is None:
            return False
        try:
            self._process.wait(timeout=within_s)
        except subprocess.TimeoutExpired:
            return False
        return True

    def take_out_of_service(self, reason: str) -> None:
        """No more traffic for this instance; the health monitor replaces it."""
        with self._idle:
            if not self.in_service:
                return
            self.in_service = False
            self.out_of_service_reason = reason
        self.say(f"Instance {self.instance_id} failed its health check and takes no more traffic: {reason}")

    def invoke(self, body: bytes, headers: dict[str, str], timeout_s: float) -> tuple[int, dict[str, str], bytes]:
        """POST /invocations; raises InvocationTimeout or ModelServerUnavailable."""
        with self._idle:
            if self._stopped:
                raise ServerRetired(f"instance {self.instance_id} was taken out of service")
            if not self.running() or self._read_port() is None:
                raise ModelServerUnavailable(self._unavailable_reason())
            self._inflight += 1
        connection = http.client.HTTPConnection("127.0.0.1", self._port, timeout=timeout_s)
        try:
            connection.request("POST", "/invocations", body=body, headers=headers)
            response = connection.getresponse()
            return response.status, {k: v for k, v in response.getheaders()}, response.read()
        except socket.timeout as exc:
            raise InvocationTimeout(str(exc)) from exc
        except OSError as exc:
            raise ModelServerUnavailable(self._unavailable_reason() or str(exc)) from exc
        finally:
            connection.close()
            with self._idle:
                self._inflight -= 1
                self._idle.notify_all()

    def _unavailable_reason(self) -> str:
        if self._process is not None and self._process.poll() is not None:
            return f"the model server of instance {self.instance_id} exited with code {self._process.returncode}"
        return f"the model server of instance {self.instance_id} is not serving"

    def stop(self, drain_s: float = 0.0) -> None:
        """Let in-flight requests finish (up to drain_s), then stop the process group."""
        with self._idle:
            self._stopped = True
            self._idle.wait_for(lambda: self._inflight == 0, timeout=drain_s)
        process = self._process
        if process is not None and process.poll() is None:
            try:
                os.killpg(process.pid, signal.SIGTERM)
                process.wait(timeout=_STOP_GRACE_S)
            except ProcessLookupError:
                pass
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        if self._pump is not None:
            self._pump.join(timeout=2)
        if process is not None:
            self.say(f"Model server stopped (exit code {process.returncode})")
        self._writer.close()


@dataclass
class VariantServers:
    spec: VariantSpec
    servers: list[ModelServerProcess]
    _turn: itertools.count = field(default_factory=itertools.count)

    def healthy(self) -> list[ModelServerProcess]:
        return [server for server in self.servers if server.in_service]

    def next_server(self) -> ModelServerProcess:
        # round robin over the variant's instances that are in service
        healthy = self.healthy()
        if not healthy:
            raise NoHealthyInstance(self.spec.name)
        return healthy[next(self._turn) % len(healthy)]


class UnknownVariant(KeyError):
    pass


class Deployment:
    """Every instance of one endpoint config; routes a request to a variant and an instance."""

    def __init__(self, endpoint_name: str, variants: list[VariantServers], base_dir: Path,
                 new_server: Callable[[VariantSpec], ModelServerProcess] | None = None, s3_client=None):
        self.endpoint_name = endpoint_name
        self.base_dir = base_dir
        self.variants = {variant.spec.name: variant for variant in variants}
        self.new_server = new_server  # another instance of a variant, as deploy() made the first ones
        self.s3_client = s3_client
        self.monitor = None  # a health.HealthMonitor while an endpoint serves from this deployment

    def processes(self) -> list[ModelServerProcess]:
        return [server for variant in self.variants.values() for server in variant.servers]

    def healthy_count(self, variant_name: str) -> int:
        return len(self.variants[variant_name].healthy())

    def route(self, target_variant: str | None = None) -> tuple[str, ModelServerProcess]:
        """A variant (by weight, or the target) and one of its healthy instances; raises NoHealthyInstance."""
        if target_variant:
            if target_variant not in self.variants:
                raise UnknownVariant(target_variant)
            return target_variant, self.variants[target_variant].next_server()
        all_weights_zero = sum(max(variant.spec.weight, 0.0) for variant in self.variants.values()) <= 0
        names = [name for name, variant in self.variants.items() if variant.healthy()]
        weights = [1.0 if all_weights_zero else max(self.variants[name].spec.weight, 0.0) for name in names]
        if sum(weights) <= 0:
            raise NoHealthyInstance(", ".join(self.variants))
        name = random.choices(names, weights=weights)[0]
        return name, self.variants[name].next_server()

    def report_dead(self, server: ModelServerProcess) -> None:
        """A request found the instance's process gone: no more traffic to it, and replace it soon."""
        server.take_out_of_service(server._unavailable_reason())
        if self.monitor is not None:
            self.monitor.wake()

    def swap(self, old: ModelServerProcess, new: ModelServerProcess) -> bool:
        """Put ``new`` where ``old`` was in its variant; False if ``old`` is no longer there."""
        servers = self.variants[old.variant.name].servers
        try:
            servers[servers.index(old)] = new
        except ValueError:
            return False
        return True


class ModelServerFleet:
    """Brings endpoint deployments up and down; one per emulator."""

    def __init__(self, emulator):
        self.emulator = emulator
        self.root = emulator.settings.state_dir / "endpoints"
        self._lock = threading.Lock()
        self._processes: set[ModelServerProcess] = set()
        self._instance_numbers: dict[tuple[str, str], itertools.count] = {}
        self._closed = False

    def _instance_dir(self, base_dir: Path, variant_name: str) -> Path:
        # numbers keep counting across deployments, so a blue/green update never reuses a live dir
        with self._lock:
            counter = self._instance_numbers.setdefault((str(base_dir), variant_name), itertools.count(1))
            number = next(counter)
        path = base_dir / f"{variant_name}-{number}"
        if path.exists():
            shutil.rmtree(path)
        path.mkdir(parents=True)
        return path

    def _environment(self, region: str, variant: VariantSpec, instance_dir: Path,
                     faults: Faults = NO_FAULTS) -> dict[str, str]:
        # the container's own /tmp goes with the instance: its folder is removed when it is retired
        env = self.emulator.child_environment(region, tmp_dir=instance_dir / "tmp")
        env.update({key: str(value) for key, value in variant.container.environment.items()})
        env["SAGEMAKER_BASE_DIR"] = str(instance_dir)  # so sagemaker_inference's model_dir is ours
        env["PYTHONUNBUFFERED"] = "1"
        return faults.server_environment(env)  # only the faults a tag asked for (see include.emulator.faults)

    def deploy(self, region: str, endpoint_name: str, variants: list[VariantSpec], cancel: threading.Event,
               *, log_group: str | None = None, base_dir: Path | None = None,
               faults: Mapping[str, Faults] | None = None) -> Deployment:
        """Start every instance of every variant and wait until each passes /ping.

        Raises DeploymentFailed (nothing is left running) with the reason SageMaker would show.
        ``log_group`` and ``base_dir`` default to the endpoint's; a transform job passes its own.
        ``faults`` (by variant name) default to what the endpoint's, config's and models' tags inject.
        """
        log_group = log_group or log_group_name(endpoint_name)
        base_dir = base_dir or self.root / endpoint_name
        for variant in variants:
            if variant.problem:
                raise DeploymentFailed(variant.problem)
            try:
                check_inference_image(variant.container.image)
            except UnsupportedImage as exc:
                raise DeploymentFailed(str(exc)) from exc
        try:
            if faults is None:
                faults = {variant.name: endpoint_variant_faults(self.emulator, region, endpoint_name, variant.model_name)
                          for variant in variants}
        except FaultTagError as exc:
            raise DeploymentFailed(str(exc)) from exc

        s3_client = self.emulator.client("s3", region)

        def log_writer(stream: str) -> LogWriter:
            return LogWriter(self.emulator, log_group, stream, region=region)

        def new_server(server_variant: VariantSpec) -> ModelServerProcess:
            # one instance of a variant; the health monitor makes replacements the same way
            variant_faults = faults.get(server_variant.name, NO_FAULTS)
            instance_dir = self._instance_dir(base_dir, server_variant.name)
            server = ModelServerProcess(
                endpoint_name=endpoint_name, variant=server_variant, instance_dir=instance_dir,
                python=self.emulator.settings.python,
                environment=self._environment(region, server_variant, instance_dir, variant_faults), log_writer=log_writer)
            if variant_faults:
                server.say(f"Fault injection ({variant_faults}) switched on by the emulator:fault tag")
            return server

        groups: list[VariantServers] = []
        for variant in variants:
            count = 1 if variant.is_serverless else variant.instance_count
            variant_faults = faults.get(variant.name, NO_FAULTS)
            # a failing health check gives up early, so a test need not wait the whole startup timeout
            server_variant = dataclasses.replace(
                variant, startup_timeout_s=variant_faults.startup_timeout(variant.startup_timeout_s))
            groups.append(VariantServers(variant, [new_server(server_variant) for _ in range(count)]))
        deployment = Deployment(endpoint_name, groups, base_dir, new_server=new_server, s3_client=s3_client)

        failed = threading.Event()
        errors: list[DeploymentFailed] = []

        def should_stop() -> bool:
            return cancel.is_set() or failed.is_set() or self._closed

        def bring_up(server: ModelServerProcess) -> None:
            try:
                self._bring_up(server, s3_client, should_stop)
            except DeploymentFailed as exc:
                errors.append(exc)
                failed.set()
            except Exception as exc:  # a bug of ours still fails the endpoint, with a reason
                log.exception("starting %s failed", server.log_stream)
                errors.append(DeploymentFailed(f"Internal error starting variant {server.variant.name}: {exc}"))
                failed.set()

        threads = [threading.Thread(target=bring_up, args=(server,), name=f"deploy:{server.log_stream}", daemon=True)
                   for server in deployment.processes()]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if errors or cancel.is_set() or self._closed:
            self.retire(deployment)
            real = [error for error in errors if not isinstance(error, DeploymentCancelled)]
            if real:
                raise real[0]
            raise DeploymentCancelled("deployment cancelled")
        return deployment

    def _bring_up(self, server: ModelServerProcess, s3_client, should_stop: Callable[[], bool]) -> None:
        try:
            prepare_model_dir(s3_client, server.variant.container, server.model_dir, server.say)
        except ArtifactError as exc:
            server.say(str(exc))
            raise DeploymentFailed(str(exc)) from exc
        if (server.model_dir / "code" / "requirements.txt").exists():
            server.say("code/requirements.txt found: the local SageMaker installs nothing; "
                       "this machine's Python environment must already provide those packages")
        # loading a model is the heavy part: it takes one of the emulator's job slots meanwhile
        slots = self.emulator.job_slots
        while not slots.acquire(timeout=0.2):
            if should_stop():
                raise DeploymentCancelled("deployment cancelled")
        try:
            with self._lock:
                if self._closed:
                    raise DeploymentCancelled("the local SageMaker is shutting down")
                self._processes.add(server)
                server.start()
            server.wait_until_healthy(server.variant.startup_timeout_s, should_stop)
        finally:
            slots.release()

    def replace_instance(self, deployment: Deployment, old: ModelServerProcess,
                         should_stop: Callable[[], bool]) -> ModelServerProcess:
        """A new instance of ``old``'s variant, started and past /ping (not yet in the routing).

        Raises DeploymentFailed or DeploymentCancelled, leaving nothing running.
        """
        new = deployment.new_server(old.variant)
        new.say(f"Starting as the replacement of instance {old.instance_id} ({old.out_of_service_reason})")
        try:
            self._bring_up(new, deployment.s3_client, lambda: should_stop() or self._closed)
        except BaseException:
            self.discard(new)
            raise
        return new

    def add_instances(self, deployment: Deployment, variant_name: str, count: int,
                      should_stop: Callable[[], bool]) -> None:
        """Start ``count`` more instances of a variant and put them in its routing once all pass /ping
        (a rolling update's batch, or the old fleet regrown by its rollback).

        Raises DeploymentFailed or DeploymentCancelled, leaving nothing new running.
        """
        group = deployment.variants[variant_name]
        template = group.servers[0].variant if group.servers else group.spec  # keeps a fault's startup timeout
        new = [deployment.new_server(template) for _ in range(count)]
        errors: list[BaseException] = []
        failed = threading.Event()

        def bring_up(server: ModelServerProcess) -> None:
            try:
                self._bring_up(server, deployment.s3_client, lambda: should_stop() or failed.is_set() or self._closed)
            except BaseException as exc:  # noqa: BLE001  (re-raised below, on the caller's thread)
                errors.append(exc)
                failed.set()

        threads = [threading.Thread(target=bring_up, args=(server,), name=f"grow:{server.log_stream}", daemon=True)
                   for server in new]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if errors:
            for server in new:
                self.discard(server)
            real = [error for error in errors if not isinstance(error, DeploymentCancelled)]
            raise (real or errors)[0]
        group.servers = [*group.servers, *new]  # one assignment: a request sees the old list or the new one

    def remove_instances(self, deployment: Deployment, variant_name: str, count: int, drain_s: float = 0.0) -> int:
        """Take ``count`` instances of a variant out of its routing and stop them (failing ones first);
        how many went."""
        group = deployment.variants[variant_name]
        chosen = sorted(group.servers, key=lambda server: server.in_service)[:count]
        group.servers = [server for server in group.servers if server not in chosen]
        for server in chosen:
            server.say(f"Instance {server.instance_id} is terminated by a rolling update")
            self.discard(server, drain_s)
        return len(chosen)

    def discard(self, server: ModelServerProcess, drain_s: float = 0.0) -> None:
        """Stop one instance and remove its folder."""
        server.stop(drain_s)
        with self._lock:
            self._processes.discard(server)
        shutil.rmtree(server.instance_dir, ignore_errors=True)

    @property
    def closed(self) -> bool:
        return self._closed

    def retire(self, deployment: Deployment, drain_s: float = 0.0) -> None:
        """Stop every instance of a deployment (after draining in-flight requests) and clean up."""
        if deployment.monitor is not None:
            deployment.monitor.stop()  # first: no replacement may start while its fleet goes
        for server in deployment.processes():
            self.discard(server, drain_s)
        try:
            deployment.base_dir.rmdir()  # only when no other deployment lives there
        except OSError:
            pass

    def running_pids(self) -> list[int]:
        with self._lock:
            return [server.pid for server in self._processes if server.running() and server.pid]

    def shutdown(self) -> None:
        """Stop every model server this fleet started (emulator stop)."""
        with self._lock:
            self._closed = True
            servers = list(self._processes)
            self._processes.clear()
        for server in servers:
            try:
                server.stop()
            except Exception:  # keep stopping the others
                log.exception("stopping %s failed", server.log_stream)
            shutil.rmtree(server.instance_dir, ignore_errors=True)  # as when an instance is retired
            try:
                server.instance_dir.parent.rmdir()  # the endpoint's folder, once its last instance is gone
            except OSError:
                pass
