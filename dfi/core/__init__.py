"""The core: devices (the only place that imports CuPy; the chosen device made current), image
I/O and pre/post-processing, colour maths, pure losses, the batched optimisers, the
reconstruction loop, memory estimates (and keeping freed memory for the next pass), training steps and checkpoints, and a stand-in device that counts the kernel launches
a GPU would make (``launches``, for tests and ``scripts/count_launches.py``).

May import: ``dfi._compat``, ``data_tools.fsutil``, NumPy, Chainer, Pillow. Knows no network:
the loop takes any object with ``pick`` (:class:`dfi.core.reconstruct.FeatureNet`).
Must never import ``dfi.nets``, a pipeline (``dfi.edit``, ``dfi.style``, ``dfi.face``) or ``dfi.cli``.
"""
