"""Attribute tables: the real ``lfw_attributes.txt`` and ``list_attr_celeba.txt`` formats.

Both readers return a :class:`pandas.DataFrame` whose attribute columns keep the files'
own names (``"Middle Aged"``, ``"5 o' Clock Shadow"``, ``"Wearing_Hat"``). Users refer to
attributes case- and separator-insensitively through :func:`resolve_attribute`.
"""
from __future__ import annotations

import difflib
import os
import re
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

LFW_ATTRIBUTE_NAMES: tuple[str, ...] = (
    "Male", "Asian", "White", "Black", "Baby", "Child", "Youth", "Middle Aged", "Senior",
    "Black Hair", "Blond Hair", "Brown Hair", "Bald", "No Eyewear", "Eyeglasses",
    "Sunglasses", "Mustache", "Smiling", "Frowning", "Chubby", "Blurry", "Harsh Lighting",
    "Flash", "Soft Lighting", "Outdoor", "Curly Hair", "Wavy Hair", "Straight Hair",
    "Receding Hairline", "Bangs", "Sideburns", "Fully Visible Forehead",
    "Partially Visible Forehead", "Obstructed Forehead", "Bushy Eyebrows",
    "Arched Eyebrows", "Narrow Eyes", "Eyes Open", "Big Nose", "Pointy Nose", "Big Lips",
    "Mouth Closed", "Mouth Slightly Open", "Mouth Wide Open", "Teeth Not Visible",
    "No Beard", "Goatee", "Round Jaw", "Double Chin", "Wearing Hat", "Oval Face",
    "Square Face", "Round Face", "Color Photo", "Posed Photo", "Attractive Man",
    "Attractive Woman", "Indian", "Gray Hair", "Bags Under Eyes", "Heavy Makeup",
    "Rosy Cheeks", "Shiny Skin", "Pale Skin", "5 o' Clock Shadow",
    "Strong Nose-Mouth Lines", "Wearing Lipstick", "Flushed Face", "High Cheekbones",
    "Brown Eyes", "Wearing Earrings", "Wearing Necktie", "Wearing Necklace",
)

#: Columns that every attribute table has before its attribute columns.
ID_COLUMNS: tuple[str, ...] = ("person", "imagenum", "path")


class FormatError(ValueError):
    """A data file does not follow its format; the message names the file and line."""


class SpecError(ValueError):
    """A value the user typed that does not parse (an attribute specification, a face's
    ``Person Name/N``); the command line reports it as a usage error."""


class UnknownNameError(KeyError):
    """A name the data does not have (an attribute, a person); the message suggests the
    closest one. The command line reports it as a usage error."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


def canonical_name(name: str) -> str:
    """Key used to compare attribute names: lower case, letters and digits only.

    ``"Middle Aged"``, ``"middle_aged"`` and ``"MIDDLE-AGED"`` share one key, as do
    LFW's ``"5 o' Clock Shadow"`` and CelebA's ``"5_o_Clock_Shadow"``.
    """
    return re.sub(r"[^0-9a-z]", "", name.lower())


def resolve_attribute(name: str, available: Sequence[str]) -> str:
    """Return the column of ``available`` that ``name`` means.

    Raises:
        UnknownNameError: no column matches; the message suggests the closest one.
    """
    by_key = {canonical_name(col): col for col in available}
    key = canonical_name(name)
    if key in by_key:
        return by_key[key]
    if not by_key:
        raise UnknownNameError(f"unknown attribute {name!r}: the index has no attribute columns "
                               "(build it with 'dfi data index --attributes FILE')")
    close = difflib.get_close_matches(key, list(by_key), n=1, cutoff=0.5)
    hint = f"; did you mean {by_key[close[0]]!r}?" if close else f"; known: {', '.join(available)}"
    raise UnknownNameError(f"unknown attribute {name!r}{hint}")


def attribute_columns(table: pd.DataFrame) -> list[str]:
    """The attribute columns of an index or attribute table, in file order."""
    return [col for col in table.columns if col not in ID_COLUMNS]


def lfw_image_path(person: str, imagenum: int) -> str:
    """Relative LFW path of one image: ``Person_Name/Person_Name_0001.jpg``."""
    folder = person.replace(" ", "_")
    return f"{folder}/{folder}_{int(imagenum):04d}.jpg"


def _split_lines(path: Path) -> list[str]:
    try:
        return path.read_text(encoding="utf-8", errors="strict").splitlines()
    except UnicodeDecodeError as exc:
        raise FormatError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None


def read_lfw_attributes(path: str | os.PathLike) -> pd.DataFrame:
    """Read the PubFig project's ``lfw_attributes.txt``.

    Format: line 1 is a ``#`` comment; line 2 is ``#\\tperson\\timagenum\\t<names>``;
    each later line is ``Person Name\\t<imagenum>\\t<one float per name>``.

    Returns:
        DataFrame with ``person`` (str, spaces), ``imagenum`` (int), ``path`` (relative
        LFW image path) and one float64 column per attribute, in file order.

    Raises:
        FormatError: naming the file and the line that breaks the format.
    """
    path = Path(path)
    lines = _split_lines(path)
    if len(lines) < 2 or not lines[0].startswith("#"):
        raise FormatError(f"{path}:1: expected a '#' comment line (lfw_attributes.txt format)")
    header = lines[1].rstrip("\r\n").split("\t")
    if header[:3] != ["#", "person", "imagenum"] or len(header) < 4:
        raise FormatError(
            f"{path}:2: expected header '#<TAB>person<TAB>imagenum<TAB><names>', "
            f"found {lines[1][:60]!r}")
    names = [name.strip() for name in header[3:]]
    persons: list[str] = []
    numbers: list[int] = []
    rows: list[list[float]] = []
    for lineno, line in enumerate(lines[2:], start=3):
        if not line.strip():
            continue
        fields = line.rstrip("\r\n").split("\t")
        if len(fields) != len(names) + 2:
            raise FormatError(
                f"{path}:{lineno}: expected {len(names) + 2} tab-separated fields, "
                f"found {len(fields)}")
        try:
            numbers.append(int(fields[1]))
            rows.append([float(value) for value in fields[2:]])
        except ValueError as exc:
            raise FormatError(f"{path}:{lineno}: {exc}") from None
        persons.append(fields[0].strip())
    if not persons:
        raise FormatError(f"{path}: no data rows after the two header lines")
    table = pd.DataFrame(np.asarray(rows, dtype=np.float64), columns=names)
    table.insert(0, "person", persons)
    table.insert(1, "imagenum", np.asarray(numbers, dtype=np.int64))
    table.insert(2, "path", [lfw_image_path(p, n) for p, n in zip(persons, numbers)])
    return table


def write_lfw_attributes(path: str | os.PathLike, table: pd.DataFrame, *, comment: str) -> None:
    """Write ``table`` in the exact ``lfw_attributes.txt`` format (used by ``synth``)."""
    from .fsutil import write_text_atomic

    names = attribute_columns(table)
    out = [f"# {comment}", "\t".join(["#", "person", "imagenum", *names])]
    values = table[names].to_numpy(dtype=np.float64)
    for person, number, row in zip(table["person"], table["imagenum"], values):
        out.append("\t".join([person, str(int(number)), *(f"{v:.6f}" for v in row)]))
    write_text_atomic(path, "\n".join(out) + "\n")


def read_celeba_attributes(path: str | os.PathLike) -> pd.DataFrame:
    """Read CelebA's ``list_attr_celeba.txt`` (count line, names line, ±1 rows).

    Returns:
        DataFrame with ``person`` (empty: CelebA identities are a separate file),
        ``imagenum`` (the file number), ``path`` (``000001.jpg``) and one float64
        column (±1) per attribute.
    """
    path = Path(path)
    lines = _split_lines(path)
    if len(lines) < 2:
        raise FormatError(f"{path}: expected a count line and a names line")
    try:
        count = int(lines[0].strip())
    except ValueError:
        raise FormatError(f"{path}:1: expected the number of images, found {lines[0][:40]!r}") from None
    names = lines[1].split()
    files: list[str] = []
    rows: list[list[float]] = []
    for lineno, line in enumerate(lines[2:], start=3):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != len(names) + 1:
            raise FormatError(
                f"{path}:{lineno}: expected a file name and {len(names)} values, "
                f"found {len(fields)} fields")
        try:
            values = [float(v) for v in fields[1:]]
        except ValueError as exc:
            raise FormatError(f"{path}:{lineno}: {exc}") from None
        if any(v not in (-1.0, 1.0) for v in values):
            raise FormatError(f"{path}:{lineno}: CelebA attribute values must be -1 or 1")
        files.append(fields[0])
        rows.append(values)
    if len(files) != count:
        raise FormatError(f"{path}: line 1 announces {count} images, found {len(files)} rows")
    table = pd.DataFrame(np.asarray(rows, dtype=np.float64).reshape(len(rows), len(names)),
                         columns=names)
    table.insert(0, "person", "")
    table.insert(1, "imagenum", [int(Path(f).stem) if Path(f).stem.isdigit() else i + 1
                                 for i, f in enumerate(files)])
    table.insert(2, "path", files)
    return table


def sniff_attribute_format(path: str | os.PathLike) -> str:
    """``"lfw"`` or ``"celeba"``, from the first two lines of an attribute file."""
    path = Path(path)
    with open(path, encoding="utf-8", errors="replace") as handle:
        first = handle.readline()
    if first.startswith("#"):
        return "lfw"
    if first.strip().isdigit():
        return "celeba"
    raise FormatError(
        f"{path}:1: neither lfw_attributes.txt ('#' comment) nor list_attr_celeba.txt (a count)")


def read_attributes(path: str | os.PathLike) -> pd.DataFrame:
    """Read either attribute format, chosen by :func:`sniff_attribute_format`."""
    kind = sniff_attribute_format(path)
    return read_lfw_attributes(path) if kind == "lfw" else read_celeba_attributes(path)


def parse_person_image(spec: str) -> tuple[str, int]:
    """Split ``"Person Name/N"`` (or ``Person_Name/N``) into ``("Person Name", N)``."""
    person, sep, number = spec.rpartition("/")
    if not sep or not person or not number.strip().isdigit():
        raise SpecError(f"input {spec!r} is not of the form 'Person Name/N' (N an image number)")
    return person.replace("_", " ").strip(), int(number)
