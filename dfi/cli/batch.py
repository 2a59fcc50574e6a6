"""``dfi batch edit | style MANIFEST``: one command over the rows of a CSV on a Dask cluster.

Each row is the command's own run (``dfi edit INPUT -o OUTPUT …``), with the common options
given on the command line and the row's cells overriding them; what a row does is
:func:`edit_row` / :func:`style_row`, shipped to the workers by :mod:`dfi.batch`.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..core.errors import SettingError
from .common import (UsageError, check_output, check_writable, parse_layers, positive_int, progress_bar,
                     resolve_weights)

#: options that run the batch itself, not a row (neither manifest columns nor settings)
BATCH_OPTIONS = ("scheduler", "workers", "ledger", "manifest", "func", "command", "batch_command",
                 "batch_parser", "quiet", "debug")
#: settings that do not change a row's output (left out of its hash)
UNHASHED = ("device", "micro_batch")
TRUE, FALSE = ("1", "true", "yes", "y", "on"), ("0", "false", "no", "n", "off")


def _row_actions(parser: argparse.ArgumentParser) -> dict:
    """``{column: action}``: the options a manifest column may override."""
    return {a.dest: a for a in parser._actions
            if a.option_strings and a.dest not in BATCH_OPTIONS and a.dest != "help"}


def _plain(kind: type):
    """``int`` / ``float`` with a message for people ("'abc' is not a number")."""
    def convert(text: str):
        try:
            return kind(text)
        except ValueError:
            raise ValueError(f"{text!r} is not {'a number' if kind is float else 'a whole number'}") from None
    return convert


def _cell(action: argparse.Action, text: str, where: str):
    """A manifest cell converted as its option would be; ``;`` separates repeated values."""
    try:
        if isinstance(action, argparse._StoreTrueAction):
            if text.lower() not in TRUE + FALSE:
                raise ValueError(f"{text!r} is not one of {', '.join(TRUE + FALSE)}")
            return text.lower() in TRUE
        convert = _plain(action.type) if action.type in (int, float) else action.type or str
        if isinstance(action, argparse._AppendAction):
            values = [convert(part.strip()) for part in text.split(";") if part.strip()]
        else:
            values = [convert(text)]
        for value in values:
            if action.choices is not None and value not in action.choices:
                raise ValueError(f"{value!r} is not one of {', '.join(map(str, action.choices))}")
        return values if isinstance(action, argparse._AppendAction) else values[0]
    except (ValueError, argparse.ArgumentTypeError) as exc:
        raise UsageError(f"{where}: {exc}") from None


def _absolute(value):
    """Paths made absolute, so that workers started elsewhere find the same files."""
    if isinstance(value, Path):
        return value.absolute()
    if isinstance(value, list):
        return [_absolute(v) for v in value]
    return value


def _rows(args: argparse.Namespace, parser: argparse.ArgumentParser):
    """(row, settings) for every manifest row, every cell checked before any work."""
    from ..batch.manifest import read_manifest

    actions = _row_actions(parser)
    rows = read_manifest(args.manifest, actions)
    base = Path(args.manifest).parent
    common = {k: _absolute(v) for k, v in vars(args).items() if k not in BATCH_OPTIONS}
    out = []
    for row in rows:
        settings = dict(common)
        for column, text in row.overrides.items():
            value = _cell(actions[column], text, f"manifest {args.manifest}:{row.line}: column {column}")
            if actions[column].type is Path or column == "style":  # paths in cells: from the manifest's folder
                value = [base / v for v in value] if isinstance(value, list) else base / value
            settings[column] = _absolute(value)
        settings.update(input=row.input, output=row.output, quiet=True, command=args.batch_command)
        try:
            check_output(row.output, "output")
        except SettingError as exc:
            raise UsageError(f"manifest {args.manifest}:{row.line}: {exc}") from None
        out.append((row, settings))
    _check_outputs_are_not_inputs(args.manifest, out)
    from data_tools.attributes import UnknownNameError

    checked = {"indexes": {}, "devices": set()}
    for row, settings in out:  # then each row as its single command checks it
        try:
            _check_row(argparse.Namespace(**settings), checked, local=args.scheduler is None)
        except (SettingError, UnknownNameError) as exc:
            raise UsageError(f"manifest {args.manifest}:{row.line}: {exc}") from None
        except FileNotFoundError as exc:
            raise FileNotFoundError(f"manifest {args.manifest}:{row.line}: {exc}") from None
    return out


#: path options that are written, not read (never an "input" a row could overwrite)
WRITTEN = ("output", "feature_cache", "data_dir")


def _check_outputs_are_not_inputs(manifest, rows) -> None:
    """Refuse a manifest whose output is any row's input file (its image, style, mask, index,
    vector, weights…), before any work."""
    import os

    from ..batch.manifest import path_key as key

    inputs = {}
    for row, settings in rows:
        for name, value in settings.items():
            values = value if isinstance(value, list) else [value]
            if name == "input" or (name == "weights" and os.path.isfile(str(value))):
                values = [Path(str(value))]
            for path in values:
                if isinstance(path, Path) and name not in WRITTEN:
                    inputs.setdefault(key(path), (row, name))
    for row, _ in rows:
        clash = inputs.get(key(row.output))
        if clash is not None:
            other, name = clash
            raise UsageError(f"manifest {manifest}:{row.line}: output {row.output} is the {name} of line {other.line}; "
                             "refusing to write over an input")


def _check_row(args: argparse.Namespace, checked: dict, *, local: bool) -> None:
    """A row's settings through the checks its single command makes before any work (not
    its input image, whose absence fails only that row): a bad one refuses the whole batch.
    ``checked`` keeps the indexes read and the devices seen; a device is checked only for a
    local cluster (a remote one's workers may have GPUs this machine lacks)."""
    if args.command == "edit":
        from .edit import edit_settings

        if args.vector is None and not args.attribute:
            raise UsageError("give --attribute (with --index) or --vector, on the command line or in a column")
        edit_settings(args, [args.alpha], indexes=checked["indexes"])
        if args.crop is not None and args.crop.strip().lower() != "none":
            from ..core.image import parse_crop

            parse_crop(args.crop)
    else:
        from .style import style_config

        if not args.style:
            raise UsageError("give --style IMAGE, on the command line or in a 'style' column")
        style_config(argparse.Namespace(**{"size_given": False, **vars(args), "texture": False}),
                     n_images=1 + len(args.style))
    if local and args.device not in checked["devices"]:
        from ..core.backend import parse_device

        parse_device(args.device)
        checked["devices"].add(args.device)


def _cached_net(args: argparse.Namespace):
    """The row's VGG-19, loaded once per worker."""
    from ..batch.cluster import cached_vgg

    return cached_vgg(resolve_weights(args), args.device, args.seed,
                      str(args.data_dir) if args.data_dir else None, getattr(args, "pooling", "max"))


#: the most α values (rows) of one face reconstructed together (one batch of α + 1 images)
ALPHAS_PER_TASK = 6


def edit_row(settings: dict) -> dict:
    """One ``dfi edit`` row on a worker — or, with ``alphas`` and ``outputs`` in the
    settings, several rows of the same face that differ only in α, reconstructed in one
    batch as ``dfi sweep`` does: writes the outputs, returns the record (per row)."""
    from ..batch.cluster import worker_cache
    from ..core.image import write_image
    from .edit import _run_dfi

    alphas = settings.get("alphas") or [settings["alpha"]]
    outputs = settings.get("outputs") or [settings["output"]]
    args = argparse.Namespace(**dict(settings, output=outputs[0]))
    out = _run_dfi(args, alphas, net=_cached_net(args), vectors=worker_cache().setdefault("vectors", {}))
    for output, result in zip(outputs, out["results"]):
        write_image(output, result, grey=out["grey"])
    record = out["record"]
    rows = [{"loss": loss, "vectors_reused": record.get("vectors_reused", []), "timings_s": record["timings_s"],
             "alphas_together": len(alphas)} for loss in record["losses"]]
    return {"rows": rows} if "alphas" in settings else rows[0]


def edit_tasks(jobs: list) -> list:
    """Tasks for edit rows: rows of the same face with the same settings but α go together
    (up to :data:`ALPHAS_PER_TASK`), the others alone."""
    import json

    from ..batch.runner import Task

    groups: dict[str, list] = {}
    for job in jobs:
        same = {k: v for k, v in job.settings.items() if k not in ("alpha", "output")}
        groups.setdefault(json.dumps(same, sort_keys=True, default=str), []).append(job)
    tasks = []
    for group in groups.values():
        for start in range(0, len(group), ALPHAS_PER_TASK):
            part = group[start:start + ALPHAS_PER_TASK]
            settings = part[0].settings if len(part) == 1 else dict(
                part[0].settings, alphas=[job.settings["alpha"] for job in part],
                outputs=[job.settings["output"] for job in part])
            tasks.append(Task(tuple(part), settings))
    return tasks


def style_row(settings: dict) -> dict:
    """One ``dfi style`` row on a worker: writes its output, returns its loss terms."""
    from .style import _style_request, stylize_to_file

    args = argparse.Namespace(**settings, images=[settings["input"], *settings["style"]], texture=False)
    config, content, styles, grey = _style_request(args)
    if content is None:
        raise ValueError(f"{args.input}: a video; dfi batch style takes images (run dfi style on videos)")
    return {"terms": stylize_to_file(args, config, content, styles, grey, net=_cached_net(args))}


def _cmd_batch(args: argparse.Namespace) -> int:
    from ..batch.cluster import close_client, open_client
    from ..batch.ledger import Ledger, settings_hash
    from ..batch.runner import Job, Summary, Task, run_jobs, split_jobs

    parser = args.batch_parser
    manifest = Path(args.manifest)
    jobs = []
    for row, settings in _rows(args, parser):
        hashed = {k: v for k, v in settings.items() if k not in UNHASHED}
        jobs.append(Job(row, settings, settings_hash(hashed, row.input)))
    ledger = Ledger((args.ledger or manifest.with_name(manifest.stem + ".ledger.jsonl")).absolute())
    if ledger.path == manifest.absolute() or any(ledger.path in (job.row.output, Path(job.row.input)) for job in jobs):
        raise UsageError(f"--ledger {ledger.path} is the manifest, an input or an output; refusing to append to it")
    check_writable({"--ledger": args.ledger or ledger.path})
    work = edit_row if args.batch_command == "edit" else style_row
    todo, done = split_jobs(jobs, ledger)
    summary = Summary()
    if todo:  # no cluster for a batch that is done
        client = open_client(args.scheduler, args.workers)
        try:
            with progress_bar(len(jobs), args.quiet, f"batch {args.batch_command}", unit="row",
                              initial=len(done)) as bar:
                tasks = edit_tasks(todo) if work is edit_row else [Task.single(job) for job in todo]
                summary = run_jobs(client, tasks, work, ledger, progress=bar.update)
        finally:
            close_client(client)
    summary.skipped = [job.row for job in done]
    if summary.failed:
        raise RuntimeError(f"{len(summary.failed)} of {len(jobs)} rows failed (ledger {ledger.path}): "
                           + summary.line())
    print(f"dfi: {summary.line()}; ledger {ledger.path}", file=sys.stderr)
    return 0


def add_cluster_options(p: argparse.ArgumentParser) -> None:
    """Where the work runs: an existing Dask cluster or a local one."""
    p.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help="an existing Dask scheduler (tcp://host:8786; start one with 'dask scheduler' "
                        "and 'dask worker' / 'dask cuda worker'); default: a local cluster for this job")
    p.add_argument("--workers", type=positive_int, default=None,
                   help="workers of the local cluster (default one per GPU, else half the cores)")


def add_commands(sub: argparse._SubParsersAction) -> None:
    from .edit import _add_dfi_options
    from .style import add_style_options

    batch = sub.add_parser("batch", help="run edit or style over the rows of a CSV manifest on Dask")
    batch_sub = batch.add_subparsers(dest="batch_command", metavar="COMMAND", required=True)
    for name, add in (("edit", _add_dfi_options), ("style", add_style_options)):
        p = batch_sub.add_parser(name, help=f"dfi {name} for every row of MANIFEST.csv")
        examples = "alpha, attribute, size, …" if name == "edit" else "style, style_weight, size, …"
        p.add_argument("manifest", type=Path, metavar="MANIFEST",
                       help="CSV with columns input,output and optional per-row overrides named after the "
                            f"options ({examples}; repeated values separated by ';'); paths "
                            "in it are relative to its folder")
        add(p, batch=True)
        if name == "edit":
            p.add_argument("--alpha", type=float, default=0.4, help="edit strength α (default 0.4)")
        else:
            p.add_argument("--style", type=Path, action="append", default=None, metavar="IMAGE",
                           help="style image; repeat for several (a 'style' column overrides)")
        p.add_argument("--ledger", type=Path, default=None,
                       help="JSON lines of the rows done (default MANIFEST.ledger.jsonl beside it)")
        add_cluster_options(p)
        p.set_defaults(func=_cmd_batch, batch_parser=p)


def _cmd_data_features(args: argparse.Namespace) -> int:
    import time

    from ..batch.cluster import close_client, open_client
    from ..batch.features import build_store, layer_shapes
    from ..core.backend import parse_device
    from ..nets.weights import load_vgg19
    from ..edit.settings import EditConfig

    layers = parse_layers(args.layers)
    EditConfig(size=args.size, layers=layers)  # the store serves edits: the same size bounds
    from data_tools.index import check_index_path

    check_index_path(args.index)
    if args.store.suffix != ".zarr":
        raise UsageError(f"--store {args.store}: name the store NAME.zarr")
    check_writable({}, {"--store": args.store})
    from data_tools.index import load_index

    index = load_index(args.index)
    parse_device(args.device)  # a --device this machine lacks is refused before the cluster starts
    weights = resolve_weights(args)
    # the weights' identity and layer shapes, from a host copy dropped at once: no network stays
    # on the driver (or on its GPU); each worker loads its own on its device
    net = load_vgg19(weights, data_dir=args.data_dir, seed=args.seed)
    identity, shapes = net.identity, layer_shapes(net, layers, args.size)
    del net
    start = time.perf_counter()
    client = open_client(args.scheduler, args.workers)
    try:
        with progress_bar(len(index.table), args.quiet, "features", unit="face") as bar:
            result = build_store(client, index, args.store.absolute(), identity, shapes, args.size,
                                 weights=weights, device=args.device, seed=args.seed,
                                 data_dir=str(args.data_dir.absolute()) if args.data_dir else None,
                                 dtype=args.dtype, block=args.block, batch_size=args.batch_size,
                                 progress=bar.update)
    finally:
        close_client(client)
    if not args.quiet:
        print(f"dfi: {result['faces']} faces ({result['computed']} blocks computed) in "
              f"{time.perf_counter() - start:.1f} s", file=sys.stderr)
    print(args.store)
    return 0


def add_data_features(data_sub: argparse._SubParsersAction) -> None:
    """``dfi data features`` (registered by the data group)."""
    p = data_sub.add_parser("features", help="every indexed face's features into a Zarr store, on Dask")
    p.add_argument("--index", type=Path, required=True, help="dataset index (dfi data index)")
    p.add_argument("--store", type=Path, required=True, metavar="STORE.zarr",
                   help="store to write (resumes an unfinished one; read by --feature-store)")
    p.add_argument("--size", type=positive_int, default=200, help="working size in pixels (default 200, as edit)")
    p.add_argument("--layers", default="conv3_1,conv4_1,conv5_1",
                   help="feature layers (default conv3_1,conv4_1,conv5_1, as edit)")
    p.add_argument("--dtype", choices=("float16", "float32"), default="float16",
                   help="stored precision (default float16: half the size)")
    p.add_argument("--block", type=positive_int, default=16,
                   help="faces per task and per file of the store (default 16)")
    p.add_argument("--batch-size", type=positive_int, default=8, help="faces per forward pass (default 8)")
    p.add_argument("--weights", default="auto", help="as in dfi edit (default auto)")
    p.add_argument("--device", default="auto", help="auto, cpu, gpu or gpu:N (default auto)")
    p.add_argument("--seed", type=int, default=0, help="seed for untrained weights")
    p.add_argument("--data-dir", type=Path, default=None,
                   help="where fetched weights live (default $DFI_HOME or the user cache)")
    add_cluster_options(p)
    p.set_defaults(func=_cmd_data_features)
