"""CheckpointConfig: each host's checkpoint folder mirrored to S3 while the job runs, and back at a (re)start.

As SageMaker does: at the start of the job (and of every spot restart) everything under S3Uri is
copied into LocalPath; while the job runs, new and changed files in LocalPath are uploaded to
S3Uri (see ``folder_sync``: every ``interval_seconds``, and once more when the hosts stop). Files
deleted locally are left in S3. Every host syncs to the same S3Uri, so hosts should write distinct
file names.
"""
from __future__ import annotations

from pathlib import Path

from . import staging
from .folder_sync import FolderSync


class CheckpointSync(FolderSync):
    def __init__(self, s3, s3_uri: str, folders: list[Path]):
        super().__init__(s3, s3_uri, folders, what="checkpoint")

    def restore(self) -> int:
        """Copy the checkpoints in S3 into every host's folder; returns how many files each got."""
        count = 0
        for folder in self._folders:
            count = staging.download_folder(self._s3, self.uri, folder)
            for path in folder.rglob("*"):
                if path.is_file():  # what came from S3 need not go back unless the job changes it
                    self.mark_current(path)
        return count
