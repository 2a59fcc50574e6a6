"""Shared pieces of the command line: option groups and types, output checks, progress
bars and network loading. Every command module imports from here; this imports no
command module."""
from __future__ import annotations

import argparse
import os
import sys
import warnings
from pathlib import Path
from typing import Callable, Optional

from ..core.errors import SettingError


class UsageError(SettingError):
    """A flag value or combination the command cannot accept (exit code 2)."""


def whole_number(minimum: int):
    """An argparse type: a whole number ≥ ``minimum``."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{value} must be at least {minimum}")
        return value
    return parse


positive_int = whole_number(1)


def progress_factory(quiet: bool) -> Optional[Callable]:
    if quiet:
        return None
    from tqdm import tqdm

    def make(total, initial, label):
        return tqdm(total=total, initial=initial, unit="B", unit_scale=True, desc=label,
                    file=sys.stderr, leave=False)
    return make


def int_list(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        values = []
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of sizes in pixels")
    return values


def alpha_list(text: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of numbers") from None


def add_run_options(p: argparse.ArgumentParser, *, iterations: int = 150,
                     tv_weight: float = 1e-3, reconstruct: bool = True, min_iterations: int = 1) -> None:
    """Options shared by every command that runs VGG-19 (edit, sweep, style; with
    ``reconstruct=False`` the ones that train-stylizer needs too: no optimiser, no micro-batch).
    ``min_iterations`` 0: ``--iterations 0`` is accepted (the edits' decode-only spelling)."""
    p.add_argument("--weights", default="auto",
                   help="auto (fetched caffe weights, else untrained), untrained, caffe, "
                        "normalised, torchvision, or a weights file (.npz/.caffemodel/.pth)")
    p.add_argument("--device", default="auto", help="auto, cpu, gpu or gpu:N (default auto)")
    p.add_argument("--iterations", type=whole_number(min_iterations), default=iterations,
                   help=f"{'optimiser iteration cap' if reconstruct else 'training steps'} (default {iterations})")
    p.add_argument("--tv-weight", type=float, default=tv_weight,
                   help=f"total-variation weight λ, pixel units (default {tv_weight:g})")
    p.add_argument("--seed", type=int, default=0, help="seed for untrained weights and noise"
                   + ("" if reconstruct else ", the network's initial weights and the order of the images"))
    if not reconstruct:
        p.add_argument("--data-dir", type=Path, default=None,
                       help="where fetched weights live (default $DFI_HOME or the user cache)")
        return
    p.add_argument("--optimizer", choices=("lbfgs", "adam"), default="lbfgs",
                   help="lbfgs (batched, with a line search; default) or adam")
    p.add_argument("--micro-batch", type=whole_number(0), default=0,
                   help="images per forward/backward pass (default 0: all at once, which dfi's "
                        "kernels run no slower per image than one; smaller saves memory)")
    p.add_argument("--data-dir", type=Path, default=None,
                   help="where fetched weights live (default $DFI_HOME or the user cache)")


def add_training_options(p: argparse.ArgumentParser, defaults, *, model: str, samples: str) -> None:
    """The options every training command shares (``defaults``: its config's defaults):
    size, batch, learning rate, checkpoints, samples, resume. ``model`` names its output
    (``MODEL.npz``), ``samples`` what a sample grid shows."""
    p.add_argument("--size", type=positive_int, default=defaults.size,
                   help=f"training image size in pixels (default {defaults.size})")
    p.add_argument("--batch-size", type=positive_int, default=defaults.batch_size,
                   help=f"images per step (default {defaults.batch_size})")
    p.add_argument("--lr", type=float, default=defaults.lr, help=f"Adam's step size (default {defaults.lr:g})")
    p.add_argument("--checkpoint-every", type=positive_int, default=500, metavar="N",
                   help=f"write {model}.ckpt every N steps (default 500)")
    stem = model.rsplit(".", 1)[0]
    p.add_argument("--sample-every", type=positive_int, default=None, metavar="N",
                   help=f"write {stem}_sample_<step>.png, {samples}, every N steps")
    p.add_argument("--resume", action="store_true", help=f"continue from {model}.ckpt exactly")


def training_checkpoint(args: argparse.Namespace, model: Path) -> Path:
    """``MODEL.npz.ckpt``, the checkpoint a training command writes beside ``model``;
    with ``--resume`` it must exist (checked before any network loads)."""
    checkpoint = model.with_name(model.name + ".ckpt")
    if args.resume and not checkpoint.is_file():
        raise FileNotFoundError(f"--resume: no checkpoint {checkpoint} to continue from")
    return checkpoint


def run_training(trainer, until: int, args: argparse.Namespace, checkpoint: Path, *,
                 samples: Optional[Callable[[int], object]] = None, deadline: Optional[float] = None) -> int:
    """The command line's training loop over ``trainer.run(until)``: a progress bar with the
    loss terms, a checkpoint every ``--checkpoint-every`` steps (and where it stops early),
    ``samples(step)`` every ``--sample-every`` steps, a clean stop once ``time.monotonic()``
    passes ``deadline``. Returns the last step done."""
    import time

    with progress_bar(until, args.quiet, "training", unit="step") as bar:
        bar.update(trainer.step)
        for step in trainer.run(until):
            bar.update(1)
            if not args.quiet:
                bar.set_postfix({k: f"{v:.3g}" for k, v in step.terms.items()}, refresh=False)
            stopping = deadline is not None and time.monotonic() >= deadline
            if (step.step % args.checkpoint_every == 0 or stopping) and step.step < until:
                trainer.save_checkpoint(checkpoint)
            if samples is not None and args.sample_every and step.step % args.sample_every == 0:
                samples(step.step)
            if stopping:
                break
    return trainer.step


def parse_layers(text: str, option: str = "--layers") -> tuple[str, ...]:
    """A comma-separated list of VGG-19 layer names, each checked."""
    from ..nets.names import vgg19_layer_names

    layers = tuple(name.strip() for name in text.split(",") if name.strip())
    unknown = [name for name in layers if name not in vgg19_layer_names()]
    if unknown or not layers:
        raise UsageError(f"{option} {text!r}: unknown layer {unknown[0] if unknown else ''!r}; "
                         f"valid: {', '.join(vgg19_layer_names())}")
    return layers


def check_output(path, option: str = "-o") -> Path:
    """An image path to write: a known extension, and writable (:func:`check_writable`). Its
    folder is made only when the file is written, so a run that fails or is interrupted
    leaves no empty folder behind."""
    from ..core.image import IMAGE_SUFFIXES

    out = Path(path)
    if out.suffix.lower() not in IMAGE_SUFFIXES:
        raise UsageError(f"{option} {out}: use an image extension ({', '.join(IMAGE_SUFFIXES)})")
    check_writable({option: path})
    return out


def check_writable(files: dict, folders: Optional[dict] = None) -> None:
    """Before any work: each output file (``files``, label → path; None skipped) and folder
    (``folders``) can be written: its folder exists or can be made and is writable, and a
    file's name is not a folder (a folder's not a file). One line naming the path as given."""
    from data_tools.fsutil import unwritable

    for paths, folder in ((files, False), (folders or {}, True)):
        for label, path in paths.items():
            why = None if path is None else unwritable(path, folder=folder)
            if why:
                raise UsageError(f"{label} {path}: {why}")


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist (yet)
        return a.resolve() == b.resolve()


def check_not_inputs(outputs: dict, inputs: dict) -> None:
    """Refuse to write over an input: ``outputs`` and ``inputs`` map a label (``-o``,
    ``--mask``…) to a path (or None)."""
    for out_label, out in outputs.items():
        for in_label, source in inputs.items():
            if out is not None and source is not None and _same_file(Path(out), Path(source)):
                raise UsageError(f"{out_label} {out} is also an input ({in_label}); refusing to write over it")


def resolve_weights(args: argparse.Namespace) -> str:
    """``--weights`` with ``auto`` made concrete: the fetched caffe weights, else untrained."""
    from ..nets.weights import converted_path

    if args.weights != "auto":
        return args.weights
    return "caffe" if converted_path("caffe", args.data_dir).is_file() else "untrained"


def select_device(args: argparse.Namespace):
    """The ``--device`` of the command, made current in this thread for the rest of the run
    (CuPy makes new arrays on the current device, not on the one the weights went to)."""
    from ..core.backend import parse_device, use_device

    return use_device(parse_device(args.device))


def load_net(args: argparse.Namespace):
    from ..nets.weights import load_vgg19

    device = select_device(args)
    spec = resolve_weights(args)
    net = load_vgg19(spec, data_dir=args.data_dir, seed=args.seed,
                     pooling=getattr(args, "pooling", "max")).to_device(device)
    return net, getattr(args, "micro_batch", 0)


def progress_bar(total: Optional[int], quiet: bool, desc: str, *, unit: str = "it", initial: int = 0):
    """A tqdm bar on stderr (a context manager), silent with ``--quiet``."""
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, disable=quiet, file=sys.stderr, leave=False,
                unit=unit, dynamic_ncols=True, initial=initial)


class FolderImages:
    """A folder run's images read one by one: one that cannot be read (corrupt, truncated,
    smaller than the networks take) is warned about and skipped so that the others are still
    written, and :meth:`check` then fails the run (exit 1) naming how many and the first."""

    def __init__(self, total: int, out: Path):
        self.total, self.out, self.skipped = total, out, []

    def read(self, path: Path, load: Callable):
        """``load(path)``, or None after a warning when it cannot be read."""
        try:
            return load(path)
        except (ValueError, OSError) as exc:
            self.skipped.append(str(exc))
            warnings.warn(f"skipping {exc}", stacklevel=2)
            return None

    def check(self) -> None:
        if self.skipped:
            raise RuntimeError(f"{len(self.skipped)} of {self.total} images could not be read (the first: "
                               f"{self.skipped[0]}); the others are in {self.out}")
