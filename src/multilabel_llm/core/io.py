"""Atomic file writing shared by every stage, so a killed job never leaves a half-written output.

Outputs get the permissions a plain ``open()`` would give them (0666 / 0777 less the umask),
not the private 0600 / 0700 of the temporary files they start as, so a lab sharing a results
directory can read each other's results. A write that fails (disk full, read-only directory)
raises an ``OSError`` naming the output it was writing.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def _umask() -> int:
    # os.umask can only be read by setting it; /proc avoids that race where it exists
    try:
        with open("/proc/self/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# errors about where the output goes (not about what the writer read): named with the output
_WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS, errno.EIO}


class OutputError(OSError):
    """Writing an output failed; the message names the output and the operating system's reason."""


def _fail(path: Path, err: OSError, doing: str):
    hint = ""
    if err.errno == errno.ENOSPC:
        hint = " (free space on that file system, then rerun: finished shards are kept)"
    elif err.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        hint = f" (make {path.parent} writable, or set results_dir to a writable directory)"
    return OutputError(err.errno, f"{doing} {path}: {err.strerror or err}{hint}")


@contextmanager
def atomic_path(path: str | os.PathLike):
    """Yield a temporary path next to ``path``; rename it onto ``path`` only on success."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
    except OSError as err:
        raise _fail(path, err, "cannot create") from err
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException as err:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(err, OSError) and not isinstance(err, OutputError):
            if err.errno in _WRITE_ERRNOS:
                raise _fail(path, err, "writing") from err
        raise


@contextmanager
def atomic_dir(path: str | os.PathLike, *, keep_existing: bool = False):
    """Yield a temporary directory next to ``path``; it replaces ``path`` only on success.

    ``keep_existing``: if ``path`` exists by then (another job finished the same output
    first), keep it and discard the temporary directory.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    except OSError as err:
        raise _fail(path, err, "cannot create") from err
    try:
        yield tmp
        if not (keep_existing and path.exists()):
            os.chmod(tmp, 0o777 & ~_umask())
            if path.exists():
                shutil.rmtree(path)
            os.replace(tmp, path)
    except OSError as err:
        if isinstance(err, OutputError) or err.errno not in _WRITE_ERRNOS:
            raise
        raise _fail(path, err, "writing") from err
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def write_with(path: str | os.PathLike, writer: Callable[[Path], Any]) -> None:
    """Call ``writer(tmp_path)`` and move the result onto ``path`` atomically."""
    with atomic_path(path) as tmp:
        writer(tmp)


def write_text(path: str | os.PathLike, text: str) -> None:
    write_with(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def write_json(path: str | os.PathLike, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def write_parquet(path: str | os.PathLike, frame) -> None:
    write_with(path, lambda tmp: frame.to_parquet(tmp, index=False))


def write_csv(path: str | os.PathLike, frame, **kwargs) -> None:
    write_with(path, lambda tmp: frame.to_csv(tmp, **kwargs))


def read_json(path: str | os.PathLike) -> Any:
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def read_id_list(path: str | os.PathLike) -> list[str]:
    """One example id per line; blank lines and ``#`` comments ignored."""
    ids = []
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            line = line.strip()
            if line and not line.startswith("#"):
                ids.append(line)
    return ids


def write_id_list(path: str | os.PathLike, ids) -> None:
    write_text(path, "".join(f"{i}\n" for i in ids))
