"""Shims for Chainer 7.8.1 on today's NumPy and CuPy; import this module before ``chainer``.

* Chainer 7.8.1 reads ``numpy.sctypes``, which NumPy 2.0 removed. Everything else it uses
  still exists, so restoring that one table (with NumPy 1.x's contents) is enough.
* CuPy 14 ships no cuDNN, and dfi runs its own convolution and pooling kernels
  (:mod:`dfi.nets.conv`), so cuDNN is switched off (``CHAINER_CUDNN=0``, unless the user
  set it): Chainer then stops warning "cuDNN is not enabled" on every GPU run.
* CuPy deprecated ``ndarray.scatter_add``, which Chainer's indexing backward calls on a
  GPU; that one warning is silenced (dfi's own losses avoid the indexing backward).
"""
import os
import warnings

import numpy

os.environ.setdefault("CHAINER_CUDNN", "0")
warnings.filterwarnings("ignore", message=r"`ndarray\.scatter_add` is deprecated", category=DeprecationWarning)

if not hasattr(numpy, "sctypes"):
    numpy.sctypes = {
        "int": [numpy.int8, numpy.int16, numpy.int32, numpy.int64],
        "uint": [numpy.uint8, numpy.uint16, numpy.uint32, numpy.uint64],
        "float": [numpy.float16, numpy.float32, numpy.float64, numpy.longdouble],
        "complex": [numpy.complex64, numpy.complex128, numpy.clongdouble],
        "others": [bool, object, bytes, str, numpy.void],
    }
