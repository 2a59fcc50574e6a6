"""Video: frame I/O (PyAV, frame folders, resumable runs), optical flow and consistency masks
(OpenCV's DIS), and the temporally consistent frame loops for style transfer and for DFI
face edits, on the shared reconstruction loop.

May import: ``dfi.core``, ``dfi.nets``, ``dfi.face``, ``dfi.edit``, ``dfi.style``,
``data_tools``; PyAV and OpenCV (the ``video`` extra). Must never import ``dfi.cli``;
``dfi.core``, ``dfi.nets``, ``dfi.edit`` and ``dfi.style`` never import it.
"""
