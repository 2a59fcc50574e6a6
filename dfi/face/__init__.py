"""Faces in photos: detection with 68 landmarks (dlib), the similarity fit to the LFW
frame, warping into it and pasting an edit back.

May import: ``dfi.core.image``, ``data_tools.synth`` (the frame geometry), NumPy, Pillow,
dlib. Must never import Chainer, ``dfi.nets``, a pipeline or ``dfi.cli``.
"""
