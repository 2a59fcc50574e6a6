"""Style-loss reconstruction (Gatys et al.): style transfer, texture synthesis, feature
inversion and their memory check, on the core's reconstruction loop.

May import: ``dfi.core``, ``dfi.nets``. Must never import ``dfi.cli`` or ``dfi.edit``;
``dfi.core`` and ``dfi.nets`` never import it.
"""
