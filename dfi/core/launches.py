"""Counting GPU kernel launches without a GPU: a stand-in device and array module.

On a GPU every CuPy operation is at least one kernel launch (a few microseconds of host time
each), so code that is fast on a CPU can be launch-bound on a GPU: a Python loop of small
copies costs more than the arithmetic. :func:`counting` gives a device whose arrays are
NumPy arrays that count what CuPy would launch for each operation, and an array module
(``xp``) that is not ``numpy`` (so dfi's code takes its GPU paths) but computes with it:

- every ufunc call is one launch (an operator, ``out=``, a reduction, ``matmul``), and
  ``matmul`` the copies CuPy makes of its operands and output (:func:`matmul_copies`);
- an assignment into an array (``a[...] = b``), a fancy-index read, ``copy``, ``astype``,
  ``fill`` and ``xp.zeros``/``ones``/``full`` (and ``*_like``) are one launch each;
  ``xp.empty``, views, reshapes and transposes none;
- ``einsum`` is three: CuPy 14 (``linalg/_einsum.py``) copies both operands transposed
  and runs one batched GEMM; any other ``xp`` function is one;
- a host → device copy (``xp.asarray`` of a host array, ``device.send``) is counted apart
  as an upload.

The counts are an upper bound of CuPy's launches for NumPy-composite calls (``mean`` is a
sum and a division here, one reduction kernel on CuPy). Used by the launch-budget tests and
``scripts/count_launches.py``; nothing in a pipeline imports this module.
"""
from __future__ import annotations

import contextlib
import types
from dataclasses import dataclass, field
from typing import Iterator

import numpy as np

from .. import _compat  # noqa: F401
import chainer


@dataclass
class Counter:
    """What a stand-in device did: kernel launches and uploads, by kind."""

    launches: dict = field(default_factory=dict)
    uploads: int = 0

    def add(self, kind: str, count: int = 1) -> None:
        self.launches[kind] = self.launches.get(kind, 0) + count

    @property
    def total(self) -> int:
        return sum(self.launches.values())

    def reset(self) -> None:
        self.launches.clear()
        self.uploads = 0


def _plain(value):
    """``value`` with every stand-in array (also inside tuples, lists and dicts) as a NumPy view."""
    if isinstance(value, DeviceArray):
        return value.view(np.ndarray)
    if isinstance(value, (tuple, list)):
        return type(value)(_plain(v) for v in value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _wrap(value, cls):
    if isinstance(value, np.ndarray) and not isinstance(value, DeviceArray):
        return value.view(cls)
    if isinstance(value, tuple):
        return tuple(_wrap(v, cls) for v in value)
    if isinstance(value, list):
        return [_wrap(v, cls) for v in value]
    return value


def matmul_copies(a, b, out=None) -> int:
    """The copies CuPy 14's ``matmul`` adds (``_core/_routines_linalg.pyx``): with two axes,
    ``dot`` copies an operand that is neither C- nor F-contiguous; with more, both operands
    go through ``ascontiguousarray`` (so a transposed view is copied); an ``out`` that is
    not C-contiguous gets the result through a temporary and one more copy."""
    a, b = np.asarray(a), np.asarray(b)
    if max(a.ndim, b.ndim) <= 2:
        copies = sum(not (x.flags.c_contiguous or x.flags.f_contiguous) for x in (a, b))
    else:
        copies = sum(not x.flags.c_contiguous for x in (a, b))
    return copies + (out is not None and not np.asarray(out).flags.c_contiguous)


def _is_fancy(key) -> bool:
    keys = key if isinstance(key, tuple) else (key,)
    return any(isinstance(k, (np.ndarray, list)) for k in keys)


class DeviceArray(np.ndarray):
    """A NumPy array standing in for a device array; its class's ``counter`` counts."""

    counter: Counter
    array_module: object

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        cls = type(self)
        cls.counter.add(ufunc.__name__ if method == "__call__" else f"{ufunc.__name__}.{method}")
        if ufunc is np.matmul:
            out = kwargs.get("out")
            cls.counter.add("matmul copy", matmul_copies(*_plain(inputs[:2]), _plain(out[0] if out else None)))
        result = getattr(ufunc, method)(*_plain(inputs), **_plain(kwargs))
        if "out" in kwargs:
            outs = kwargs["out"]
            return outs[0] if isinstance(outs, tuple) and len(outs) == 1 else outs
        return _wrap(result, cls)

    def __array_function__(self, func, types_, args, kwargs):
        cls = type(self)
        cls.counter.add(func.__name__, _cost(func.__name__))
        return _wrap(func(*_plain(args), **_plain(kwargs)), cls)

    def __setitem__(self, key, value):
        type(self).counter.add("setitem")
        np.ndarray.__setitem__(self.view(np.ndarray), _plain(key), _plain(value))

    def __getitem__(self, key):
        if _is_fancy(key):
            type(self).counter.add("take")
        return _wrap(np.ndarray.__getitem__(self.view(np.ndarray), _plain(key)), type(self))

    def copy(self, order="C"):
        type(self).counter.add("copy")
        return _wrap(self.view(np.ndarray).copy(order), type(self))

    def astype(self, dtype, order="K", casting="unsafe", subok=True, copy=True):
        if copy or np.dtype(dtype) != self.dtype:
            type(self).counter.add("astype")
        out = self.view(np.ndarray).astype(dtype, order=order, casting=casting, copy=copy)
        return _wrap(out, type(self))

    def fill(self, value):
        type(self).counter.add("fill")
        self.view(np.ndarray).fill(value)


#: launches of the xp functions that are not one (views and queries: none)
_COSTS = {"einsum": 3, "empty": 0, "empty_like": 0, "reshape": 0, "transpose": 0, "broadcast_to": 0,
          "ndim": 0, "shape": 0, "size": 0, "result_type": 0, "may_share_memory": 0, "shares_memory": 0,
          "iscomplexobj": 0, "isscalar": 0, "squeeze": 0, "expand_dims": 0, "moveaxis": 0, "swapaxes": 0,
          "ravel": 0, "atleast_1d": 0, "atleast_2d": 0, "as_strided": 0, "asarray": 0, "ascontiguousarray": 0}


def _cost(name: str) -> int:
    return _COSTS.get(name, 1)


def _flat(args, kwargs):
    for value in (*args, *kwargs.values()):
        yield from (value if isinstance(value, (tuple, list)) else (value,))


class _Module:
    """An array module like CuPy for :class:`DeviceArray`: NumPy's functions, stand-in arrays out."""

    def __init__(self, source, cls):
        self._source, self._cls = source, cls

    def __getattr__(self, name):
        obj = getattr(self._source, name)
        if isinstance(obj, types.ModuleType):
            return _Module(obj, self._cls)
        if not callable(obj) or isinstance(obj, type):
            return obj
        cls = self._cls

        def call(*args, **kwargs):
            given = any(isinstance(a, DeviceArray) for a in _flat(args, kwargs))
            if name in ("asarray", "array", "ascontiguousarray") and args:
                first = args[0]
                if not isinstance(first, DeviceArray):
                    cls.counter.uploads += 1
                elif name == "array" or (name == "ascontiguousarray" and not first.flags.c_contiguous) \
                        or (name == "asarray" and kwargs.get("dtype") not in (None, first.dtype)):
                    cls.counter.add(f"{name} copy")
            elif given and (isinstance(obj, np.ufunc) or hasattr(obj, "_implementation")):
                return _wrap(obj(*args, **kwargs), cls)  # dispatched to DeviceArray, which counts
            else:
                cls.counter.add(name, _cost(name))
            return _wrap(obj(*_plain(args), **_plain(kwargs)), cls)
        return call


class CountingDevice(chainer.backend.CpuDevice):
    """A Chainer device whose ``xp`` is the counting module and whose arrays count."""

    def __init__(self, counter: Counter):
        super().__init__()
        self.counter = counter
        self.array_type = type("CountedArray", (DeviceArray,), {"counter": counter})
        self.array_type.array_module = self.module = _Module(np, self.array_type)

    @property
    def xp(self):
        return self.module

    @property
    def name(self):
        return "@counting"

    def __eq__(self, other):
        return other is self

    __hash__ = chainer.backend.CpuDevice.__hash__

    def send_array(self, array):
        if isinstance(array, self.array_type):
            return array
        self.counter.uploads += 1
        return np.array(array).view(self.array_type)


@contextlib.contextmanager
def counting() -> Iterator[CountingDevice]:
    """A fresh :class:`CountingDevice` (its ``counter`` holds the counts)."""
    yield CountingDevice(Counter())
