"""Unpacking the archives a user hands the local SageMaker: model.tar.gz, sourcedir.tar.gz and
``SAGEMAKER_SUBMIT_DIRECTORY`` tarballs.

tarfile's ``data`` filter is not relied on: on CPython before 3.9.23, 3.10.18, 3.11.13, 3.12.11
and 3.13.4 a chain of symlinks whose expansion exceeds PATH_MAX defeats the ``os.path.realpath``
it checks with (CVE-2025-4517), and later releases fixed further bypasses of the same kind. Here
the decision is lexical and the writing cannot follow a link:

- every member is checked before anything is written; the archive is refused, naming the member,
  when one is a symbolic or hard link, a device or FIFO, has an absolute name or a ``..``
  component, or would land outside the destination once ``os.path.normpath``-ed;
- only regular files and directories are created, each path walked one directory at a time from
  the destination with ``O_NOFOLLOW`` (a link already in the destination is not followed either),
  files opened with ``O_CREAT | O_EXCL``; modes keep the owner's and the execute bits only.

Standard library only: a training job's processes load this file too (``jobs/job_site``).
``python -m include.emulator.archives`` warns when this interpreter's tarfile filter is known to be
bypassable (``make setup`` runs it).
"""
from __future__ import annotations

import os
import shutil
import stat
import sys
import tarfile

# the CPython releases that fixed CVE-2025-4517 (gh-135034), per minor version
TARFILE_FILTER_FIXED_IN = {
    (3, 9): (3, 9, 23),
    (3, 10): (3, 10, 18),
    (3, 11): (3, 11, 13),
    (3, 12): (3, 12, 11),
    (3, 13): (3, 13, 4),
}
_FILE_MODE_BITS = 0o755  # no setuid, setgid, sticky, group or other write
_DIRECTORY_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_NEW_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


class ArchiveError(Exception):
    """The archive could not be unpacked (unreadable, or refused); the message says why."""


class UnsafeArchiveMember(ArchiveError):
    """A member the local SageMaker refuses to unpack; ``member`` is its name in the archive."""

    def __init__(self, member: str, why: str):
        self.member = member
        super().__init__(f"archive member '{member}' {why}")


def member_path(member: tarfile.TarInfo) -> str | None:
    """The member's path below the destination (normalized), None for the destination itself, or
    UnsafeArchiveMember when it must not be unpacked."""
    name = member.name
    if member.issym():
        raise UnsafeArchiveMember(name, f"is a symbolic link (to '{member.linkname}'), which is not unpacked")
    if member.islnk():
        raise UnsafeArchiveMember(name, f"is a hard link (to '{member.linkname}'), which is not unpacked")
    if member.ischr() or member.isblk():
        raise UnsafeArchiveMember(name, "is a device file, which is not unpacked")
    if member.isfifo():
        raise UnsafeArchiveMember(name, "is a FIFO, which is not unpacked")
    if not (member.isreg() or member.isdir()):
        raise UnsafeArchiveMember(name, f"is of tar type {member.type!r}; only files and directories are unpacked")
    if not name or "\x00" in name:
        raise UnsafeArchiveMember(name, "has an empty or invalid name")
    if name.startswith(("/", "\\")) or os.path.isabs(name) or os.path.splitdrive(name)[0]:
        raise UnsafeArchiveMember(name, "has an absolute path")
    if ".." in name.replace("\\", "/").split("/"):
        raise UnsafeArchiveMember(name, "has a '..' component")
    normalized = os.path.normpath(name)
    if normalized == ".":
        if member.isdir():
            return None  # "./", as `tar -C dir .` writes it
        raise UnsafeArchiveMember(name, "names the destination folder itself")
    if os.path.isabs(normalized) or normalized == os.pardir or normalized.startswith(os.pardir + os.sep):
        raise UnsafeArchiveMember(name, "would land outside the destination folder")
    return normalized


def _open_directory(root_fd: int, parts: list[str], name: str) -> int:
    """A descriptor of root/parts..., each directory created if missing and none reached through a link."""
    fd = os.dup(root_fd)
    try:
        for part in parts:
            try:
                os.mkdir(part, 0o755, dir_fd=fd)
            except FileExistsError:
                pass
            try:
                child = os.open(part, _DIRECTORY_FLAGS, dir_fd=fd)
            except OSError as exc:  # ELOOP: a link; ENOTDIR: a file of the same name
                raise UnsafeArchiveMember(name, f"would be written through '{part}', which is not a directory "
                                                f"({exc.strerror})") from exc
            os.close(fd)
            fd = child
        return fd
    except BaseException:
        os.close(fd)
        raise


def _write_file(tar: tarfile.TarFile, member: tarfile.TarInfo, parent_fd: int, leaf: str) -> None:
    try:
        fd = os.open(leaf, _NEW_FILE_FLAGS, 0o600, dir_fd=parent_fd)
    except FileExistsError:
        # a later member of the same name replaces an earlier file, as tar does; nothing else is replaced
        if not stat.S_ISREG(os.stat(leaf, dir_fd=parent_fd, follow_symlinks=False).st_mode):
            raise UnsafeArchiveMember(member.name, "would replace a directory or link in the destination") from None
        os.unlink(leaf, dir_fd=parent_fd)
        fd = os.open(leaf, _NEW_FILE_FLAGS, 0o600, dir_fd=parent_fd)
    with os.fdopen(fd, "wb") as out:
        source = tar.extractfile(member)
        if source is not None:
            shutil.copyfileobj(source, out, 1024 * 1024)
        out.flush()
        os.fchmod(out.fileno(), (member.mode & _FILE_MODE_BITS) | 0o600)
        os.utime(out.fileno(), (member.mtime, member.mtime))


def extract_members(tar: tarfile.TarFile, destination: str | os.PathLike) -> int:
    """Unpack an open archive into ``destination`` (created if missing); returns the number of files.

    Raises UnsafeArchiveMember, before writing anything, when a member must not be unpacked."""
    members = [(member, member_path(member)) for member in tar.getmembers()]
    os.makedirs(destination, exist_ok=True)
    root_fd = os.open(destination, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    files = 0
    try:
        for member, path in members:
            if path is None:
                continue
            parts = path.split(os.sep)
            directories, leaf = (parts, None) if member.isdir() else (parts[:-1], parts[-1])
            parent_fd = _open_directory(root_fd, directories, member.name)
            try:
                if leaf is not None:
                    _write_file(tar, member, parent_fd, leaf)
                    files += 1
            finally:
                os.close(parent_fd)
    finally:
        os.close(root_fd)
    return files


def unpack_tar(archive: str | os.PathLike, destination: str | os.PathLike) -> int:
    """Unpack the tar archive (gzip, bzip2, xz or plain) at ``archive`` into ``destination``; returns
    the number of files. Raises ArchiveError (UnsafeArchiveMember for a refused member)."""
    try:
        with tarfile.open(archive, "r:*") as tar:
            return extract_members(tar, destination)
    except ArchiveError:
        raise
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise ArchiveError(f"the archive could not be unpacked: {exc}") from exc


def tarfile_filter_bypassable(version: tuple = tuple(sys.version_info[:3])) -> bool:
    """Whether this CPython's tarfile extraction filters are known to be bypassable (CVE-2025-4517)."""
    fixed = TARFILE_FILTER_FIXED_IN.get(tuple(version[:2]))
    if fixed is not None:
        return tuple(version[:3]) < fixed
    return tuple(version[:2]) < (3, 9)  # 3.14 shipped with the fix; before 3.9 nothing was patched


def _warn_about_this_interpreter() -> None:
    if tarfile_filter_bypassable():
        version = ".".join(map(str, sys.version_info[:3]))
        fixed = ".".join(map(str, TARFILE_FILTER_FIXED_IN.get(sys.version_info[:2], (3, 11, 13))))
        print(f"warning: Python {version}'s tarfile extraction filter can be bypassed (CVE-2025-4517; fixed in "
              f"{fixed}). The local SageMaker does not rely on it (include/emulator/archives.py), but other code "
              "that extracts untrusted tar archives with filter='data' on this interpreter is exposed.",
              file=sys.stderr)


if __name__ == "__main__":
    _warn_about_this_interpreter()
