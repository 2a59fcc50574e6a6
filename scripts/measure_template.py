"""Measure where a face dataset puts the eyes and the mouth, with dfi's own detector.

    python scripts/measure_template.py IMAGES_DIR [--limit 500]

Prints the median left-eye, right-eye and mouth centres (x, y) of the first ``--limit``
images under IMAGES_DIR (e.g. ``lfw-deepfunneled/``) next to ``dfi.face.align.LFW_TEMPLATE``,
the template alignment uses, and how far each image's points are from the template
(mean over the three points; median and 90th percentile over images). Run it on real LFW
to check (or replace) the template, or on a ``dfi data align`` output to check it.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from dfi.core.image import read_image
from dfi.face.align import LFW_TEMPLATE, detected_landmarks


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("images", type=Path)
    parser.add_argument("--limit", type=int, default=500, help="images to look at (default 500)")
    args = parser.parse_args(argv)
    paths = sorted(p for p in args.images.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    if not paths:
        raise SystemExit(f"measure_template: no .jpg/.png images under {args.images}")
    points = detected_landmarks((read_image(p) for p in paths), limit=args.limit)
    template, found = np.median(points, axis=0), len(points)
    print(f"faces found: {found} of {min(len(paths), args.limit)} images")
    for name, measured, current in zip(("left eye", "right eye", "mouth"), template, LFW_TEMPLATE):
        print(f"{name:9s}  measured ({measured[0]:6.1f}, {measured[1]:6.1f})   "
              f"template ({current[0]:6.1f}, {current[1]:6.1f})   "
              f"off by {np.linalg.norm(measured - current):.1f} px")
    per_image = np.linalg.norm(points - LFW_TEMPLATE, axis=2).mean(axis=1)
    print(f"per image, mean distance of the three points to the template: median "
          f"{np.median(per_image):.1f} px, 90th percentile {np.percentile(per_image, 90):.1f} px")
    return 0


if __name__ == "__main__":
    sys.exit(main())
