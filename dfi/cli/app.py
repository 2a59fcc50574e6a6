"""``dfi app``: the local web page (Gradio, the optional extra ``app``)."""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

from .common import UsageError, add_run_options, load_net, positive_int

#: the largest upload (Gradio refuses bigger files; the pixel limit is the CLI's, on reading)
MAX_UPLOAD = "50mb"


def serve(args: argparse.Namespace, *, block: bool = True):
    """Load everything the page needs, then serve it on ``--host:--port``; with ``block``
    until interrupted (the upload folder is removed on the way out), else returns
    (page, url, stop) for tests and scripts."""
    from dataclasses import replace

    from .edit import decoder_for, neighbour_features

    import importlib.util
    if importlib.util.find_spec("gradio") is None:  # (not imported yet: see GRADIO_TEMP_DIR below)
        raise UsageError("dfi app needs Gradio: pip install 'dfi[app]'")
    config, index = _settings(args)
    if args.model is not None and not Path(args.model).is_file():
        from ..style.pretrained import model_path
        args.model = model_path(args.model)
    uploads = Path(tempfile.mkdtemp(prefix="dfi-app-"))  # private (0700), removed on exit
    if "gradio" not in sys.modules:  # Gradio reads it once, on import: its uploads go there too
        os.environ["GRADIO_TEMP_DIR"] = str(uploads / "gradio")
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    try:
        from .onepass import wct_levels
        levels = wct_levels(args.wct_decoder) if args.wct_decoder else []  # (checked before the network)
        net, micro = load_net(args)
        config = replace(config, batch_size=micro or config.batch_size,
                         reconstruct=replace(config.reconstruct, micro_batch=micro))
        stylizer = adain = None
        if args.model is not None:
            from ..style.feedforward import Stylizer
            stylizer = Stylizer.load(args.model, device=net.device)
        from ..style.pretrained import adain_paths
        if all(p.is_file() for p in adain_paths(args.data_dir).values()):
            from .onepass import _adain_pair
            adain = _adain_pair(argparse.Namespace(decoder=None, data_dir=args.data_dir, device=args.device))
        wct = {}
        if levels:
            from .onepass import wct_decoders
            wct = wct_decoders(levels, net)
        from ..app.editor import Editor
        from ..app.page import build_page

        args.feature_cache = None
        editor = Editor(net, config, index, uploads=uploads, decoder=decoder_for(args, net, config),
                        stylizer=stylizer, adain=adain, features=neighbour_features(args, net, config), wct=wct)
        page = build_page(editor)
        page.queue(default_concurrency_limit=1)  # one job at a time on the device; the others wait in line
        _, url, _ = page.launch(server_name=args.host, server_port=args.port, share=False, quiet=True,
                                prevent_thread_lock=True, max_file_size=MAX_UPLOAD, show_error=True)
    except BaseException:
        shutil.rmtree(uploads, ignore_errors=True)
        raise

    def stop():
        page.close()
        shutil.rmtree(uploads, ignore_errors=True)
    stop.folder, stop.editor = uploads, editor  # (for tests and scripts)
    if not block:
        return page, url, stop
    print(f"dfi app: {url} (Ctrl-C stops it)", file=sys.stderr)
    try:
        page.block_thread()
    finally:
        stop()
    return page, url, stop


def _settings(args: argparse.Namespace):
    """The page's EditConfig and index, every check before a network loads."""
    from ..edit.settings import EditConfig, reconstruct_config
    from .common import parse_layers

    config = EditConfig(layers=parse_layers(args.layers), k=args.k, size=args.size, scaling=args.scaling,
                        reconstruct=reconstruct_config(iterations=args.iterations, tv_weight=args.tv_weight,
                                                       optimizer=args.optimizer))
    if args.decoder is not None:  # a foreign file, before the network loads
        from ..nets.decoder import load_decoder
        load_decoder(args.decoder)
    if args.feature_store is not None and not args.feature_store.is_dir():
        raise FileNotFoundError(f"--feature-store {args.feature_store}: no such store (make one with 'dfi data features')")
    index = None
    if args.index is not None:
        from data_tools.index import check_index_path, load_index
        check_index_path(args.index)
        index = load_index(args.index)
    return config, index


def _cmd_app(args: argparse.Namespace) -> int:
    serve(args)
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    from ..edit.settings import DEFAULT_LAYERS, ITERATIONS, SCALINGS, EditConfig

    p = sub.add_parser("app", help="a local web page: edit faces with a live α slider, stylise in one pass")
    p.add_argument("--index", type=Path, default=None, help="dataset index (dfi data index): faces and attributes")
    p.add_argument("--decoder", type=Path, default=None, metavar="DEC.npz",
                   help="a decoder from dfi train-decoder: the slider shows the fast edit live")
    p.add_argument("--model", default=None, metavar="MODEL",
                   help="a stylizer for the style tab (a file or a fetched name, e.g. magenta-varied)")
    p.add_argument("--wct-decoder", type=Path, action="append", default=None, metavar="DEC.npz",
                   help="the style tab's WCT: one decoder per level, repeated (dfi train-decoder --layers convB_1)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to serve on (default 127.0.0.1: this machine only; no public share link is made)")
    p.add_argument("--port", type=positive_int, default=7860, help="port (default 7860)")
    p.add_argument("--k", type=positive_int, default=EditConfig.k, help=f"neighbours per side (default {EditConfig.k})")
    p.add_argument("--scaling", choices=SCALINGS, default=EditConfig.scaling,
                   help=f"attribute vector scaling (default {EditConfig.scaling})")
    p.add_argument("--layers", default=",".join(DEFAULT_LAYERS), help=f"feature layers (default {','.join(DEFAULT_LAYERS)})")
    p.add_argument("--size", type=positive_int, default=EditConfig.size,
                   help=f"working size in pixels (default {EditConfig.size}; smaller is quicker on a CPU)")
    p.add_argument("--feature-store", type=Path, default=None, metavar="STORE",
                   help="precomputed neighbour features (dfi data features)")
    add_run_options(p, iterations=ITERATIONS)
    p.set_defaults(func=_cmd_app)
