"""Files a reader can trust: atomic writes, staged folders renamed into place, sha256.

Every file and folder the project writes for another step to read (dataset folders, feature
matrices, manifests, run configs and metrics, SavedModel versions) goes through this module,
so a killed writer leaves either the old complete output or the new complete output, never a
half-written one.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import pathlib
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from typing import Any, BinaryIO

STAGING_MARK = ".staging-"
OUT_OF_SPACE_ERRNOS = (errno.ENOSPC, errno.EFBIG, errno.EDQUOT)
_SHORT_WRITE = re.compile(r"^[0-9]+ requested and [0-9]+ written$")


def out_of_space(error: BaseException) -> str | None:
    """The reason when `error` is a write that found no room (a full disk, a quota, a file-size
    limit), else None: Python's OSError carries the errno, TensorFlow's file system the
    system's text for it, and NumPy's `tofile` (np.save) reports a short write."""
    if isinstance(error, OSError) and error.errno in OUT_OF_SPACE_ERRNOS:
        return os.strerror(error.errno)
    text = str(error)
    if isinstance(error, OSError) and error.errno is None and _SHORT_WRITE.match(text):
        return f"short write: {text}"
    return next((os.strerror(e) for e in OUT_OF_SPACE_ERRNOS if os.strerror(e) in text), None)


def sha256_file(path: str | os.PathLike) -> str:
    """The hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fsync_dir(folder: str | os.PathLike) -> None:
    """Makes a folder's entries (a rename into it, a new file) durable."""
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def fsync_tree(folder: str | os.PathLike) -> None:
    """Makes every file under `folder`, and the folders themselves, durable."""
    for root, _, files in os.walk(folder):
        for name in files:
            with open(os.path.join(root, name), "rb") as f:
                os.fsync(f.fileno())
        fsync_dir(root)


def atomic_write(
    path: str | os.PathLike, data: bytes | str | Callable[[BinaryIO], Any], mode: int = 0o644
) -> None:
    """Writes `path` through a synced temporary file in the same folder and `os.replace`.

    Args:
        path: the file to write.
        data: bytes, text (written as UTF-8), or a function that writes to a binary file.
        mode: the file's permissions (temporary files are created 0600).
    """
    path = pathlib.Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            if callable(data):
                data(f)
            else:
                f.write(data.encode("utf-8") if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        pathlib.Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def atomic_write_json(path: str | os.PathLike, value: Any) -> None:
    """Writes `value` as indented JSON (UTF-8, trailing newline), atomically."""
    atomic_write(path, json.dumps(value, indent=2, ensure_ascii=False) + "\n")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_staging(final: str | os.PathLike) -> list[pathlib.Path]:
    """Removes staging folders of `final` left by writers that are no longer running."""
    final = pathlib.Path(final)
    removed = []
    for stale in final.parent.glob(f".{final.name}{STAGING_MARK}*"):
        pid = stale.name[len(f".{final.name}{STAGING_MARK}") :].split("-", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and _pid_alive(int(pid)):
            continue
        shutil.rmtree(stale, ignore_errors=True)
        removed.append(stale)
    return removed


@contextlib.contextmanager
def staged_directory(final: str | os.PathLike, *, replace: bool = False) -> Iterator[pathlib.Path]:
    """A folder written in full beside `final`, then renamed to `final` in one step.

    Yields an empty staging folder (`.NAME.staging-PID-XXXX` beside `final`); when the block
    ends without an exception the folder is synced and renamed into place, otherwise removed.
    Staging folders of earlier writers that were killed are removed first.

    Args:
        final: the folder to create.
        replace: replace an existing `final` (moved aside, then removed); otherwise an existing
            `final` is a `FileExistsError`, raised before and after the block.
    """
    final = pathlib.Path(final).absolute()
    final.parent.mkdir(parents=True, exist_ok=True)
    if final.exists() and not replace:
        raise FileExistsError(f"{final} already exists")
    remove_stale_staging(final)
    staging = pathlib.Path(
        tempfile.mkdtemp(prefix=f".{final.name}{STAGING_MARK}{os.getpid()}-", dir=final.parent)
    )
    try:
        yield staging
        os.chmod(staging, 0o755)
        fsync_tree(staging)
        old = None
        if final.exists():
            if not replace:
                raise FileExistsError(f"{final} already exists")
            old = final.with_name(f".{final.name}{STAGING_MARK}{os.getpid()}-old")
            final.rename(old)
        staging.rename(final)
        fsync_dir(final.parent)
        if old is not None:
            shutil.rmtree(old)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
