"""``dfi train-decoder``: a VGG-19 feature decoder for fast DFI edits and warm starts."""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from .common import (UsageError, add_run_options, add_training_options, check_not_inputs, check_writable,
                     load_net, parse_layers, run_training, select_device, training_checkpoint)

#: the α rows of a sample grid: input | D(φ(x)) | D(φ(x) + s·ŵ) for these strengths
SAMPLE_STRENGTHS = (0.2, 0.4)
#: faces the attribute directions are measured on
DIRECTION_FACES = 64


def _training_set(args, config):
    """(image files, attribute scores or None) of --index or --images."""
    from ..core.image import image_files

    if (args.index is None) == (args.images is None):
        raise UsageError("give one of --index INDEX (aligned faces with attributes) and --images DIR")
    if args.index is not None:
        from data_tools.attributes import attribute_columns
        from data_tools.index import load_index

        index = load_index(args.index)
        files = [index.images_root / p for p in index.table["path"]]
        scores = index.table[attribute_columns(index.table)].to_numpy()
    else:
        if not args.images.is_dir():
            raise FileNotFoundError(f"--images {args.images}: not a folder")
        files, scores = image_files(args.images), None
    if len(files) < config.batch_size:
        count = f"{len(files)} image" + ("" if len(files) == 1 else "s")
        raise UsageError(f"{args.index or args.images}: {count}, fewer than --batch-size {config.batch_size}; "
                         f"train on more {'faces' if args.index else 'images'}")
    return files, scores


def _cmd_train_decoder(args: argparse.Namespace) -> int:
    from dataclasses import replace

    import numpy as np

    from ..core.image import crop_and_resize, first_readable, write_image
    from ..edit.decoding import DecoderTrainer, attribute_directions, feature_scales
    from ..edit.settings import DecoderTrainConfig
    from ..nets.decoder import Decoder, dfi_spec, save_decoder

    out = Path(args.output)
    if out.suffix != ".npz":
        raise UsageError(f"-o {out}: a decoder file ends in .npz")
    check_writable({"-o": out})
    check_not_inputs({"-o": out}, {"--index": args.index})
    if args.time_limit is not None and not args.time_limit > 0:
        raise UsageError(f"--time-limit {args.time_limit}: give a number of minutes above 0")
    if args.method == "adain":
        return _train_adain(args, out)
    if args.content is not None or args.styles is not None:
        raise UsageError("--content and --styles are for --method adain (DFI's decoder trains on --index or --images)")
    config = DecoderTrainConfig(size=args.size, batch_size=args.batch_size, iterations=args.iterations,
                                lr=args.lr, layers=parse_layers(args.layers),
                                width=DecoderTrainConfig.width if args.width is None else args.width,
                                pixel_weight=args.pixel_weight, tv_weight=args.tv_weight, seed=args.seed,
                                objective=args.objective, padding=args.padding, upsample=args.upsample,
                                norm=args.norm)
    files, scores = _training_set(args, config)
    crop = config.crop if args.index is not None else None
    checkpoint = training_checkpoint(args, out)
    vgg, _ = load_net(args)
    size = (config.size, config.size)
    rows, images = first_readable(files, DIRECTION_FACES)
    sample = np.stack([crop_and_resize(image, crop, size) for image in images])
    if scores is not None:
        directions = attribute_directions(vgg, sample, scores[rows], config.layers)
    else:  # no attributes: plain targets only
        config = replace(config, edited=0.0)
        directions = np.zeros((1, 1), np.float32)
    channels = {name: weight.shape[0] for name, (weight, _) in vgg.params.items()}
    scales = feature_scales(vgg, sample, config.layers)
    decoder = Decoder(dfi_spec(channels, layers=config.layers, width=config.width, scales=scales,
                               padding=config.padding, upsample=config.upsample, norm=config.norm), seed=config.seed)
    decoder.to_device(vgg.device)
    _check_training_memory(vgg, decoder, config)
    trainer = DecoderTrainer(vgg, decoder, files, directions, config, crop=crop)
    if args.resume:
        trainer.load_checkpoint(checkpoint)
    deadline = None if args.time_limit is None else time.monotonic() + 60 * args.time_limit

    def write_samples(step: int) -> None:
        write_image(out.with_name(f"{out.stem}_sample_{step:06d}.png"),
                    _samples(trainer, sample[:2], bool(scores is not None)))
    run_training(trainer, config.iterations, args, checkpoint, samples=write_samples, deadline=deadline)
    settings = {**vars(config), "weights": vgg.name, "steps_done": trainer.step,
                "trained_on": str(args.index or args.images)}
    save_decoder(out, decoder, vgg_identity=vgg.identity, convention=repr(vgg.convention), settings=settings)
    return _finished(trainer, config.iterations, checkpoint, out, args)


def _finished(trainer, iterations: int, checkpoint: Path, out: Path, args) -> int:
    """After the decoder is written: the checkpoint goes when the run is complete; a run
    stopped by --time-limit says how to continue it."""
    if trainer.step >= iterations:
        checkpoint.unlink(missing_ok=True)
    elif not args.quiet:
        print(f"dfi: stopped at step {trainer.step} of {iterations} (--time-limit); --resume continues",
              file=sys.stderr)
    print(out)
    return 0


def training_bytes(vgg, decoder, config, size: int = None, batch: int = None) -> int:
    """Memory one training step needs at ``size`` / ``batch`` (default the config's): the
    VGG pass on the decoded images (forward and backward), the decoder's graph (each
    convolution's padded input, output and ReLU kept for the backward pass, for the
    targets and — residual objective — the edited faces' own features: up to 2× the
    batch; a normalisation's and a bilinear upsampling's intermediate maps too) and the
    largest column buffer of Chainer's convolution, alive up to three times."""
    from ..nets.decoder import column_elements, conv_channels

    size, batch = size or config.size, batch or config.batch_size
    rows = batch * config.decodes_per_image
    spec = decoder.spec
    side, convs, maps, channels = -(-size // spec.multiple), iter(conv_channels(spec)), 0, 0
    for op in spec.ops:
        if op[0] == "up":
            side *= 2
            maps += (10 if spec.upsample == "bilinear" else 0) * channels * side * side  # its shifted copies
        elif op[0] == "conv":
            _, _, channels, relu, _ = next(convs)
            maps += (3 + (8 if relu and spec.norm == "instance" else 0)) * channels * side * side
    columns = max(column_elements(spec, size, 1).values())
    return vgg.pass_bytes((size, size), config.layers, batch=batch) + 4 * rows * (maps + 3 * columns)


def _check_training_memory(vgg, decoder, config) -> None:
    """Refuse before training when :func:`training_bytes` will not fit, naming what would."""
    from ..core.backend import available_memory
    from ..core.memory import format_bytes

    need, free = training_bytes(vgg, decoder, config), available_memory(vgg.device)
    if need <= free:
        return
    batch = next((b for b in range(config.batch_size - 1, 0, -1) if training_bytes(vgg, decoder, config, batch=b) <= free),
                 None)
    step = decoder.spec.multiple
    size = next((s for s in range(config.size - step, 15, -step) if training_bytes(vgg, decoder, config, size=s) <= free),
                None)
    fits = [f"--batch-size {batch}" for _ in [batch] if batch] + [f"--size {size}" for _ in [size] if size]
    raise MemoryError(f"training at --size {config.size} with --batch-size {config.batch_size} needs about "
                      f"{format_bytes(need)}, but only {format_bytes(free)} is free; the largest that fit: "
                      f"{' or '.join(fits) or 'none'}")


def _train_adain(args: argparse.Namespace, out: Path) -> int:
    """``dfi train-decoder --method adain --content DIR --styles DIR``: AdaIN's decoder
    through AdaIN's encoder (--weights: an encoder file, default the fetched one)."""
    from ..core.image import image_files
    from ..nets.decoder import Decoder, adain_spec, save_decoder
    from ..nets.encoder import load_encoder
    from ..nets.names import NORMS, PADDINGS, UPSAMPLINGS
    from ..style.adain_training import AdainTrainConfig, AdainTrainer
    from ..style.pretrained import adain_paths

    changed = [f"{option} {value}" for option, value, kinds in (("--padding", args.padding, PADDINGS),
                                                                ("--upsample", args.upsample, UPSAMPLINGS),
                                                                ("--norm", args.norm, NORMS)) if value != kinds[0]]
    if changed:
        raise UsageError(f"{', '.join(changed)}: --method adain trains AdaIN's published decoder as it is")
    for option, folder in (("--content", args.content), ("--styles", args.styles)):
        if folder is None:
            raise UsageError(f"--method adain trains on --content DIR and --styles DIR; give {option}")
        if not folder.is_dir():
            raise FileNotFoundError(f"{option} {folder}: not a folder")
    if args.index is not None or args.images is not None:
        raise UsageError("--method adain trains on --content and --styles, not --index / --images")
    config = AdainTrainConfig(size=args.size, batch_size=args.batch_size, iterations=args.iterations, lr=args.lr,
                              style_weight=args.style_weight, seed=args.seed,
                              width=AdainTrainConfig.width if args.width is None else args.width)
    contents, styles = image_files(args.content), image_files(args.styles)
    for option, files in (("--content", contents), ("--styles", styles)):
        if not files:
            raise FileNotFoundError(f"{option}: no images in it")
    checkpoint = training_checkpoint(args, out)
    encoder_file = adain_paths(args.data_dir)["encoder"] if args.weights == "auto" else Path(args.weights)
    if not encoder_file.is_file():
        raise FileNotFoundError(f"--weights {encoder_file}: no such file; run 'dfi weights fetch adain' "
                                "(or convert vgg_normalised.pth)")
    encoder = load_encoder(encoder_file)
    device = select_device(args)
    encoder.to_device(device)
    # (its input is the encoder's conv4_1, whatever the width of the rest)
    decoder = Decoder(adain_spec(width=config.width, channels=encoder.params["conv4_1"][0].shape[0]), seed=config.seed)
    decoder.to_device(device)
    trainer = AdainTrainer(encoder, decoder, contents, styles, config)
    if args.resume:
        trainer.load_checkpoint(checkpoint)
    deadline = None if args.time_limit is None else time.monotonic() + 60 * args.time_limit
    run_training(trainer, config.iterations, args, checkpoint, deadline=deadline)
    settings = {**vars(config), "method": "adain", "encoder": str(encoder_file), "steps_done": trainer.step,
                "content": str(args.content), "styles": str(args.styles)}
    save_decoder(out, decoder, vgg_identity=encoder.identity, convention="RGB [0, 255]", settings=settings)
    return _finished(trainer, config.iterations, checkpoint, out, args)


def _samples(trainer, images, edits: bool):
    """Rows of input | D(φ(x)) | x + D(φ(x) + s·ŵ) − D(φ(x)) (the fast edit) for each
    strength along the first direction."""
    import numpy as np

    import chainer

    from ..core.backend import to_cpu, using_device
    from ..core.image import grid
    from ..nets.features import extract

    vgg, strengths = trainer.vgg, (0.0, *(SAMPLE_STRENGTHS if edits else ()))
    tiles = []
    with using_device(vgg.device), chainer.no_backprop_mode(), chainer.using_config("train", False):
        feats = extract(vgg, vgg.device.send(images), trainer.config.layers)
        for row in range(len(images)):
            tiles.append(images[row])
            for s in strengths:
                one = {n: v[row:row + 1] for n, v in feats.items()}
                target = trainer.targets(one, np.array([s], np.float32), np.zeros(1, int))
                decoded = to_cpu(trainer.decoder(target, images.shape[2:]).array)[0]
                if s == 0:
                    base = decoded
                tiles.append(decoded if s == 0 else np.clip(images[row] + decoded - base, 0, 255))
    return grid(tiles, columns=1 + len(strengths))


def add_commands(sub: argparse._SubParsersAction) -> None:
    from ..edit.settings import DEFAULT_LAYERS, OBJECTIVES, DecoderTrainConfig
    from ..nets.names import NORMS, PADDINGS, UPSAMPLINGS
    from ..style.settings import AdainTrainConfig

    defaults = DecoderTrainConfig()
    p = sub.add_parser("train-decoder", help="train a feature decoder for fast DFI edits and warm starts")
    p.add_argument("--method", choices=("dfi", "adain"), default="dfi",
                   help="dfi: a decoder of VGG features for DFI edits and WCT levels (default); adain: AdaIN's "
                        "decoder through AdaIN's encoder (--weights: an encoder file, default the fetched one), "
                        "on --content and --styles, with AdaIN's losses (the reference trained 160,000 steps "
                        "of batch 8 at --size 256)")
    p.add_argument("--content", type=Path, default=None, metavar="DIR", help="adain: content images (e.g. COCO)")
    p.add_argument("--styles", type=Path, default=None, metavar="DIR", help="adain: style images (e.g. WikiArt)")
    p.add_argument("--style-weight", type=float, default=10.0, help="adain: the style loss weight (default 10)")
    p.add_argument("--index", type=Path, default=None, help="aligned faces with attributes (dfi data index)")
    p.add_argument("--images", type=Path, default=None, metavar="DIR",
                   help="or any folder of images (no attributes: plain targets only)")
    p.add_argument("-o", "--output", type=Path, required=True, metavar="DEC.npz",
                   help="decoder file to write (an existing one is replaced)")
    p.add_argument("--layers", default=",".join(DEFAULT_LAYERS),
                   help=f"VGG-19 layers it decodes (default {','.join(DEFAULT_LAYERS)}, dfi edit's)")
    add_training_options(p, defaults, model="DEC.npz", samples="input | decoded | fast edits")
    p.add_argument("--width", type=float, default=None,
                   help=f"scales the decoder's channel counts (default {defaults.width:g}; --method adain: "
                        f"{AdainTrainConfig.width:g}, the published decoder's)")
    p.add_argument("--pixel-weight", type=float, default=defaults.pixel_weight,
                   help=f"weight of the pixel term on plain targets (default {defaults.pixel_weight:g})")
    for option, choices, what in (("--padding", PADDINGS, "of each convolution's input"),
                                  ("--upsample", UPSAMPLINGS, "×2 upsampling between levels"),
                                  ("--norm", NORMS, "instance: each convolution's channels normalised per image")):
        p.add_argument(option, choices=choices, default=choices[0],
                       help=f"{what} (default {choices[0]}; BENCHMARKS.md compares them)")
    p.add_argument("--objective", choices=OBJECTIVES, default=defaults.objective,
                   help="what an edited target's feature loss is measured on: direct (default), D(t); "
                        "residual, x + D(t) − D(φ(x)), the start edits use (as good in 15 minutes, steps 9%% dearer)")
    p.add_argument("--time-limit", type=float, default=None, metavar="MINUTES",
                   help="stop cleanly after this wall time and write the decoder (--resume continues)")
    add_run_options(p, iterations=defaults.iterations, tv_weight=defaults.tv_weight, reconstruct=False)
    p.set_defaults(func=_cmd_train_decoder)
