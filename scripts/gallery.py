"""Render the README's gallery from the synthetic data and the untrained VGG-19 (offline).

    python scripts/gallery.py [--out docs/gallery] [--size 128] [--iterations 150] [--quick]
                              [--only sweeps|photo|style ...]

Writes, into ``--out``:
  smile_sweep.png / senior_sweep.png   dfi sweep grids: the original, then α = 1, 2, 3
  photo_edit.png                       dfi edit on a photograph (scikit-image's astronaut, 512×512,
                                       face off-centre): detected landmarks | edited | |change| × 3
  style_modes.png                      content | style | none | luminance | histogram | yuv
  texture.png                          style | synthesised texture
  inversion.png                        image | inverted from conv2_1 | conv3_1 | conv4_2
The real weights would give far better pictures; these show what each mode does.
``--quick`` (small sizes and few iterations) is what the test suite runs.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np

from data_tools.index import build_index, save_index
from data_tools.synth import make_style_image, make_synthetic_lfw
from dfi.cli import main as dfi_main
from dfi.core.color import PRESERVE_COLOR
from dfi.edit.demo import pick_face
from dfi.core.image import grid, read_image, resize, write_image
from dfi.core.reconstruct import ReconstructConfig
from dfi.style.gatys import StyleConfig, fit_long_side, invert_features, style_transfer, synthesize_texture
from dfi.nets.vgg import untrained_vgg19


def _index(work: Path, quick: bool) -> Path:
    index = work / "index.csv"
    if not index.is_file():
        synth = make_synthetic_lfw(work / "lfw", n_people=30 if quick else 80, seed=0)
        save_index(build_index(synth.images_dir, synth.attributes_file), index)
    return index


def _settings(quick: bool) -> list[str]:
    return ["--weights", "untrained", "--device", "cpu", "--tv-weight", "0.05",
            "--layers", "conv2_1,conv3_1,conv4_1",
            *(["--size", "32", "--k", "4", "--iterations", "3"] if quick else
              ["--size", "96", "--k", "30", "--iterations", "100"])]


def _run(argv: list[str], what: str) -> None:
    if dfi_main(["--quiet", *argv]) != 0:
        raise SystemExit(f"gallery: the {what} failed")


def _sweeps(work: Path, out: Path, quick: bool) -> None:
    index = _index(work, quick)
    for attribute, column in (("smiling", "Smiling"), ("senior", "Senior")):
        face = pick_face(index, column)
        _run(["sweep", face, "--index", str(index), "--attribute", attribute, "--alphas", "0.1,0.3,0.5",
              *_settings(quick), "-o", str(work / f"{attribute}.png")], f"{attribute} sweep")
        (work / f"{attribute}.png").replace(out / f"{'smile' if attribute == 'smiling' else attribute}_sweep.png")


def _photo(work: Path, out: Path, quick: bool) -> None:
    from PIL import Image
    from skimage.data import astronaut  # a public-domain NASA portrait that scikit-image ships

    photo = work / "astronaut.png"
    Image.fromarray(astronaut()).save(photo)
    _run(["edit", str(photo), "--index", str(_index(work, quick)), "--attribute", "smiling",
          "--alpha", "0.5", *_settings(quick), "--show-landmarks", str(work / "landmarks.png"),
          "-o", str(work / "edited.png")], "photo edit")
    original, edited = read_image(photo), read_image(work / "edited.png")
    change = np.repeat(np.abs(edited - original).mean(axis=0, keepdims=True) * 3, 3, axis=0)
    write_image(out / "photo_edit.png", grid([read_image(work / "landmarks.png"), edited,
                                              np.clip(change, 0, 255)]))


def _style(work: Path, out: Path, size: int, iterations: int) -> None:
    net = untrained_vgg19()
    synth = make_synthetic_lfw(work / "face", n_people=1, seed=3)
    content = fit_long_side(read_image(synth.images_dir / synth.table["path"].iloc[0]), size)
    style = np.asarray(make_style_image((size, size), kind="strokes", seed=1), np.float32).transpose(2, 0, 1)
    config = StyleConfig(scales=(size,), reconstruct=replace(StyleConfig().reconstruct, iterations=iterations))
    row = [content, style]
    for mode in PRESERVE_COLOR:
        row.append(style_transfer(net, content, [style], replace(config, preserve_color=mode)))
        print(f"gallery: style, preserve-color {mode}", file=sys.stderr)
    write_image(out / "style_modes.png", grid(row))
    waves = np.asarray(make_style_image((size, size), kind="waves", seed=2), np.float32).transpose(2, 0, 1)
    texture = synthesize_texture(net, [waves], config)
    write_image(out / "texture.png", grid([waves, texture]))
    inverted = [invert_features(net, content, layer, replace(
        config, reconstruct=ReconstructConfig(iterations=iterations, tv_weight=1e-4)))
        for layer in ("conv2_1", "conv3_1", "conv4_2")]
    write_image(out / "inversion.png", grid([content, *[resize(i, content.shape[1:]) for i in inverted]]))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs/gallery"))
    parser.add_argument("--size", type=int, default=128, help="style images' long side (default 128)")
    parser.add_argument("--iterations", type=int, default=150, help="style iterations (default 150)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, a few iterations (tests)")
    parser.add_argument("--only", action="append", choices=("sweeps", "photo", "style"),
                        help="render only these parts (repeatable; default all)")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    size, iterations = (32, 3) if args.quick else (args.size, args.iterations)
    parts = args.only or ["sweeps", "photo", "style"]
    with tempfile.TemporaryDirectory() as tmp:
        if "sweeps" in parts:
            _sweeps(Path(tmp), args.out, args.quick)
        if "photo" in parts:
            _photo(Path(tmp), args.out, args.quick)
        if "style" in parts:
            _style(Path(tmp), args.out, size, iterations)
    print(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
