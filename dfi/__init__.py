"""dfi: Deep Feature Interpolation and style-loss reconstruction on VGG-19.

Subpackages: ``core`` (devices, images, losses, optimisers, the reconstruction loop),
``nets`` (VGG-19 and weights), ``face`` (detection, alignment), ``edit`` (DFI), ``style``
(Gatys), ``cli`` (the command line). Imports run one way: cli → edit / style → face / nets
→ core → ``_compat`` (see docs/architecture.md).
"""
