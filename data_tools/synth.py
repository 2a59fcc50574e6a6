"""A synthetic LFW look-alike: faces drawn with visible attributes, in LFW's exact layout.

``make_synthetic_lfw(DIR)`` writes ``DIR/lfw-deepfunneled/<Name>/<Name>_NNNN.jpg``
(250×250 RGB JPEG, the face placed where deep-funneled LFW has it), the archive
``DIR/lfw-deepfunneled.tgz`` and ``DIR/lfw_attributes.txt`` in the real format. With
``layout="plain"`` it writes plain LFW instead (``DIR/lfw/``, ``DIR/lfw.tgz``): each face
moved, scaled and turned in its frame as unaligned photos are, for ``dfi data align``. Scores of
drawn attributes agree with the pixels: present ≥ 0.6, absent ≤ −0.6; attributes that are
not drawn get small per-person scores. Everything is seeded.
"""
from __future__ import annotations

import os
import shutil
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw, ImageFilter

from .attributes import LFW_ATTRIBUTE_NAMES, lfw_image_path, write_lfw_attributes
from .fsutil import atomic_path, fix_mode

SIZE = 250
SUPERSAMPLE = 2
#: Where deep-funneled LFW puts the face centre (x, y) in the 250×250 frame, in pixels.
FACE_CENTRE = (125.0, 122.0)
#: Eye centres and mouth centre relative to FACE_CENTRE at scale 1 (pixels).
LEFT_EYE, RIGHT_EYE, MOUTH = (-20.0, -10.0), (20.0, -10.0), (0.0, 30.0)

_FIRST = ("Alda", "Boris", "Celia", "Dario", "Elin", "Faro", "Greta", "Hugo", "Ines", "Jonas",
          "Kira", "Lino", "Mara", "Nils", "Olga", "Pavo", "Quinn", "Rosa", "Sami", "Tove",
          "Ugo", "Vera", "Wim", "Xena", "Yann", "Zora", "Jean-Luc", "Ana Maria")
_LAST = ("Abaro", "Belcor", "Cantini", "Dovel", "Esterby", "Falko", "Garrow", "Hennig",
         "Ivrel", "Jastro", "Kovan", "Lumet", "Morvel", "Nadal-Ruiz", "Ostrin", "Pellow",
         "Quarry", "Rinaldo", "Sovik", "Tarrant", "Ulden", "Varga", "Wendt", "Yoder", "Zell")
_SKIN = {"White": (236, 198, 170), "Asian": (228, 192, 148), "Black": (112, 74, 52),
         "Indian": (176, 124, 88)}
_HAIR = {"Black Hair": (28, 24, 22), "Brown Hair": (100, 64, 36), "Blond Hair": (222, 190, 110),
         "Gray Hair": (178, 178, 182)}


@dataclass(frozen=True)
class SynthResult:
    images_dir: Path
    archive: Path
    attributes_file: Path
    table: pd.DataFrame  # every drawn image with its scores (rows dropped from the file too)
    dropped: tuple[str, ...]  # image paths left out of lfw_attributes.txt on purpose
    landmarks: dict  # image path → (3, 2) true left eye, right eye, mouth centres (x, y)


def _people(rng: np.random.Generator, n_people: int) -> list[str]:
    names: set[str] = set()
    while len(names) < n_people:
        names.add(f"{rng.choice(_FIRST)} {rng.choice(_LAST)}")
        if len(names) < n_people and len(names) >= len(_FIRST) * len(_LAST) // 2:
            names.add(f"{rng.choice(_FIRST)} {rng.choice(_LAST)} {len(names)}")
    return sorted(names)


def _identity(rng: np.random.Generator) -> dict:
    male = bool(rng.random() < 0.55)
    age = str(rng.choice(["Youth", "Middle Aged", "Senior"], p=[0.45, 0.35, 0.2]))
    race = str(rng.choice(list(_SKIN), p=[0.55, 0.2, 0.15, 0.1]))
    hair = "Gray Hair" if age == "Senior" else str(rng.choice(
        ["Black Hair", "Brown Hair", "Blond Hair"], p=[0.4, 0.4, 0.2]))
    skin = np.clip(np.array(_SKIN[race]) + rng.normal(0, 8, 3), 0, 255)
    return {
        "male": male, "age": age, "race": race, "hair": hair, "skin": skin,
        "bald": bool(male and age != "Youth" and rng.random() < 0.25),
        "chubby": bool(rng.random() < 0.2), "mustache": bool(male and rng.random() < 0.3),
        "goatee": bool(male and rng.random() < 0.15), "lipstick": bool(not male and rng.random() < 0.5),
        "earrings": bool(not male and rng.random() < 0.4),
        "iris": tuple(int(c) for c in rng.choice([(70, 45, 25), (60, 100, 150), (80, 110, 70)])),
        "undrawn": rng.normal(-0.4, 0.8, len(LFW_ATTRIBUTE_NAMES)),
    }


def _draw_face(rng: np.random.Generator, who: dict, look: dict) -> Image.Image:
    k = SUPERSAMPLE
    background = rng.integers(40, 220, 3)
    image = Image.new("RGB", (SIZE * k, SIZE * k), tuple(int(c) for c in background))
    draw = ImageDraw.Draw(image)
    s = look["scale"] * k
    cx, cy = (FACE_CENTRE[0] + look["dx"]) * k, (FACE_CENTRE[1] + look["dy"]) * k

    def box(x: float, y: float, rx: float, ry: float) -> list[float]:
        return [cx + (x - rx) * s, cy + (y - ry) * s, cx + (x + rx) * s, cy + (y + ry) * s]

    skin = tuple(int(c) for c in who["skin"])
    shade = tuple(int(c * 0.78) for c in who["skin"])
    hair = _HAIR[who["hair"]]
    shirt = tuple(int(c) for c in rng.integers(20, 230, 3))
    draw.ellipse(box(0, 140, 95, 60), fill=shirt)                       # shoulders
    draw.rectangle(box(0, 70, 16, 25), fill=shade)                      # neck
    if not who["male"] and not who["bald"]:
        draw.rounded_rectangle(box(0, 15, 60, 72), radius=40 * s, fill=hair)  # long hair
    half_width = 54 if who["chubby"] else 47
    draw.ellipse(box(-half_width + 2, 0, 7, 12), fill=skin)             # ears
    draw.ellipse(box(half_width - 2, 0, 7, 12), fill=skin)
    draw.ellipse(box(0, 0, half_width, 62), fill=skin)                  # head
    if who["earrings"]:
        for side in (-1, 1):
            draw.ellipse(box(side * (half_width - 2), 14, 3, 3), fill=(230, 200, 60))
    if not who["bald"]:
        draw.chord(box(0, -36, half_width + 3, 34), 180, 360, fill=hair)  # hair cap
    if look["hat"]:
        draw.chord(box(0, -44, half_width + 8, 34), 180, 360, fill=look["hat"])
        draw.rectangle(box(0, -44, half_width + 14, 4), fill=look["hat"])
    for ex, ey in (LEFT_EYE, RIGHT_EYE):
        draw.line([cx + (ex - 10) * s, cy + (ey - 12) * s, cx + (ex + 10) * s, cy + (ey - 13) * s],
                  fill=tuple(int(c * 0.8) for c in hair) if not who["bald"] else shade,
                  width=int(3 * s))                                       # eyebrows
        draw.ellipse(box(ex, ey, 8, 4.5), fill=(245, 245, 240))
        draw.ellipse(box(ex, ey, 3.6, 3.6), fill=who["iris"])
        draw.ellipse(box(ex, ey, 1.5, 1.5), fill=(10, 10, 10))
    draw.polygon([(cx, cy - 4 * s), (cx - 6 * s, cy + 15 * s), (cx + 6 * s, cy + 15 * s)],
                 fill=shade)                                              # nose
    if who["age"] == "Senior":
        line = tuple(int(c * 0.7) for c in who["skin"])
        for y in (-34, -29):
            draw.arc(box(0, y + 8, 22, 8), 200, 340, fill=line, width=int(1.5 * s))  # forehead
        for side in (-1, 1):
            draw.arc(box(side * 12, 22, 10, 14), 90 if side > 0 else 0,
                     180 if side > 0 else 90, fill=line, width=int(1.5 * s))  # nose-mouth lines
            draw.arc(box(side * 20, -3, 7, 3), 0, 180, fill=line, width=int(1.2 * s))  # eye bags
    if who["goatee"]:
        draw.ellipse(box(0, 50, 12, 9), fill=tuple(int(c * 0.9) for c in _HAIR["Black Hair"]))
    mx, my = MOUTH
    lips = (200, 40, 60) if who["lipstick"] else (170, 80, 80)
    mouth = look["mouth"]
    if mouth == "smile":
        draw.arc(box(mx, my - 6, 17, 10), 15, 165, fill=lips, width=int(3.5 * s))
    elif mouth == "grin":
        draw.chord(box(mx, my - 5, 17, 12), 0, 180, fill=(250, 250, 245), outline=lips,
                   width=int(3 * s))
    elif mouth == "frown":
        draw.arc(box(mx, my + 8, 15, 9), 200, 340, fill=lips, width=int(3.5 * s))
    elif mouth == "open":
        draw.ellipse(box(mx, my, 9, 5), fill=(70, 20, 25), outline=lips, width=int(2.5 * s))
    else:
        draw.line([cx + (mx - 13) * s, cy + my * s, cx + (mx + 13) * s, cy + my * s],
                  fill=lips, width=int(3.5 * s))
    if who["mustache"]:
        draw.chord(box(mx, my - 5, 16, 6), 180, 360, fill=_HAIR["Black Hair"])
    if look["eyewear"] != "none":
        frame = (25, 25, 30)
        for ex, ey in (LEFT_EYE, RIGHT_EYE):
            if look["eyewear"] == "sun":
                draw.ellipse(box(ex, ey, 12, 9), fill=(20, 20, 25), outline=frame, width=int(2 * s))
            else:
                draw.ellipse(box(ex, ey, 12, 9), outline=frame, width=int(2.2 * s))
        draw.line([cx - 8 * s, cy - 11 * s, cx + 8 * s, cy - 11 * s], fill=frame, width=int(2 * s))
    image = image.resize((SIZE, SIZE), Image.LANCZOS)
    pixels = np.asarray(image, dtype=np.float32)
    ramp = np.linspace(-1.0, 1.0, SIZE, dtype=np.float32)
    light = look["brightness"] * (1.0 + look["side_light"] * ramp)[None, :, None]
    pixels = pixels * light + rng.normal(0, 3.0, pixels.shape).astype(np.float32)
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    if look["blurry"]:
        image = image.filter(ImageFilter.GaussianBlur(1.6))
    return image


def true_landmarks(look: dict) -> np.ndarray:
    """Where a drawn face has its left eye, right eye and mouth centre (x, y) in the frame."""
    centre = np.array(FACE_CENTRE) + (look["dx"], look["dy"])
    return centre + look["scale"] * np.array([LEFT_EYE, RIGHT_EYE, MOUTH])


def _look(rng: np.random.Generator) -> dict:
    harsh = rng.random() < 0.15
    return {
        "dx": float(rng.uniform(-4, 4)), "dy": float(rng.uniform(-4, 4)),
        "scale": float(rng.uniform(0.94, 1.06)),
        "mouth": str(rng.choice(["smile", "grin", "neutral", "open", "frown"],
                                p=[0.22, 0.18, 0.33, 0.09, 0.18])),
        "eyewear": str(rng.choice(["none", "glasses", "sun"], p=[0.72, 0.2, 0.08])),
        "hat": tuple(int(c) for c in rng.integers(20, 230, 3)) if rng.random() < 0.08 else None,
        "blurry": bool(rng.random() < 0.06), "harsh": bool(harsh),
        "side_light": float(rng.uniform(0.25, 0.4) * rng.choice([-1, 1]) if harsh
                            else rng.uniform(-0.08, 0.08)),
        "brightness": float(rng.uniform(0.85, 1.1)),
    }


def _scores(rng: np.random.Generator, who: dict, look: dict) -> np.ndarray:
    names = LFW_ATTRIBUTE_NAMES
    values = who["undrawn"] + rng.normal(0, 0.15, len(names))
    mouth = look["mouth"]
    drawn = {
        "Male": who["male"], "Baby": False, "Child": False,
        "Youth": who["age"] == "Youth", "Middle Aged": who["age"] == "Middle Aged",
        "Senior": who["age"] == "Senior", "Bald": who["bald"],
        "No Eyewear": look["eyewear"] == "none", "Eyeglasses": look["eyewear"] == "glasses",
        "Sunglasses": look["eyewear"] == "sun", "Mustache": who["mustache"],
        "Goatee": who["goatee"], "No Beard": not who["goatee"],
        "Smiling": mouth in ("smile", "grin"), "Frowning": mouth == "frown",
        "Mouth Closed": mouth in ("smile", "neutral", "frown"),
        "Mouth Slightly Open": mouth in ("open", "grin"), "Mouth Wide Open": False,
        "Teeth Not Visible": mouth != "grin", "Chubby": who["chubby"],
        "Blurry": look["blurry"], "Harsh Lighting": look["harsh"],
        "Wearing Hat": look["hat"] is not None, "Wearing Lipstick": who["lipstick"],
        "Heavy Makeup": who["lipstick"], "Wearing Earrings": who["earrings"],
        "Strong Nose-Mouth Lines": who["age"] == "Senior",
        "Bags Under Eyes": who["age"] == "Senior", "Color Photo": True, "Eyes Open": True,
        "Brown Eyes": who["iris"] == (70, 45, 25),
    }
    drawn.update({race: who["race"] == race for race in _SKIN})
    drawn.update({hair: (who["hair"] == hair and not who["bald"]) for hair in _HAIR})
    for name, present in drawn.items():
        magnitude = 0.6 + abs(rng.normal(0.9, 0.6))
        values[names.index(name)] = magnitude if present else -magnitude
    return values


def _unaligned(image: Image.Image, points: np.ndarray, rng: np.random.Generator):
    """The face turned (±8°), scaled (0.85–1.15) and moved (±15 px) about the frame's centre,
    as plain LFW has it; returns the image and its eye and mouth centres moved likewise."""
    angle, scale = np.deg2rad(rng.uniform(-8, 8)), rng.uniform(0.85, 1.15)
    shift = rng.uniform(-15, 15, 2)
    centre = np.array([SIZE / 2 - 0.5] * 2)
    rotation = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    forward = np.hstack([rotation, (centre + shift - rotation @ centre)[:, None]])  # frame → photo
    back = np.linalg.inv(np.vstack([forward, [0, 0, 1]]))
    half = np.array([[1, 0, 0.5], [0, 1, 0.5], [0, 0, 1]])  # Pillow samples at pixel centres
    data = (half @ back @ np.linalg.inv(half))[:2].reshape(-1)
    pixels = np.asarray(image)
    border = np.median(np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]]), axis=0)
    moved = image.transform(image.size, Image.AFFINE, tuple(data), resample=Image.BICUBIC,
                            fillcolor=tuple(int(c) for c in border))
    return moved, points @ forward[:, :2].T + forward[:, 2]


LAYOUTS = {"deepfunneled": "lfw-deepfunneled", "plain": "lfw"}


def make_synthetic_lfw(out_dir: str | os.PathLike, *, n_people: int = 100, seed: int = 0,
                       drop_fraction: float = 0.01, layout: str = "deepfunneled") -> SynthResult:
    """Generate the synthetic LFW under ``out_dir`` (see the module docstring).

    Args:
        out_dir: target folder; the images folder inside it must not exist yet.
        n_people: number of people (1–5000); each has 1–8 images.
        seed: RNG seed; the same seed gives the same files.
        drop_fraction: share of images left without an attribute row, as in real LFW.
        layout: ``"deepfunneled"`` (aligned, ``lfw-deepfunneled/``) or ``"plain"``
            (unaligned, ``lfw/``).
    """
    if not 1 <= n_people <= 5000:
        raise ValueError(f"--people {n_people} must be between 1 and 5000")
    if layout not in LAYOUTS:
        raise ValueError(f"layout {layout!r} is not one of {', '.join(LAYOUTS)}")
    out_dir = Path(out_dir)
    images_dir = out_dir / LAYOUTS[layout]
    if images_dir.exists():
        raise FileExistsError(f"{images_dir} already exists; choose another folder or remove it")
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    rows, values, landmarks = [], [], {}
    tmp = Path(tempfile.mkdtemp(prefix=".synth-", dir=out_dir))
    try:
        for person in _people(rng, n_people):
            who = _identity(rng)
            for number in range(1, int(min(8, rng.geometric(0.38))) + 1):
                look = _look(rng)
                rel = lfw_image_path(person, number)
                (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
                image, points = _draw_face(rng, who, look), true_landmarks(look)
                if layout == "plain":
                    image, points = _unaligned(image, points, rng)
                image.save(tmp / rel, quality=92)
                rows.append((person, number, rel))
                landmarks[rel] = points
                values.append(_scores(rng, who, look))
        table = pd.DataFrame(np.round(np.asarray(values), 6), columns=list(LFW_ATTRIBUTE_NAMES))
        table.insert(0, "person", [r[0] for r in rows])
        table.insert(1, "imagenum", [r[1] for r in rows])
        table.insert(2, "path", [r[2] for r in rows])
        fix_mode(tmp, folder=True)
        os.replace(tmp, images_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    archive = out_dir / f"{images_dir.name}.tgz"
    with atomic_path(archive) as part, tarfile.open(part, "w:gz") as tar:
        tar.add(images_dir, arcname=images_dir.name)
    # Real files: rows grouped by person, people not sorted, a few images without a row.
    keep = rng.random(len(table)) >= drop_fraction
    order = rng.permutation(table.loc[keep, "person"].unique())  # (a person may lose every row)
    listed = table[keep].set_index("person").loc[order].reset_index()
    attributes_file = out_dir / "lfw_attributes.txt"
    write_lfw_attributes(attributes_file, listed,
                         comment=f"synthetic lfw_attributes.txt written by dfi (seed={seed})")
    return SynthResult(images_dir, archive, attributes_file, table,
                       tuple(table.loc[~keep, "path"]), landmarks)


STYLE_KINDS = ("strokes", "waves", "mosaic")


def make_style_image(size: tuple[int, int] = (256, 256), *, kind: str = "strokes",
                     seed: int = 0) -> Image.Image:
    """A synthetic "painting" for style-transfer demos and tests (RGB, ``size`` = (W, H)).

    ``strokes``: short thick brush strokes in a warm palette; ``waves``: bands of cool
    colours with a wavy edge; ``mosaic``: irregular tiles with dark grout. Each has a
    clear texture and palette, so a transfer is visible.
    """
    if kind not in STYLE_KINDS:
        raise ValueError(f"style kind {kind!r} is not one of {', '.join(STYLE_KINDS)}")
    rng = np.random.default_rng(seed)
    width, height = size
    palettes = {"strokes": [(214, 96, 40), (240, 190, 60), (120, 40, 30), (250, 230, 170), (60, 90, 140)],
                "waves": [(20, 60, 120), (40, 140, 170), (230, 240, 250), (10, 30, 60), (90, 180, 160)],
                "mosaic": [(180, 50, 60), (230, 200, 80), (60, 120, 80), (40, 70, 150), (220, 220, 210)]}
    palette = palettes[kind]
    image = Image.new("RGB", size, palette[-1] if kind != "mosaic" else (30, 25, 20))
    draw = ImageDraw.Draw(image)
    area = width * height
    if kind == "strokes":
        for _ in range(area // 150):
            x, y = rng.uniform(0, width), rng.uniform(0, height)
            angle, length = rng.uniform(0, np.pi), rng.uniform(6, 18) * max(size) / 256
            dx, dy = np.cos(angle) * length, np.sin(angle) * length
            draw.line((x - dx, y - dy, x + dx, y + dy), fill=palette[rng.integers(len(palette))],
                      width=max(2, int(rng.uniform(3, 7) * max(size) / 256)))
    elif kind == "waves":
        period = max(size) / 10
        ys = np.arange(height)[:, None]
        xs = np.arange(width)[None, :]
        band = ((ys + period * 0.4 * np.sin(xs / period * 2.2 + rng.uniform(0, 6))) // period).astype(int)
        colours = np.asarray(palette, dtype=np.uint8)[band % len(palette)]
        image = Image.fromarray(colours)
    else:
        tile = max(6, max(size) // 16)
        for top in range(0, height, tile):
            for left in range(0, width, tile):
                jitter = rng.integers(-tile // 4, tile // 4 + 1, 4)
                box = (left + 1 + jitter[0] // 2, top + 1 + jitter[1] // 2,
                       left + tile - 2 + jitter[2] // 2, top + tile - 2 + jitter[3] // 2)
                draw.rectangle(box, fill=palette[rng.integers(len(palette))])
    return image.filter(ImageFilter.SMOOTH)
