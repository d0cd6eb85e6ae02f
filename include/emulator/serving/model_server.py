"""One SageMaker hosting instance: ``python -P run_model_server.py --model-dir DIR`` (see there).

Speaks the container contract SageMaker uses: ``GET /ping`` answers 200 once ``model_fn`` has
returned (503 while it loads), ``POST /invocations`` runs the handlers with the request's
Content-Type, Accept and X-Amzn-SageMaker-Custom-Attributes. A handler's exception answers with its
``status_code`` (else 500) and its message; the server goes on serving. If the model cannot load,
the reason goes to ``--failure-file`` and the process exits 1, so the fleet can fail the endpoint
with the model's own error. Binds 127.0.0.1 on a free port and writes the port to ``--port-file``.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from .handlers import InferenceContext, InferenceHandlers, error_message, error_status

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def log(message: str) -> None:
    print(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {message}", flush=True)


class ModelServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address, handlers):
        super().__init__(address, RequestHandler)
        self.handlers = handlers
        self.ready = threading.Event()
        # one worker, as a single-worker model server: user handlers need not be thread-safe
        self.inference_lock = threading.Lock()
        self.exit_code = 0
        # fault injection (include.emulator.faults), set by the fleet only when a tag asks for it
        self.ping_fails = os.environ.get("EMULATOR_FAULT_PING_FAILS") == "1"
        self.healthy_not_before = time.monotonic() + float(os.environ.get("EMULATOR_FAULT_SLOW_START_SECONDS") or 0)


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
        context = InferenceContext(self.server.handlers.model_dir, dict(self.headers.items()))
        try:
            with self.server.inference_lock:
                payload, response_type = self.server.handlers.invoke(body, content_type, accept, context)
        except BaseException as exc:  # noqa: BLE001 - a bad request or handler must never stop the server
            if isinstance(exc, KeyboardInterrupt):
                raise
            status = error_status(exc)
            message = error_message(exc)
            print(traceback.format_exc(), end="", flush=True)
            self._send(status, json.dumps({"code": status, "type": "InternalServerException", "message": message}).encode())
            self._log_request(status, started, f" error={type(exc).__name__}: {message}")
            return
        headers = dict(context.response_headers)
        self._send(200, payload, response_type or "application/octet-stream", headers)
        self._log_request(200, started, f" content_type={content_type} accept={accept} bytes_in={len(body)} bytes_out={len(payload)}")


def _write_atomically(path: Path, text: str) -> None:
    partial = path.with_name(path.name + ".partial")
    partial.write_text(text)
    partial.replace(path)


def _load_model(server: ModelServer, failure_file: Path | None) -> None:
    started = time.perf_counter()
    try:
        server.handlers.load()
    except BaseException as exc:  # noqa: BLE001 - whatever model_fn raises is the endpoint's FailureReason
        print(traceback.format_exc(), end="", flush=True)
        reason = f"{type(exc).__name__}: {exc}"
        log(f"model failed to load: {reason}")
        if failure_file is not None:
            _write_atomically(failure_file, reason)
        server.exit_code = 1
        threading.Thread(target=server.shutdown, daemon=True).start()
        return
    log(f"model loaded from {server.handlers.model_dir} in {time.perf_counter() - started:.2f}s; serving")
    delay = server.healthy_not_before - time.monotonic()
    if delay > 0:
        log(f"slow start (fault injected by the emulator:fault tag): healthy in {delay:.1f}s")
        time.sleep(delay)
    if server.ping_fails:
        log("health check fails (fault injected by the emulator:fault tag): /ping answers 500")
    server.ready.set()


def _exit_with_parent(server: ModelServer, parent_pid: int) -> None:
    # no orphans when started by hand with --parent-pid (the emulator's own watch ends its servers):
    # stop first, then say so, since the log's reader may be the one who died (BrokenPipeError)
    while True:
        time.sleep(1.0)
        if os.getppid() != parent_pid:
            server.exit_code = 0
            server.shutdown()
            try:
                log("parent process is gone; stopped")
            except OSError:
                pass
            return


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
    args = parser.parse_args(argv)
    if args.host not in LOOPBACK:
        parser.error("the model server binds to the loopback interface only")

    handlers_class = InferenceHandlers
    if args.handler_service == "huggingface":
        from .huggingface import HuggingFaceHandlers as handlers_class
    handlers = handlers_class(
        args.model_dir,
        program=os.environ.get("SAGEMAKER_PROGRAM"),
        default_accept=os.environ.get("SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT"),
    )
    server = ModelServer((args.host, args.port), handlers)
    port = server.server_address[1]
    log(f"model server listening on {args.host}:{port}; loading {handlers.code_dir / handlers.program}")
    if args.port_file is not None:
        _write_atomically(args.port_file, str(port))
    threading.Thread(target=_load_model, args=(server, args.failure_file), daemon=True).start()
    if args.parent_pid:
        threading.Thread(target=_exit_with_parent, args=(server, args.parent_pid), daemon=True).start()
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()
    return server.exit_code


if __name__ == "__main__":
    sys.exit(main())
