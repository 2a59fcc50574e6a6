"""The networks: VGG-19 with ``pick`` on dfi's own kernels (Winograd convolution, its
tile transforms compiled by Numba on a CPU; pooling without im2col; both spread over the
CPU's cores by dfi's own threads; Chainer's functions as the reference), its weight formats (fetch, convert,
load), batched feature extraction without a graph, the feed-forward stylizer's
transformation network (dfi's own and the published variants: Magenta's, pytorch/examples';
their file formats — TensorFlow V1 checkpoints, torch state dicts — read without either
framework) and the feature decoders (one builder from an architecture record: DFI's
multi-layer decoder, AdaIN's; trained with a graph, run on the same kernels).

May import: ``dfi.core``, ``dfi._compat``, ``data_tools.download``, Numba (only
:mod:`dfi.nets.compiled`). Must never import a pipeline (``dfi.edit``, ``dfi.style``) or
``dfi.cli``.
"""
