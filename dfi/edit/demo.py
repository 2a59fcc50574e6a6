"""``dfi demo``: the main job on a fresh machine, with real data when it is there.

With real LFW (``lfw-deepfunneled/`` and ``lfw_attributes.txt`` in the data folder) and
fetched Caffe weights, the demo adds a smile to a real face at 200×200. Otherwise it
generates the synthetic LFW, uses the untrained VGG-19 at a small size and finishes a
smile sweep in a few minutes on two CPU cores.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from data_tools import index as indexes  # (looked up at call time: a test may stand in for it)
from data_tools.synth import make_synthetic_lfw

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DemoPlan:
    """What the demo will run: a ``dfi sweep`` command line and a description."""

    argv: tuple[str, ...]
    description: str


def pick_face(index_path: Path, without: str = "Smiling") -> str:
    """A face clearly without the attribute column ``without`` and without eyewear,
    as ``"Person Name/N"`` (the median such face by that score)."""
    table = indexes.load_index(index_path).table
    if without not in table:
        raise ValueError(f"{index_path}: no attribute column {without!r}")
    candidates = table[(table[without] < -0.5)]
    for column in ("Frowning", "Sunglasses", "Eyeglasses"):
        if column in table and column != without:
            narrower = candidates[candidates[column] < -0.5]
            candidates = narrower if len(narrower) else candidates
    if candidates.empty:
        raise ValueError(f"{index_path}: no face without {without!r} to edit")
    row = candidates.sort_values(without).iloc[len(candidates) // 2]
    return f"{row['person']}/{int(row['imagenum'])}"


def _ensure_index(images: Path, attributes: Path, index_path: Path) -> Path:
    if not index_path.is_file():
        indexes.save_index(indexes.build_index(images, attributes), index_path)
    return index_path


def plan_demo(out_dir: Path, data_dir: Path, *, have_real_weights: bool) -> DemoPlan:
    """Prepare data (synthetic if needed) and return the sweep to run."""
    out_dir = Path(out_dir)
    real_images, real_attrs = data_dir / "lfw-deepfunneled", data_dir / "lfw_attributes.txt"
    if real_images.is_dir() and real_attrs.is_file() and have_real_weights:
        index = _ensure_index(real_images, real_attrs, data_dir / "lfw_index.csv")
        face = pick_face(index)
        argv = (face, "--index", str(index), "--attribute", "smiling", "--weights", "caffe",
                "-o", str(out_dir / "smile_sweep.png"))
        return DemoPlan(argv, f"real LFW and Caffe VGG-19: adding a smile to {face}")
    synth_root = out_dir / "synthetic-lfw"
    if not (synth_root / "lfw-deepfunneled").is_dir():
        logger.warning("no real LFW + weights found in %s; generating the synthetic LFW in %s",
                       data_dir, synth_root)
        make_synthetic_lfw(synth_root, n_people=80, seed=0, drop_fraction=0.0)  # every face has its row
    index = _ensure_index(synth_root / "lfw-deepfunneled", synth_root / "lfw_attributes.txt",
                          synth_root / "index.csv")
    face = pick_face(index)
    # The default alphas (0.1-0.5 under the default norm scaling) edit here too; the smaller
    # size, K, layers and the stronger TV keep a CPU run within minutes and tame the colour
    # noise that an untrained network's features put into the reconstruction.
    argv = (face, "--index", str(index), "--attribute", "smiling", "--weights", "untrained",
            "--k", "30", "--size", "96", "--iterations", "100", "--tv-weight", "0.05",
            "--layers", "conv2_1,conv3_1,conv4_1", "-o", str(out_dir / "smile_sweep.png"))
    return DemoPlan(argv, f"synthetic LFW and the untrained VGG-19 at 96 px: adding a smile to {face}")
