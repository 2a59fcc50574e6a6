"""Ways to make the sweep need fewer passes, against the baseline (the settings before), at equal loss
(results go to BENCHMARKS.md, "Fast core", with machine, command and date).

    python scripts/bench_sweep_variants.py [--size 200] [--k 30] [--face 0]
        [--variants baseline,history=20,coarse,chain,dfi,perturbed]

Every variant reconstructs the same face (``--face``: which of the synthetic LFW's
non-smiling faces) for α = 0 and 0.1 … 0.5 (untrained full VGG-19, the attribute vector
computed once per working size) and records every iteration's loss per row. Reported: its
image evaluations (passes of one image at the working size; a coarse stage counts
(coarse / size)² per image), its final losses over the baseline's, the evaluations it needed
until every row was within 0 / 0.5 / 1 / 2 % of the baseline's final loss, and how far its
edits (z_α − z_0, pixels) lie from the baseline's. Variants:

- ``baseline``: the sweep's settings before 2026-11-24 (one batched L-BFGS, 10 curvature
  pairs, 150 iterations).
- ``history=N``: the same with N curvature pairs.
- ``dfi``: DFI's settings now (:func:`dfi.edit.settings.reconstruct_config`).
- ``perturbed``: the baseline from a start moved by uniform noise of ±0.01 px (how loosely
  the problem pins the pixels down).
- ``coarse``: solve at half the size (vector at that size), add the coarse change to the
  full-resolution face, refine at full size.
- ``chain``: α one at a time, each started from the previous α's result (batch 1).
Prints one JSON line per variant (the baseline first).
"""
from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

import dfi._compat  # noqa: F401
from data_tools.index import build_index, load_index, save_index
from data_tools.synth import make_synthetic_lfw
from dfi.core.backend import to_cpu
from dfi.core.image import resize
from dfi.core.losses import feature_loss
from dfi.core.reconstruct import ReconstructConfig, reconstruct
from dfi.edit.attributes import scale_vector, target_features
from dfi.edit.pipeline import EditConfig, choose_neighbors, compute_vector, load_face
from dfi.edit.settings import reconstruct_config
from dfi.nets.features import extract
from dfi.nets.vgg import untrained_vgg19

ALPHAS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5)
TOLERANCES = (0.0, 0.005, 0.01, 0.02)


class Setup:
    """The face, its neighbours and, per working size, the attribute vector."""

    def __init__(self, root: Path, k: int, face: int = 0):
        result = make_synthetic_lfw(root, n_people=120, seed=0)
        save_index(build_index(result.images_dir, result.attributes_file), root / "index.csv")
        self.index = load_index(root / "index.csv")
        self.net, self.k = untrained_vgg19(), k
        self.row = int(np.flatnonzero((self.index.table["Smiling"] < -0.5).to_numpy())[face])
        face = load_face(self.index.image_path(self.row), EditConfig(k=k), row=self.row)
        self.sources, self.targets = choose_neighbors(self.index, face, "smiling", EditConfig(k=k))
        self.vectors: dict = {}

    def problem(self, size: int):
        """(working face, loss_fn builder) at ``size``."""
        config = EditConfig(k=self.k, size=size)
        if size not in self.vectors:
            self.vectors[size] = compute_vector(self.net, self.index, self.sources, self.targets, config)
        working = load_face(self.index.image_path(self.row), config, row=self.row).working
        feats = extract(self.net, working[None], config.layers)
        vector = scale_vector(self.vectors[size], feats, config.scaling)

        def loss_for(alphas):
            goal = target_features(feats, vector, alphas)
            return lambda f, rows: feature_loss(f, {n: v[rows] for n, v in goal.items()})
        return working, loss_for, config.layers

    def solve(self, size: int, alphas, start, settings: ReconstructConfig):
        """Run to the end; returns (per-iteration (evaluations, loss per row), last images)."""
        working, loss_for, layers = self.problem(size)
        init = np.repeat(working[None], len(alphas), axis=0) if start is None else start
        trace, last = [], None
        for last in reconstruct(self.net, init.astype(np.float32), loss_for(list(alphas)), layers, settings):
            trace.append((last.evaluations, np.asarray(to_cpu(last.loss), np.float64)))
        return trace, np.asarray(to_cpu(last.images), np.float32), working


def run_variant(setup: Setup, name: str, size: int, settings: ReconstructConfig) -> dict:
    """Evaluations (full-size equivalents) and the loss trace per row, as ``(offset, trace)``
    pieces: rows solved together share a trace; ``offset`` counts evaluations spent before."""
    if name in ("baseline", "dfi", "perturbed") or name.startswith("history="):
        start = None
        if name.startswith("history="):
            settings = replace(settings, history=int(name.split("=")[1]))
        elif name == "dfi":
            settings = reconstruct_config()
        elif name == "perturbed":
            working = setup.problem(size)[0]
            noise = np.random.default_rng(1).uniform(-0.01, 0.01, (len(ALPHAS), *working.shape))
            start = (working[None] + noise).astype(np.float32)
        trace, images, _ = setup.solve(size, ALPHAS, start, settings)
        return {"pieces": [(0.0, list(range(len(ALPHAS))), trace)], "evaluations": trace[-1][0],
                "edits": images[1:] - images[0]}
    if name == "coarse":
        small = size // 2
        coarse, images, coarse_working = setup.solve(small, ALPHAS, None, settings)
        spent = coarse[-1][0] * (small / size) ** 2
        full = setup.problem(size)[0]
        start = np.clip(full[None] + np.stack([resize(z - coarse_working, (size, size)) for z in images]), 0, 255)
        trace, _, _ = setup.solve(size, ALPHAS, start, settings)
        return {"pieces": [(spent, list(range(len(ALPHAS))), trace)], "evaluations": spent + trace[-1][0]}
    if name == "chain":
        pieces, spent, start = [], 0.0, None
        for row, alpha in enumerate(ALPHAS):
            trace, images, _ = setup.solve(size, (alpha,), start, settings)
            pieces.append((spent, [row], trace))
            spent += trace[-1][0]
            start = images
        return {"pieces": pieces, "evaluations": spent}
    raise SystemExit(f"unknown variant {name!r}: use baseline, history=N, coarse, chain, dfi or perturbed")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=200)
    parser.add_argument("--k", type=int, default=30)
    parser.add_argument("--face", type=int, default=0, help="which non-smiling face (default 0)")
    parser.add_argument("--variants", default="baseline,history=20,coarse,chain,dfi,perturbed")
    args = parser.parse_args()
    settings = ReconstructConfig(iterations=150, history=10)  # the baseline's
    reference = reference_edits = None
    with tempfile.TemporaryDirectory() as tmp:
        setup = Setup(Path(tmp), args.k, args.face)
        setup.problem(args.size)  # the vector first, outside every variant's time
        for name in ["baseline", *[v for v in args.variants.split(",") if v != "baseline"]]:
            begin = time.perf_counter()
            result = run_variant(setup, name, args.size, settings)
            seconds = time.perf_counter() - begin
            final = np.concatenate([trace[-1][1] for _, _, trace in result["pieces"]])
            if reference is None:
                reference, reference_edits = final, result["edits"]
            row = {"bench": "sweep_variant", "variant": name, "size": args.size, "k": args.k, "face": args.face,
                   "seconds": round(seconds, 1), "evaluations": round(result["evaluations"], 1),
                   "final_over_baseline": [round(float(v), 4) for v in final / reference]}
            if "edits" in result:  # pixels: how far the edits lie from the baseline's, and their size
                row["edit_px_from_baseline"] = round(float(np.abs(result["edits"] - reference_edits).mean()), 3)
                row["edit_mean_abs_px"] = round(float(np.abs(result["edits"]).mean()), 3)
            for iteration in (90, 100, 110, 120, 130):  # the largest row's loss over the baseline's final
                if iteration <= len(result["pieces"][0][2]) and len(result["pieces"]) == 1:
                    loss = result["pieces"][0][2][iteration - 1][1]
                    row[f"loss_at_{iteration}_over_baseline"] = round(float(np.max(loss / reference)), 4)
            for tolerance in TOLERANCES:
                needed = 0.0
                for offset, rows, trace in result["pieces"]:
                    goal = reference[rows] * (1 + tolerance)
                    hit = next((evals for evals, loss in trace if np.all(loss <= goal)), None)
                    if hit is None:
                        needed = None
                        break
                    needed = max(needed, offset + hit)  # pieces run one after another
                row[f"evaluations_within_{tolerance:g}"] = None if needed is None else round(needed, 1)
            print(json.dumps({**row, "machine": platform.machine(), "date": time.strftime("%Y-%m-%d")}), flush=True)


if __name__ == "__main__":
    main()
