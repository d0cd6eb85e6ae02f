"""One SageMaker hosting instance: ``python -P run_model_server.py --model-dir DIR`` (see there).

Speaks the container contract SageMaker uses: ``GET /ping`` answers 200 once every worker's
``model_fn`` has returned (503 while they load), ``POST /invocations`` runs the handlers with the
request's Content-Type, Accept and X-Amzn-SageMaker-Custom-Attributes. A handler's exception answers
with its ``status_code`` (else 500) and its message; the server goes on serving. If the model cannot
load, the reason goes to ``--failure-file`` and the process exits 1, so the fleet can fail the
endpoint with the model's own error. Binds 127.0.0.1 on a free port and writes the port to
``--port-file``.

Workers: as the framework images' model servers (MMS, TorchServe) do, ``SAGEMAKER_MODEL_SERVER_WORKERS``
worker processes (default 1 here; unset or empty is 1) each load the model once and answer one
request at a time, so user handlers need not be thread-safe and N requests run in parallel. This
process is the front: it holds the port and hands each request to an idle worker over a socket pair.
A worker that dies takes the instance down with it (the fleet's health check replaces the
instance; TorchServe would restart the worker instead).
"""
from __future__ import annotations

import argparse
import json
import os
import queue
import re
import socket
import subprocess
import sys
import threading
import time
import traceback
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from multiprocessing.connection import Connection, wait
from pathlib import Path

LOOPBACK = ("127.0.0.1", "localhost", "::1")
WORKERS_ENV = "SAGEMAKER_MODEL_SERVER_WORKERS"
RUN_SCRIPT = Path(__file__).resolve().parent / "run_model_server.py"


def log(message: str) -> None:
    print(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {message}", flush=True)


def worker_count(environ) -> int:
    """The number of worker processes SAGEMAKER_MODEL_SERVER_WORKERS asks for; ValueError saying why not."""
    raw = (environ.get(WORKERS_ENV) or "").strip()
    if not raw:
        return 1  # the toolkit leaves an empty value out of the model server's config too
    if not re.fullmatch(r"[0-9]+", raw) or int(raw) < 1:
        raise ValueError(f"{WORKERS_ENV} is {raw!r}: it must be a whole number of at least 1 "
                         "(the model server's worker processes)")
    return int(raw)


class WorkerGone(Exception):
    pass


@dataclass
class Worker:
    number: int
    process: subprocess.Popen
    connection: Connection

    def __str__(self) -> str:
        return f"worker {self.number} (pid {self.process.pid})"


def start_worker(number: int, args: argparse.Namespace) -> Worker:
    """A fresh interpreter, as a model server's backend worker is; its output goes to this process's log."""
    ours, theirs = socket.socketpair()
    with theirs:
        process = subprocess.Popen(
            [sys.executable, "-P", str(RUN_SCRIPT), "--model-dir", str(args.model_dir),
             "--handler-service", args.handler_service, "--worker-fd", str(theirs.fileno())],
            pass_fds=(theirs.fileno(),))
    return Worker(number, process, Connection(ours.detach()))


def serve_as_worker(args: argparse.Namespace, connection: Connection) -> int:
    """Load the model, say so, then answer requests one at a time until the front goes."""
    # imported here, not at the top: without numpy and the toolkit the front is up in a tenth of the time
    from .handlers import InferenceContext, InferenceHandlers, error_message, error_status

    handlers_class = InferenceHandlers
    if args.handler_service == "huggingface":
        from .huggingface import HuggingFaceHandlers as handlers_class
    handlers = handlers_class(
        args.model_dir,
        program=os.environ.get("SAGEMAKER_PROGRAM"),
        default_accept=os.environ.get("SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT"),
    )

    def answer(body: bytes, content_type: str | None, accept: str | None, headers: dict) -> tuple:
        context = InferenceContext(handlers.model_dir, headers)
        try:
            payload, response_type = handlers.invoke(body, content_type, accept, context)
        except BaseException as exc:  # noqa: BLE001 - a bad request or handler must never stop the server
            if isinstance(exc, KeyboardInterrupt):
                raise
            print(traceback.format_exc(), end="", flush=True)
            return "error", error_status(exc), error_message(exc), type(exc).__name__
        # plain strings: whatever a handler put there must not break the reply to the front
        response_headers = {str(key): str(value) for key, value in context.response_headers.items()}
        return "ok", payload, str(response_type) if response_type else None, response_headers

    started = time.perf_counter()
    try:
        handlers.load()
    except BaseException as exc:  # noqa: BLE001 - whatever model_fn raises is the endpoint's FailureReason
        print(traceback.format_exc(), end="", flush=True)
        connection.send(("failed", f"{type(exc).__name__}: {exc}"))
        return 1
    try:
        connection.send(("loaded", time.perf_counter() - started))
        while True:
            connection.send(answer(*connection.recv()))
    except (EOFError, OSError):  # the front is gone (stopped, or died): so is its instance
        return 0


class ModelServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address, workers: list[Worker]):
        super().__init__(address, RequestHandler)
        self.workers = workers
        self.idle: queue.Queue[Worker] = queue.Queue()
        for worker in workers:
            self.idle.put(worker)
        self.ready = threading.Event()
        self.exit_code = 0
        self._stop_lock = threading.Lock()
        self.stopping = False
        # fault injection (include.emulator.faults), set by the fleet only when a tag asks for it
        self.ping_fails = os.environ.get("EMULATOR_FAULT_PING_FAILS") == "1"
        self.healthy_not_before = time.monotonic() + float(os.environ.get("EMULATOR_FAULT_SLOW_START_SECONDS") or 0)

    def stop(self, exit_code: int, message: str | None = None) -> None:
        """Stop serving (once), from any thread but serve_forever's."""
        with self._stop_lock:
            if self.stopping:
                return
            self.stopping = True
        if message:
            log(message)
        self.exit_code = exit_code
        threading.Thread(target=self.shutdown, daemon=True).start()

    def dispatch(self, request: tuple) -> tuple[Worker, tuple]:
        """One request on the next idle worker (waiting for one); raises WorkerGone if it died meanwhile."""
        worker = self.idle.get()
        try:
            worker.connection.send(request)
            reply = worker.connection.recv()
        except (EOFError, OSError) as exc:
            self.stop(1, f"{worker} stopped answering; the model server stops")
            raise WorkerGone(str(worker)) from exc
        self.idle.put(worker)
        return worker, reply


class RequestHandler(BaseHTTPRequestHandler):
    server: ModelServer
    server_version = "LocalSageMakerModelServer/1.0"

    def log_message(self, format, *args):  # noqa: A002 - the stdlib's signature
        pass  # each request is logged once, with its outcome, by _log_request

    def _send(self, status: int, body: bytes, content_type: str = "application/json", headers=None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)

    def _log_request(self, status: int, started: float, extra: str = "") -> None:
        elapsed_ms = (time.perf_counter() - started) * 1000
        log(f"{self.command} {self.path} {status} {elapsed_ms:.1f}ms{extra}")

    def do_GET(self):
        if self.path != "/ping":
            self._send(404, json.dumps({"message": f"Unknown path {self.path}"}).encode())
            return
        if self.server.ping_fails:
            self._send(500, json.dumps({"status": "Unhealthy",
                                        "message": "health check fails (fault injected by the emulator:fault tag)"}).encode())
            return
        if self.server.ready.is_set():
            self._send(200, json.dumps({"status": "Healthy"}).encode())
        else:
            self._send(503, json.dumps({"status": "Unhealthy", "message": "model is loading"}).encode())

    def do_POST(self):
        started = time.perf_counter()
        if self.path != "/invocations":
            self._send(404, json.dumps({"message": f"Unknown path {self.path}"}).encode())
            return
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        if not self.server.ready.is_set():
            self._send(503, json.dumps({"code": 503, "type": "ServiceUnavailableException",
                                        "message": "Model is not loaded yet."}).encode())
            self._log_request(503, started)
            return
        content_type = self.headers.get("Content-Type")
        accept = self.headers.get("Accept")
        try:
            worker, reply = self.server.dispatch((body, content_type, accept, dict(self.headers.items())))
        except WorkerGone:
            # no answer, as when the instance's one process dies: the caller routes the request again
            self.close_connection = True
            return
        if reply[0] == "error":
            _, status, message, error_name = reply
            self._send(status, json.dumps({"code": status, "type": "InternalServerException", "message": message}).encode())
            self._log_request(status, started, f" worker={worker.number} error={error_name}: {message}")
            return
        _, payload, response_type, headers = reply
        self._send(200, payload, response_type or "application/octet-stream", headers)
        self._log_request(200, started, f" worker={worker.number} content_type={content_type} accept={accept} "
                                        f"bytes_in={len(body)} bytes_out={len(payload)}")


def _write_atomically(path: Path, text: str) -> None:
    partial = path.with_name(path.name + ".partial")
    partial.write_text(text)
    partial.replace(path)


def _fail_to_load(server: ModelServer, failure_file: Path | None, reason: str) -> None:
    log(f"model failed to load: {reason}")
    if failure_file is not None:
        _write_atomically(failure_file, reason)
    server.stop(1)


def _load_model(server: ModelServer, model_dir: Path, failure_file: Path | None) -> None:
    """Wait for every worker's model_fn (in the order they finish), then turn /ping healthy."""
    started = time.perf_counter()
    pending = {worker.connection: worker for worker in server.workers}
    while pending:
        for connection in wait(list(pending)):
            worker = pending.pop(connection)
            try:
                message = connection.recv()
            except EOFError:
                code = worker.process.wait()
                message = ("failed", f"model server {worker} exited with code {code} while loading the model")
            if server.stopping:  # stopped meanwhile (its parent went): no failure of the model's
                return
            if message[0] == "failed":
                _fail_to_load(server, failure_file, message[1])
                return
            log(f"{worker} loaded the model in {message[1]:.2f}s")
    for worker in server.workers:
        threading.Thread(target=_watch_worker, args=(server, worker), daemon=True).start()
    count = len(server.workers)
    log(f"model loaded from {model_dir} in {time.perf_counter() - started:.2f}s by {count} "
        f"worker{'s' if count > 1 else ''} ({WORKERS_ENV}); serving")
    delay = server.healthy_not_before - time.monotonic()
    if delay > 0:
        log(f"slow start (fault injected by the emulator:fault tag): healthy in {delay:.1f}s")
        time.sleep(delay)
    if server.ping_fails:
        log("health check fails (fault injected by the emulator:fault tag): /ping answers 500")
    server.ready.set()


def _watch_worker(server: ModelServer, worker: Worker) -> None:
    code = worker.process.wait()
    if not server.stopping:
        server.stop(1, f"model server {worker} exited with code {code}; the model server stops")


def _exit_with_parent(server: ModelServer, parent_pid: int) -> None:
    # no orphans when started by hand with --parent-pid (the emulator's own watch ends its servers):
    # stop first, then say so, since the log's reader may be the one who died (BrokenPipeError)
    while True:
        time.sleep(1.0)
        if os.getppid() != parent_pid:
            server.stop(0)
            try:
                log("parent process is gone; stopped")
            except OSError:
                pass
            return


def _stop_workers(workers: list[Worker]) -> None:
    for worker in workers:
        worker.connection.close()  # an idle worker ends at once
        if worker.process.poll() is None:
            worker.process.terminate()
    for worker in workers:
        try:
            worker.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            worker.process.kill()
            worker.process.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Local SageMaker model server (one variant instance).")
    parser.add_argument("--model-dir", type=Path, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--port-file", type=Path)
    parser.add_argument("--failure-file", type=Path)
    parser.add_argument("--parent-pid", type=int)
    parser.add_argument("--handler-service", choices=("pytorch", "huggingface"), default="pytorch",
                        help="the image's defaults: sagemaker-inference's (PyTorch image) or "
                             "sagemaker-huggingface-inference-toolkit's (Hugging Face image)")
    parser.add_argument("--worker-fd", type=int, help=argparse.SUPPRESS)  # a worker of a front, on this socket
    args = parser.parse_args(argv)
    if args.host not in LOOPBACK:
        parser.error("the model server binds to the loopback interface only")

    if args.worker_fd is not None:
        return serve_as_worker(args, Connection(args.worker_fd))

    try:
        count = worker_count(os.environ)
    except ValueError as exc:
        log(f"model server cannot start: {exc}")
        if args.failure_file is not None:
            _write_atomically(args.failure_file, str(exc))
        return 1
    workers = [start_worker(number, args) for number in range(1, count + 1)]
    try:
        server = ModelServer((args.host, args.port), workers)
    except BaseException:
        _stop_workers(workers)
        raise
    port = server.server_address[1]
    program = args.model_dir / "code" / (os.environ.get("SAGEMAKER_PROGRAM") or "inference.py")
    log(f"model server listening on {args.host}:{port}; loading {program} in {count} worker{'s' if count > 1 else ''}")
    if args.port_file is not None:
        _write_atomically(args.port_file, str(port))
    threading.Thread(target=_load_model, args=(server, args.model_dir, args.failure_file), daemon=True).start()
    if args.parent_pid:
        threading.Thread(target=_exit_with_parent, args=(server, args.parent_pid), daemon=True).start()
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.stopping = True
        server.server_close()
        _stop_workers(workers)
    return server.exit_code


if __name__ == "__main__":
    sys.exit(main())
