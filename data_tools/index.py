"""Dataset index: one table of person, image number, image path and attribute scores."""
from __future__ import annotations

import datetime as _dt
import difflib
import hashlib
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import pandas as pd

from .attributes import (FormatError, SpecError, UnknownNameError, attribute_columns, read_attributes,
                         sniff_attribute_format)
from .fsutil import atomic_path, write_text_atomic

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


@dataclass
class Index:
    """An attribute table whose ``path`` column is relative to ``images_root``."""

    table: pd.DataFrame
    images_root: Path
    meta: dict = field(default_factory=dict)

    def image_path(self, row: int) -> Path:
        return self.images_root / self.table["path"].iloc[row]

    def locate(self, person: str, imagenum: int) -> int:
        """Row position of ``person``'s image ``imagenum``.

        Raises:
            UnknownNameError: not in the index; says which images the person has, or
                suggests the closest name.
        """
        names = self.table["person"].str.replace("_", " ")
        person = person.replace("_", " ")
        hits = ((names == person) & (self.table["imagenum"] == imagenum))
        positions = hits.to_numpy().nonzero()[0]
        if len(positions) == 0:
            have = sorted(int(n) for n in self.table.loc[names == person, "imagenum"])
            if have:
                hint = f"; {person!r} has images {have}"
            else:
                close = difflib.get_close_matches(person, names.unique().tolist(), n=1, cutoff=0.6)
                hint = f"; no person {person!r} in the index" + (f"; did you mean {close[0]!r}?" if close else "")
            raise UnknownNameError(f"input '{person}/{imagenum}' is not in the index{hint}")
        return int(positions[0])


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def build_index(images_dir: str | os.PathLike, attributes_file: str | os.PathLike, *,
                on_image: Optional[Callable[[int], object]] = None) -> Index:
    """Join an attribute file with the images on disk.

    Rows whose image is missing are dropped; images without a row are counted. Both are
    reported in ``meta`` (and logged), never fatal. ``on_image(1)`` is called for every
    image found (a progress bar's ``update``).
    """
    images_dir, attributes_file = Path(images_dir), Path(attributes_file)
    if not images_dir.is_dir():
        raise FileNotFoundError(f"--images {images_dir}: not a folder")
    if not attributes_file.is_file():
        raise FileNotFoundError(f"--attributes {attributes_file}: no such file")
    table = read_attributes(attributes_file)
    on_disk = set()
    for path in images_dir.rglob("*"):
        if path.suffix.lower() in IMAGE_SUFFIXES:
            on_disk.add(path.relative_to(images_dir).as_posix())
            if on_image is not None:
                on_image(1)
    present = table["path"].isin(on_disk)
    missing = table.loc[~present, "path"].tolist()
    unlisted = sorted(on_disk - set(table["path"]))
    if missing:
        logger.warning("%d attribute rows have no image (first: %s)", len(missing), missing[0])
    if unlisted:
        logger.warning("%d images have no attribute row (first: %s)", len(unlisted), unlisted[0])
    table = table.loc[present].reset_index(drop=True)
    meta = {
        "format": sniff_attribute_format(attributes_file),
        "images_root": str(images_dir.resolve()),
        "attributes_file": str(attributes_file.resolve()),
        "attributes_sha256": _sha256(attributes_file),
        "rows": int(len(table)),
        "people": int(table["person"].nunique()),
        "rows_without_image": len(missing),
        "images_without_row": len(unlisted),
        "examples_without_image": missing[:10],
        "examples_without_row": unlisted[:10],
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    return Index(table, images_dir.resolve(), meta)


def meta_path(index_path: str | os.PathLike) -> Path:
    """Where the metadata record of an index file lives (``INDEX.meta.json``)."""
    index_path = Path(index_path)
    return index_path.with_name(index_path.name + ".meta.json")


def save_index(index: Index, path: str | os.PathLike) -> None:
    """Write the table as CSV (gzip when ``path`` ends in .gz) and its metadata JSON."""
    path = Path(path)
    with atomic_path(path) as tmp:
        index.table.to_csv(tmp, index=False, compression="gzip" if path.suffix == ".gz" else None)
    write_text_atomic(meta_path(path), json.dumps(index.meta, indent=2) + "\n")


def check_index_path(path: str | os.PathLike) -> Path:
    """``path`` if it names an index file: a folder is a usage error, a missing file not found."""
    path = Path(path)
    if path.is_dir():
        raise SpecError(f"--index {path}: a folder, not an index file (build one with 'dfi data index')")
    if not path.is_file():
        raise FileNotFoundError(f"--index {path}: no such file (build one with 'dfi data index')")
    return path


def load_index(path: str | os.PathLike) -> Index:
    """Read an index written by :func:`save_index`."""
    path = check_index_path(path)
    meta_file = meta_path(path)
    if not meta_file.is_file():
        raise FileNotFoundError(f"--index {path}: its metadata {meta_file.name} is missing")
    rebuild = "rebuild it with 'dfi data index'"
    try:
        meta = json.loads(meta_file.read_text(encoding="utf-8"))
        images_root = Path(meta["images_root"])
        table = pd.read_csv(path, keep_default_na=False, dtype={"person": str, "path": str})
        missing = [column for column in ("person", "imagenum", "path") if column not in table.columns]
        if missing:
            raise ValueError(f"no {missing[0]!r} column")
        table["imagenum"] = pd.to_numeric(table["imagenum"], errors="raise").astype(int)
        if not attribute_columns(table):
            raise ValueError("no attribute columns")
        for column in attribute_columns(table):
            table[column] = pd.to_numeric(table[column], errors="raise").astype(float)
            if table[column].isna().any():
                raise ValueError(f"an empty {column} score on line {int(table[column].isna().argmax()) + 2}")
    except (ValueError, KeyError, TypeError, UnicodeDecodeError, pd.errors.ParserError) as exc:
        why = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise FormatError(f"--index {path}: not a readable dfi index ({why}); {rebuild}") from None
    return Index(table, images_root, meta)
