"""The process keeps the memory it frees (glibc): a second pass's arrays fault no pages in."""
import ctypes
import os
import subprocess
import sys

import pytest

from dfi.core.memory import keep_freed_memory

_PROBE = """
import resource, sys
import numpy as np
from dfi.core.memory import keep_freed_memory
if sys.argv[1] == "keep":
    assert keep_freed_memory()
for _ in range(4):  # a pass: arrays of 8, 4, 2 and 8 MiB, freed at its end
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    arrays = [np.ones(n * 2 ** 18, np.float32) for n in (8, 4, 2, 8)]
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
    del arrays
print(faults)
"""


def _glibc() -> bool:
    try:
        ctypes.CDLL(None).gnu_get_libc_version
        return True
    except (OSError, AttributeError, TypeError):
        return False


@pytest.mark.skipif(not _glibc(), reason="mallopt is glibc's")
def test_a_later_pass_reuses_the_freed_pages():
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    faults = {mode: int(subprocess.run([sys.executable, "-c", _PROBE, mode], env=env, capture_output=True, text=True,
                                       check=True).stdout) for mode in ("keep", "default")}
    if faults["default"] < 200:
        pytest.skip(f"this system's malloc keeps freed memory already ({faults['default']} faults a pass)")
    assert faults["keep"] < 50  # (the last pass of four; by default glibc faults ~2,000 pages in again)


def test_the_users_malloc_settings_stand(monkeypatch):
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "131072")
    assert keep_freed_memory() is False
