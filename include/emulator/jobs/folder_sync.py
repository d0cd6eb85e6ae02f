"""Host folders mirrored up to one S3 prefix while a job runs (checkpoints, TensorBoard output).

New and changed files go up every ``interval_seconds`` and once more at ``stop()``; files deleted
locally are left in S3. Every host syncs to the same prefix, so hosts should write distinct names.
"""
from __future__ import annotations

import logging
import threading
from pathlib import Path

from . import staging

log = logging.getLogger(__name__)


class FolderSync:
    interval_seconds = 1.0

    def __init__(self, s3, s3_uri: str, folders: list[Path], *, what: str = "file"):
        self._s3 = s3
        self._uri = s3_uri
        self._bucket, self._prefix = staging.folder_prefix(s3_uri)
        self._folders = folders
        self._what = what  # for log lines: "checkpoint", "TensorBoard file"
        self._uploaded: dict[Path, tuple[int, int]] = {}  # path -> (size, mtime) last uploaded
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def uri(self) -> str:
        return self._uri

    def start(self) -> "FolderSync":
        self._stopped.clear()
        self._thread = threading.Thread(target=self._sync_periodically, name=f"sync:{self._uri}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop the periodic sync and upload what changed since the last one."""
        self._stopped.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        self.sync()

    def mark_current(self, path: Path) -> None:
        """``path`` is in S3 as it is now (it came from there): upload it only once it changes."""
        self._uploaded[path] = _signature(path)

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
                        log.warning("could not upload %s %s to %s", self._what, path, self._uri, exc_info=True)
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
