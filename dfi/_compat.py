"""NumPy 2 shim for Chainer 7.8.1; import this module before ``chainer``.

Chainer 7.8.1 reads ``numpy.sctypes``, which NumPy 2.0 removed. Everything else it
uses still exists, so restoring that one table (with NumPy 1.x's contents) is enough.
"""
import numpy

if not hasattr(numpy, "sctypes"):
    numpy.sctypes = {
        "int": [numpy.int8, numpy.int16, numpy.int32, numpy.int64],
        "uint": [numpy.uint8, numpy.uint16, numpy.uint32, numpy.uint64],
        "float": [numpy.float16, numpy.float32, numpy.float64, numpy.longdouble],
        "complex": [numpy.complex64, numpy.complex128, numpy.clongdouble],
        "others": [bool, object, bytes, str, numpy.void],
    }
