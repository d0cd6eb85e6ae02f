"""Health checks of an endpoint's instances, and the replacement of those that fail, as on SageMaker.

One ``HealthMonitor`` per deployment that serves an endpoint (the hosting API starts it once the
deployment serves; ``ModelServerFleet.retire`` stops it). Every ``interval_s`` it checks each
instance: its process must be alive and ``GET /ping`` must answer 200. An instance whose process
exited, or that failed ``failure_threshold`` pings in a row, leaves the routing at once (InvokeEndpoint
goes to the healthy ones; a request that finds an instance dead does the same and wakes the monitor)
and is replaced by a new instance of the same variant, which takes traffic only once it passes /ping.
Replacement happens only while ``may_replace()`` holds (the endpoint is InService and this deployment
serves it): an updating or deleted endpoint is not healed. Both instances' log streams in
``/aws/sagemaker/Endpoints/<endpoint>`` say what happened.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Callable

from .fleet import Deployment, DeploymentCancelled, DeploymentFailed, ModelServerFleet, ModelServerProcess

log = logging.getLogger(__name__)

_MAX_RETRY_DELAY_S = 300.0  # a replacement that keeps failing is tried again at most this far apart


class HealthMonitor:
    """Pings a deployment's instances on a thread of its own and replaces the ones that fail."""

    def __init__(self, fleet: ModelServerFleet, deployment: Deployment, may_replace: Callable[[], bool], *,
                 interval_s: float, failure_threshold: int):
        self.fleet = fleet
        self.deployment = deployment
        self.may_replace = may_replace
        self.interval_s = interval_s
        self.failure_threshold = max(1, failure_threshold)
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._lock = threading.Lock()  # guards _replacing, _retry_at and the swap against stop()
        self._replacing: dict[ModelServerProcess, threading.Thread] = {}
        self._retry_at: dict[ModelServerProcess, tuple[float, int]] = {}  # after failed replacements
        self._thread: threading.Thread | None = None

    def start(self) -> "HealthMonitor":
        self._thread = threading.Thread(target=self._run, name=f"health:{self.deployment.endpoint_name}", daemon=True)
        self._thread.start()
        return self

    def wake(self) -> None:
        """Check now rather than at the next period (a request just found an instance dead)."""
        self._wake.set()

    def stop(self) -> None:
        """Stop checking; wait until no replacement is running (one that started is cleaned up)."""
        with self._lock:
            self._stop.set()
            replacing = list(self._replacing.values())
        self._wake.set()
        current = threading.current_thread()
        for thread in [self._thread, *replacing]:
            if thread is not None and thread is not current:
                thread.join()

    def _stopping(self) -> bool:
        return self._stop.is_set() or self.fleet.closed

    def _run(self) -> None:
        while True:
            self._wake.wait(self.interval_s)
            self._wake.clear()
            if self._stopping():
                return
            try:
                self.check()
            except Exception:  # a bug of ours must not end the health checks
                log.exception("health check of endpoint %s failed", self.deployment.endpoint_name)

    def check(self) -> None:
        """One round: take failing instances out of service, and replace those out of service."""
        for variant in list(self.deployment.variants.values()):
            for server in list(variant.servers):
                if self._stopping():
                    return
                if server.in_service:
                    problem = server.health_check(self.failure_threshold)
                    if problem:
                        server.take_out_of_service(problem)
                if not server.in_service and self.may_replace():
                    self._start_replacing(server)

    def _start_replacing(self, old: ModelServerProcess) -> None:
        with self._lock:
            if self._stop.is_set() or old in self._replacing:
                return
            if time.monotonic() < self._retry_at.get(old, (0.0, 0))[0]:
                return
            thread = threading.Thread(target=self._replace, args=(old,), name=f"replace:{old.log_stream}", daemon=True)
            self._replacing[old] = thread
            thread.start()

    def _replace(self, old: ModelServerProcess) -> None:
        def should_stop() -> bool:
            return self._stop.is_set() or not self.may_replace()

        try:
            old.say(f"Replacing instance {old.instance_id} with a new instance of variant {old.variant.name}")
            try:
                new = self.fleet.replace_instance(self.deployment, old, should_stop)
            except DeploymentCancelled:
                return
            except DeploymentFailed as failure:
                self._retry_later(old, failure.reason)
                return
            with self._lock:
                swapped = not self._stop.is_set() and self.deployment.swap(old, new)
            if not swapped:
                self.fleet.discard(new)
                return
            new.say(f"In service, replacing instance {old.instance_id}")
            old.say(f"Replaced by instance {new.instance_id} ({new.log_stream})")
            log.info("endpoint %s: instance %s replaced by %s", self.deployment.endpoint_name,
                     old.instance_id, new.instance_id)
            self.fleet.discard(old)
            with self._lock:
                self._retry_at.pop(old, None)
        except Exception as exc:  # keep the monitor alive; try again later
            log.exception("replacing %s failed", old.log_stream)
            self._retry_later(old, f"internal error: {exc}")
        finally:
            with self._lock:
                self._replacing.pop(old, None)

    def _retry_later(self, old: ModelServerProcess, reason: str) -> None:
        with self._lock:
            attempts = self._retry_at.get(old, (0.0, 0))[1] + 1
            delay = min(self.interval_s * 2 ** attempts, _MAX_RETRY_DELAY_S)
            self._retry_at[old] = (time.monotonic() + delay, attempts)
        old.say(f"The replacement of instance {old.instance_id} failed: {reason}; trying again in {delay:g} seconds")
