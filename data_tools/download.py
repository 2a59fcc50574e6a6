"""Download, verify and unpack the datasets ``dfi`` knows (URLs and checksums are real).

Downloads go through :func:`pooch.retrieve` (hash check, temporary file, rename) with a
downloader of our own that keeps a ``.part`` file so that an interrupted download
resumes with an HTTP ``Range`` request. Archives are unpacked member by member into a
temporary folder that is renamed into place only when complete; links, devices and
members that would land outside the target are refused.
"""
from __future__ import annotations

import logging
import os
import shutil
import tarfile
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import pooch

logger = logging.getLogger(__name__)
pooch.get_logger().setLevel(logging.WARNING)  # progress comes from our own bar

ProgressFactory = Callable[[Optional[int], int, str], "Progress"]


@dataclass(frozen=True)
class Mirror:
    url: str
    known_hash: Optional[str]  # "md5:…" / "sha256:…"; None where no checksum is published


@dataclass(frozen=True)
class Dataset:
    """One downloadable file: where it comes from and what it unpacks to."""

    name: str
    filename: str
    mirrors: tuple[Mirror, ...]
    archive_top: Optional[str] = None  # folder inside the .tgz; None for plain files
    description: str = ""


_UMASS = "http://vis-www.cs.umass.edu/lfw/"
DATASETS: dict[str, Dataset] = {
    d.name: d for d in (
        Dataset("lfw-deepfunneled", "lfw-deepfunneled.tgz",
                (Mirror(_UMASS + "lfw-deepfunneled.tgz", "md5:68331da3eb755a505a502b5aacb3c201"),),
                "lfw-deepfunneled", "LFW, deep-funneled alignment (111 MB)"),
        Dataset("lfw-funneled", "lfw-funneled.tgz",
                (Mirror(_UMASS + "lfw-funneled.tgz", "md5:1b42dfed7d15c9b2dd63d5e5840c86ad"),
                 Mirror("https://ndownloader.figshare.com/files/5976015",
                        "sha256:b47c8422c8cded889dc5a13418c4bc2abbda121092b3533a83306f90d900100a")),
                "lfw_funneled", "LFW, funneled alignment (233 MB)"),
        Dataset("lfw-plain", "lfw.tgz",
                (Mirror(_UMASS + "lfw.tgz", "md5:a17d05bd522c52d84eca14327a23d494"),
                 Mirror("https://ndownloader.figshare.com/files/5976018",
                        "sha256:055f7d9c632d7370e6fb4afc7468d40f970c34a80d4c6f50ffec63f5a8d536c0")),
                "lfw", "LFW, unaligned (173 MB)"),
        # No checksum is published for lfw_attributes.txt; its format is checked instead.
        Dataset("lfw-attributes", "lfw_attributes.txt",
                (Mirror("https://www.cs.columbia.edu/CAVE/databases/pubfig/download/lfw_attributes.txt",
                        None),),
                None, "73 attribute scores per LFW image (Kumar et al.)"),
        Dataset("celeba-attributes", "list_attr_celeba.txt",
                (Mirror("https://drive.google.com/uc?export=download&id=0B7EVK8r0v71pblRyaVFSWGxPY0U",
                        "md5:75e246fa4810816ffd6ee81facbd244c"),),
                None, "40 binary attributes per CelebA image"),
    )
}
ALIASES = {"lfw": "lfw-deepfunneled"}


class DownloadError(RuntimeError):
    """A download or import failed; the message says what to do next."""


class UnsafeArchiveError(ValueError):
    """An archive member would escape the target folder or is not a plain file/folder."""


def get_dataset(name: str) -> Dataset:
    key = ALIASES.get(name, name)
    if key not in DATASETS:
        known = ", ".join(sorted([*DATASETS, *ALIASES]))
        raise KeyError(f"unknown dataset {name!r}; known: {known}")
    return DATASETS[key]


def default_data_dir() -> Path:
    """``$DFI_HOME`` if set, else the user cache folder for ``dfi``."""
    env = os.environ.get("DFI_HOME")
    return Path(env).expanduser() if env else Path(pooch.os_cache("dfi"))


class ResumingDownloader:
    """A :mod:`pooch` downloader that resumes from ``<part_path>`` with HTTP ranges.

    Args:
        part_path: where partial data is kept between attempts.
        progress: ``progress(total_bytes_or_None, already_bytes, label)`` returns an
            object with ``update(n)`` and ``close()`` (e.g. a tqdm bar), or None.
        timeout: seconds to wait for the server between chunks.
    """

    def __init__(self, part_path: Path, *, progress: Optional[ProgressFactory] = None,
                 timeout: float = 60.0, chunk_size: int = 1 << 14):
        self.part_path = Path(part_path)
        self.progress = progress
        self.timeout = timeout
        self.chunk_size = chunk_size

    def __call__(self, url: str, output_file, pooch_instance, check_only: bool = False):
        import requests

        if check_only:
            return requests.head(url, timeout=self.timeout, allow_redirects=True).ok
        have = self.part_path.stat().st_size if self.part_path.exists() else 0
        headers = {"Range": f"bytes={have}-"} if have else {}
        with requests.get(url, headers=headers, stream=True, timeout=self.timeout) as response:
            if response.status_code == 416:  # nothing left to send: the part is complete
                response.close()
            else:
                response.raise_for_status()
                if have and response.status_code != 206:
                    logger.info("server ignored the range request; restarting %s", url)
                    have = 0
                length = response.headers.get("Content-Length")
                total = have + int(length) if length is not None else None
                bar = self.progress(total, have, self.part_path.name) if self.progress else None
                try:
                    with open(self.part_path, "ab" if have else "wb") as handle:
                        for chunk in response.iter_content(chunk_size=self.chunk_size):
                            handle.write(chunk)
                            handle.flush()
                            if bar is not None:
                                bar.update(len(chunk))
                finally:
                    if bar is not None:
                        bar.close()
        target = output_file if isinstance(output_file, (str, os.PathLike)) else output_file.name
        os.replace(self.part_path, target)


def fetch(name: str, *, data_dir: Optional[Path] = None, source: Optional[str] = None,
          verify: bool = True, progress: Optional[ProgressFactory] = None) -> Path:
    """Download (or import) one dataset file into ``data_dir`` and unpack it.

    Args:
        name: a key of :data:`DATASETS` or an alias (``lfw``).
        data_dir: target folder; default :func:`default_data_dir`.
        source: a local file or URL to take the file from instead of the known mirrors.
            Its checksum is still checked against the known one.
        verify: False accepts a file whose checksum differs (with a warning).
        progress: progress-bar factory, see :class:`ResumingDownloader`.

    Returns:
        The unpacked folder for archives, else the file.
    """
    dataset = get_dataset(name)
    data_dir = Path(data_dir) if data_dir is not None else default_data_dir()
    data_dir.mkdir(parents=True, exist_ok=True)
    target = data_dir / dataset.filename
    if source is not None and "://" not in source:
        _import_local(dataset, Path(source), target, verify=verify)
    else:
        mirrors = dataset.mirrors
        if source is not None:
            mirrors = (Mirror(source, dataset.mirrors[0].known_hash),)
        download_file(dataset.name, mirrors, target, verify=verify, progress=progress)
    if dataset.archive_top is None:
        _check_table(target)
        return target
    return extract_tgz(target, data_dir, dataset.archive_top)


def _check_table(path: Path) -> None:
    """Parse a downloaded attribute file; a file that breaks its format is deleted."""
    from .attributes import FormatError, read_attributes

    try:
        read_attributes(path)
    except FormatError as exc:
        path.unlink(missing_ok=True)
        raise DownloadError(f"{path.name} does not follow its format and was deleted: {exc}") from None


def download_file(label: str, mirrors: tuple[Mirror, ...], target: Path, *, verify: bool = True,
                  progress: Optional[ProgressFactory] = None) -> None:
    """Download ``target`` from the first mirror that answers, resuming a ``.part`` file.

    Raises:
        DownloadError: checksum mismatch (the bad file is deleted) or no mirror answered.
    """
    import requests

    part = target.with_name(target.name + ".part")
    errors = []
    for mirror in mirrors:
        known_hash = mirror.known_hash if verify else None
        if not verify and mirror.known_hash:
            warnings.warn(f"--no-verify: not checking {target.name} against {mirror.known_hash}",
                          stacklevel=2)
        if target.exists() and known_hash is None:
            return
        try:
            pooch.retrieve(mirror.url, known_hash, fname=target.name, path=target.parent,
                           downloader=ResumingDownloader(part, progress=progress),
                           progressbar=False)
            return
        except ValueError as exc:  # pooch's hash mismatch; it deleted the bad file
            raise DownloadError(
                f"checksum mismatch for {target.name} from {mirror.url}: the file was deleted "
                f"({_first_line(exc)}); use --no-verify to accept a different file") from None
        except requests.exceptions.RequestException as exc:
            kept = part.stat().st_size if part.exists() else 0
            errors.append(f"{mirror.url}: {_first_line(exc)}"
                          + (f" ({kept} bytes kept, run again to resume)" if kept else ""))
    raise DownloadError(f"could not download {label}: " + "; ".join(errors))


def _import_local(dataset: Dataset, source: Path, target: Path, *, verify: bool) -> None:
    if not source.is_file():
        raise DownloadError(f"--from {source}: no such file")
    known = [m.known_hash for m in dataset.mirrors if m.known_hash]
    if known:
        matches = any(pooch.file_hash(str(source), alg=h.split(":", 1)[0]) == h.split(":", 1)[1]
                      for h in known)
        if not matches:
            if verify:
                raise DownloadError(
                    f"--from {source}: checksum differs from the known {known[0]} for "
                    f"{dataset.filename}; use --no-verify to import it anyway")
            warnings.warn(f"--no-verify: importing {source} whose checksum differs from "
                          f"{known[0]}", stacklevel=2)
    if source.resolve() == target.resolve():
        return
    tmp = target.with_name(f".{target.name}.import")
    try:
        shutil.copyfile(source, tmp)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _check_member(member: tarfile.TarInfo, archive: Path) -> str:
    name = member.name
    if not (member.isfile() or member.isdir()):
        kind = "link" if (member.issym() or member.islnk()) else "special file"
        raise UnsafeArchiveError(f"{archive}: refusing {kind} member {name!r}")
    parts = Path(name).parts
    if not parts or Path(name).is_absolute() or name.startswith(("/", "\\")) or ".." in parts:
        raise UnsafeArchiveError(f"{archive}: refusing member {name!r} outside the target folder")
    return os.path.normpath(name)


def extract_tgz(archive: Path, dest_root: Path, top: str) -> Path:
    """Safely unpack ``archive`` so that ``dest_root/top`` appears complete or not at all.

    Returns:
        ``dest_root / top``. An existing folder is kept as it is.

    Raises:
        UnsafeArchiveError: a member is a link or device, or would land outside the
            target; ``ValueError`` when the archive has no ``top`` folder.
    """
    archive, dest_root = Path(archive), Path(dest_root)
    final = dest_root / top
    if final.is_dir():
        logger.info("%s already unpacked", final)
        return final
    tmp = Path(tempfile.mkdtemp(prefix=".extract-", dir=dest_root))
    try:
        with tarfile.open(archive, "r:*") as tar:
            for member in tar:
                rel = _check_member(member, archive)
                out = tmp / rel
                if member.isdir():
                    out.mkdir(parents=True, exist_ok=True)
                    continue
                out.parent.mkdir(parents=True, exist_ok=True)
                with tar.extractfile(member) as src, open(out, "wb") as dst:
                    shutil.copyfileobj(src, dst)
        if not (tmp / top).is_dir():
            raise ValueError(f"{archive}: expected a top folder {top!r} inside the archive")
        os.replace(tmp / top, final)
    except tarfile.TarError as exc:
        raise ValueError(f"{archive}: not a readable tar archive ({exc})") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final
