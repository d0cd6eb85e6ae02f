"""A CloudWatch Logs writer for processes the emulator runs (training jobs, model servers).

Lines go to moto's logs backend through the emulator's own endpoint, buffered and sent at least
every ``flush_interval`` seconds, so a reader tailing the stream (the Airflow provider, the
SageMaker SDK) sees them while the process still runs, as on SageMaker.
"""
from __future__ import annotations

import logging
import threading
import time

log = logging.getLogger(__name__)

# PutLogEvents limits: 10,000 events and 1,048,576 bytes per call, each event counting 26 bytes
# on top of its message; a single message may hold at most 256 KiB.
_MAX_BATCH_EVENTS = 10_000
_MAX_BATCH_BYTES = 1_048_576
_EVENT_OVERHEAD = 26
_MAX_MESSAGE_BYTES = 262_144 - _EVENT_OVERHEAD

def ensure_log_stream(logs, group: str, stream: str) -> None:
    """Create the group and the stream unless they exist."""
    for create, kwargs in (
        (logs.create_log_group, {"logGroupName": group}),
        (logs.create_log_stream, {"logGroupName": group, "logStreamName": stream}),
    ):
        try:
            create(**kwargs)
        except logs.exceptions.ResourceAlreadyExistsException:
            pass


class LogWriter:
    """Write lines to one CloudWatch Logs stream; ``write`` never blocks on the network."""

    def __init__(self, emulator, group: str, stream: str, *, region: str | None = None, flush_interval: float = 0.5):
        self.group = group
        self.stream = stream
        self._logs = emulator.client("logs", region)
        ensure_log_stream(self._logs, group, stream)
        self._pending: list[dict] = []
        self._lock = threading.Lock()  # guards _pending
        self._send_lock = threading.Lock()  # keeps batches in order when close() and the flusher race
        self._closed = threading.Event()
        self._flush_interval = flush_interval
        self._flusher = threading.Thread(target=self._flush_periodically, name=f"logs:{stream}", daemon=True)
        self._flusher.start()

    def write(self, line: str, timestamp_ms: int | None = None) -> None:
        message = line.rstrip("\r\n")
        if not message.strip():
            return  # CloudWatch refuses empty messages
        encoded = message.encode("utf-8", "replace")
        if len(encoded) > _MAX_MESSAGE_BYTES:
            message = encoded[:_MAX_MESSAGE_BYTES].decode("utf-8", "ignore")
        event = {"timestamp": timestamp_ms if timestamp_ms is not None else int(time.time() * 1000), "message": message}
        with self._lock:
            self._pending.append(event)

    def flush(self) -> None:
        with self._send_lock:
            with self._lock:
                events, self._pending = self._pending, []
            for batch in _batches(events):
                try:
                    self._logs.put_log_events(logGroupName=self.group, logStreamName=self.stream, logEvents=batch)
                except Exception:  # a lost log line must never fail the job that wrote it
                    log.warning("could not write %d log events to %s %s", len(batch), self.group, self.stream, exc_info=True)

    def close(self) -> None:
        self._closed.set()
        self._flusher.join(timeout=5)
        self.flush()

    def __enter__(self) -> "LogWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _flush_periodically(self) -> None:
        while not self._closed.wait(self._flush_interval):
            self.flush()


def _batches(events: list[dict]):
    batch: list[dict] = []
    size = 0
    for event in events:
        event_size = len(event["message"].encode("utf-8")) + _EVENT_OVERHEAD
        if batch and (len(batch) >= _MAX_BATCH_EVENTS or size + event_size > _MAX_BATCH_BYTES):
            yield batch
            batch, size = [], 0
        batch.append(event)
        size += event_size
    if batch:
        yield batch
