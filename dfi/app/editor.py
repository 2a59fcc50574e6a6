"""What the page does, on dfi's Python API, with the caches of a server's life: faces by
their file's hash, attribute vectors by (face, attribute), sweeps by (face, attribute) — so
moving α never recomputes a face's features or its vector.

With a decoder every α is the fast edit (one decode) and ``refine`` runs the warm-started
L-BFGS; without one the first request computes the sweep over :data:`ALPHAS` once, then
every α is the computed row nearest to it.
"""
from __future__ import annotations

import hashlib
import json
import shutil
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np

from ..core.errors import SettingError

#: the α rows of the sweep the page computes without a decoder (the CLI's default sweep)
ALPHAS = (0.1, 0.2, 0.3, 0.4, 0.5)
#: faces, vectors and sweeps kept (oldest dropped first)
KEPT = 32


def _lru(cache: OrderedDict, key, make: Callable):
    if key in cache:
        cache.move_to_end(key)
        return cache[key]
    value = cache[key] = make()
    while len(cache) > KEPT:
        cache.popitem(last=False)
    return value


@dataclass
class EditResult:
    image: np.ndarray   # CHW RGB [0, 255], the photo's full size
    alpha: float        # the α shown (without a decoder: the nearest computed row)
    how: str            # "fast", "sweep" or "refined"
    record: dict


class Editor:
    """The page's work. ``net`` (VGG-19 on its device), ``config`` (EditConfig), ``index``
    (the dataset index, or None: then no face tab), ``decoder`` (a FastDecoder, or None),
    ``stylizer`` (a :class:`~dfi.style.feedforward.Stylizer`, or None), ``adain``
    ((encoder, FastDecoder), or None); ``wct``: {level: FastDecoder} of ``net`` (or none);
    ``features``: the neighbours' feature store or cache;
    ``uploads``: the private folder uploads are copied to."""

    def __init__(self, net, config, index, *, uploads: Path, decoder=None, stylizer=None, adain=None,
                 features=None, wct=None):
        self.net, self.config, self.index, self.decoder, self.features = net, config, index, decoder, features
        self.wct = dict(wct or {})
        self.stylizer, self.adain, self.uploads = stylizer, adain, Path(uploads)
        self.faces: OrderedDict = OrderedDict()
        self.vectors: OrderedDict = OrderedDict()
        self.sweeps: OrderedDict = OrderedDict()

    # ------------------------------------------------------------------ choices
    def attributes(self) -> list[str]:
        from data_tools.attributes import attribute_columns

        return [] if self.index is None else list(attribute_columns(self.index.table))

    def face_names(self) -> list[str]:
        if self.index is None:
            return []
        table = self.index.table
        return [f"{p}/{int(n)}" for p, n in zip(table["person"], table["imagenum"])]

    # ------------------------------------------------------------------ faces
    def face(self, photo: Optional[str], name: Optional[str], which: int = 1):
        """(key, Face) of an uploaded photo file (aligned: the ``which``-th largest face) or
        of an indexed face by name ("Person/N")."""
        from data_tools.attributes import parse_person_image

        from ..edit.pipeline import load_face

        if self.index is None:
            raise SettingError("the page was started without --index: no faces to learn attributes from")
        if photo:
            data = Path(photo).read_bytes()
            key = ("photo", hashlib.sha1(data).hexdigest(), int(which))
            path = self.uploads / key[1] / Path(photo).name  # (messages name the user's file)
            if not path.exists():
                path.parent.mkdir(exist_ok=True)
                shutil.copyfile(photo, path)
            return key, _lru(self.faces, key, lambda: load_face(path, self.config, crop="align", face=int(which)))
        if not name:
            raise SettingError("upload a photo or pick an indexed face")
        person, number = parse_person_image(name)
        row = self.index.locate(person, number)
        key = ("index", row)
        return key, _lru(self.faces, key, lambda: load_face(self.index.image_path(row), self.config, row=row))

    def landmarks(self, photo: Optional[str], name: Optional[str], which: int = 1) -> np.ndarray:
        """The photo with the chosen face's landmarks drawn (an indexed face as it is)."""
        from ..face.align import draw_landmarks

        _, face = self.face(photo, name, which)
        return face.full if face.alignment is None else draw_landmarks(face.full, face.alignment)

    def vector(self, key, face, attribute: str):
        from ..edit.pipeline import choose_neighbors, compute_vector

        if not attribute:
            raise SettingError("choose an attribute")

        def make():
            sources, targets = choose_neighbors(self.index, face, attribute, self.config)
            return compute_vector(self.net, self.index, sources, targets, self.config, cache=self.features)
        return _lru(self.vectors, (key, attribute), make)

    # ------------------------------------------------------------------ edits
    def _run(self, face, vector, alphas: Sequence[float], progress: Optional[Callable[[float], None]] = None,
             **kwargs):
        from ..core.backend import to_cpu
        from ..edit.pipeline import compose, sweep

        cap, last = max(1, self.config.reconstruct.iterations), None
        for last in sweep(self.net, face, [vector], list(alphas), self.config, **kwargs):
            if progress is not None:
                progress(min(1.0, last.iteration / cap))
        images = to_cpu(last.images)
        results = [compose(face, images[i + 1], images[0], color_match=self.config.color_match)
                   for i in range(len(alphas))]
        record = {"alphas": list(alphas), "losses": [float(v) for v in np.asarray(last.loss_host)[1:]],
                  "iterations_run": int(last.iteration), "evaluations": int(last.evaluations),
                  "init": "decoder" if kwargs.get("decoder") is not None else "input",
                  "fast": bool(kwargs.get("fast"))}
        return results, record

    def edit(self, photo, name, attribute: str, alpha: float, which: int = 1) -> EditResult:
        """The face edited by α: the fast edit with a decoder, else the sweep's nearest row."""
        from ..edit.settings import check_alphas

        alpha = check_alphas([float(alpha)])[0]
        key, face = self.face(photo, name, which)
        vector = self.vector(key, face, attribute)
        if self.decoder is not None:
            (image,), record = self._run(face, vector, [alpha], decoder=self.decoder, fast=True)
            return EditResult(image, alpha, "fast", {**record, "attribute": attribute, "face": str(key)})
        results, record = self.sweep(photo, name, attribute, which)
        nearest = int(np.argmin([abs(a - alpha) for a in ALPHAS]))
        return EditResult(results[nearest], ALPHAS[nearest], "sweep", record)

    def sweep(self, photo, name, attribute: str, which: int = 1):
        """The face at every α of :data:`ALPHAS` (computed once per face and attribute),
        and its record."""
        key, face = self.face(photo, name, which)
        vector = self.vector(key, face, attribute)

        def make():
            results, record = self._run(face, vector, ALPHAS, decoder=self.decoder)
            return results, {**record, "attribute": attribute, "face": str(key)}
        return _lru(self.sweeps, (key, attribute), make)

    def refine(self, photo, name, attribute: str, alpha: float, which: int = 1, progress=None) -> EditResult:
        """α optimised by L-BFGS, from the decoded change when there is a decoder;
        ``progress(fraction)`` after every iteration."""
        from ..edit.settings import check_alphas

        alpha = check_alphas([float(alpha)])[0]
        key, face = self.face(photo, name, which)
        (image,), record = self._run(face, self.vector(key, face, attribute), [alpha], progress=progress,
                                     decoder=self.decoder)
        return EditResult(image, alpha, "refined", {**record, "attribute": attribute, "face": str(key)})

    def downloads(self, photo, name, attribute: str, which: int, folder: Path) -> list[Path]:
        """The sweep's grid, GIF and JSON record, written into ``folder``."""
        from ..core.image import grid, resize, write_gif, write_image

        key, face = self.face(photo, name, which)
        results, record = self.sweep(photo, name, attribute, which)
        folder.mkdir(parents=True, exist_ok=True)
        stem = f"dfi_{hashlib.sha1(repr((key, attribute)).encode()).hexdigest()[:8]}"
        small = [resize(r, (256, round(256 * r.shape[2] / r.shape[1]))) for r in [face.full, *results]]
        paths = [folder / f"{stem}_sweep.png", folder / f"{stem}.gif", folder / f"{stem}.json"]
        write_image(paths[0], grid(small))
        write_gif(paths[1], small)
        paths[2].write_text(json.dumps(record, indent=1))
        return paths

    # ------------------------------------------------------------------ style
    def style_methods(self) -> list[str]:
        methods = (["adain"] if self.adain is not None else []) + (["wct"] if self.wct else []) + ["gatys"]
        if self.stylizer is not None:
            methods += [f"model: {k} {name}" for k, name in enumerate(self.stylizer.styles)]
        return methods

    def style(self, content: Optional[str], styles: Sequence[str], method: str, alpha: float = 1.0,
              preserve_color: str = "none", weights: Optional[Sequence[float]] = None,
              progress: Optional[Callable[[float], None]] = None) -> np.ndarray:
        """``content`` in the style of ``styles`` (AdaIN, WCT, Gatys — with ``progress`` per
        iteration — weights normalised), or in the model's style k."""
        from ..core.image import read_image
        from ..style.gatys import fit_long_side

        if not content:
            raise SettingError("upload a content image")
        picture = fit_long_side(read_image(content), self.config.size)
        if method.startswith("model: ") and self.stylizer is not None:
            number = int(method.split()[1])
            return self.stylizer.stylize(picture, style=number,
                                         preserve_color=preserve_color if preserve_color in ("luminance", "yuv")
                                         else "none")
        if method not in self.style_methods():
            raise SettingError(f"method {method!r} is not one of {', '.join(self.style_methods())}")
        if not styles:
            raise SettingError(f"{method} needs at least one style image")
        images = [fit_long_side(read_image(s), max(picture.shape[1:])) for s in styles]
        if method == "adain":
            from ..style.adain import adain_transfer, check_transfer_memory

            encoder, decoder = self.adain
            check_transfer_memory(encoder, decoder.net, picture.shape[1:])
            return adain_transfer(encoder, decoder, picture, images, alpha=float(alpha), weights=weights,
                                  preserve_color=preserve_color)
        if method == "wct":
            from ..style.wct import wct_transfer

            if preserve_color != "none":
                raise SettingError("colour preservation is not built for WCT yet")
            return wct_transfer(self.net, self.wct, picture, images, alpha=float(alpha), weights=weights)
        return self._gatys(picture, images, preserve_color, weights, progress)

    def _gatys(self, picture, images, preserve_color, weights, progress):
        from ..core.backend import to_cpu
        from ..style.gatys import StyleConfig, finish, stylize

        config = StyleConfig(scales=(max(picture.shape[1:]),), preserve_color=preserve_color,
                             style_blend=None if weights is None else tuple(weights),
                             reconstruct=self.config.reconstruct)
        cap, last = max(1, config.reconstruct.iterations), None
        for last in stylize(self.net, picture, images, config):
            if progress is not None:
                progress(min(1.0, last.progress.iteration / cap))
        return finish(to_cpu(last.progress.images[0]), picture, config)
