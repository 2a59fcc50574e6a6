"""Source and target neighbour sets for Deep Feature Interpolation.

Two anchor rules pick the faces (``../shared/anchors.md``):

* ``chainer`` (chainer-dfi): an attribute is on when its score is ≥ 0.5 and off when it
  is < −0.5; faces are ranked by Euclidean distance over the raw scores.
* ``paper`` (Upchurch et al., official code): scores are binarised keeping the most
  confident two thirds of the positives, ``Female`` = not ``Male`` is added, faces are
  ranked by Hamming distance over the binary vector and the pool is restricted to the
  input's gender.
"""
from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.neighbors import NearestNeighbors

from .attributes import SpecError, attribute_columns, resolve_attribute

logger = logging.getLogger(__name__)

RULES = ("chainer", "paper")
ON_THRESHOLD, OFF_THRESHOLD = 0.5, -0.5


@dataclass(frozen=True)
class Term:
    """One clause of an attribute specification: ``column`` wanted ``present`` or absent."""

    column: str
    present: bool

    def __str__(self) -> str:
        return self.column if self.present else f"~{self.column}"


@dataclass(frozen=True)
class Neighbors:
    """K source faces (edit absent) and K target faces (edit present), nearest first."""

    sources: pd.DataFrame
    targets: pd.DataFrame
    terms: tuple[Term, ...]
    rule: str

    def to_json(self) -> dict:
        def rows(table: pd.DataFrame) -> list[dict]:
            return [{"person": r.person, "imagenum": int(r.imagenum), "path": r.path,
                     "distance": float(r.distance)} for r in table.itertuples()]
        return {"attribute": ",".join(map(str, self.terms)), "rule": self.rule,
                "sources": rows(self.sources), "targets": rows(self.targets)}


def parse_spec(spec: str, columns: list[str]) -> tuple[Term, ...]:
    """Parse ``"~mouth_closed,smiling"`` into terms; names match case/separator-insensitively."""
    terms = []
    for part in spec.split(","):
        part = part.strip()
        negate = part.startswith("~")
        name = part[1:].strip() if negate else part
        if not name:
            raise SpecError(f"attribute specification {spec!r} has an empty term; "
                             "use names separated by commas, '~name' for 'without'")
        terms.append(Term(resolve_attribute(name, columns), not negate))
    return tuple(terms)


def binarize_paper(scores: pd.DataFrame) -> pd.DataFrame:
    """Binary attributes as in the official DFI code, plus ``Female``.

    An attribute is on where its score reaches the lower third of its positive scores
    (the most confident 2/3 of the positives are kept).
    """
    binary = {}
    for col in scores.columns:
        values = scores[col].to_numpy(dtype=np.float64)
        positives = values[values > 0]
        threshold = np.quantile(positives, 1 / 3) if positives.size else np.inf
        binary[col] = values >= threshold
    out = pd.DataFrame(binary, index=scores.index)
    if "Male" in out.columns:
        out["Female"] = ~out["Male"]
    return out


def _term_masks(table: pd.DataFrame, terms: tuple[Term, ...], rule: str,
                binary: pd.DataFrame | None) -> tuple[np.ndarray, np.ndarray]:
    source = np.ones(len(table), dtype=bool)
    target = np.ones(len(table), dtype=bool)
    for term in terms:
        if rule == "chainer":
            score = table[term.column].to_numpy(dtype=np.float64)
            on, off = score >= ON_THRESHOLD, score < OFF_THRESHOLD
        else:
            on = binary[term.column].to_numpy()
            off = ~on
        target &= on if term.present else off
        source &= off if term.present else on
    return source, target


def find_neighbors(table: pd.DataFrame, row: int, spec: str, *, k: int = 100,
                   rule: str = "chainer", exclude_person: bool = False) -> Neighbors:
    """Pick ``k`` source and ``k`` target faces for the face at position ``row``.

    Args:
        table: an index table (``person``, ``imagenum``, ``path`` + attribute scores).
        row: position of the input face in ``table``; it is never its own neighbour.
        spec: attribute specification, e.g. ``"smiling"`` or ``"senior,~youth"``.
        k: neighbours per side (≥ 1). Fewer are returned, with a warning, when the
            pool is smaller.
        rule: ``"chainer"`` or ``"paper"`` (see the module docstring).
        exclude_person: also leave out the input person's other images.
    """
    if rule not in RULES:
        raise ValueError(f"rule {rule!r} is not one of {', '.join(RULES)}")
    if k < 1:
        raise ValueError(f"k={k} must be at least 1")
    columns = attribute_columns(table)
    terms = parse_spec(spec, columns)
    scores = table[columns]
    binary = binarize_paper(scores) if rule == "paper" else None
    source, target = _term_masks(table, terms, rule, binary)
    pool = np.ones(len(table), dtype=bool)
    pool[row] = False
    if exclude_person:
        pool &= (table["person"] != table["person"].iloc[row]).to_numpy()
    if rule == "paper":
        if "Female" in binary.columns:
            pool &= (binary["Female"] == binary["Female"].iloc[row]).to_numpy()
        vectors, metric = binary.to_numpy(dtype=np.float64), "hamming"
    else:
        vectors, metric = scores.to_numpy(dtype=np.float64), "euclidean"

    def nearest(mask: np.ndarray, side: str) -> pd.DataFrame:
        candidates = np.flatnonzero(mask & pool)
        if candidates.size == 0:
            raise ValueError(f"no {side} faces for {spec!r} under rule {rule!r}; "
                             "try the other --rule or a different attribute")
        if candidates.size < k:
            warnings.warn(f"only {candidates.size} {side} faces for {spec!r} (asked for {k})",
                          stacklevel=3)
        n = min(k, candidates.size)
        finder = NearestNeighbors(n_neighbors=n, metric=metric).fit(vectors[candidates])
        distance, order = finder.kneighbors(vectors[row:row + 1])
        picked = table.iloc[candidates[order[0]]][["person", "imagenum", "path"]].copy()
        picked["distance"] = distance[0]
        return picked.reset_index(drop=True)

    return Neighbors(nearest(source, "source"), nearest(target, "target"), terms, rule)


def candidate_pools(table: pd.DataFrame, spec: str, *, rule: str = "chainer"
                    ) -> tuple[np.ndarray, np.ndarray, tuple[Term, ...]]:
    """Boolean masks of all source and target faces for ``spec`` (no ranking).

    Used for inputs outside the index, whose own attribute scores are unknown: the
    caller ranks the pools by image or feature similarity instead.
    """
    if rule not in RULES:
        raise ValueError(f"rule {rule!r} is not one of {', '.join(RULES)}")
    columns = attribute_columns(table)
    terms = parse_spec(spec, columns)
    binary = binarize_paper(table[columns]) if rule == "paper" else None
    source, target = _term_masks(table, terms, rule, binary)
    return source, target, terms
