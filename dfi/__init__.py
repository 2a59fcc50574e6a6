"""dfi: Deep Feature Interpolation and style-loss reconstruction on VGG-19.

Subpackages: ``core`` (devices, images, losses, optimisers, the reconstruction loop),
``nets`` (VGG-19 and weights), ``face`` (detection, alignment), ``edit`` (DFI), ``style``
(Gatys), ``cli`` (the command line). Imports run one way: cli → edit / style → face / nets
→ core → ``_compat`` (see docs/architecture.md).
"""

try:
    from importlib.metadata import version as _version

    __version__ = _version("dfi")
except Exception:  # not installed (a source tree on the path)
    __version__ = "0+unknown"
