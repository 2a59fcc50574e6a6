"""``dfi style --method adain | wct`` and ``--init adain``: arbitrary style in one pass
from the command line — an image, or a folder of images (same relative paths under -o; the
styles read once and, for AdaIN, encoded once)."""
from __future__ import annotations

import argparse
from pathlib import Path

from .common import (FolderImages, UsageError, check_not_inputs, check_output, check_writable, load_net, progress_bar,
                     select_device)


def _adain_pair(args: argparse.Namespace, encoder_file=None):
    """(encoder, FastDecoder) on the device: ``encoder_file`` (default the fetched one) and
    --decoder (default the fetched one), checked to pair."""
    from ..nets.decoder import FastDecoder, check_decoder_vgg, load_decoder
    from ..nets.encoder import load_encoder
    from ..style.pretrained import adain_paths

    if args.decoder and len(args.decoder) > 1:
        raise UsageError(f"AdaIN takes one --decoder, not {len(args.decoder)} (several are WCT's levels)")
    fetched = adain_paths(args.data_dir)
    encoder_file = fetched["encoder"] if encoder_file is None else Path(encoder_file)
    decoder_file = Path(args.decoder[0]) if args.decoder else fetched["decoder"]
    for option, path in (("--weights", encoder_file), ("--decoder", decoder_file)):
        if not path.is_file():
            raise FileNotFoundError(f"{option} {path}: no such file" + (
                "; run 'dfi weights fetch adain'" if path in fetched.values() else ""))
    encoder = load_encoder(encoder_file)
    decoder, record = load_decoder(decoder_file)
    check_decoder_vgg(record, encoder.identity, ["conv4_1"], f"--decoder {decoder_file}")
    device = select_device(args)
    encoder.to_device(device)
    decoder.to_device(device)
    return encoder, FastDecoder(decoder)


def adain_start(args: argparse.Namespace, content, styles):
    """``--init adain``: the one-pass AdaIN result (the fetched pair, or --decoder's with
    the fetched encoder) at the first stage's size, for Gatys to refine."""
    from ..style.adain import adain_transfer
    from ..style.gatys import fit_long_side

    encoder, decoder = _adain_pair(args)
    first = (args.scales or [args.size])[0]
    return adain_transfer(encoder, decoder, fit_long_side(content, first),
                          [fit_long_side(s, max(16, round(first * args.style_scale))) for s in styles])


def _jobs(args: argparse.Namespace, method: str) -> list[tuple[Path, Path]]:
    """(content, output) pairs: one image, or every image of a folder into -o's folder."""
    from ..core.image import IMAGE_SUFFIXES, image_files
    from ..video.io import is_video

    from ..video.io import VIDEO_SUFFIXES

    source, out = Path(args.images[0]), Path(args.output)
    check_not_inputs({"-o": out}, {f"IMAGE {i + 1}": p for i, p in enumerate(args.images)})
    if (source.is_file() and is_video(source)) or (source.is_dir() and out.suffix.lower() in VIDEO_SUFFIXES):
        from .video import check_video_output
        check_video_output(args)
        return []  # a video (or a folder of frames made into one): run_one_pass's video loop
    if source.is_dir():  # a folder of images → a folder of images
        if out.suffix:
            raise UsageError(f"-o {out}: a folder's output is a folder (or a video: {', '.join(VIDEO_SUFFIXES)})")
        if out.resolve().is_relative_to(source.resolve()):
            raise UsageError(f"-o {out} is inside the CONTENT folder {source}; choose a folder outside it")
        check_writable({}, {"-o": out})
        files = image_files(source)
        if not files:
            raise FileNotFoundError(f"CONTENT {source}: no images in it ({', '.join(IMAGE_SUFFIXES)})")
        return [(f, out / f.relative_to(source)) for f in files]
    check_output(out)
    return [(source, out)]


def run_one_pass(args: argparse.Namespace) -> int:
    """``dfi style CONTENT STYLE … --method adain | wct``."""
    import numpy as np

    from ..core.color import luminance
    from ..core.image import check_min_side, is_greyscale, read_image, resize, write_image
    from ..style.gatys import fit_long_side
    from ..style.transforms import blend_weights, check_alpha

    method = args.method
    if args.texture:
        raise UsageError(f"--texture is Gatys's synthesis; --method {method} needs a CONTENT image")
    if len(args.images) < 2:
        raise UsageError("give a CONTENT and at least one STYLE image")
    if not (0.0 <= args.temporal_blend <= 1.0):
        raise UsageError(f"--temporal-blend {args.temporal_blend} must be within 0…1")
    jobs = _jobs(args, method)
    alpha = None if args.alpha is None else check_alpha(args.alpha)
    weights = blend_weights(args.style_blend, len(args.images) - 1)
    if args.mask is not None and len(args.images) != 3:
        raise UsageError(f"--mask needs exactly two styles (foreground, background), not {len(args.images) - 1}")
    if jobs and args.temporal_blend:
        raise UsageError("--temporal-blend is for videos")
    side = max(16, int(round(args.size * args.style_scale)))  # the images are read before the networks load
    styles = [fit_long_side(check_min_side(read_image(p), f"STYLE {p}"), side) for p in args.images[1:]]
    mask_image = None if args.mask is None else luminance(read_image(args.mask)).repeat(3, axis=0)
    grey_styles = all(is_greyscale(p) for p in args.images[1:])
    transfer = _adain(args, alpha, weights) if method == "adain" else _wct(args, alpha, weights)
    if not jobs:
        return _video(args, lambda frame, mask: transfer(frame, styles, mask), mask_image)

    def load(path):
        return check_min_side(read_image(path), f"CONTENT {path}")

    folder = FolderImages(len(jobs), Path(args.output)) if Path(args.images[0]).is_dir() else None
    with progress_bar(len(jobs), args.quiet or len(jobs) == 1, "images", unit="image") as bar:
        for source, out in jobs:
            content = load(source) if folder is None else folder.read(source, load)
            if content is not None:
                content = fit_long_side(content, args.size)
                mask = None if mask_image is None else np.asarray(resize(mask_image, content.shape[1:])[0] / 255.0)
                write_image(out, transfer(content, styles, mask), grey=grey_styles and is_greyscale(source))
            bar.update(1)
    if folder is not None:
        folder.check()
    print(args.output)
    return 0


def _adain(args, alpha, weights):
    """The AdaIN transfer of one content image (the styles encoded once where the colour
    mode allows)."""
    from ..style.adain import adain_transfer, encode_styles

    from ..style.adain import check_transfer_memory

    encoder, decoder = _adain_pair(args, None if args.weights == "auto" else args.weights)
    cache = {}

    def transfer(content, styles, mask):
        check_transfer_memory(encoder, decoder.net, content.shape[1:])
        features = None
        if args.preserve_color not in ("histogram", "luminance"):  # (those recolour the styles per content)
            if "styles" not in cache:
                cache["styles"] = encode_styles(encoder, styles)
            features = cache["styles"]
        return adain_transfer(encoder, decoder, content, styles, alpha=1.0 if alpha is None else alpha,
                              weights=weights, mask=mask, preserve_color=args.preserve_color,
                              style_features=features)
    return transfer


def wct_levels(paths) -> list:
    """(path, decoder, record) of every WCT level decoder, checked (one level each, no level
    twice) before any network loads."""
    from ..nets.decoder import load_decoder
    from ..style.wct import LEVELS

    loaded, levels = [(path, *load_decoder(path)) for path in paths], set()
    for path, _, record in loaded:
        layers = [name for name, _ in record["architecture"]["inputs"]]
        if len(layers) != 1 or layers[0] not in LEVELS:
            raise UsageError(f"--decoder {path} decodes {', '.join(layers)}; WCT needs one level each of "
                             f"{', '.join(LEVELS)}")
        if layers[0] in levels:
            raise UsageError(f"--decoder {path}: two decoders for {layers[0]}")
        levels.add(layers[0])
    return loaded


def wct_decoders(loaded, net) -> dict:
    """{level: FastDecoder} of :func:`wct_levels`' decoders, each checked against ``net``."""
    from ..nets.decoder import FastDecoder, check_decoder_vgg

    decoders = {}
    for path, decoder, record in loaded:
        layer = record["architecture"]["inputs"][0][0]
        check_decoder_vgg(record, net.identity, [layer], f"--decoder {path}")
        decoder.to_device(net.device)
        decoders[layer] = FastDecoder(decoder)
    return decoders


def _wct(args, alpha, weights):
    """The WCT transfer of one content image, with one --decoder per level."""
    from ..style.wct import ALPHA, LEVELS, wct_transfer

    if args.preserve_color != "none":
        raise UsageError("--preserve-color is not built for --method wct yet")
    if not args.decoder:
        raise UsageError(f"--method wct needs a --decoder per level (train them with dfi train-decoder --layers "
                         f"L for L in {', '.join(LEVELS)}; give at least one)")
    loaded = wct_levels(args.decoder)  # before the network
    net, _ = load_net(args)
    decoders = wct_decoders(loaded, net)

    def transfer(content, styles, mask):
        return wct_transfer(net, decoders, content, styles, alpha=ALPHA if alpha is None else alpha,
                            weights=weights, mask=mask)
    return transfer


def _video(args: argparse.Namespace, transfer, mask_image) -> int:
    """A video (or a folder of frames) frame by frame through ``transfer``, resumable, with
    --temporal-blend's flicker remedy."""
    import numpy as np

    from ..core.image import resize
    from ..style.gatys import long_side_shape
    from ..video.io import FrameStore, probe, read_frames
    from ..video.stylize import one_pass_video
    from .video import say_resume

    source = Path(args.images[0])
    info = probe(source)
    shape = long_side_shape(info.size, args.size)
    mask = None if mask_image is None else np.asarray(resize(mask_image, shape)[0] / 255.0)
    settings = {"command": "style", "method": args.method, "styles": [str(Path(s).resolve()) for s in args.images[1:]],
                "size": args.size, "alpha": args.alpha, "blend": args.style_blend, "weights": args.weights,
                "decoders": [str(d) for d in args.decoder or []], "temporal_blend": args.temporal_blend,
                "preserve_color": args.preserve_color}
    store = FrameStore(Path(args.output), info, settings)
    done = store.done()
    say_resume(args.output, done, info.count)
    previous = previous_frame = None
    if done and args.temporal_blend:
        previous = store.kept(done - 1)
        previous_frame = resize(next(read_frames(info, done - 1)), shape)
        if previous is None:
            done = 0
    store.begin()
    with progress_bar(info.count, args.quiet, "frames", unit="frame") as bar:
        bar.update(done)
        for index, out in one_pass_video(lambda frame: transfer(frame, mask), read_frames(info, done), shape,
                                         blend=args.temporal_blend, start=done, previous=previous,
                                         previous_frame=previous_frame):
            store.write(index, resize(np.clip(out, 0, 255), info.size),
                        keep=out if args.temporal_blend else None)
            bar.update(1)
    print(store.finish())
    return 0

