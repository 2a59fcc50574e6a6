"""Atomic file writing: a reader never sees a half-written file, and what is written gets
the permissions the user's umask gives, as with any Unix tool."""
from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Iterator


def current_umask() -> int:
    """The process's umask, read without changing it where Linux allows (thread-safe)."""
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)  # elsewhere: read it by setting it, and put it back at once
    os.umask(mask)
    return mask


def fix_mode(path: str | os.PathLike, *, folder: bool = False) -> None:
    """Give a file (0666) or folder (0777) made by :mod:`tempfile` (0600 / 0700) the
    permissions a plain ``open`` or ``mkdir`` would have given it under the umask."""
    os.chmod(path, (0o777 if folder else 0o666) & ~current_umask())


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, *, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` on success.

    The temporary file lives in the same folder (so the rename is atomic) and is
    removed if the block raises. ``suffix`` keeps an extension that writers such as
    Pillow or NumPy use to pick a format. A new file ends with the umask's permissions, a
    replaced one with the permissions it had.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix + ".part", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        try:  # a file replaced keeps its permission bits; a new one gets the umask's
            os.chmod(tmp_path, os.stat(path).st_mode & 0o7777)
        except FileNotFoundError:
            fix_mode(tmp_path)
        os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def partial_files(path: str | os.PathLike) -> list[Path]:
    """Temporary files :func:`atomic_path` made for ``path`` and never renamed (their writer
    was killed before it could clean up)."""
    path = Path(path)
    return sorted(path.parent.glob(f".{path.name}.*.part"))


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def unwritable(path: str | os.PathLike, *, folder: bool = False) -> str | None:
    """Why ``path`` (a file, or with ``folder`` a folder) could not be written, or None: it
    is a folder (a file, for ``folder``), a parent is a file, or the nearest existing folder
    is not writable (the missing ones would be made in it)."""
    path = Path(path)
    if path.exists():
        if folder != path.is_dir():
            return "is a folder, not a file" if path.is_dir() else "is a file, not a folder"
        where = path if folder else path.parent
    else:
        where = path.absolute().parent
        while not where.exists():
            where = where.parent
        if not where.is_dir():
            return f"{where} is a file, not a folder"
    if not os.access(where, os.W_OK | os.X_OK):
        return f"cannot write in {where} (permission denied)"
    return None
