"""``dfi edit`` and ``dfi sweep``: Deep Feature Interpolation from the command line."""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Optional

from .common import (UsageError, add_run_options, alpha_list, check_not_inputs, check_output, check_writable,
                     load_net, parse_layers, positive_int, progress_bar)
from ..edit.settings import DEFAULT_LAYERS, ITERATIONS, SCALINGS, EditConfig


def _add_dfi_options(p: argparse.ArgumentParser, *, batch: bool = False) -> None:
    """The options of edit and sweep; ``batch``: those of ``dfi batch edit`` (no INPUT, no
    per-run extra outputs, no video options)."""
    if not batch:
        p.add_argument("input", metavar="INPUT", help='an image file, an indexed face "Person Name/N", or '
                                                      "a video (.mp4 .mov .avi .mkv .webm) or folder of frames")
    p.add_argument("--attribute", action="append", default=None,
                   help='attribute to add, e.g. smiling or "~mouth_closed,smiling"; repeat to '
                        "combine several")
    p.add_argument("--index", type=Path, default=None, help="dataset index (dfi data index)")
    p.add_argument("--decoder", type=Path, default=None, metavar="DEC.npz",
                   help="a decoder from dfi train-decoder: each α starts from the decoded change "
                        "x + D(t_α) − D(φ(x)) instead of x (the share of it, 0-1 by quarters, that "
                        "scores best)")
    p.add_argument("--fast", action="store_true",
                   help="with --decoder: no optimisation, the decoded edit in one pass (also "
                        "spelled --iterations 0)")
    p.add_argument("--k", type=positive_int, default=EditConfig.k, help=f"neighbours per side (default {EditConfig.k})")
    p.add_argument("--rule", choices=("chainer", "paper"), default="chainer",
                   help="neighbour rule (see dfi data neighbors)")
    p.add_argument("--scaling", choices=SCALINGS, default=EditConfig.scaling,
                   help="attribute vector scaling and the alpha it means: norm (default) moves each "
                        "layer by alpha times the face's own feature norm, alpha 0.1-0.5; beta divides "
                        "w by mean(w^2) (official DFI code, its default 0.4), alpha about 0.2-0.6; "
                        "none keeps the raw w, alpha depends on the weights (about 1-4 with real ones)")
    p.add_argument("--layers", default=",".join(DEFAULT_LAYERS),
                   help=f"feature layers (default {','.join(DEFAULT_LAYERS)})")
    p.add_argument("--size", type=positive_int, default=EditConfig.size,
                   help=f"working size in pixels (default {EditConfig.size})")
    p.add_argument("--crop", default=None,
                   help="l,t,r,b box of the input image to edit, used as is (no face detection); "
                        "'none' for the whole image")
    p.add_argument("--no-align", action="store_true",
                   help="take the input as an LFW-framed face (the LFW crop 40,20,210,190) "
                        "instead of detecting and aligning its face")
    p.add_argument("--face", type=positive_int, default=None,
                   help="which detected face to edit, 1 = the largest (default 1)")
    if not batch:
        p.add_argument("--show-landmarks", type=Path, default=None, metavar="FILE",
                       help="save the photo with the detected faces, their numbers and landmarks")
    p.add_argument("--vector", type=Path, default=None, help="reuse a saved attribute vector")
    if not batch:
        p.add_argument("--save-vector", type=Path, default=None, help="save the attribute vector (.npz)")
    p.add_argument("--mask", type=Path, default=None, help="greyscale mask: where the edit applies")
    p.add_argument("--feature-cache", type=Path, default=None,
                   help="folder caching the neighbours' features between runs (about 2 MB per face at 200 px)")
    p.add_argument("--feature-store", type=Path, default=None, metavar="STORE",
                   help="read the neighbours' features from a store made by 'dfi data features' "
                        "(faces it lacks are computed, and cached with --feature-cache)")
    p.add_argument("--no-color-match", action="store_true",
                   help="do not match the edit's colour statistics to the input's")
    add_run_options(p, iterations=ITERATIONS, min_iterations=0)
    if not batch:
        from .video import add_video_options
        add_video_options(p)


def decode_only(args: argparse.Namespace) -> bool:
    """``--fast`` or ``--iterations 0``: the decoded edit, no optimisation (needs --decoder)."""
    return bool(getattr(args, "fast", False)) or args.iterations == 0


def edit_settings(args: argparse.Namespace, alphas: list[float], *, indexes: Optional[dict] = None):
    """The checks and settings shared by photos, videos and batch rows: the alphas, the
    vector or the attributes and their index, the layers; returns (EditConfig, index or
    None). ``indexes`` keeps the indexes read, by path (a batch checks every row)."""
    from ..edit.settings import EditConfig, check_alphas, reconstruct_config

    check_alphas(alphas)
    if args.vector is None and not args.attribute:
        raise UsageError("give --attribute (with --index) or --vector FILE")
    if args.vector is not None and args.attribute:
        raise UsageError("--vector and --attribute exclude each other")
    if args.attribute and args.index is None:
        raise UsageError("--attribute needs --index (build one with 'dfi data index')")
    if args.index is not None:
        from data_tools.index import check_index_path

        check_index_path(args.index)
    if args.mask is not None and not args.mask.is_file():
        raise FileNotFoundError(f"--mask {args.mask}: no such file")
    if args.feature_store is not None and not args.feature_store.is_dir():
        raise FileNotFoundError(f"--feature-store {args.feature_store}: no such store "
                                "(make one with 'dfi data features')")
    layers = parse_layers(args.layers)
    if decode_only(args) and getattr(args, "decoder", None) is None:
        if getattr(args, "fast", False):
            raise UsageError("--fast decodes the edit in one pass: give --decoder DEC.npz (dfi train-decoder)")
        raise UsageError("--iterations 0 decodes the edit in one pass: give --decoder DEC.npz "
                         "(dfi train-decoder), or an iteration cap of at least 1")
    # decoding only, the cap is never used: the default keeps the settings valid
    rec = reconstruct_config(iterations=args.iterations or ITERATIONS, tv_weight=args.tv_weight,
                             optimizer=args.optimizer)
    config = EditConfig(layers=layers, k=args.k, size=args.size, scaling=args.scaling,
                        rule=args.rule, color_match=not args.no_color_match, reconstruct=rec)
    if args.vector is not None:  # read once here, so a foreign file is refused before the network loads
        from ..edit.attributes import load_vector

        load_vector(args.vector)
    if getattr(args, "decoder", None) is not None:  # a foreign file, before the network loads
        from ..nets.decoder import load_decoder

        load_decoder(args.decoder)
    index = None
    if args.index is not None:
        from data_tools.attributes import attribute_columns
        from data_tools.index import load_index
        from data_tools.neighbors import parse_spec
        index = indexes.get(args.index) if indexes is not None else None
        if index is None:
            index = load_index(args.index)
            if indexes is not None:
                indexes[args.index] = index
        for spec in args.attribute or ():  # names checked before any weights are loaded
            parse_spec(spec, attribute_columns(index.table))
    return config, index


def _dfi_request(args: argparse.Namespace, alphas: list[float]):
    """Validate everything that can be checked before loading weights."""
    from data_tools.attributes import parse_person_image
    from ..core.image import parse_crop

    check_output(args.output)
    if getattr(args, "show_landmarks", None) is not None:
        check_output(args.show_landmarks, "--show-landmarks")
    check_writable(_outputs(args, alphas))  # every file the run writes, before the index is read
    config, index = edit_settings(args, alphas)
    crop = None
    if args.crop is not None:
        crop = "none" if args.crop.strip().lower() == "none" else parse_crop(args.crop)
    row = None
    path = Path(args.input)
    if not path.is_file():
        try:
            person, number = parse_person_image(args.input)
        except ValueError:
            raise FileNotFoundError(f"input {args.input!r}: no such image file") from None
        if index is None:
            raise UsageError(f"input {args.input!r} is an indexed face; give --index")
        row = index.locate(person, number)
        path = index.image_path(row)
    elif index is not None:
        rel = path.resolve().relative_to(index.images_root) if path.resolve().is_relative_to(
            index.images_root) else None
        if rel is not None:
            hits = (index.table["path"] == rel.as_posix()).to_numpy().nonzero()[0]
            row = int(hits[0]) if len(hits) else None
    check_not_inputs(_outputs(args, alphas), {"INPUT": path, "--mask": args.mask, "--vector": args.vector,
                                              "--index": args.index})
    # a photo that is not a dataset face is aligned to the LFW frame unless told otherwise
    align = row is None and crop is None and not args.no_align
    show_landmarks = getattr(args, "show_landmarks", None)
    if not align and (args.face is not None or show_landmarks is not None):
        why = "indexed faces are in the LFW frame already" if row is not None else \
            "--crop/--no-align skip face detection"
        raise UsageError(f"--face and --show-landmarks need face alignment ({why})")
    from ..edit.pipeline import load_face
    face = load_face(path, config, row=row, crop="align" if align else crop, face=args.face or 1)
    if show_landmarks is not None:
        from ..face.align import draw_landmarks
        from ..core.image import write_image
        write_image(show_landmarks, draw_landmarks(face.full, face.alignment))
    return config, index, face, path


def sweep_outputs(output: Path, alphas: list[float]) -> dict:
    """Every file ``dfi sweep -o OUTPUT`` writes: the grid, one image per α, a GIF, a record."""
    output = Path(output)
    return {"grid": output,
            **{f"alpha {a:g}": output.with_name(f"{output.stem}_alpha{a:g}{output.suffix}") for a in alphas},
            "gif": output.with_suffix(".gif"), "record": output.with_suffix(".json")}


def _outputs(args: argparse.Namespace, alphas: list[float]) -> dict:
    """What this run will write, labelled by the option that names it."""
    written = {"-o": args.output} if args.command == "edit" else \
        {f"-o ({label})": path for label, path in sweep_outputs(args.output, alphas).items()}
    return {**written, "--show-landmarks": getattr(args, "show_landmarks", None),
            "--save-vector": getattr(args, "save_vector", None)}


def decoder_for(args: argparse.Namespace, net, config):
    """The ``--decoder`` on the network's device, for its layers and VGG, or None."""
    if getattr(args, "decoder", None) is None:
        return None
    from ..edit.decoding import inference_decoder
    from ..nets.decoder import Decoder

    return inference_decoder(Decoder.load(args.decoder), net, config.layers, f"--decoder {args.decoder}")


def neighbour_features(args: argparse.Namespace, net, config):
    """Where the neighbours' features are read from (and cached): --feature-store,
    --feature-cache, both (the store first), or None (computed every time)."""
    cache = None
    if args.feature_cache is not None:
        from ..edit.cache import FeatureCache
        cache = FeatureCache(args.feature_cache, net_name=net.identity, layers=config.layers,
                             size=config.size, crop=config.crop)
    if getattr(args, "feature_store", None) is not None:
        from ..edit.store import FeatureStore, backed
        store = FeatureStore(args.feature_store, net_name=net.identity, layers=config.layers,
                             size=config.size, crop=config.crop)
        cache = backed(store, cache)
    return cache


#: attribute vectors a batch worker keeps (rows that share neighbours share the vector)
VECTORS_KEPT = 32


def _run_dfi(args: argparse.Namespace, alphas: list[float], *, net=None, vectors: dict | None = None) -> dict:
    """Shared body of edit and sweep: returns results on the CPU plus a record.

    Args:
        net: a loaded VGG-19 (a batch worker's); default: load the one ``args`` names.
        vectors: attribute vectors kept between calls, keyed by network, attribute,
            neighbours and working settings (a batch worker's).
    """
    import time
    from dataclasses import replace

    from ..edit.attributes import combine, load_vector, save_vector
    from ..core.backend import to_cpu, synchronize
    from ..core.image import is_greyscale

    config, index, face, path = _dfi_request(args, alphas)  # every check before Chainer loads
    decoding_only = decode_only(args)  # (checked: then there is a decoder)
    from ..edit.pipeline import choose_neighbors, compose, compute_vector, read_mask, sweep
    mask = read_mask(args.mask, face.full.shape[1:]) if args.mask is not None else None
    t_start = time.perf_counter()
    net, micro = load_net(args) if net is None else (net, args.micro_batch)
    config = replace(config, batch_size=micro or config.batch_size,
                     reconstruct=replace(config.reconstruct, micro_batch=micro))
    record = {"input": args.input, "weights": net.name, "device": str(net.device),
              "settings": {"alphas": alphas, "layers": list(config.layers), "k": config.k,
                           "size": config.size, "crop": face.crop, "scaling": config.scaling,
                           "rule": config.rule, "iterations": 0 if decoding_only else config.reconstruct.iterations,
                           "tv_weight": config.reconstruct.tv_weight,
                           "optimizer": config.reconstruct.optimizer, "seed": args.seed}}
    chosen, neighbors = [], {}
    cache = neighbour_features(args, net, config)
    if args.vector is not None:
        vector, meta = load_vector(args.vector)
        missing = [name for name in config.layers if name not in vector]
        if missing:
            raise ValueError(f"--vector {args.vector} lacks layers {', '.join(missing)}")
        chosen.append({name: vector[name] for name in config.layers})
        record["vector"] = {"file": str(args.vector), **meta}
    else:
        for attribute in args.attribute:
            sources, targets = choose_neighbors(index, face, attribute, config)
            neighbors[attribute] = {"sources": sources, "targets": targets}
            key = (net.identity, attribute, tuple(sources), tuple(targets), config.layers, config.size, config.crop)
            if vectors is not None and key in vectors:
                chosen.append(vectors[key])
                record.setdefault("vectors_reused", []).append(attribute)
                continue
            with progress_bar(len(sources) + len(targets), args.quiet, f"features ({attribute})",
                              unit="face") as bar:
                chosen.append(compute_vector(net, index, sources, targets, config, cache=cache,
                                             progress=bar.update))
            if vectors is not None:
                vectors[key] = chosen[-1]
                while len(vectors) > VECTORS_KEPT:
                    del vectors[next(iter(vectors))]
        record["neighbors"] = neighbors
    if getattr(args, "save_vector", None) is not None:
        save_vector(args.save_vector, combine(chosen),
                    {"attributes": args.attribute, "weights": net.name, "layers": list(config.layers),
                     "size": config.size, "crop": config.crop})
    synchronize(net.device)
    t_vector = time.perf_counter()
    decoder = decoder_for(args, net, config)
    record["init"] = "input" if decoder is None else "decoder"
    record["settings"]["decoder"] = None if decoder is None else str(args.decoder)
    last = None
    with progress_bar(1 if decoding_only else config.reconstruct.iterations, args.quiet, "reconstructing") as bar:
        for last in sweep(net, face, chosen, alphas, config, decoder=decoder, fast=decoding_only):
            bar.update(1)
            if not args.quiet:  # the optimiser's host copy: no wait for the device
                bar.set_postfix(loss=f"{last.loss_host.mean():.4g}", active=int(last.active.sum()))
    synchronize(net.device)
    t_done = time.perf_counter()
    images = to_cpu(last.images)
    results = [compose(face, images[i + 1], images[0], color_match=config.color_match, mask=mask)
               for i in range(len(alphas))]
    record["losses"] = [{"alpha": a, "total": float(last.loss[i + 1]),
                         "feature": float(last.terms["feature"][i + 1]),
                         "tv": float(last.terms["tv"][i + 1])} for i, a in enumerate(alphas)]
    for row, share in zip(record["losses"], last.start_shares[1:]):  # how each row started (with a decoder)
        row.update({"init": "decoder" if share > 0 else "input", "start_share": float(share)})
    if face.alignment is not None:
        record["alignment"] = face.alignment.record()
    record["iterations_run"] = int(last.iteration)
    record["evaluations"] = int(last.evaluations)
    record["timings_s"] = {"vector": round(t_vector - t_start, 3),
                           "reconstruction": round(t_done - t_vector, 3),
                           "total": round(t_done - t_start, 3)}
    return {"face": face, "results": results, "record": record, "working": images,
            "grey": is_greyscale(path)}


def _cmd_edit(args: argparse.Namespace) -> int:
    from ..core.image import write_image
    from ..video.io import is_video

    if is_video(args.input):
        from .video import run_edit_video
        return run_edit_video(args, [args.alpha])

    out = _run_dfi(args, [args.alpha])
    write_image(args.output, out["results"][0], grey=out["grey"])
    print(args.output)
    return 0


def run_sweep(args: argparse.Namespace) -> int:
    from data_tools.fsutil import write_text_atomic

    from ..core.image import grid, write_gif, write_image
    from ..video.io import is_video

    if is_video(args.input):
        from .video import run_edit_video
        return run_edit_video(args, args.alphas)

    out = _run_dfi(args, args.alphas)
    paths = sweep_outputs(args.output, args.alphas)
    files = []
    for alpha, image in zip(args.alphas, out["results"]):
        write_image(paths[f"alpha {alpha:g}"], image, grey=out["grey"])
        files.append(str(paths[f"alpha {alpha:g}"]))
    frames = [out["face"].full, *out["results"]]
    write_image(paths["grid"], grid(frames), grey=out["grey"])
    write_gif(paths["gif"], frames, grey=out["grey"])
    record = dict(out["record"], outputs={"grid": str(paths["grid"]), "images": files, "gif": str(paths["gif"])})
    write_text_atomic(paths["record"], json.dumps(record, indent=2) + "\n")
    print(paths["grid"])
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("edit", help="edit a face by Deep Feature Interpolation")
    _add_dfi_options(p)
    p.add_argument("--alpha", type=float, default=0.4, help="edit strength α (default 0.4)")
    p.add_argument("-o", "--output", required=True, help="edited image to write (full size; an existing file is replaced)")
    p.set_defaults(func=_cmd_edit)

    p = sub.add_parser("sweep", help="edit a face for several strengths α at once")
    _add_dfi_options(p)
    p.add_argument("--alphas", type=alpha_list, default=[0.1, 0.2, 0.3, 0.4, 0.5],
                   help="comma-separated strengths (default 0.1,0.2,0.3,0.4,0.5)")
    p.add_argument("-o", "--output", required=True,
                   help="grid image; per-α images, a .gif and a .json are written beside it "
                        "(existing files are replaced)")
    p.set_defaults(func=run_sweep)
