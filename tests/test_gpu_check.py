"""scripts/gpu_check.py without a GPU: one line, exit 0, at once, nothing written; and its dry run."""
import os
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


def test_its_dry_run_takes_every_step_on_the_cpu(tmp_path):
    """The script a lent GPU's scarce minutes go to, run through at tiny sizes on the CPU:
    every step gives figures, none an error (a broken step found here, not on the GPU)."""
    import json

    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "gpu_check.py"), "--dry-run", "--json",
                           str(tmp_path / "r.json")], capture_output=True, text=True, timeout=300, cwd=tmp_path,
                          env={**os.environ, "DFI_HOME": str(tmp_path / "home")})
    assert done.returncode == 0, done.stdout + done.stderr[-2000:]
    results = json.loads((tmp_path / "r.json").read_text())["results"]
    assert {"sweep 5 alphas 200²", "decoder 200²: training, fast and warm sweeps", "launches (counted)"} <= set(results)
    assert not [label for label, result in results.items() if "error" in result], results
    assert results["decoder 200²: training, fast and warm sweeps"]["fast"]["init"] == "decoder"
