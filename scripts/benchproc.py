"""Side-by-side timings that cannot flatter: each contender in its own persistent process.

Every contender (dfi, PyTorch, Chainer…) runs in a worker process of its own
(``scripts/bench_worker.py``), started with the same thread count pinned in every BLAS /
OpenMP environment variable and in the framework itself. The parent asks the workers for
one timed run each in turn, A B A B…, so no two contenders ever run at once, and each turn
waits until no worker's threads use CPU any more (read from ``/proc/PID/stat``): no thread
pool of one is spinning while another is timed (OpenBLAS's threads keep spinning for about
0.1 s after each call, OpenMP's too). Medians are reported beside the
machine: CPU model and instruction set from ``/proc/cpuinfo``, each worker's BLAS (from
threadpoolctl), NumPy and torch versions; and beside every row what the machine's
neighbours did meanwhile (:class:`Timings`): the share of CPU time the hypervisor took
(steal), the share other processes used, and the memory bandwidth of one core (a 64 MiB
copy in the parent before each round). On a shared virtual machine these move the figures
more than anything else: dfi's kernels are more memory-bound than oneDNN's.

PyTorch is a yardstick only, never a dependency of dfi: its worker runs in any Python that
has torch and NumPy (``--torch-python``, e.g. a venv with ``pip install torch==2.13.0
threadpoolctl``); that process never imports dfi. AVX2 can be emulated on an AVX-512 machine
(``--isa avx2``): ``OPENBLAS_CORETYPE=Haswell`` for NumPy, ``ONEDNN_MAX_CPU_ISA=AVX2``,
``ATEN_CPU_CAPABILITY=avx2`` and ``MKL_ENABLE_INSTRUCTIONS=AVX2`` for torch; such figures are
labelled as emulated. Without ``--isa`` those variables are removed from the workers'
environment, so an override inherited from the shell does not pass for the native set.
"""
from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

WORKER = Path(__file__).with_name("bench_worker.py")
#: a contender's turn waits until every other worker has used no CPU for this long: BLAS
#: and OpenMP threads spin after each call (OpenBLAS for ~0.1 s) and would take the cores
#: of whoever runs next
QUIET = 0.05
ISA_ENV = {"avx2": {"OPENBLAS_CORETYPE": "Haswell", "ONEDNN_MAX_CPU_ISA": "AVX2",
                    "ATEN_CPU_CAPABILITY": "avx2", "MKL_ENABLE_INSTRUCTIONS": "AVX2",
                    "NUMBA_CPU_NAME": "haswell"}}  # (dfi's compiled loops: Numba's target CPU)


def cpu() -> dict:
    """CPU model, the widest vector instruction set it has, and the cores this process may use."""
    model, flags = platform.processor() or platform.machine(), set()
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        text = ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name":
            model = value.strip()
        elif key.strip() == "flags":
            flags = set(value.split())
            break
    isa = "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "other"
    return {"cpu": model, "isa": isa, "cores": len(os.sched_getaffinity(0))}


class Worker:
    """One contender's process: JSON requests on its stdin, one JSON answer per line."""

    def __init__(self, contender: str, *, python: str = sys.executable, threads: int = 2,
                 isa: str | None = None, setup: dict | None = None, root: str | None = None):
        """``root``: the checkout of dfi the worker imports (default this one; another, e.g.
        ``git worktree add /tmp/before HEAD~3``, for a before/after table: ``dfi-baseline``)."""
        if root is not None and not (Path(root) / "dfi" / "__init__.py").is_file():
            print(f"bench: --baseline {root}: not a checkout of dfi (no dfi/__init__.py there)", file=sys.stderr)
            raise SystemExit(2)
        env = dict(os.environ)
        for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            env[name] = str(threads)
        for name in ISA_ENV["avx2"]:  # "native" means the machine's own set, not an inherited override
            env.pop(name, None)
        env.update(ISA_ENV.get(isa or "", {}))
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(root or WORKER.parent.parent), env.get("PYTHONPATH")]))
        self.contender = contender
        self.process = subprocess.Popen([python, str(WORKER), contender, str(threads)], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, text=True, env=env)
        self.info = self.ask({"op": "setup", **(setup or {})})

    def ask(self, request: dict) -> dict:
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"the {self.contender} worker ended (exit {self.process.wait()})")
        answer = json.loads(line)
        if "error" in answer:
            raise RuntimeError(f"{self.contender} worker: {answer['error']}")
        return answer

    def cpu_seconds(self) -> float:
        """User + system CPU time of the worker's process so far (all its threads)."""
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.stdin.close()
            self.process.wait(timeout=60)


def settle(workers: list[Worker], *, limit: float = 5.0) -> None:
    """Wait until no worker's threads use CPU (none has for :data:`QUIET` seconds)."""
    deadline = time.monotonic() + limit
    before = [w.cpu_seconds() for w in workers]
    while time.monotonic() < deadline:
        time.sleep(QUIET)
        now = [w.cpu_seconds() for w in workers]
        if now == before:
            return
        before = now
    raise RuntimeError("the workers' threads kept using CPU: is something else running?")


def _cpu_jiffies() -> tuple[int, int, int]:
    """(busy, steal, all) clock ticks of every CPU so far, from ``/proc/stat``."""
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return 0, 0, 0
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    steal = fields[7] if len(fields) > 7 else 0
    total = sum(fields[:8])
    return total - idle - steal, steal, total


_probe: list = []


def copy_bandwidth() -> float:
    """GB/s (read + write) of one thread copying 64 MiB, the best of two copies."""
    import numpy as np

    if not _probe:
        _probe.extend([np.ones(16 << 20, np.float32), np.zeros(16 << 20, np.float32)])
    source, target = _probe
    best = float("inf")
    for _ in range(2):
        start = time.perf_counter()
        np.copyto(target, source)
        best = min(best, time.perf_counter() - start)
    return 2 * source.nbytes / best / 1e9


class Timings(dict):
    """{contender: {"median": s, "times": […], "parts": {…}}}, and in ``conditions`` what
    the machine did meanwhile: ``steal_share`` and ``others_cpu_share`` (of all CPUs' time
    over the row; the workers' and this process's own CPU time taken out), and the copy
    bandwidth's median and lowest over the rounds (``copy_gbps``, ``copy_gbps_low``)."""

    conditions: dict


def alternate(workers: list[Worker], case: dict, repeats: int, *, warm: int = 0) -> Timings:
    """Each worker prepares ``case`` and runs it once untimed; then ``repeats`` rounds of one
    timed run per worker, in turn, each turn starting after every worker's threads have
    gone quiet (a cold start: what one pass after a pause costs). With ``warm``, each turn
    first runs ``warm`` untimed passes back to back (what the passes of an optimiser cost).
    Returns :class:`Timings`, {contender: {"median": s, "times": […], …}} with the row's
    conditions, where a worker's answer may add a per-part breakdown (medians of each
    part's seconds)."""
    for worker in workers:
        worker.ask({"op": "prepare", **case})
    runs = {worker.contender: [] for worker in workers}
    bandwidth = []
    own = sum(w.cpu_seconds() for w in workers) + sum(os.times()[:2])
    busy, steal, total = _cpu_jiffies()
    for _ in range(repeats):
        settle(workers)
        bandwidth.append(copy_bandwidth())
        for worker in workers:
            settle(workers)
            runs[worker.contender].append(worker.ask({"op": "run", "warm": warm}))
    own = sum(w.cpu_seconds() for w in workers) + sum(os.times()[:2]) - own
    busy, steal, total = (b - a for a, b in zip((busy, steal, total), _cpu_jiffies()))
    result = Timings()
    ticks = os.sysconf("SC_CLK_TCK")
    result.conditions = {"steal_share": round(steal / total, 3) if total else None,
                         "others_cpu_share": round(max(busy - own * ticks, 0) / total, 3) if total else None,
                         "copy_gbps": round(statistics.median(bandwidth), 1), "copy_gbps_low": round(min(bandwidth), 1)}
    for name, answers in runs.items():
        parts = {key: statistics.median(a["parts"][key] for a in answers) for key in answers[0].get("parts", {})}
        result[name] = {"median": statistics.median(a["seconds"] for a in answers),
                        "times": [round(a["seconds"], 5) for a in answers], "parts": parts}
    return result


def describe(workers: list[Worker], *, isa: str | None = None) -> dict:
    """The machine and each worker's libraries, to print beside every figure."""
    row = {**cpu(), "date": time.strftime("%Y-%m-%d"), "threads": workers[0].info.get("threads")}
    if isa:
        row["emulated_isa"] = isa
    for worker in workers:
        row[worker.contender] = {k: v for k, v in worker.info.items() if k != "threads"}
    return row


def print_row(row: dict) -> None:
    print(json.dumps(row), flush=True)
