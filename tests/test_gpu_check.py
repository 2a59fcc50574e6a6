"""scripts/gpu_check.py on a machine without a GPU: one line, exit 0, at once, nothing written."""
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_without_a_gpu_it_says_so_in_one_line_and_exits_0(tmp_path):
    from dfi.core.backend import gpu_count

    if gpu_count():
        pytest.skip("this machine has a GPU: the check would run")
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "gpu_check.py"), "--json", str(tmp_path / "r.json")],
                          capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines() == ["gpu_check: no CUDA device (or no CuPy) here; nothing to check"]
    assert done.stderr == "" and not (tmp_path / "r.json").exists()
