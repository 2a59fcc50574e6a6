"""Benchmarks of the DFI decoder (results go to BENCHMARKS.md with machine, command and date).

    python scripts/bench_decoder.py train --index INDEX --sizes 64,128,200 [--steps 3]
    python scripts/bench_decoder.py edits --index INDEX --decoder DEC.npz [--size 64] [--faces 3]
    python scripts/bench_decoder.py line --index INDEX [--size 64] [--faces 1]
    python scripts/bench_decoder.py video --index INDEX --decoder DEC.npz [--size 64] [--frames 6]
    python scripts/bench_decoder.py design --index INDEX --out DIR [--steps 600 | --minutes 15] [--variants a,b]

``edits``, ``line``, ``video`` and ``design`` take ``--weights`` (default untrained: the
seeded network; ``caffe``, ``normalised``, ``torchvision`` once fetched, or a weights file)
and ``--data-dir``, so that the warm-start goal can be measured with real weights where
they can be had: ``design --variants default --minutes 15 --weights caffe`` trains the
default decoder for the issue's 15 minutes and prints, per held-out face, each α's passes
to the cold loss over the cold run's (``warm_over_cold``) and whether every one is ≤ 0.3.

``train``: seconds per training step and the process's peak memory at each size, each in a
fresh process (untrained full-width VGG-19, width-0.5 decoder, batch 4). ``edits``: for
held-out faces (the index's last ones) and the default 5 α of the norm scaling, a cold
sweep (rows start from the face), a warm one (rows start from the decoded change) and the
fast one-pass result: per row, the image passes each needs to reach the cold run's final
loss (and to within 2 % of it), their final losses, and seconds; the fast result's feature loss against the
optimised one; and for each run the attribute probe's gain, P(smiling) of the composed
edit minus the face's (a pixel-space probe fitted on the other faces); and what the decoded
change is against the optimiser's (cold result − face): their cosine per row and the share
of each one's power above half the Nyquist frequency. ``line``: how good a start must be —
L-BFGS from x + c·(z − x) on the straight line to the cold result z, for c of 0.5 … 0.99, and
from x plus the change z − x low-passed at ½ and ¼ of the Nyquist frequency (all of its coarse
part, none of its fine grain): the start's loss over the cold final and the passes to reach
the cold final loss (and the cold run continued to 400 iterations: how far from converged it
ends). ``video``: a held-out face panning by 2 px per frame (a window moving over the photo,
so the motion is known), edited at α 0.4 per frame with ``--fast``, by L-BFGS with the temporal term (``dfi edit``'s
video default) and by L-BFGS frame by frame without it: the warping error (mean |change|
between consecutive outputs once the pan is undone), the edit's own size (mean |output −
frame|) and seconds per frame. ``design``: the decoder's layer choices side by side — one
decoder per variant (default layers; zero padding; bilinear upsampling; instance
normalisation; widths 0.25 and 1; pixel weights 0 and 10), each trained by ``dfi
train-decoder`` for the same ``--steps`` on the index without the last face's person
(written to DIR/train.csv), then ``edits`` on the held-out faces, with the reconstruction
D(φ(x))'s PSNR against the face (``--minutes``: each trained for that wall time instead,
``train-decoder --time-limit``). Prints JSON lines.
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import numpy as np

ALPHAS = (0.1, 0.2, 0.3, 0.4, 0.5)
#: ``design``'s variants: name → the flags of ``dfi train-decoder`` that make it
VARIANTS = {"default": [], "zero-padding": ["--padding", "zero"], "bilinear": ["--upsample", "bilinear"],
            "instance-norm": ["--norm", "instance"], "width-0.25": ["--width", "0.25"], "width-1": ["--width", "1"],
            "pixel-0": ["--pixel-weight", "0"], "pixel-10": ["--pixel-weight", "10"]}


def _train_one(index: str, size: int, steps: int) -> dict:
    from data_tools.attributes import attribute_columns
    from data_tools.index import load_index

    import dfi._compat  # noqa: F401
    from dfi.core.image import crop_and_resize, read_image
    from dfi.edit.decoding import DecoderTrainer, attribute_directions, feature_scales
    from dfi.edit.settings import DecoderTrainConfig
    from dfi.nets.decoder import Decoder, dfi_spec
    from dfi.nets.vgg import untrained_vgg19

    table = load_index(index)
    files = [table.images_root / p for p in table.table["path"]]
    config = DecoderTrainConfig(size=size, batch_size=4, iterations=steps + 1)
    vgg = untrained_vgg19(seed=0)
    sample = np.stack([crop_and_resize(read_image(f), config.crop, (size, size)) for f in files[:32]])
    directions = attribute_directions(vgg, sample, table.table[attribute_columns(table.table)].to_numpy()[:32],
                                      config.layers)
    channels = {n: w.shape[0] for n, (w, _) in vgg.params.items()}
    decoder = Decoder(dfi_spec(channels, width=config.width, scales=feature_scales(vgg, sample, config.layers)))
    trainer = DecoderTrainer(vgg, decoder, files, directions, config, crop=config.crop)
    next(trainer.run(1))  # warm-up
    start = time.perf_counter()
    list(trainer.run(steps + 1))
    return {"bench": "train", "size": size, "seconds_per_step": round((time.perf_counter() - start) / steps, 3),
            "peak_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}


def _vgg(weights: str = "untrained", data_dir=None):
    """The VGG-19 the edit benchmarks run: the seeded untrained one, or real weights (a
    fetched name or a file; the records name them)."""
    import warnings
    from pathlib import Path

    from dfi.nets.weights import load_vgg19

    with warnings.catch_warnings():  # (the untrained network's warning: every record says which it is)
        warnings.simplefilter("ignore")
        return load_vgg19(weights, data_dir=Path(data_dir) if data_dir else None, seed=0)


def _frequency(shape) -> np.ndarray:
    """Radial frequency (cycles per pixel) of each coefficient of an FFT over the last two axes."""
    return np.hypot(*np.meshgrid(np.fft.fftfreq(shape[-2]), np.fft.fftfreq(shape[-1]), indexing="ij"))


def _high_share(change) -> float:
    """Share of the power of a CHW ``change`` above half the Nyquist frequency (> ¼ cycle/pixel)."""
    change = change - change.mean(axis=(-2, -1), keepdims=True)
    power = (np.abs(np.fft.fft2(change)) ** 2).sum(axis=0)
    return round(float(power[_frequency(change.shape) > 0.25].sum() / max(power.sum(), 1e-30)), 3)


def _low_pass(change, cut: float):
    """``change`` with every frequency above ``cut`` cycles per pixel removed."""
    return np.real(np.fft.ifft2(np.fft.fft2(change) * (_frequency(change.shape) <= cut))).astype(np.float32)


def _cosine(a, b) -> float:
    a, b = a.reshape(-1), b.reshape(-1)
    return round(float(a @ b / max(np.linalg.norm(a) * np.linalg.norm(b), 1e-30)), 3)


def _history(progress):
    """(image passes so far, per-row loss) after every iteration, and the last images."""
    history, last = [], None
    for last in progress:
        history.append((last.evaluations, np.asarray(last.loss_host, dtype=float)))
    return history, last.images


def _edits(index_file: str, decoder_file: str, size: int, faces: int, k: int,
           runs_wanted=("cold", "warm", "fast"), weights: str = "untrained", data_dir=None) -> list[dict]:
    import dfi._compat  # noqa: F401
    from data_tools.index import load_index

    from dfi.cli.edit import decoder_for
    from dfi.core.backend import to_cpu
    from dfi.core.image import crop_and_resize
    from dfi.edit.evaluate import fit_probe
    from dfi.edit.pipeline import choose_neighbors, compose, compute_vector, load_face, sweep
    from dfi.edit.settings import EditConfig
    from dfi.nets.features import extract

    index = load_index(index_file)
    net = _vgg(weights, data_dir)
    config = EditConfig(size=size, k=k)
    args = argparse.Namespace(decoder=decoder_file)
    decoder = decoder_for(args, net, config)
    out = []
    for row in range(len(index.table) - faces, len(index.table)):
        face = load_face(index.image_path(row), config, row=row)
        sources, targets = choose_neighbors(index, face, "smiling", config)
        vector = compute_vector(net, index, sources, targets, config)
        probe = fit_probe(index, "smiling", crop=config.crop, size=config.size, exclude=[index.table["path"][row]])
        runs, gains, results = {}, {}, {}
        for name, kwargs in (("cold", {}), ("warm", {"decoder": decoder}), ("fast", {"decoder": decoder, "fast": True})):
            if name not in runs_wanted:
                continue
            start = time.perf_counter()
            history, images = _history(sweep(net, face, [vector], ALPHAS, config, **kwargs))
            runs[name] = (history, time.perf_counter() - start)
            images = results[name] = to_cpu(images)
            edited = [crop_and_resize(compose(face, images[i + 1], images[0]), config.crop, (size, size))
                      for i in range(len(ALPHAS))]
            p = probe.probability([face.working, *edited])
            gains[name] = [round(float(v - p[0]), 3) for v in p[1:]]  # P(smiling) gained per α
        cold_final = runs["cold"][0][-1][1]
        record = {"bench": "edits", "face": str(index.table["path"][row]), "size": size, "weights": weights,
                  "probe_gain": gains}
        for name in [n for n in ("cold", "warm") if n in runs]:
            history, seconds = runs[name]

            def reach(tolerance):
                return [next((passes for passes, loss in history if loss[r] <= cold_final[r] * tolerance), None)
                        for r in range(1, len(ALPHAS) + 1)]
            record[name] = {"seconds": round(seconds, 2), "passes": history[-1][0], "passes_to_cold_loss": reach(1.0001),
                            "passes_to_2pct": reach(1.02),
                            "final_loss": [round(float(v), 4) for v in history[-1][1][1:]]}
        if "warm" in record:  # the goal: every α at the cold loss within 0.3 × the cold run's passes
            ratios = [None if p is None else round(p / record["cold"]["passes"], 3)
                      for p in record["warm"]["passes_to_cold_loss"]]
            record["warm_over_cold"] = ratios
            record["warm_goal_met"] = all(r is not None and r <= 0.3 for r in ratios)
        if "fast" in runs:
            own = to_cpu(decoder(extract(net, face.working[None].astype(np.float32), config.layers),
                                 face.working.shape[1:]))[0]
            record["reconstruction_psnr"] = round(float(10 * np.log10(255.0 ** 2 / np.mean((own - face.working) ** 2))), 2)
            record["fast"] = {"seconds": round(runs["fast"][1], 3), "seconds_per_alpha": round(runs["fast"][1] / len(ALPHAS), 3),
                              "loss_over_optimised": [round(float(f / c), 3) for f, c in
                                                      zip(runs["fast"][0][-1][1][1:], cold_final[1:])]}
            changes = {name: [results[name][i] - face.working for i in range(1, len(ALPHAS) + 1)] for name in ("cold", "fast")}
            record["decoded_change"] = {  # the fast images are x + D(t_α) − D(φ(x)), the warm run's whole change
                "cosine_to_optimised": [_cosine(f, c) for f, c in zip(changes["fast"], changes["cold"])],
                "high_frequency_share": {name: [_high_share(c) for c in changes[name]] for name in changes}}
        out.append(record)
    return out


def _line(index_file: str, size: int, faces: int, k: int, shares=(0.5, 0.8, 0.9, 0.95, 0.99),
          weights: str = "untrained", data_dir=None) -> list[dict]:
    from dataclasses import replace

    import dfi._compat  # noqa: F401
    from data_tools.index import load_index

    from dfi.core.backend import to_cpu
    from dfi.core.losses import feature_loss
    from dfi.core.reconstruct import evaluate, reconstruct
    from dfi.edit.attributes import combine, scale_vector, target_features
    from dfi.edit.pipeline import choose_neighbors, compute_vector, load_face
    from dfi.edit.settings import EditConfig
    from dfi.nets.features import extract

    index = load_index(index_file)
    net = _vgg(weights, data_dir)
    config = EditConfig(size=size, k=k)
    out = []
    for row in range(len(index.table) - faces, len(index.table)):
        face = load_face(index.image_path(row), config, row=row)
        vector = compute_vector(net, index, *choose_neighbors(index, face, "smiling", config), config)
        image = face.working[None].astype(np.float32)
        feats = extract(net, image, config.layers)
        targets = target_features(feats, scale_vector(combine([vector]), feats, config.scaling), [0.0, *ALPHAS])

        def loss_fn(got, rows):
            return feature_loss(got, {name: value[rows] for name, value in targets.items()})

        def run(start, iterations=config.reconstruct.iterations):
            settings = replace(config.reconstruct, iterations=iterations)
            return _history(reconstruct(net, start, loss_fn, config.layers, settings))
        cold, z = run(np.repeat(image, len(ALPHAS) + 1, axis=0))
        final = cold[-1][1]
        longer, _ = run(np.repeat(image, len(ALPHAS) + 1, axis=0), 400)
        record = {"bench": "line", "face": str(index.table["path"][row]), "size": size, "weights": weights,
                  "cold_passes": cold[-1][0],
                  "cold_400_over_cold": [round(float(v), 4) for v in longer[-1][1][1:] / final[1:]]}
        change = to_cpu(z) - image
        starts = {f"share_{c}": image + np.float32(c) * change for c in shares}
        # the optimiser's own change without its fine grain: what a perfect smooth predictor gives
        starts.update({f"low_pass_{cut}": np.clip(image + _low_pass(change, cut), 0, 255)
                       for cut in (0.25, 0.125)})
        for name, start in starts.items():
            start = start.astype(np.float32)
            history, _ = run(start)
            record[name] = {
                "start_over_cold": [round(float(v), 3) for v in
                                    np.asarray(evaluate(net, start, loss_fn, config.layers, config.reconstruct).loss)[1:] / final[1:]],
                "passes_to_cold_loss": [next((p for p, loss in history if loss[r] <= final[r] * 1.0001), None)
                                        for r in range(1, len(ALPHAS) + 1)]}
        out.append(record)
    return out


def _video(index_file: str, decoder_file: str, size: int, frames: int, k: int, alpha: float = 0.4,
           weights: str = "untrained", data_dir=None) -> dict:
    import dfi._compat  # noqa: F401
    from data_tools.index import load_index

    from dfi.core.image import read_image
    from dfi.edit.pipeline import choose_neighbors, compute_vector
    from dfi.edit.settings import EditConfig
    from dfi.nets.decoder import Decoder
    from dfi.video.face import aligned_face, edit_video, track_face
    from dfi.video.settings import VideoConfig

    index = load_index(index_file)
    net = _vgg(weights, data_dir)
    config = EditConfig(size=size, k=k)
    row = len(index.table) - 1
    photo = read_image(index.image_path(row))
    scene = np.pad(photo, ((0, 0), (0, 0), (0, 2 * frames)), mode="reflect")
    clip = [np.ascontiguousarray(scene[:, :, 2 * i:2 * i + photo.shape[2]]) for i in range(frames)]
    track = track_face(iter(clip))
    face = aligned_face(clip[0], track.matrices[0], config)
    vector = compute_vector(net, index, *choose_neighbors(index, face, "smiling", config), config)
    decoder = Decoder.load(decoder_file)
    record = {"bench": "video", "face": str(index.table["path"][row]), "size": size, "weights": weights,
              "frames": frames, "alpha": alpha}
    for name, video, kwargs in (("fast", VideoConfig(), {"decoder": decoder, "fast": True}),
                                ("temporal", VideoConfig(), {}),
                                ("independent", VideoConfig(temporal_weight=0.0, init="content"), {})):
        start = time.perf_counter()
        outs = [edited.results[0] for edited in edit_video(net, iter(clip), track, [vector], [alpha], config, video,
                                                           **kwargs)]
        seconds = (time.perf_counter() - start) / frames
        record[name] = {"warping_error": round(float(np.mean([np.abs(b[:, :, :-2] - a[:, :, 2:]).mean()
                                                              for a, b in zip(outs, outs[1:])])), 3),
                        "edit_size": round(float(np.mean([np.abs(o - f).mean() for o, f in zip(outs, clip)])), 3),
                        "seconds_per_frame": round(seconds, 3)}
    record["input_warping_error"] = round(float(np.mean([np.abs(b[:, :, :-2] - a[:, :, 2:]).mean()
                                                         for a, b in zip(clip, clip[1:])])), 3)
    return record


def _design(index_file: str, out_dir: str, size: int, steps: int, faces: int, k: int, variants,
            minutes: float = None, weights: str = "untrained", data_dir=None) -> list[dict]:
    from pathlib import Path

    from data_tools.index import Index, load_index, save_index

    index, out = load_index(index_file), Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    held_out = index.table["person"].iloc[-1]
    table = index.table[index.table["person"] != held_out].reset_index(drop=True)
    train = out / "train.csv"
    save_index(Index(table, index.images_root, {**index.meta, "rows": len(table)}), train)
    records = []
    for name in variants:
        decoder = out / f"dec_{name}.npz"
        start = time.perf_counter()
        budget = ["--iterations", str(steps)] if minutes is None else ["--iterations", "10000000",
                                                                      "--time-limit", str(minutes)]
        subprocess.run([sys.executable, "-m", "dfi", "-q", "train-decoder", "--index", str(train), "-o", str(decoder),
                        "--weights", weights, *(["--data-dir", str(data_dir)] if data_dir else []),
                        "--size", str(size), *budget, *VARIANTS[name]], check=True)
        seconds = time.perf_counter() - start
        trained = _trained_steps(decoder)
        for record in _edits(index_file, str(decoder), size, faces, k, weights=weights, data_dir=data_dir):
            record.update(variant=name, steps=trained, train_seconds=round(seconds, 1), held_out=held_out)
            print(json.dumps(record), flush=True)
            records.append(record)
    return records


def _trained_steps(path) -> int:
    """The steps a decoder file says it was trained for (a time limit may stop it early)."""
    import dfi._compat  # noqa: F401
    from dfi.nets.decoder import load_decoder

    return int(load_decoder(path)[1]["training"]["steps_done"])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("train")
    p.add_argument("--index", required=True)
    p.add_argument("--sizes", default="64,128,200")
    p.add_argument("--steps", type=int, default=3)
    p = sub.add_parser("_train_one")
    p.add_argument("--index", required=True)
    p.add_argument("--size", type=int, required=True)
    p.add_argument("--steps", type=int, default=3)

    def edit_parser(name, decoder=True, **counts):  # the edit benchmarks' common options
        p = sub.add_parser(name)
        p.add_argument("--index", required=True)
        if decoder:
            p.add_argument("--decoder", required=True)
        p.add_argument("--size", type=int, default=64)
        p.add_argument("--k", type=int, default=30)
        p.add_argument("--weights", default="untrained", help="untrained (default), a fetched name or a weights file")
        p.add_argument("--data-dir", help="where fetched weights are (default dfi's)")
        for option, default in counts.items():
            p.add_argument(f"--{option}", type=int, default=default)
        return p
    edit_parser("edits", faces=3).add_argument("--runs", default="cold,warm,fast",
                                               help="which sweeps (cold is the reference; always run)")
    edit_parser("line", decoder=False, faces=1)
    edit_parser("video", frames=6)
    p = edit_parser("design", decoder=False, faces=3, steps=600)
    p.add_argument("--out", required=True, help="folder for train.csv and the decoders")
    p.add_argument("--variants", default=",".join(VARIANTS), help=f"of {', '.join(VARIANTS)}")
    p.add_argument("--minutes", type=float, help="train each for this wall time instead of --steps")
    args = parser.parse_args(argv)
    if args.command == "train":
        for size in map(int, args.sizes.split(",")):  # each size in a fresh process
            subprocess.run([sys.executable, __file__, "_train_one", "--index", args.index, "--size", str(size),
                            "--steps", str(args.steps)], check=True)
    elif args.command == "line":
        for record in _line(args.index, args.size, args.faces, args.k, weights=args.weights, data_dir=args.data_dir):
            print(json.dumps(record), flush=True)
    elif args.command == "video":
        print(json.dumps(_video(args.index, args.decoder, args.size, args.frames, args.k, weights=args.weights,
                                data_dir=args.data_dir)), flush=True)
    elif args.command == "design":
        unknown = [v for v in args.variants.split(",") if v not in VARIANTS]
        if unknown:
            parser.error(f"--variants: {', '.join(unknown)} unknown; valid: {', '.join(VARIANTS)}")
        _design(args.index, args.out, args.size, args.steps, args.faces, args.k, args.variants.split(","),
                minutes=args.minutes, weights=args.weights, data_dir=args.data_dir)
    elif args.command == "_train_one":
        print(json.dumps(_train_one(args.index, args.size, args.steps)), flush=True)
    else:
        runs = tuple(dict.fromkeys(["cold", *args.runs.split(",")]))
        for record in _edits(args.index, args.decoder, args.size, args.faces, args.k, runs, weights=args.weights,
                             data_dir=args.data_dir):
            print(json.dumps(record), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
