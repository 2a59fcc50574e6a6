"""The ``dfi`` parser and ``main``: one sub-parser per command group, errors as one line.

``main`` returns 0 on success, 1 on a failure and 2 on bad usage, with one line on
stderr (``--debug`` shows the traceback instead).
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import warnings
from typing import Optional, Sequence

from . import app, batch, data, decoder, demo, edit, style, stylize, weights
from ..core.errors import SettingError, show_warning
from ..core.memory import keep_freed_memory


class _Parser(argparse.ArgumentParser):
    """argparse with a one-line error (``dfi: error: …``; ``-h`` still shows usage)."""

    def error(self, message: str):
        where = self.prog.partition(" ")[2]  # the command ("edit", "data index"), none at the top
        self.exit(2, f"dfi: error: {where + ': ' if where else ''}{message} (see '{self.prog} -h')\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="dfi", description="Deep Feature Interpolation face editing and style-loss "
                                "reconstruction with VGG-19 (Chainer).")
    from .. import __version__

    parser.add_argument("--version", action="version", version=f"dfi {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress bars")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for group in (data, edit, style, stylize, decoder, batch, weights, demo, app):
        group.add_commands(sub)
    for command in _leaves(parser):  # the global flags work after the command too
        command.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                             help="show tracebacks on errors")
        command.add_argument("--quiet", "-q", action="store_true", default=argparse.SUPPRESS,
                             help="no progress bars")
    return parser


def _leaves(parser: argparse.ArgumentParser):
    """Every command parser that has no sub-commands of its own."""
    children = [c for a in parser._actions if isinstance(a, argparse._SubParsersAction)
                for c in a.choices.values()]
    if not children:
        yield parser
    for child in children:
        yield from _leaves(child)


def _message(exc: BaseException) -> str:
    """The error for the user: its first line, or every line of a download that tried several
    mirrors (one line per URL)."""
    from data_tools.download import DownloadError

    text = str(exc.args[0] if isinstance(exc, KeyError) and exc.args else exc).strip()
    if not text:
        return type(exc).__name__
    return text if isinstance(exc, DownloadError) else text.splitlines()[0]


def _silence_stdout() -> None:
    """Point stdout at /dev/null so that Python's final flush cannot complain."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # stdout is not a file (tests capture it)
        pass


def _is_usage_error(exc: BaseException) -> bool:
    """A bad option value or name (exit 2), not a failure at run time (exit 1)."""
    from data_tools.attributes import SpecError, UnknownNameError

    return isinstance(exc, (SettingError, SpecError, UnknownNameError))


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse already printed its one-line message
        return int(exc.code or 0)
    logging.basicConfig(level=logging.WARNING, format="dfi: %(message)s")
    keep_freed_memory()
    try:
        with warnings.catch_warnings():
            warnings.showwarning = show_warning
            code = args.func(args)
            sys.stdout.flush()  # a closed pipe shows here, not at exit
            return code
    except KeyboardInterrupt:
        print("dfi: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `dfi data neighbors --json | head`: stop quietly
        _silence_stdout()
        return 141
    except Exception as exc:  # one line for the user; --debug for the traceback
        if args.debug:
            raise
        code = 2 if _is_usage_error(exc) else 1
        print(f"dfi: error: {_message(exc)}", file=sys.stderr)
        return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
