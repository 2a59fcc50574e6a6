"""``dfi style`` and ``dfi invert``: style-loss reconstruction from the command line."""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from .common import (UsageError, add_run_options, alpha_list, check_not_inputs, check_output, int_list,
                     load_net, positive_int, progress_bar)


def _style_request(args: argparse.Namespace, *, invert: bool = False):
    """Validate flags and read the images before loading weights.

    Returns:
        (config, content, styles, grey): ``grey`` when every input image is greyscale
        (the output is then written in grey too).
    """
    from ..core.image import check_min_side, is_greyscale, read_image
    from ..video.io import is_video

    video = not invert and not args.texture and is_video(args.images[0])
    if video:
        from .video import check_video_output
        check_video_output(args)
    else:
        check_output(args.output)
    sources = [args.image] if invert else list(args.images)
    check_not_inputs({"-o": args.output}, {f"IMAGE {i + 1}": p for i, p in enumerate(sources)})
    grey = not video and all(is_greyscale(p) for p in sources)
    if invert:
        return style_config(args, invert=True), check_min_side(read_image(args.image), f"IMAGE {args.image}"), [], grey
    images = [check_min_side(read_image(path), f"image {path}") for path in args.images[1 if video else 0:]]
    if video:
        content, styles = None, images
    elif args.texture:
        content, styles = None, images
    else:
        content, styles = images[0], images[1:]
    return style_config(args, n_images=len(images), video=video), content, styles, grey


def style_config(args: argparse.Namespace, *, n_images: int = 0, video: bool = False, invert: bool = False):
    """The :class:`~dfi.style.settings.StyleConfig` of the flags, for ``n_images`` images
    given after the video (or all of them): every check that needs no pixel, so that a
    batch checks its rows without reading them."""
    from ..core.settings import ReconstructConfig
    from ..style.settings import StyleConfig, parse_layer_weights

    scales = tuple(args.scales) if args.scales else (args.size,)
    if args.scales and args.size_given and args.scales[-1] != args.size:
        raise UsageError(f"--size {args.size} and --scales {','.join(map(str, args.scales))} disagree; "
                         "the last scale is the output size")
    rec = ReconstructConfig(iterations=args.iterations, tv_weight=args.tv_weight,
                            optimizer=args.optimizer, ftol=args.ftol)
    if invert:
        return StyleConfig(content_layers=parse_layer_weights(args.layer, "--layer"),
                           style_weight=0.0, scales=scales, init="noise", seed=args.seed,
                           reconstruct=rec)
    if video:
        if not n_images:
            raise UsageError("give a VIDEO and at least one STYLE image")
        if args.scales:
            raise UsageError("--scales is for images; a video is stylised at --size")
    elif not args.texture and n_images < 2:
        raise UsageError("give a CONTENT and at least one STYLE image (or --texture STYLE …)")
    n_styles = n_images if video or args.texture else n_images - 1
    if args.style_blend and len(args.style_blend) != n_styles:
        raise UsageError(f"--style-blend has {len(args.style_blend)} weights for {n_styles} "
                         "style image(s)")
    init = args.init or ("noise" if args.texture else "content")
    if init == "adain":  # the start is made by the command (stylize_to_file's start)
        if args.texture or video:
            raise UsageError("--init adain needs a content image (and is for images, not videos)")
        init = "content"
    config = StyleConfig(
        content_layers=parse_layer_weights(args.content_layers, "--content-layers"),
        style_layers=parse_layer_weights(args.style_layers, "--style-layers"),
        content_weight=0.0 if args.texture else args.content_weight, style_weight=args.style_weight,
        style_blend=tuple(args.style_blend) if args.style_blend else None,
        style_scale=args.style_scale, scales=scales, init=init, preserve_color=args.preserve_color,
        seed=args.seed, reconstruct=rec)
    if args.texture and config.preserve_color != "none":
        raise UsageError(f"--preserve-color {config.preserve_color} needs a content image; "
                         "--texture has none")
    if init == "content" and args.texture and not video:
        raise UsageError("--init content needs a content image; use noise or style with --texture")
    return config


def _run_style(args: argparse.Namespace, config, content, styles, grey: bool) -> int:
    import time

    start = time.perf_counter()
    first = None
    if getattr(args, "init", None) == "adain":
        from .onepass import adain_start
        first = adain_start(args, content, styles)
    terms = stylize_to_file(args, config, content, styles, grey, start=first)
    if not args.quiet:
        print(f"dfi: {len(config.scales)} stage(s) in {time.perf_counter() - start:.1f} s; "
              + ", ".join(f"{name} {value:.4g}" for name, value in terms.items()), file=sys.stderr)
    print(args.output)
    return 0


def stylize_to_file(args: argparse.Namespace, config, content, styles, grey: bool, *, net=None,
                    start=None) -> dict:
    """Optimise and write ``args.output`` (and the snapshots); returns the final loss terms.
    ``net``: a loaded VGG-19 (a batch worker's); default: load the one ``args`` names;
    ``start``: the first stage's start image (``--init adain``)."""
    from dataclasses import replace

    from ..core.backend import to_cpu
    from ..core.image import write_image
    from ..style.gatys import check_memory, finish, stylize

    net, micro = load_net(args) if net is None else (net, args.micro_batch)
    config = replace(config, reconstruct=replace(config.reconstruct, micro_batch=micro))
    check_memory(net, content, styles, config, micro_batch=1)
    out = Path(args.output)
    bar = progress_bar(config.reconstruct.iterations * len(config.scales), args.quiet, "stylising")
    last, stage, shown = None, 0, 0.0
    try:
        for last in stylize(net, content, styles, config, start=start):
            if last.stage != stage:  # a stage that stopped early: skip its remaining ticks
                bar.n, stage = last.stage * config.reconstruct.iterations, last.stage
            bar.update(1)
            if not args.quiet and time.monotonic() - shown >= 0.5:  # reading the terms waits for the
                shown = time.monotonic()                               # device: twice a second at most
                terms = last.progress.terms
                values = net.device.xp.stack([v[0] for v in terms.values()]).tolist()  # one wait
                bar.set_postfix({name: f"{v:.3g}" for name, v in zip(terms, values)}, refresh=False)
            if args.save_every and last.progress.iteration % args.save_every == 0:
                snapshot = finish(to_cpu(last.progress.images[0]), content, config)
                write_image(out.with_name(f"{out.stem}_{last.shape[1]}px_{last.progress.iteration:04d}"
                                          f"{out.suffix}"), snapshot, grey=grey)
    finally:
        bar.close()
    write_image(out, finish(to_cpu(last.progress.images[0]), content, config), grey=grey)
    return {name: float(v[0]) for name, v in last.progress.terms.items()}


def _cmd_style(args: argparse.Namespace) -> int:
    if args.method in ("adain", "wct"):
        from .onepass import run_one_pass
        return run_one_pass(args)
    for option, value in (("--alpha", args.alpha), ("--mask", args.mask), ("--temporal-blend", args.temporal_blend or None),
                          ("--decoder", None if args.init == "adain" else args.decoder)):
        if value is not None:
            raise UsageError(f"{option} is for --method adain or wct (Gatys's balance is --content-weight / "
                             "--style-weight)")
    config, content, styles, grey = _style_request(args)
    if content is None and not args.texture:  # a video (or a folder of frames)
        from .video import run_style_video
        return run_style_video(args, config, styles)
    return _run_style(args, config, content, styles, grey)


def _cmd_invert(args: argparse.Namespace) -> int:
    return _run_style(args, *_style_request(args, invert=True))


class _SizeAction(argparse.Action):
    """Records that --size was given (it must then agree with --scales)."""

    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, values)
        namespace.size_given = True


def _add_reconstruction_options(p: argparse.ArgumentParser, *, batch: bool = False) -> None:
    """Options of style and invert: output, size, stages, snapshots, stopping (``batch``:
    no -o, which the manifest gives)."""
    from ..style.settings import StyleConfig

    defaults = StyleConfig().reconstruct
    if not batch:
        p.add_argument("-o", "--output", required=True, help="image to write (an existing file is replaced)")
    p.add_argument("--size", type=positive_int, default=256, action=_SizeAction,
                   help="long side of the output in pixels (default 256); for a video, the long side its "
                        "frames are stylised at (the output keeps the video's size)")
    p.add_argument("--scales", type=int_list, default=None,
                   help="coarse-to-fine long sides, e.g. 256,512,1024 (the last is the output size)")
    p.add_argument("--save-every", type=positive_int, default=None, metavar="N",
                   help="also write the image every N iterations (OUT_<size>px_<iteration>.png)")
    p.add_argument("--ftol", type=float, default=defaults.ftol,
                   help="L-BFGS stops when an iteration improves the loss by less than this "
                        f"fraction (default {defaults.ftol:g}; 0 runs all iterations)")
    p.add_argument("--pooling", choices=("max", "average"), default="max",
                   help="VGG pooling (Gatys et al. use average for synthesis; default max)")
    p.set_defaults(size_given=False)
    add_run_options(p, iterations=defaults.iterations, tv_weight=defaults.tv_weight)


def add_style_options(p: argparse.ArgumentParser, *, batch: bool = False) -> None:
    """The options of ``dfi style``; ``batch``: those of ``dfi batch style`` (no IMAGE
    list, -o, --texture or video options)."""
    from ..core.settings import PRESERVE_COLOR
    from ..style.settings import DEFAULT_CONTENT_LAYERS, DEFAULT_STYLE_LAYERS, INITS, StyleConfig

    defaults = StyleConfig()
    if not batch:
        p.add_argument("images", nargs="+", metavar="IMAGE",
                       help="CONTENT STYLE [STYLE …]; with --texture only STYLE images. CONTENT may be a "
                            "video (.mp4 .mov .avi .mkv .webm) or a folder of frames")
        p.add_argument("--texture", action="store_true", help="texture synthesis: no content image")
    p.add_argument("--content-weight", type=float, default=defaults.content_weight,
                   help=f"content weight (default {defaults.content_weight:g})")
    p.add_argument("--style-weight", type=float, default=defaults.style_weight,
                   help="style weight; the same value gives the same balance at any size "
                        f"(default {defaults.style_weight:g})")
    p.add_argument("--content-layers", default=DEFAULT_CONTENT_LAYERS,
                   help=f"layer[:weight],… (default {DEFAULT_CONTENT_LAYERS})")
    p.add_argument("--style-layers", default=DEFAULT_STYLE_LAYERS,
                   help=f"layer[:weight],… (default {DEFAULT_STYLE_LAYERS})")
    p.add_argument("--style-blend", type=alpha_list, default=None,
                   help="one weight per style image, e.g. 0.7,0.3 (default equal)")
    p.add_argument("--style-scale", type=float, default=1.0,
                   help="style image size relative to the output (default 1)")
    p.add_argument("--init", choices=INITS if batch else (*INITS, "adain"), default=None,
                   help="start from the content (default), noise or style" if batch else
                        "start from the content (default), noise (default with --texture), style, or adain "
                        "(the one-pass AdaIN result of the fetched pair, or of --decoder: Gatys refines it)")
    p.add_argument("--preserve-color", choices=PRESERVE_COLOR, default="none",
                   help="keep the content's colours: luminance-only transfer, histogram "
                        "matching of the style (with --method adain: the reference's CORAL, the style's "
                        "colour mean and covariance made the content's before encoding), or yuv swap after "
                        "(default none)")
    _add_reconstruction_options(p, batch=batch)
    if not batch:
        p.add_argument("--method", choices=("gatys", "adain", "wct"), default="gatys",
                       help="gatys: optimise the image (default); adain: one pass through an encoder and a "
                            "decoder (Huang & Belongie; default the fetched pytorch-AdaIN pair: dfi weights "
                            "fetch adain; --weights gives another encoder); wct: whitening and colouring, "
                            "coarse to fine, one --decoder per level (Li et al.) on the --weights VGG")
        p.add_argument("--alpha", type=float, default=None,
                       help="adain / wct: content–style trade-off in feature space, 0…1 (default 1 for adain, "
                            "0.6 for wct, Li et al.'s)")
        p.add_argument("--mask", type=Path, default=None, metavar="MASK",
                       help="adain with two styles: the first where MASK is light, the second elsewhere "
                            "(resized to each feature map)")
        p.add_argument("--temporal-blend", type=float, default=0.0, metavar="B",
                       help="adain / wct video: pull each frame towards the previous output warped along the "
                            "optical flow where it is consistent, 0…1 (default 0: frames on their own)")
        p.add_argument("--decoder", type=Path, action="append", default=None, metavar="DEC.npz",
                       help="adain: the decoder (default the fetched AdaIN decoder); wct: one per level, "
                            "repeated (from dfi train-decoder --layers conv5_1, …, conv1_1)")
        from .video import add_video_options
        add_video_options(p)


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("style", help="style transfer (Gatys et al.) or texture synthesis")
    add_style_options(p)
    p.set_defaults(func=_cmd_style)

    p = sub.add_parser("invert", help="feature inversion: rebuild an image from one layer")
    p.add_argument("image", type=Path, metavar="IMAGE", help="image whose features are inverted")
    p.add_argument("--layer", default="conv4_2", help="layer[:weight],… to invert (default conv4_2)")
    _add_reconstruction_options(p)
    p.set_defaults(func=_cmd_invert)
