"""Safe unpacking of .tgz and .zip archives: complete or not at all, nothing outside the target.

Members are unpacked one by one into a temporary folder beside the target, which is renamed
into place only when the whole archive has been read. Links, devices, absolute paths and
``..`` are refused in both formats. The format is read from the file's first bytes, not its
name.
"""
from __future__ import annotations

import logging
import os
import shutil
import stat
import tarfile
import tempfile
import zipfile
from pathlib import Path, PurePosixPath

from .fsutil import fix_mode

logger = logging.getLogger(__name__)


class UnsafeArchiveError(ValueError):
    """An archive member would escape the target folder or is not a plain file/folder."""


def _safe_name(name: str, archive: Path) -> str:
    """The member's path relative to the target, or UnsafeArchiveError."""
    parts = PurePosixPath(name.replace("\\", "/")).parts
    if (not parts or name.startswith(("/", "\\")) or ".." in parts
            or (len(parts[0]) == 2 and parts[0][1] == ":")):  # C: on a zip made on Windows
        raise UnsafeArchiveError(f"{archive}: refusing member {name!r} outside the target folder")
    return os.path.join(*parts)


def _tar_members(archive: Path):
    """(relative path, is_dir, opener) of every member of a tar archive."""
    with tarfile.open(archive, "r:*") as tar:
        for member in tar:
            if not (member.isfile() or member.isdir()):
                kind = "link" if (member.issym() or member.islnk()) else "special file"
                raise UnsafeArchiveError(f"{archive}: refusing {kind} member {member.name!r}")
            rel = _safe_name(member.name, archive)
            yield rel, member.isdir(), (lambda m=member: tar.extractfile(m))


def _zip_members(archive: Path):
    """The same for a zip archive (links and devices are marked in the Unix mode bits)."""
    with zipfile.ZipFile(archive) as zf:
        for info in zf.infolist():
            mode = info.external_attr >> 16
            kind = stat.S_IFMT(mode)
            if kind == stat.S_IFLNK:
                raise UnsafeArchiveError(f"{archive}: refusing link member {info.filename!r}")
            if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
                raise UnsafeArchiveError(f"{archive}: refusing special file member {info.filename!r}")
            rel = _safe_name(info.filename, archive)
            yield rel, info.is_dir(), (lambda i=info: zf.open(i))


def archive_kind(path: Path) -> str:
    """``"zip"`` or ``"tar"`` from the first bytes of ``path``."""
    if zipfile.is_zipfile(path):
        return "zip"
    if tarfile.is_tarfile(path):
        return "tar"
    raise ValueError(f"{path}: neither a zip nor a tar archive")


def extract_archive(archive: str | os.PathLike, dest_root: str | os.PathLike, top: str) -> Path:
    """Safely unpack ``archive`` so that ``dest_root/top`` appears complete or not at all.

    A zip repack that nests the folder once more (``top/top/…``, as some mirrors do) is
    unpacked to the same place.

    Returns:
        ``dest_root / top``. An existing folder is kept as it is.

    Raises:
        UnsafeArchiveError: a member is a link or device, or would land outside the target.
        ValueError: the file is not a readable archive, or has no ``top`` folder.
    """
    archive, dest_root = Path(archive), Path(dest_root)
    final = dest_root / top
    if final.is_dir():
        logger.info("%s already unpacked", final)
        return final
    kind = archive_kind(archive)
    tmp = Path(tempfile.mkdtemp(prefix=".extract-", dir=dest_root))
    try:
        for rel, is_dir, open_member in (_zip_members if kind == "zip" else _tar_members)(archive):
            out = tmp / rel
            if is_dir:
                out.mkdir(parents=True, exist_ok=True)
                continue
            out.parent.mkdir(parents=True, exist_ok=True)
            with open_member() as src, open(out, "wb") as dst:
                shutil.copyfileobj(src, dst)
        found = tmp / top
        if found.is_dir() and [p.name for p in found.iterdir()] == [top] and (found / top).is_dir():
            found = found / top
        if not found.is_dir():
            raise ValueError(f"{archive}: expected a top folder {top!r} inside the archive")
        fix_mode(found, folder=True)
        os.replace(found, final)
    except (tarfile.TarError, zipfile.BadZipFile, EOFError) as exc:
        raise ValueError(f"{archive}: not a readable {kind} archive ({exc})") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final
