"""The command line: one module per command group (``data``, ``edit``/``sweep``,
``style``/``invert``, ``weights``, ``demo``), each with its parser and runner, plus
``common`` (shared option groups and types) and ``main`` (the parser and error handling).

May import everything in ``dfi`` and ``data_tools`` (pipelines lazily, so ``--help`` stays
fast). Library code must never import it: only ``dfi.__main__`` and the ``dfi`` console
script do.
"""
from .main import build_parser, main

__all__ = ["build_parser", "main"]
