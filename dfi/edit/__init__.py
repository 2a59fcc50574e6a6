"""Deep Feature Interpolation (Upchurch et al. 2017): its settings, attribute vectors, the
neighbours' feature cache, the edit / sweep pipeline, the attribute probe and the demo plan.

May import: ``dfi.core``, ``dfi.nets``, ``dfi.face``, ``data_tools``. Must never import
``dfi.cli``; ``dfi.core`` and ``dfi.nets`` never import it.
"""
