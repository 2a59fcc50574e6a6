"""Style-loss reconstruction (Gatys et al.): style transfer, texture synthesis, feature
inversion and their memory check, on the core's reconstruction loop; and feed-forward
stylisation (Johnson et al., Dumoulin et al.): training on the same losses, model files,
the :class:`~dfi.style.feedforward.Stylizer` that applies them, and the published
stylizers fetched and converted to model files (:mod:`dfi.style.pretrained`).

May import: ``dfi.core``, ``dfi.nets``, ``data_tools``. Must never import ``dfi.cli`` or ``dfi.edit``;
``dfi.core`` and ``dfi.nets`` never import it.
"""
