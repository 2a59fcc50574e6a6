"""Download, verify and unpack the datasets ``dfi`` knows, from mirrors that answer today.

Each file has a table of mirrors, live ones first and the original host last, each with the
checksums that identify its bytes (``md5:``, ``sha1:``, ``sha256:`` or ``gitsha1:``, the id
git gives a blob: sha1 of ``b"blob <size>\\0"`` + the bytes). A download goes to a ``.part``
file that an interrupted run resumes with an HTTP ``Range`` request; the finished file must
match every checksum of its mirror, else it is deleted and the next mirror is tried. Google
Drive's "can't scan this file" confirmation page is followed; its quota page is reported.
When every mirror fails, the error lists each URL with its reason and the ``--from`` hint.
"""
from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

from .archive import UnsafeArchiveError, extract_archive  # noqa: F401  (re-exported)
from .fsutil import atomic_path

logger = logging.getLogger(__name__)

#: ``progress(total_bytes_or_None, already_bytes, label)`` → an object with update(n), close()
ProgressFactory = Callable[[Optional[int], int, str], object]
HASH_KINDS = ("md5", "sha1", "sha256", "gitsha1")


@dataclass(frozen=True)
class Mirror:
    """One place a file can be fetched from.

    Attributes:
        url: where to download it.
        hashes: ``"kind:hex"`` checksums of the file served there; all must match (none
            where nothing is published: the file's format is checked instead).
        filename: the name it is saved under, when it differs from the dataset's (a zip
            repack of a .tgz, say).
    """

    url: str
    hashes: tuple[str, ...] = ()
    filename: Optional[str] = None


@dataclass(frozen=True)
class Dataset:
    """One downloadable file: where it comes from and what it unpacks to."""

    name: str
    filename: str
    mirrors: tuple[Mirror, ...]
    archive_top: Optional[str] = None  # folder inside the archive; None for plain files
    description: str = ""


_UMASS = "http://vis-www.cs.umass.edu/lfw/"  # stopped resolving around January 2025: last
_FIGSHARE = ("https://ndownloader.figshare.com/files/", "https://figshare.com/ndownloader/files/")
_DFI_REPO = "https://github.com/paulu/deepfeatinterp/raw/master/"


def _figshare_then_umass(file_id: str, name: str, md5: str, sha256: str) -> tuple[Mirror, ...]:
    """Figshare's two host names serve byte-identical copies of the UMass files."""
    both = (f"md5:{md5}", f"sha256:{sha256}")
    return tuple(Mirror(host + file_id, both) for host in _FIGSHARE) + (Mirror(_UMASS + name, both),)


DATASETS: dict[str, Dataset] = {
    d.name: d for d in (
        Dataset("lfw-deepfunneled", "lfw-deepfunneled.tgz", (
            Mirror("https://huggingface.co/datasets/JimmyUnleashed/LFW/resolve/main/lfw-deepfunneled.zip",
                   ("md5:e782a3d6f143c8964f531d0a5af1201a",), "lfw-deepfunneled.zip"),
            Mirror(_UMASS + "lfw-deepfunneled.tgz", ("md5:68331da3eb755a505a502b5aacb3c201",))),
            "lfw-deepfunneled", "LFW, deep-funneled alignment (111 MB; or: download lfw-plain + dfi data align)"),
        Dataset("lfw-funneled", "lfw-funneled.tgz", _figshare_then_umass(
            "5976015", "lfw-funneled.tgz", "1b42dfed7d15c9b2dd63d5e5840c86ad",
            "b47c8422c8cded889dc5a13418c4bc2abbda121092b3533a83306f90d900100a"),
            "lfw_funneled", "LFW, funneled alignment (233 MB)"),
        Dataset("lfw-plain", "lfw.tgz", _figshare_then_umass(
            "5976018", "lfw.tgz", "a17d05bd522c52d84eca14327a23d494",
            "055f7d9c632d7370e6fb4afc7468d40f970c34a80d4c6f50ffec63f5a8d536c0"),
            "lfw", "LFW, unaligned (173 MB)"),
        # Columbia publishes no checksum (its format is checked); the official DFI
        # repository's copy is pinned by its git blob id.
        Dataset("lfw-attributes", "lfw_attributes.txt", (
            Mirror("https://www.cs.columbia.edu/CAVE/databases/pubfig/download/lfw_attributes.txt"),
            Mirror(_DFI_REPO + "datasets/lfw/lfw_attributes.txt",
                   ("gitsha1:d5dbfdb86bfa8d3f36d6bea6872e675323707c46",))),
            None, "73 attribute scores per LFW image (Kumar et al.)"),
        Dataset("celeba-attributes", "list_attr_celeba.txt", (
            Mirror("https://drive.google.com/uc?export=download&id=0B7EVK8r0v71pblRyaVFSWGxPY0U",
                   ("md5:75e246fa4810816ffd6ee81facbd244c",)),
            Mirror("https://ftp.mi.fu-berlin.de/pub/cmb-data/celeba/list_attr_celeba.txt",
                   ("md5:75e246fa4810816ffd6ee81facbd244c",))),
            None, "40 binary attributes per CelebA image"),
        # The md5 that download scripts pin (LAVIS, chainercv…); 13,510,573,713 bytes. The host
        # is an S3 bucket whose https certificate some clients refuse: plain http comes next.
        Dataset("coco-train2014", "train2014.zip", tuple(
            Mirror(f"{scheme}://images.cocodataset.org/zips/train2014.zip", ("md5:0da8c0bd3d6becc4dcb32757491aca88",))
            for scheme in ("https", "http")),
            "train2014", "COCO train2014, 82,783 photos: content images for dfi train-stylizer (13 GB)"),
    )
}
ALIASES = {"lfw": "lfw-deepfunneled"}


class DownloadError(RuntimeError):
    """A download or import failed; the message (several lines when several mirrors were
    tried) says what to do next."""


def get_dataset(name: str) -> Dataset:
    key = ALIASES.get(name, name)
    if key not in DATASETS:
        known = ", ".join(sorted([*DATASETS, *ALIASES]))
        raise KeyError(f"unknown dataset {name!r}; known: {known}")
    return DATASETS[key]


def default_data_dir() -> Path:
    """``$DFI_HOME`` if set, else the user cache folder for ``dfi``."""
    env = os.environ.get("DFI_HOME")
    if env:
        return Path(env).expanduser()
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("dfi"))


# ------------------------------------------------------------------ checksums
def file_hashes(path: Path, kinds: Sequence[str]) -> dict[str, str]:
    """``{kind: hex}`` of ``path`` for each of ``kinds`` (see :data:`HASH_KINDS`), one read."""
    unknown = [k for k in kinds if k not in HASH_KINDS]
    if unknown:
        raise ValueError(f"unknown checksum kind {unknown[0]!r}; known: {', '.join(HASH_KINDS)}")
    digests = {k: hashlib.new("sha1" if k == "gitsha1" else k) for k in kinds}
    if "gitsha1" in digests:
        digests["gitsha1"].update(b"blob %d\0" % path.stat().st_size)
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            for digest in digests.values():
                digest.update(block)
    return {k: d.hexdigest() for k, d in digests.items()}


def mismatches(path: Path, hashes: Sequence[str]) -> list[str]:
    """``"kind: got X, expected Y"`` for every checksum of ``hashes`` that ``path`` fails."""
    wanted = dict(h.split(":", 1) for h in hashes)
    got = file_hashes(path, list(wanted))
    return [f"{k} {got[k]} (expected {v})" for k, v in wanted.items() if got[k] != v.lower()]


# ------------------------------------------------------------------ HTTP
_HIDDEN = re.compile(r'<input[^>]*type="hidden"[^>]*name="([^"]+)"[^>]*value="([^"]*)"', re.I)


def _is_drive(url: str) -> bool:
    return re.match(r"https?://(drive|docs|drive\.usercontent)\.google\.com/", url) is not None


def _drive_confirm(session, page: str, response, headers: dict, timeout: float):
    """Follow Google Drive's large-file confirmation page; explain its quota page."""
    form = re.search(r'<form[^>]*action="([^"]+)"[^>]*>(.*?)</form>', page, re.S | re.I)
    token = next((v for k, v in response.cookies.items() if k.startswith("download_warning")), None)
    if form and _HIDDEN.search(form.group(2)):
        action = form.group(1).replace("&amp;", "&")
        return session.get(action, params=dict(_HIDDEN.findall(form.group(2))), headers=headers,
                           stream=True, timeout=timeout)
    if token:
        return session.get(response.url, params={"confirm": token}, headers=headers, stream=True,
                           timeout=timeout)
    if re.search(r"quota|too many users", page, re.I):
        raise DownloadError("Google Drive's download quota for this file is used up (try again in "
                            "a day)")
    raise DownloadError("Google Drive answered with a web page instead of the file")


def _open(url: str, have: int, timeout: float):
    """A streaming GET of ``url`` from byte ``have`` on (a Drive confirmation is followed)."""
    import requests

    session = requests.Session()
    headers = {"Range": f"bytes={have}-"} if have else {}
    response = session.get(url, headers=headers, stream=True, timeout=timeout)
    if _is_drive(url) and "text/html" in response.headers.get("Content-Type", ""):
        page = response.text
        response.close()
        response = _drive_confirm(session, page, response, headers, timeout)
        if "text/html" in response.headers.get("Content-Type", ""):
            response.close()
            raise DownloadError("Google Drive answered the confirmation with another web page")
    return response


def _fetch_part(url: str, part: Path, *, progress: Optional[ProgressFactory], timeout: float) -> None:
    """Download ``url`` into ``part``, resuming what it already holds."""
    have = part.stat().st_size if part.exists() else 0
    with _open(url, have, timeout) as response:
        if response.status_code == 416:  # nothing left to send: the part is complete
            return
        response.raise_for_status()
        if have and response.status_code != 206:
            logger.info("server ignored the range request; restarting %s", url)
            have = 0
        length = response.headers.get("Content-Length")
        total = have + int(length) if length is not None else None
        bar = progress(total, have, part.name) if progress else None
        try:
            with open(part, "ab" if have else "wb") as handle:
                for chunk in response.iter_content(chunk_size=1 << 14):
                    handle.write(chunk)
                    handle.flush()
                    if bar is not None:
                        bar.update(len(chunk))
        finally:
            if bar is not None:
                bar.close()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def download_file(label: str, mirrors: Sequence[Mirror], folder: Path, default_name: str, *,
                  verify: bool = True, progress: Optional[ProgressFactory] = None,
                  check: Optional[Callable[[Path], None]] = None, hint: str = "",
                  timeout: float = 60.0) -> tuple[Path, Mirror]:
    """Download one file from the first mirror that gives the right bytes.

    A file already in ``folder`` that matches a mirror's checksums (or, for a mirror with
    none, simply exists) is kept. ``check(path)`` raises ValueError for a file that breaks
    its format; it judges the files of mirrors without checksums. ``hint`` ends the error
    (how to use a file the user already has). Returns the file and the mirror it matched.

    Raises:
        DownloadError: every mirror failed; one line per URL with its reason.
    """
    import requests

    errors = []
    for mirror in mirrors:
        target = folder / (mirror.filename or default_name)
        hashes = mirror.hashes if verify else ()
        if not verify and mirror.hashes:
            warnings.warn(f"--no-verify: not checking {target.name} against {', '.join(mirror.hashes)}",
                          stacklevel=2)
        if target.is_file() and not (hashes and mismatches(target, hashes)):
            return target, mirror
        part = target.with_name(target.name + ".part")
        try:
            folder.mkdir(parents=True, exist_ok=True)
            _fetch_part(mirror.url, part, progress=progress, timeout=timeout)
        except (requests.exceptions.RequestException, DownloadError) as exc:
            kept = part.stat().st_size if part.exists() else 0
            errors.append(f"{mirror.url}: {_first_line(exc)}"
                          + (f" ({kept} bytes kept, run again to resume)" if kept else ""))
            continue
        bad = mismatches(part, hashes) if hashes else []
        if bad:
            part.unlink()
            errors.append(f"{mirror.url}: checksum mismatch for {target.name}, {bad[0]}; the file "
                          "was deleted (--no-verify accepts it)")
            continue
        if check is not None and not mirror.hashes:
            try:
                check(part)
            except ValueError as exc:
                part.unlink()
                errors.append(f"{mirror.url}: {target.name} does not follow its format "
                              f"({_first_line(exc)}); the file was deleted")
                continue
        with atomic_path(target, suffix=target.suffix) as tmp:
            os.replace(part, tmp)
        return target, mirror
    raise DownloadError("\n".join([f"could not download {label}; tried:", *(f"  {e}" for e in errors),
                                   *([hint] if hint else [])]))


# ------------------------------------------------------------------ datasets
def fetch(name: str, *, data_dir: Optional[Path] = None, source: Optional[str] = None,
          verify: bool = True, progress: Optional[ProgressFactory] = None) -> Path:
    """Download (or import) one dataset file into ``data_dir`` and unpack it.

    Args:
        name: a key of :data:`DATASETS` or an alias (``lfw``).
        data_dir: target folder; default :func:`default_data_dir`.
        source: a local file or URL to take the file from instead of the known mirrors.
            It must still match one of the known mirrors' checksums.
        verify: False accepts a file whose checksum differs (with a warning).
        progress: progress-bar factory (see :data:`ProgressFactory`).

    Returns:
        The unpacked folder for archives, else the file.
    """
    dataset = get_dataset(name)
    data_dir = Path(data_dir) if data_dir is not None else default_data_dir()
    check = _check_table if dataset.archive_top is None else None
    if source is not None and "://" not in source:
        target = _import_local(dataset, Path(source), data_dir, verify=verify, check=check)
    elif source is not None:
        got, _ = download_file(dataset.name, (Mirror(source),), data_dir, f"from-url.{dataset.filename}",
                               verify=False, progress=progress, check=check)
        try:
            target = _adopt(dataset, got, data_dir / dataset.filename, verify=verify, what=source)
        except DownloadError:
            got.unlink()
            raise
        os.replace(got, target)
    else:
        target, _ = download_file(dataset.name, dataset.mirrors, data_dir, dataset.filename,
                                  verify=verify, progress=progress, check=check,
                                  hint=f"have the file? dfi data download {name} --from PATH")
    if dataset.archive_top is None:
        return target
    return extract_archive(target, data_dir, dataset.archive_top)


def _known_match(dataset: Dataset, path: Path) -> Optional[Mirror]:
    """The mirror whose checksums ``path`` matches (mirrors without checksums never do)."""
    return next((m for m in dataset.mirrors if m.hashes and not mismatches(path, m.hashes)), None)


def _adopt(dataset: Dataset, path: Path, target: Path, *, verify: bool, what: str) -> Path:
    """Check a file from ``--from`` against the known checksums; returns where it belongs in
    the data folder (``target``, or the name of the mirror it matched)."""
    known = [h for m in dataset.mirrors for h in m.hashes]
    match = _known_match(dataset, path) if known else None
    # a file that some mirror serves unpinned (format-checked instead) need not match
    if known and match is None and all(m.hashes for m in dataset.mirrors):
        if verify:
            raise DownloadError(f"--from {what}: checksum differs from the known {known[0]} for "
                                f"{dataset.filename}; use --no-verify to import it anyway")
        warnings.warn(f"--no-verify: importing {what} whose checksum differs from {known[0]}",
                      stacklevel=3)
    return target.with_name(match.filename) if match and match.filename else target


def _import_local(dataset: Dataset, source: Path, data_dir: Path, *, verify: bool,
                  check: Optional[Callable[[Path], None]]) -> Path:
    """Copy a file the user has into the data folder, after checking it (never touching it)."""
    if not source.is_file():
        raise DownloadError(f"--from {source}: no such file")
    if check is not None:
        try:
            check(source)
        except ValueError as exc:
            raise DownloadError(f"--from {source}: not a {dataset.filename} ({_first_line(exc)})") from None
    target = _adopt(dataset, source, data_dir / dataset.filename, verify=verify, what=str(source))
    if source.resolve() != target.resolve():
        with atomic_path(target, suffix=target.suffix) as tmp:
            shutil.copyfile(source, tmp)
    return target


def _check_table(path: Path) -> None:
    """Parse an attribute file (raises :class:`~data_tools.attributes.FormatError`)."""
    from .attributes import read_attributes

    read_attributes(path)
