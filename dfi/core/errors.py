"""Errors shared by the library and the command line."""


class SettingError(ValueError):
    """A setting (an option's value or a combination of options) outside what is allowed.

    Raised at the public boundary with the setting, its value and what is allowed; the
    command line reports it as a usage error (exit code 2), as it does argparse's own.
    """
