"""Write docs/commands.md from the argparse parser, so the reference cannot drift.

    python scripts/make_docs.py            # rewrite docs/commands.md
    python scripts/make_docs.py --check    # exit 1 if docs/commands.md is out of date

The test suite runs the check.
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from data_tools.fsutil import write_text_atomic
from dfi.cli import build_parser

DOC = Path(__file__).resolve().parent.parent / "docs" / "commands.md"


def _subcommands(parser: argparse.ArgumentParser):
    """(parser, …) depth first: every command and sub-command."""
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                yield from _subcommands(child)


def _python() -> str:
    return f"{sys.version_info[0]}.{sys.version_info[1]}"


def options(parser: argparse.ArgumentParser) -> dict[str, set[str]]:
    """``{command: {option strings and sub-command names}}``: what the reference must list."""
    out = {}
    for command in _subcommands(parser):
        names = set()
        for action in command._actions:
            names.update(action.option_strings)
            if isinstance(action, argparse._SubParsersAction):
                names.update(action.choices)
        out[command.prog] = names
    return out


def _documented(text: str) -> dict[str, set[str]]:
    """The same sets, read back from a rendered reference."""
    sections = re.split(r"^## `(.+)`$", text, flags=re.M)[1:]
    out = {}
    for prog, body in zip(sections[::2], sections[1::2]):
        names = set(re.findall(r"(?<![\w-])(--?[A-Za-z][\w-]*)", body))
        names |= set(re.findall(r"^    (\w[\w-]*)(?: |$)", body, flags=re.M))  # sub-command list
        out[prog] = names
    return out


def render() -> str:
    parser = build_parser()
    out = ["# Command reference", "",
           "Generated from the argparse parser by `python scripts/make_docs.py` "
           f"(Python {_python()}); do not edit.", ""]
    for command in _subcommands(parser):
        # a fixed width: argparse would otherwise wrap to the terminal running it
        command.formatter_class = lambda prog: argparse.HelpFormatter(prog, width=100)
        out += [f"## `{command.prog}`", "", "```text", command.format_help().rstrip(), "```", ""]
    return "\n".join(out)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        current = DOC.read_text() if DOC.is_file() else ""
        if f"(Python {_python()})" in current:
            ok = current == text
        else:  # argparse words its help differently across Python versions: compare the options
            documented = _documented(current)
            ok = all(names <= documented.get(prog, set())
                     for prog, names in options(build_parser()).items())
            ok = ok and set(documented) == set(options(build_parser()))
        if not ok:
            print(f"{DOC} is out of date: run python scripts/make_docs.py", file=sys.stderr)
            return 1
        return 0
    DOC.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(DOC, text)
    print(DOC)
    return 0


if __name__ == "__main__":
    sys.exit(main())
