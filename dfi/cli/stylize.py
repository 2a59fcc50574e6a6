"""``dfi train-stylizer`` and ``dfi stylize``: feed-forward stylisation from the command line."""
from __future__ import annotations

import argparse
from pathlib import Path

from .common import (FolderImages, UsageError, add_run_options, add_training_options, check_not_inputs, check_output,
                     check_writable, load_net, positive_int, progress_bar, run_training, select_device,
                     training_checkpoint)


def _cmd_train(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from ..core.image import grid, write_image
    from ..nets.stylizer import TransformNet
    from ..style.feedforward import TrainConfig, Trainer, content_images, load_model, save_model, style_images

    from ..style.pretrained import model_path

    out = Path(args.output)
    if out.suffix != ".npz":
        raise UsageError(f"-o {out}: a model file ends in .npz")
    if args.finetune is not None:
        args.finetune = model_path(args.finetune)
    check_writable({"-o": out})  # (its checkpoint and samples go beside it)
    check_not_inputs({"-o": out}, {"--finetune": args.finetune, **{f"--style {s}": s for s in args.style}})
    checkpoint = training_checkpoint(args, out)
    config = TrainConfig(size=args.size, batch_size=args.batch_size, iterations=args.iterations, lr=args.lr,
                         content_weight=args.content_weight, style_weight=args.style_weight,
                         tv_weight=args.tv_weight, content_layer=args.content_layer, width=args.width,
                         seed=args.seed)
    for path in args.style:
        if not Path(path).is_file():
            raise FileNotFoundError(f"--style {path}: no such file")
    files = content_images(args.content)
    names = [Path(p).name for p in args.style]
    if args.finetune is not None:
        transform, record = load_model(args.finetune)
        offset, names = transform.n_styles, list(record.get("styles", [])) + names
        config = replace(config, trained_styles=tuple(transform.add_styles(len(args.style))), width=transform.width)
    else:
        transform, offset = TransformNet(len(args.style), width=config.width, seed=config.seed), 0
    vgg, _ = load_net(args)
    transform.to_device(vgg.device)
    _check_training_memory(vgg, transform, config)
    trainer = Trainer(vgg, transform, style_images(args.style, config.size), files, config, style_offset=offset)
    if args.resume:
        trainer.load_checkpoint(checkpoint)
    samples = [_square_sample(f, config.size) for f in files[:2]]

    def write_samples(step: int) -> None:
        write_image(out.with_name(f"{out.stem}_sample_{step:06d}.png"),
                    grid(_sample_rows(transform, samples), columns=transform.n_styles + 1))
    run_training(trainer, config.iterations, args, checkpoint, samples=write_samples)
    settings = {**vars(config), "weights": vgg.name, "content": str(args.content),
                **({"finetuned_from": str(args.finetune)} if args.finetune else {})}
    save_model(out, transform, styles=names, settings=settings)
    checkpoint.unlink(missing_ok=True)
    print(out)
    return 0


def _square_sample(path, size):
    from ..core.image import read_image, resize

    image = read_image(path)
    side = min(image.shape[1:])
    return resize(image[:, :side, :side], (size, size))


def _sample_rows(transform, content) -> list:
    """Each sample content image, then it in every style (a row each)."""
    from ..style.feedforward import Stylizer

    model = Stylizer(transform, device=transform.device)
    tiles = []
    for image in content:
        tiles += [image] + [model.stylize(image, style=k) for k in range(transform.n_styles)]
    return tiles


def training_bytes(vgg, transform, config) -> int:
    """Device memory one training step needs: the VGG pass, the transformation network's
    activations (about ten maps of each layer's size kept for its backward pass) and
    Chainer's column buffers (the largest layer's, alive up to three times: im2col, its
    gradient, col2im)."""
    from ..nets.stylizer import column_elements

    side, maps = config.size, 0
    for name, _, stride, _, upsample, _, _ in transform.layers:
        side = side * 2 if upsample else side // stride
        maps += 10 * getattr(transform, name).out_channels * side * side
    layers = [config.content_layer, *(name.split(":")[0].strip() for name in config.style_layers.split(","))]
    return vgg.pass_bytes((config.size, config.size), layers, batch=config.batch_size) + \
        4 * config.batch_size * (maps + 3 * config.size * config.size) + \
        4 * 3 * max(column_elements(transform, config.size, config.batch_size).values())


def _check_training_memory(vgg, transform, config) -> None:
    """Refuse before training when :func:`training_bytes` will not fit."""
    from ..core.backend import available_memory
    from ..core.memory import format_bytes

    need, free = training_bytes(vgg, transform, config), available_memory(vgg.device)
    if need > free:
        raise MemoryError(f"training at --size {config.size} with --batch-size {config.batch_size} needs about "
                          f"{format_bytes(need)}, but only {format_bytes(free)} is free; lower either")


def _cmd_stylize(args: argparse.Namespace) -> int:
    from ..style.feedforward import Stylizer, parse_mix
    from ..core.image import IMAGE_SUFFIXES
    from ..video.io import VIDEO_SUFFIXES

    from ..style.pretrained import model_path

    if args.style is not None and args.mix is not None:
        raise UsageError("give one of --style K and --mix K:W,…, not both")
    args.model = model_path(args.model)
    if args.list_styles:
        for number, name in enumerate(Stylizer.load(args.model).styles):
            print(f"{number}\t{name}")
        return 0
    if args.input is None:
        raise UsageError("give INPUT (an image, a folder or a video), or --list-styles")
    if args.sheet is not None:
        return _sheet(args, Stylizer)
    if args.output is None:
        raise UsageError("give -o OUTPUT (or --sheet SHEET.png for every style on one photo)")
    source, out = Path(args.input), Path(args.output)
    check_not_inputs({"-o": out}, {"INPUT": source, "--model": args.model})
    if not source.exists():
        raise FileNotFoundError(f"INPUT {source}: no such file or folder")
    is_image = source.is_file() and source.suffix.lower() in IMAGE_SUFFIXES
    # a video, or a folder of frames made into one (-o VIDEO), as dfi style takes them
    is_video = source.suffix.lower() in VIDEO_SUFFIXES if source.is_file() else \
        out.suffix.lower() in VIDEO_SUFFIXES
    if not (is_image or is_video or source.is_dir()):
        raise UsageError(f"INPUT {source}: not an image ({', '.join(IMAGE_SUFFIXES)}), a folder of images "
                         f"or a video ({', '.join(VIDEO_SUFFIXES)})")
    if is_image:
        check_output(out)
    elif is_video:
        from .video import check_video_output
        check_video_output(args)
    elif out.suffix:
        raise UsageError(f"-o {out}: a folder's output is a folder (or a video: "
                         f"{', '.join(VIDEO_SUFFIXES)})")
    else:
        check_writable({}, {"-o": out})
    mix = {args.style: 1.0} if args.style is not None else parse_mix(args.mix) if args.mix is not None else None
    model = Stylizer.load(args.model, device=select_device(args))
    if mix is None:  # a one-style model needs no --style 0
        if model.net.n_styles != 1:
            raise UsageError(f"--model {args.model} has {model.net.n_styles} styles; give --style K or --mix K:W,…")
        mix = {0: 1.0}
    mix = model.net.check_mix(mix)
    run = dict(mix=mix, preserve_color=args.preserve_color)
    if is_image:
        from ..core.image import check_min_side, read_image, write_image

        write_image(out, model.stylize(check_min_side(read_image(source), f"INPUT {source}"), **run))
        print(out)
    elif is_video:
        _stylize_video(model, source, out, args, run)
    else:
        _stylize_folder(model, source, out, args, run)
    return 0


def _sheet(args, Stylizer) -> int:
    """INPUT (an image) in every style of the model, each tile numbered, on one sheet."""
    import math

    from ..core.image import check_min_side, grid, read_image, write_image

    source, out = Path(args.input), Path(args.sheet)
    check_output(out)
    check_not_inputs({"--sheet": out}, {"INPUT": source, "--model": args.model})
    if args.output is not None or args.style is not None or args.mix is not None:
        raise UsageError("--sheet renders every style: give no -o, --style or --mix with it")
    if not source.is_file():
        raise FileNotFoundError(f"INPUT {source}: no such file (--sheet takes one image)")
    model = Stylizer.load(args.model, device=select_device(args))
    image = check_min_side(read_image(source), f"INPUT {source}")
    tiles = [_numbered(image, "input")]
    with progress_bar(model.net.n_styles, args.quiet, "styles", unit="style") as bar:
        for number, name in enumerate(model.styles):
            styled = model.stylize(image, style=number, preserve_color=args.preserve_color)
            tiles.append(_numbered(styled, str(number) if name == f"style {number}" else f"{number} {name}"))
            bar.update(1)
    write_image(out, grid(tiles, columns=math.ceil(math.sqrt(len(tiles)))))
    print(out)
    return 0


def _numbered(image, label: str):
    """``image`` (CHW [0, 255]) with ``label`` in its top-left corner, white on black."""
    import numpy as np
    from PIL import Image, ImageDraw

    pil = Image.fromarray(np.clip(image, 0, 255).astype(np.uint8).transpose(1, 2, 0))
    draw = ImageDraw.Draw(pil)
    box = draw.textbbox((2, 2), label)
    draw.rectangle((0, 0, box[2] + 2, box[3] + 2), fill=(0, 0, 0))
    draw.text((2, 2), label, fill=(255, 255, 255))
    return np.asarray(pil, dtype=np.float32).transpose(2, 0, 1)


def _stylize_folder(model, source: Path, out: Path, args, run: dict) -> None:
    """Every image under ``source`` to the same relative path under ``out``; images of one
    size go through the network together, ``--batch-size`` at a time."""
    import numpy as np

    from ..core.image import IMAGE_SUFFIXES, check_min_side, image_files, read_image, write_image

    files = image_files(source)
    if not files:
        raise FileNotFoundError(f"INPUT {source}: no images in it ({', '.join(IMAGE_SUFFIXES)})")
    if out.resolve().is_relative_to(source.resolve()):
        raise UsageError(f"-o {out} is inside the INPUT folder {source}; choose a folder outside it")
    images = FolderImages(len(files), out)
    with progress_bar(len(files), args.quiet, "images", unit="image") as bar:
        batch: list = []

        def flush():
            for path, image in zip((p for p, _ in batch), model.stylize(np.stack([i for _, i in batch]), **run)):
                write_image(out / path.relative_to(source), image)
            bar.update(len(batch))
            batch.clear()

        def load(path):
            return check_min_side(read_image(path), f"image {path}")

        for path in files:
            image = images.read(path, load)
            if image is None:
                bar.update(1)
                continue
            if batch and (len(batch) == args.batch_size or batch[0][1].shape != image.shape):
                flush()
            batch.append((path, image))
        if batch:
            flush()
    images.check()
    print(out)


def _stylize_video(model, source: Path, out: Path, args, run: dict) -> None:
    """A video's frames in batches, through the video module's resumable frame store."""
    import numpy as np

    from ..video.io import FrameStore, probe, read_frames
    from .video import say_resume
    info = probe(source)
    store = FrameStore(out, info, {"command": "stylize", "model": str(Path(args.model).resolve()),
                                   "mix": run["mix"], "preserve_color": run["preserve_color"]})
    done = store.done()
    say_resume(out, done, info.count)
    store.begin()
    with progress_bar(info.count, args.quiet, "frames", unit="frame") as bar:
        bar.update(done)
        frames = read_frames(info, done)
        for first in range(done, info.count, args.batch_size):
            batch = [frame for _, frame in zip(range(args.batch_size), frames)]
            for k, image in enumerate(model.stylize(np.stack(batch), **run)):
                store.write(first + k, image)
            bar.update(len(batch))
    print(store.finish())


def add_commands(sub: argparse._SubParsersAction) -> None:
    from ..style.settings import CONTENT_LAYERS, FEEDFORWARD_COLOR, TrainConfig

    defaults = TrainConfig()
    p = sub.add_parser("train-stylizer", help="train a feed-forward network for one or many styles "
                                              "(Johnson et al.; conditional instance norm)")
    p.add_argument("--style", action="append", required=True, metavar="IMAGE",
                   help="a style image; repeat for several styles (one network learns them all)")
    p.add_argument("--content", type=Path, required=True, metavar="DIR",
                   help="folder of content images (e.g. COCO train2014: dfi data download coco-train2014)")
    p.add_argument("-o", "--output", type=Path, required=True, metavar="MODEL.npz", help="model file to write (an existing one is replaced)")
    add_training_options(p, defaults, model="MODEL.npz", samples="content in every style")
    p.add_argument("--content-weight", type=float, default=defaults.content_weight,
                   help=f"content loss weight (default {defaults.content_weight:g})")
    p.add_argument("--style-weight", type=float, default=defaults.style_weight,
                   help=f"style loss weight (default {defaults.style_weight:g})")
    p.add_argument("--content-layer", choices=CONTENT_LAYERS, default=defaults.content_layer,
                   help=f"VGG layer of the content loss (default {defaults.content_layer})")
    p.add_argument("--width", type=float, default=1.0, help="scale of the stylizer's channels (default 1)")
    p.add_argument("--finetune", default=None, metavar="MODEL",
                   help="add the --style images to this model (a file or a fetched one's name, e.g. "
                        "magenta-varied), training only their normalisation (Dumoulin et al.'s recipe)")
    add_run_options(p, iterations=defaults.iterations, tv_weight=defaults.tv_weight, reconstruct=False)
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("stylize", help="stylise an image, a folder of images or a video with a trained model")
    p.add_argument("input", metavar="INPUT", nargs="?", help="an image, a folder of images, or a video")
    p.add_argument("-o", "--output", default=None, help="image, folder or video to write (existing files are "
                                                         "replaced; an interrupted video resumes)")
    p.add_argument("--model", required=True, metavar="MODEL",
                   help="a model file (dfi train-stylizer, dfi weights convert) or a fetched one's name: "
                        "magenta-monet, magenta-varied, candy, mosaic, rain_princess, udnie (dfi weights fetch)")
    p.add_argument("--list-styles", action="store_true", help="print the model's style numbers and names, then stop")
    p.add_argument("--sheet", default=None, metavar="SHEET.png",
                   help="render INPUT (an image) in every style of the model, numbered, on one sheet")
    p.add_argument("--style", type=int, default=None, metavar="K",
                   help="the style number (0 = the first; a one-style model needs none)")
    p.add_argument("--mix", default=None, metavar="K:W,…",
                   help="a mix of styles, e.g. 0:0.5,1:0.5: weights summing to 1 blend the styles, a larger "
                        "sum exaggerates them, a negative one moves away from a style (each within ±10; "
                        "the mix is not normalised, as in Magenta's models)")
    p.add_argument("--preserve-color", choices=FEEDFORWARD_COLOR,
                   default="none", help="keep the input's colours: luminance (YIQ) or yuv (default none)")
    p.add_argument("--batch-size", type=positive_int, default=4, help="images or frames stylised at once (default 4)")
    p.add_argument("--device", default="auto", help="auto, cpu, gpu or gpu:N (default auto)")
    p.set_defaults(func=_cmd_stylize)
