"""Device handling without a GPU: fake CuPy objects stand in for the real ones."""
import contextlib
import os
import subprocess
import sys
import types

import chainer
import pytest

from dfi.core import backend
from dfi.core.errors import SettingError


def test_auto_falls_back_to_the_cpu_when_chainer_cannot_use_cuda(monkeypatch):
    monkeypatch.setattr(chainer.backends.cuda, "available", False)
    assert backend.gpu_count() == 0
    assert backend.parse_device("auto").xp.__name__ == "numpy"
    with pytest.raises(ValueError, match="no GPU is visible"):
        backend.parse_device("gpu")
    with pytest.raises(SettingError, match="--device 'tpu' is not one of auto, cpu, gpu, gpu:N"):
        backend.parse_device("tpu")


def test_gpu_count_asks_the_driver_only_when_chainer_loaded_cuda(monkeypatch):
    runtime = types.SimpleNamespace(getDeviceCount=lambda: 2)
    fake_cupy = types.SimpleNamespace(cuda=types.SimpleNamespace(runtime=runtime))
    monkeypatch.setattr(chainer.backends.cuda, "available", True)
    monkeypatch.setattr(chainer.backends.cuda, "cupy", fake_cupy, raising=False)
    assert backend.gpu_count() == 2
    runtime.getDeviceCount = lambda: (_ for _ in ()).throw(RuntimeError("no driver"))
    assert backend.gpu_count() == 0


def test_free_gpu_memory_is_read_on_the_right_device():
    """A chainer GpuDevice is no context manager; the CuPy device of its id is entered."""
    entered = []

    @contextlib.contextmanager
    def cuda_device(index):
        entered.append(index)
        yield

    fake_cupy = types.SimpleNamespace(
        cuda=types.SimpleNamespace(Device=cuda_device,
                                   runtime=types.SimpleNamespace(memGetInfo=lambda: (3 << 30, 16 << 30))),
        get_default_memory_pool=lambda: types.SimpleNamespace(free_bytes=lambda: 1 << 30))
    device = types.SimpleNamespace(xp=fake_cupy, device=types.SimpleNamespace(id=1))
    assert backend.available_memory(device) == 4 << 30
    assert entered == [1]


@pytest.mark.parametrize("given, expected", [(None, "0"), ("1", "1")])
def test_compat_switches_cudnn_off_unless_the_user_chose(given, expected):
    env = {k: v for k, v in os.environ.items() if k != "CHAINER_CUDNN"}
    if given is not None:
        env["CHAINER_CUDNN"] = given
    code = "import os, dfi._compat; print(os.environ['CHAINER_CUDNN'])"
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == expected
