"""Videos on the command line: ``dfi style VIDEO …`` and ``dfi edit / sweep VIDEO …``.

The runners stream the frames, show a bar over frames (the last frame's iterations and loss
beside it), write every finished frame at once, and continue an interrupted run."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .common import UsageError, load_net, progress_bar


def _frame_list(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        values = ()
    if not values:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of frame offsets, e.g. 1,2,4")
    return values


def add_video_options(p: argparse.ArgumentParser) -> None:
    """The flags of the frame loop (they apply when the input is a video or frame folder)."""
    from ..video.settings import VIDEO_INITS, VideoConfig

    defaults = VideoConfig()
    p.add_argument("--temporal-weight", type=float, default=defaults.temporal_weight,
                   help="video: weight of the temporal consistency term (Ruder et al.), 0 for none "
                        f"(default {defaults.temporal_weight:g})")
    p.add_argument("--temporal-frames", type=_frame_list, default=defaults.temporal_frames,
                   help="video: earlier frames each frame is kept consistent with, e.g. 1,2,4 "
                        "(default 1)")
    p.add_argument("--video-init", choices=VIDEO_INITS, default=defaults.init,
                   help="video: frames after the first start from the previous result warped along "
                        "the optical flow (default), the frame itself, or noise")


def video_config(args: argparse.Namespace):
    from ..video.settings import VideoConfig

    return VideoConfig(temporal_weight=args.temporal_weight, temporal_frames=tuple(args.temporal_frames),
                       init=args.video_init)


def check_video_output(args: argparse.Namespace, outputs=None) -> None:
    """A video's output is a video file or a folder (of PNG frames), never the input, and
    each of ``outputs`` (default ``-o``; a sweep writes one per α) can be written."""
    from ..video.io import VIDEO_SUFFIXES
    from .common import check_writable

    out = Path(args.output)
    if out.suffix and out.suffix.lower() not in VIDEO_SUFFIXES:
        raise UsageError(f"-o {out}: a video's output is a video ({', '.join(VIDEO_SUFFIXES)}) or a folder")
    for path in map(Path, outputs or [out]):
        check_writable({"-o": path} if path.suffix else {}, {} if path.suffix else {"-o": path})


def say_resume(output, done: int, count: int) -> None:
    """The first line of a run that continues an interrupted video (whatever ``--quiet``)."""
    if done:
        print(f"dfi: resuming {output}: frames 1–{done} of {count} are done, continuing from frame {done + 1}",
              file=sys.stderr)


def _resume(store, info, count: int, shape, keep_back: int):
    """The outputs and working-size frames just before ``count`` (for a resumed run)."""
    from ..core.image import resize
    from ..video.io import read_frames

    first = max(0, count - keep_back)
    outputs = [store.kept(i) for i in range(first, count)]
    if any(o is None for o in outputs):
        return [], []
    frames = []
    for frame in read_frames(info, first):
        if len(frames) == count - first:
            break
        frames.append(resize(frame, shape))
    return outputs, frames


def run_style_video(args: argparse.Namespace, config, styles) -> int:
    """``dfi style VIDEO STYLE … -o OUT``."""
    from dataclasses import replace

    from ..style.gatys import check_memory, long_side_shape
    from ..video.io import FrameStore, probe, read_frames
    from ..video.stylize import finish_frame, stylize_video

    video = video_config(args)
    info = probe(args.images[0])
    shape = long_side_shape(info.size, args.size)
    settings = {"command": "style", "styles": [str(Path(s).resolve()) for s in args.images[1:]],
                "config": repr(config), "video": repr(video), "weights": args.weights, "seed": args.seed}
    store = FrameStore(Path(args.output), info, settings)
    done = store.done()
    say_resume(args.output, done, info.count)
    net, micro = load_net(args)
    config = replace(config, scales=(max(shape),), reconstruct=replace(config.reconstruct, micro_batch=micro))
    import numpy as np
    check_memory(net, np.zeros((3, *shape), np.float32), styles, config)
    back = max(video.temporal_frames)
    previous, previous_frames = _resume(store, info, done, shape, back) if done else ([], [])
    if done and not previous:  # its saved state is gone: start over
        done = 0
    store.begin()
    frames = read_frames(info, done)
    with progress_bar(info.count, args.quiet, "frames", unit="frame") as bar:
        bar.update(done)
        originals = {}

        def remember(stream):
            for index, frame in enumerate(stream, done):
                originals[index] = frame
                yield frame
        for result in stylize_video(net, remember(frames), styles, config, video, shape, start=done,
                                    previous=previous, previous_frames=previous_frames):
            frame = originals.pop(result.index)
            store.write(result.index, finish_frame(result, frame, config, info.size), keep=result.image)
            bar.update(1)
            if not args.quiet:
                bar.set_postfix(iterations=result.progress.iteration,
                                loss=f"{result.progress.loss_host[0]:.3g}", refresh=False)
    out = store.finish()
    print(out)
    return 0


def _edit_outputs(args: argparse.Namespace, alphas) -> dict:
    """The output (video or folder) for each α: ``-o`` for ``edit``, ``OUT_alpha<α>`` for
    ``sweep``."""
    out = Path(args.output)
    if args.command == "edit":
        return {alphas[0]: out}
    return {a: out.with_name(f"{out.stem}_alpha{a:g}{out.suffix}") for a in alphas}


def run_edit_video(args: argparse.Namespace, alphas) -> int:
    """``dfi edit VIDEO … -o OUT`` and ``dfi sweep VIDEO … -o OUT``: every frame edited."""
    import numpy as np

    from ..edit.attributes import load_vector, save_vector
    from ..edit.pipeline import choose_neighbors, compute_vector
    from ..video.face import aligned_face, edit_video, track_face
    from ..video.io import FrameStore, probe, read_frames
    from .common import check_not_inputs
    from .edit import decode_only, edit_settings, neighbour_features

    for option, value in (("--crop", args.crop), ("--mask", args.mask), ("--show-landmarks", args.show_landmarks)):
        if value is not None:
            raise UsageError(f"{option} is for photos; a video's face is tracked and aligned in every frame")
    if args.no_align:
        raise UsageError("--no-align is for photos; a video's face is tracked and aligned in every frame")
    outputs = _edit_outputs(args, alphas)
    check_video_output(args, list(outputs.values()))
    config, index = edit_settings(args, alphas)
    video = video_config(args)
    check_not_inputs({f"-o ({'alpha ' + format(a, 'g')})": o for a, o in outputs.items()},
                     {"INPUT": args.input, "--vector": args.vector, "--index": args.index})
    info = probe(args.input)
    settings = {"command": "edit", "alphas": list(alphas), "attribute": args.attribute,
                "vector": str(args.vector), "index": str(args.index), "config": repr(config),
                "video": repr(video), "weights": args.weights, "seed": args.seed, "face": args.face,
                "decoder": str(args.decoder) if args.decoder else None, "fast": decode_only(args)}
    stores = {a: FrameStore(o, info, dict(settings, output_alpha=a)) for a, o in outputs.items()}
    first = next(iter(stores.values()))
    done = min(store.done() for store in stores.values())
    say_resume(args.output, done, info.count)
    net, micro = load_net(args)
    from dataclasses import replace
    config = replace(config, batch_size=micro or config.batch_size,
                     reconstruct=replace(config.reconstruct, micro_batch=micro))
    for store in stores.values():
        store.begin()
    track_file = first.state / "track.npz"
    if track_file.is_file():
        with np.load(track_file) as saved:
            from ..video.face import FaceTrack, smooth_landmarks
            from ..face.align import LFW_TEMPLATE, similarity_transform
            raw = saved["raw"]
            smooth = smooth_landmarks(raw)
            track = FaceTrack(raw, smooth, tuple(similarity_transform(p, LFW_TEMPLATE) for p in smooth))
    else:
        with progress_bar(info.count, args.quiet, "tracking the face", unit="frame") as bar:
            track = track_face(read_frames(info), face=args.face or 1, on_frame=bar.update)
        from data_tools.fsutil import atomic_path
        with atomic_path(track_file) as tmp, open(tmp, "wb") as handle:
            np.savez(handle, raw=track.raw)
    vector_file = first.state / "vector.npz"
    if args.vector is not None or vector_file.is_file():
        vector, _ = load_vector(args.vector if args.vector is not None else vector_file)
        vectors = [{name: vector[name] for name in config.layers}]
    else:
        face = aligned_face(next(read_frames(info)), track.matrices[0], config)
        vectors, cache = [], neighbour_features(args, net, config)
        for attribute in args.attribute:
            sources, targets = choose_neighbors(index, face, attribute, config)
            with progress_bar(len(sources) + len(targets), args.quiet, f"features ({attribute})",
                              unit="face") as bar:
                vectors.append(compute_vector(net, index, sources, targets, config, cache=cache,
                                              progress=bar.update))
        from ..edit.attributes import combine
        save_vector(vector_file, combine(vectors), {"attributes": args.attribute})
    back = max(video.temporal_frames)
    previous, crops = [], []
    if done:
        previous = [first.kept(i) for i in range(max(0, done - back), done)]
        if any(p is None for p in previous):
            previous, done = [], 0
        else:
            crops = [aligned_face(frame, track.matrices[i], config).working
                     for i, frame in zip(range(max(0, done - back), done), read_frames(info, max(0, done - back)))]
    from .edit import decoder_for
    decoder = decoder_for(args, net, config)
    with progress_bar(info.count, args.quiet, "frames", unit="frame") as bar:
        bar.update(done)
        for result in edit_video(net, read_frames(info, done), track, vectors, alphas, config, video,
                                 start=done, previous=previous, previous_crops=crops,
                                 color_match=config.color_match, decoder=decoder,
                                 fast=decode_only(args)):  # (checked: then there is a decoder)
            for k, store in enumerate(stores.values()):
                store.write(result.index, result.results[k], keep=result.rows if k == 0 else None)
            bar.update(1)
            if not args.quiet:
                bar.set_postfix(iterations=result.progress.iteration, refresh=False)
    for store in stores.values():
        print(store.finish())
    if track.found < info.count and not args.quiet:
        print(f"dfi: the face was not found in {info.count - track.found} of {info.count} frames; "
              "its place there was interpolated from the frames around", file=sys.stderr)
    return 0
