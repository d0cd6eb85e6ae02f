"""CheckpointConfig: each host's checkpoint folder mirrored to S3 while the job runs, and back at a (re)start.

As SageMaker does: at the start of the job (and of every spot restart) everything under S3Uri is
copied into LocalPath; while the job runs, new and changed files in LocalPath are uploaded to
S3Uri (every ``interval_seconds``, and once more when the hosts stop). Files deleted locally are
left in S3. Every host syncs to the same S3Uri, so hosts should write distinct file names.
"""
from __future__ import annotations

import logging
import threading
from pathlib import Path

from . import staging

log = logging.getLogger(__name__)


class CheckpointSync:
    interval_seconds = 1.0

    def __init__(self, s3, s3_uri: str, folders: list[Path]):
        self._s3 = s3
        self._uri = s3_uri
        self._bucket, self._prefix = staging.folder_prefix(s3_uri)
        self._folders = folders
        self._uploaded: dict[Path, tuple[int, int]] = {}  # path -> (size, mtime) last uploaded
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None

    def restore(self) -> int:
        """Copy the checkpoints in S3 into every host's folder; returns how many files each got."""
        count = 0
        for folder in self._folders:
            count = staging.download_folder(self._s3, self._uri, folder)
            for path in folder.rglob("*"):
                if path.is_file():  # what came from S3 need not go back unless the job changes it
                    self._uploaded[path] = _signature(path)
        return count

    def start(self) -> "CheckpointSync":
        self._stopped.clear()
        self._thread = threading.Thread(target=self._sync_periodically, name=f"checkpoints:{self._uri}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop the periodic sync and upload what changed since the last one."""
        self._stopped.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        self.sync()

    def sync(self) -> int:
        """Upload new and changed files; returns how many went up."""
        uploaded = 0
        with self._lock:
            for folder in self._folders:
                for path in sorted(folder.rglob("*")) if folder.is_dir() else []:
                    try:
                        if not path.is_file():
                            continue
                        signature = _signature(path)  # taken first: a change during the upload goes up next time
                        if self._uploaded.get(path) == signature:
                            continue
                        key = self._prefix + path.relative_to(folder).as_posix()
                        self._s3.upload_file(str(path), self._bucket, key)
                    except FileNotFoundError:
                        continue  # replaced or removed by the script while we looked
                    except Exception:
                        log.warning("could not upload checkpoint %s to %s", path, self._uri, exc_info=True)
                        continue
                    self._uploaded[path] = signature
                    uploaded += 1
        return uploaded

    def _sync_periodically(self) -> None:
        while not self._stopped.wait(self.interval_seconds):
            self.sync()


def _signature(path: Path) -> tuple[int, int]:
    stat = path.stat()
    return stat.st_size, stat.st_mtime_ns
