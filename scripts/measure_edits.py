"""Measure how much an α-sweep adds an attribute, with the pixel-space attribute probe.

    python scripts/measure_edits.py --attribute smiling --input-filter "Smiling<-0.5"
    python scripts/measure_edits.py --attribute senior --input-filter "Youth>0.5"

Generates the synthetic LFW (seeded) in a temporary folder, fits the probe on every other
face, runs ``dfi.edit.pipeline.sweep`` with the demo's settings (untrained VGG-19, 96 px) and
prints P(attribute) for the original and each α, plus the grid it wrote.
"""
from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np

import dfi._compat  # noqa: F401
from data_tools.index import build_index, save_index, load_index
from data_tools.synth import make_synthetic_lfw
from dfi.edit.pipeline import EditConfig, choose_neighbors, compose, compute_vector, load_face, sweep
from dfi.edit.evaluate import fit_probe
from dfi.core.image import crop_and_resize, grid, write_image
from dfi.core.reconstruct import ReconstructConfig, final
from dfi.nets.vgg import untrained_vgg19


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--attribute", required=True)
    parser.add_argument("--input-filter", required=True, help='pandas query choosing input faces; spaces and hyphens in names become _, '
                             'e.g. "Smiling<-0.5" or "Youth>0.5"')
    parser.add_argument("--alphas", default="0.1,0.2,0.3,0.4,0.5")
    parser.add_argument("--scaling", default=EditConfig().scaling, help="attribute vector scaling")
    parser.add_argument("--faces", type=int, default=3, help="how many input faces to edit")
    parser.add_argument("--out", type=Path, default=Path("measure.png"))
    args = parser.parse_args()
    alphas = [float(a) for a in args.alphas.split(",")]
    config = EditConfig(layers=("conv2_1", "conv3_1", "conv4_1"), k=30, size=96, scaling=args.scaling,
                        reconstruct=ReconstructConfig(iterations=100, tv_weight=0.05, micro_batch=1))
    net = untrained_vgg19()
    with tempfile.TemporaryDirectory() as tmp:
        synth = make_synthetic_lfw(tmp, n_people=80, seed=0)
        save_index(build_index(synth.images_dir, synth.attributes_file), Path(tmp) / "index.csv")
        index = load_index(Path(tmp) / "index.csv")
        table = index.table.rename(columns=lambda c: c.replace(" ", "_").replace("-", "_"))
        rows = table.query(args.input_filter).index[:args.faces]
        tiles, report = [], []
        for row in rows:
            face = load_face(index.image_path(row), config, row=int(row))
            probe = fit_probe(index, args.attribute, crop=config.crop, size=config.size,
                              exclude=[index.table["path"][row]])
            vector = compute_vector(net, index, *choose_neighbors(index, face, args.attribute, config), config)
            last = final(sweep(net, face, [vector], alphas, config))
            results = [compose(face, last.images[i + 1], last.images[0]) for i in range(len(alphas))]
            working = [crop_and_resize(r, config.crop, (config.size, config.size)) for r in results]
            prob = probe.probability([face.working, *working])
            report.append({"input": f"{index.table['person'][row]}/{int(index.table['imagenum'][row])}",
                           "probe_train_accuracy": round(probe.accuracy, 3),
                           "p_original": round(float(prob[0]), 3),
                           "p_per_alpha": {str(a): round(float(p), 3) for a, p in zip(alphas, prob[1:])}})
            tiles += [face.full, *results]
        write_image(args.out, grid(tiles, columns=len(alphas) + 1))
    print(json.dumps({"attribute": args.attribute, "alphas": alphas, "faces": report,
                      "mean_p_original": round(float(np.mean([r["p_original"] for r in report])), 3),
                      "mean_p_per_alpha": {str(a): round(float(np.mean([r["p_per_alpha"][str(a)] for r in report])), 3)
                                           for a in alphas},
                      "grid": str(args.out)}, indent=1))


if __name__ == "__main__":
    main()
