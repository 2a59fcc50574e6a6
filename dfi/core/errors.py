"""Errors shared by the library and the command line."""


class SettingError(ValueError):
    """A setting (an option's value or a combination of options) outside what is allowed.

    Raised at the public boundary with the setting, its value and what is allowed; the
    command line reports it as a usage error (exit code 2), as it does argparse's own.
    """


class FileFormatError(SettingError):
    """A file given to dfi (weights, a model, a decoder, a checkpoint) is not in the format
    it must be: a wrong argument, reported as a usage error (exit code 2) naming the file
    and what was expected."""


def show_warning(message, category=None, filename=None, lineno=None, file=None, line=None) -> None:
    """A :func:`warnings.showwarning` that prints one line, ``dfi: warning: MESSAGE``,
    without the source line Python adds: the command line's (above its progress bars) and
    a batch worker's."""
    import sys

    text = f"dfi: warning: {str(message).strip().splitlines()[0] if str(message).strip() else category}"
    tqdm = sys.modules.get("tqdm")
    if tqdm is not None and file is None:  # a bar may be showing: print above it
        tqdm.tqdm.write(text, file=sys.stderr)
    else:
        print(text, file=file or sys.stderr)
