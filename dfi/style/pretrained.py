"""The published stylizers as dfi model files: fetch (or take the user's file), convert,
name. The formats and the weight mapping are :mod:`dfi.nets.pretrained`'s; the model file
is :func:`dfi.style.feedforward.save_model`'s, with the source, the style names and the
licence in its record."""
from __future__ import annotations

import os
import shutil
import tempfile
import warnings
import zipfile
from pathlib import Path
from typing import Optional

from data_tools.download import Mirror, default_data_dir, download_file

from ..nets.pretrained import (PRETRAINED, StylizerFormatError, from_fast_neural_style, from_magenta, sniff)
from .feedforward import save_model

#: fast-neural-style's four models, each a file of its own
FAST_NEURAL_STYLES = ("candy", "mosaic", "rain_princess", "udnie")
#: the names ``--model`` takes for fetched models
MODEL_NAMES = ("magenta-monet", "magenta-varied", *FAST_NEURAL_STYLES)
LICENCES = {"magenta": "Apache-2.0", "fast-neural-style": "BSD-3-Clause"}


def models_dir(data_dir: Optional[Path] = None) -> Path:
    return (Path(data_dir) if data_dir else default_data_dir()) / "stylizers"


def model_path(spec: str | os.PathLike, data_dir: Optional[Path] = None) -> Path:
    """``--model``'s file: a path, or a fetched model's name (:data:`MODEL_NAMES`)."""
    if str(spec) in MODEL_NAMES and not Path(spec).exists():
        path = models_dir(data_dir) / f"{spec}.npz"
        if not path.is_file():
            fetched = "fast-neural-style" if spec in FAST_NEURAL_STYLES else spec
            raise FileNotFoundError(f"--model {spec}: not fetched yet; run 'dfi weights fetch {fetched}'")
        return path
    return Path(spec)


def convert_stylizer(path: str | os.PathLike, out: str | os.PathLike, *, source: Optional[str] = None,
                     name: Optional[str] = None) -> tuple[str, list[str]]:
    """Convert a published stylizer's file to a dfi model at ``out``; returns its kind and
    the repairs made (see :func:`dfi.nets.pretrained.from_magenta`).

    Raises:
        StylizerFormatError: not a Magenta checkpoint or a fast-neural-style state dict.
    """
    path = Path(path)
    found = sniff(path)
    if found is None:
        raise StylizerFormatError(f"{path}: not a Magenta checkpoint or a pytorch/examples fast-neural-style model")
    kind, data = found
    if kind == "magenta":
        net, repaired = from_magenta(data, str(path))
        styles = [f"style {k}" for k in range(net.n_styles)]
    else:
        net, repaired = from_fast_neural_style(data, str(path)), []
        styles = [name or path.stem]
    record = {"converted_from": kind, "source": source or str(path), "licence": LICENCES[kind],
              **({"repaired": repaired} if repaired else {})}
    save_model(out, net, styles=styles, settings={}, extra=record)
    return kind, repaired


def _structure_check(name: str):
    """The check a downloaded file must pass (no checksums are published for these)."""
    def check(path: Path) -> None:
        if name == "fast-neural-style":
            if not zipfile.is_zipfile(path):
                raise StylizerFormatError(f"{path}: not a zip (pytorch/examples' saved_models.zip)")
            with zipfile.ZipFile(path) as archive:
                members = {Path(m).stem for m in archive.namelist() if m.endswith(".pth")}
            if not set(FAST_NEURAL_STYLES) <= members:
                raise StylizerFormatError(f"{path}: the zip lacks {', '.join(sorted(set(FAST_NEURAL_STYLES) - members))}.pth")
        else:
            found = sniff(path)
            if found is None or found[0] != "magenta":
                raise StylizerFormatError(f"{path}: not a Magenta pastiche generator checkpoint")
    return check


def fetch_stylizer(name: str, *, data_dir: Optional[Path] = None, from_path: Optional[Path] = None,
                   progress=None) -> list[Path]:
    """Download ``name`` (:data:`dfi.nets.pretrained.PRETRAINED`; or take ``from_path``, the
    user's copy), verify it by its structure, convert it; returns the model files."""
    if name not in PRETRAINED:
        raise ValueError(f"unknown stylizer {name!r}; known: {', '.join(PRETRAINED)}")
    source, folder = PRETRAINED[name], models_dir(data_dir)
    if from_path is not None:
        if not Path(from_path).is_file():
            raise FileNotFoundError(f"--from {from_path}: no such file")
        _structure_check(name)(Path(from_path))
        raw, origin = Path(from_path), str(from_path)
    else:
        raw, mirror = download_file(name, source.mirrors, folder, source.filename, progress=progress,
                                    check=_structure_check(name),
                                    hint=f"have the file? dfi weights fetch {name} --from FILE")
        origin = mirror.url
    if name != "fast-neural-style":
        out = folder / f"{name}.npz"
        _, repaired = convert_stylizer(raw, out, source=origin)
        for note in repaired:
            warnings.warn(f"{name}: repaired {note}", stacklevel=2)
        return [out]
    outs = []
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder) as scratch, zipfile.ZipFile(raw) as archive:
        for member in archive.namelist():
            style = Path(member).stem
            if member.endswith(".pth") and style in FAST_NEURAL_STYLES:
                extracted = Path(scratch) / f"{style}.pth"
                with archive.open(member) as src, open(extracted, "wb") as dst:
                    shutil.copyfileobj(src, dst)
                out = folder / f"{style}.npz"
                convert_stylizer(extracted, out, source=f"{origin}:{member}", name=style)
                outs.append(out)
    return sorted(outs)


# ---------------------------------------------------------------- pytorch-AdaIN
ADAIN_RELEASE = "https://github.com/naoto0804/pytorch-AdaIN/releases/download/v0.0.0/"
#: the release assets and the SHA-256 a third-party script reports for them (unverified:
#: what arrives is checked by its structure, a different hash is only said)
ADAIN_FILES = {"encoder": ("vgg_normalised.pth", "804ca2835ecf7539f0cd2a7ac3c18ce81e6f8468969ae7117ac0c148d286bb4a"),
               "decoder": ("decoder.pth", "379ca41d59f3a37eed3599bbbc2560c19da5c458870a5ffd3a9dd41aa88f9472")}


def adain_paths(data_dir: Optional[Path] = None) -> dict[str, Path]:
    """Where the fetched AdaIN encoder and decoder are kept."""
    return {part: models_dir(data_dir) / f"adain-{part}.npz" for part in ADAIN_FILES}


def convert_adain(path: str | os.PathLike, out: str | os.PathLike, *, source: Optional[str] = None) -> str:
    """``vgg_normalised.pth`` → an encoder file, ``decoder.pth`` → a decoder file; returns
    which it was.

    Raises:
        StylizerFormatError: neither (what it looks like is named).
    """
    from ..nets.decoder import save_decoder
    from ..nets.encoder import ADAIN_IDENTITY, save_encoder
    from ..nets.pretrained import adain_decoder, adain_encoder

    path = Path(path)
    found = sniff(path)
    kind = None if found is None else found[0]
    if kind == "adain-encoder":
        save_encoder(out, adain_encoder(found[1], str(path)), source=source or str(path))
    elif kind == "adain-decoder":
        save_decoder(out, adain_decoder(found[1], str(path)), vgg_identity=ADAIN_IDENTITY,
                     convention="RGB [0, 255]", settings={"converted_from": "pytorch-AdaIN decoder.pth",
                                                          "source": source or str(path), "licence": "MIT"})
    else:
        looks = {None: "not a torch state dict of a network dfi knows", "magenta": "a Magenta checkpoint",
                 "fast-neural-style": "a fast-neural-style stylizer"}[kind]
        raise StylizerFormatError(f"{path}: not pytorch-AdaIN's vgg_normalised.pth or decoder.pth ({looks})")
    return kind


def fetch_adain(*, data_dir: Optional[Path] = None, progress=None) -> list[Path]:
    """Download pytorch-AdaIN's two release assets, check them by their structure, convert."""
    import hashlib

    outs, folder = [], models_dir(data_dir)
    for part, (filename, sha256) in ADAIN_FILES.items():
        want = f"adain-{part}"

        def check(path: Path, want=want) -> None:
            found = sniff(path)
            if found is None or found[0] != want:
                raise StylizerFormatError(f"{path}: not pytorch-AdaIN's {filename}")
        raw, mirror = download_file(f"adain {part}", (Mirror(ADAIN_RELEASE + filename),), folder, filename,
                                    progress=progress, check=check,
                                    hint=f"have the file? dfi weights convert {filename} -o OUT.npz")
        got = hashlib.sha256(raw.read_bytes()).hexdigest()
        if got != sha256:
            warnings.warn(f"{filename}: SHA-256 {got} differs from the one reported (unverified) {sha256}; "
                          "its structure is AdaIN's, so it is used", stacklevel=2)
        out = adain_paths(data_dir)[part]
        convert_adain(raw, out, source=mirror.url)
        outs.append(out)
    return outs

