"""Measure an edit: a pixel-space attribute probe trained on the indexed faces.

The probe is a logistic regression (scikit-learn) on small greyscale thumbnails of the
working crops, fitted on faces with the attribute on vs off (the chainer rule). Its
probability on an edited image says how much the attribute is now present, independent
of the network that made the edit.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from data_tools.index import Index
from data_tools.neighbors import candidate_pools

from ..core.image import crop_and_resize, read_image, resize

THUMB = (32, 32)


def _thumb(image: np.ndarray) -> np.ndarray:
    return resize(image.mean(axis=0, keepdims=True), THUMB).reshape(-1)


@dataclass
class AttributeProbe:
    attribute: str
    model: object
    accuracy: float  # on the training faces

    def probability(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """P(attribute) for working-size CHW RGB images."""
        return self.model.predict_proba(np.stack([_thumb(im) for im in images]))[:, 1]


def fit_probe(index: Index, attribute: str, *, crop, size: int, exclude: Sequence[str] = ()) -> AttributeProbe:
    """Fit the probe on every indexed face with the attribute clearly on or off."""
    source, target, _ = candidate_pools(index.table, attribute)
    paths = index.table["path"].to_numpy()
    keep = ~np.isin(paths, list(exclude))
    rows = np.flatnonzero((source | target) & keep)
    features = np.stack([_thumb(crop_and_resize(read_image(index.images_root / paths[r]), crop, (size, size)))
                         for r in rows])
    labels = target[rows].astype(int)
    model = make_pipeline(StandardScaler(), LogisticRegression(C=0.05, max_iter=2000))
    model.fit(features, labels)
    return AttributeProbe(attribute, model, float(model.score(features, labels)))
