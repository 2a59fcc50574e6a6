"""The manifest: a CSV with ``input,output`` and optional per-row override columns,
checked whole before any work starts."""
from __future__ import annotations

import csv
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from ..core.errors import SettingError

REQUIRED = ("input", "output")


class ManifestError(SettingError):
    """A manifest the batch cannot run (exit 2): nothing has been done."""


@dataclass(frozen=True)
class Row:
    """One manifest row: ``line`` is its line in the file (the header is line 1)."""

    line: int
    input: str
    output: Path
    overrides: dict = field(default_factory=dict)

    @property
    def name(self) -> str:
        return f"line {self.line} ({self.input})"


def _indexed_face(text: str) -> bool:
    from data_tools.attributes import parse_person_image

    try:
        parse_person_image(text)
    except ValueError:
        return False
    return True


def path_key(path) -> str:
    """A path as compared for sameness: absolute, case-folded where the system folds case."""
    return os.path.normcase(os.path.abspath(path))


def read_manifest(path: str | os.PathLike, columns: Iterable[str]) -> list[Row]:
    """Rows of ``path``; relative paths are taken from the manifest's folder.

    Args:
        columns: the override columns allowed besides ``input`` and ``output``.

    Raises:
        ManifestError: a missing column, an unknown column, an empty cell in ``input`` or
            ``output``, or two rows with the same output.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"manifest {path}: no such file")
    allowed = set(columns)
    base = path.parent.absolute()
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        header = [name.strip().replace("-", "_") for name in (reader.fieldnames or [])]  # tv-weight = tv_weight
        missing = [name for name in REQUIRED if name not in header]
        if missing:
            raise ManifestError(f"manifest {path}: no {' or '.join(repr(m) for m in missing)} column "
                                f"(the header must name input,output[,{','.join(sorted(allowed))}])")
        unknown = [name for name in header if name not in allowed and name not in REQUIRED]
        if unknown:
            raise ManifestError(f"manifest {path}: unknown column {unknown[0]!r}; allowed: "
                                f"input, output, {', '.join(sorted(allowed))}")
        reader.fieldnames = header
        rows = []
        for number, record in enumerate(reader, start=2):
            if None in record:
                raise ManifestError(f"manifest {path}:{number}: more cells than columns")
            cells = {k: (v or "").strip() for k, v in record.items()}
            if not any(cells.values()):
                continue  # a blank line
            for name in REQUIRED:
                if not cells[name]:
                    raise ManifestError(f"manifest {path}:{number}: empty {name!r}")
            source = cells["input"]
            if (base / source).exists() or not _indexed_face(source):
                source = str(base / source)  # a file; "Person Name/N" (an indexed face) stays as it is
            rows.append(Row(number, source, base / cells["output"],
                            {k: v for k, v in cells.items() if k not in REQUIRED and v}))
    if not rows:
        raise ManifestError(f"manifest {path}: no rows")
    outputs: dict[str, Row] = {}
    for row in rows:
        other = outputs.setdefault(path_key(row.output), row)
        if other is not row:
            raise ManifestError(f"manifest {path}:{row.line}: output {row.output} is also the output of "
                                f"line {other.line}")
    return rows  # (outputs against inputs: the command checks them, knowing which options are paths)
