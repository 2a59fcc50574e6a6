"""Benchmarks of ``dfi batch`` and the feature store (results go to BENCHMARKS.md).

    python scripts/bench_batch.py rows [--rows 8] [--workers 1,2] [--size 96] [--iterations 30]
    python scripts/bench_batch.py overhead [--rows 200]
    python scripts/bench_batch.py store [--faces 64] [--size 200]

``rows``: rows per minute of ``dfi batch edit`` on a local cluster with 1 and 2 workers
(synthetic LFW, untrained VGG-19; each figure is the second run of a fresh manifest, the
cluster's start counted). ``overhead``: the scheduler's cost per row: rows that do nothing
(an empty work function) through the same runner and ledger. ``store``: bytes per face of
``dfi data features`` at the edit defaults (conv3_1, conv4_1, conv5_1) in float32 and
float16, as written (Zarr's default compression). Each command prints JSON lines.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _machine() -> dict:
    return {"machine": platform.machine(), "cores": len(os.sched_getaffinity(0)),
            "python": platform.python_version(), "date": time.strftime("%Y-%m-%d")}


def _dfi(*argv) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "dfi", "--quiet", *map(str, argv)], check=True)
    return time.perf_counter() - start


def _dataset(folder: Path, people: int = 40) -> Path:
    from data_tools.index import build_index, save_index
    from data_tools.synth import make_synthetic_lfw

    result = make_synthetic_lfw(folder, n_people=people, seed=3)
    save_index(build_index(result.images_dir, result.attributes_file), folder / "index.csv")
    return folder / "index.csv"


def bench_rows(args) -> None:
    from data_tools.index import load_index

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        index_file = _dataset(folder)
        table = load_index(index_file).table
        common = ["--index", index_file, "--attribute", "smiling", "--weights", "untrained", "--device", "cpu",
                  "--size", args.size, "--k", args.k, "--iterations", args.iterations]
        for workers in [int(w) for w in args.workers.split(",")]:
            manifest = folder / f"rows{workers}.csv"
            lines = ["input,output"] + [f"{table['person'].iloc[i]}/{int(table['imagenum'].iloc[i])},"
                                        f"out{workers}/{i}.png" for i in range(args.rows)]
            manifest.write_text("\n".join(lines) + "\n")
            seconds = _dfi("batch", "edit", manifest, *common, "--workers", workers)
            print(json.dumps({"bench": "rows", "workers": workers, "rows": args.rows, "size": args.size,
                              "k": args.k, "iterations": args.iterations, "seconds": round(seconds, 1),
                              "rows_per_minute": round(60 * args.rows / seconds, 2), **_machine()}), flush=True)


def _nothing(settings: dict) -> dict:
    return {}


def bench_overhead(args) -> None:
    from dfi.batch.cluster import close_client, open_client
    from dfi.batch.ledger import Ledger
    from dfi.batch.manifest import Row
    from dfi.batch.runner import Job, run_jobs

    with tempfile.TemporaryDirectory() as tmp:
        client = open_client(workers=2)
        try:
            for attempt in range(2):  # the first warms the workers
                ledger = Ledger(Path(tmp) / f"l{attempt}.jsonl")
                jobs = [Job(Row(i + 2, f"in{i}", Path(tmp) / f"o{attempt}_{i}.png"), {}, f"{attempt}-{i}")
                        for i in range(args.rows)]
                start = time.perf_counter()
                summary = run_jobs(client, jobs, _nothing, ledger)
                seconds = time.perf_counter() - start
            assert len(summary.done) == args.rows
        finally:
            close_client(client)
    print(json.dumps({"bench": "overhead", "rows": args.rows, "workers": 2,
                      "ms_per_row": round(1000 * seconds / args.rows, 2), **_machine()}), flush=True)


def bench_store(args) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        index_file = _dataset(folder, people=max(4, args.faces // 2))
        from data_tools.index import load_index
        faces = len(load_index(index_file).table)
        for dtype in ("float32", "float16"):
            store = folder / f"{dtype}.zarr"
            seconds = _dfi("data", "features", "--index", index_file, "--store", store, "--size", args.size,
                           "--dtype", dtype, "--weights", "untrained", "--device", "cpu", "--workers", 1)
            size = sum(p.stat().st_size for p in store.rglob("*") if p.is_file())
            raw = {"float32": 4, "float16": 2}[dtype] * sum(
                c * h * h for c, h in ((256, args.size // 4), (512, -(-args.size // 8)), (512, -(-args.size // 16))))
            print(json.dumps({"bench": "store", "dtype": dtype, "faces": faces, "size": args.size,
                              "bytes_per_face": round(size / faces), "uncompressed_bytes_per_face": raw,
                              "seconds": round(seconds, 1), "faces_per_s": round(faces / seconds, 2),
                              **_machine()}), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="bench", required=True)
    p = sub.add_parser("rows")
    p.add_argument("--rows", type=int, default=8)
    p.add_argument("--workers", default="1,2")
    p.add_argument("--size", type=int, default=96)
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--iterations", type=int, default=30)
    p.set_defaults(run=bench_rows)
    p = sub.add_parser("overhead")
    p.add_argument("--rows", type=int, default=200)
    p.set_defaults(run=bench_overhead)
    p = sub.add_parser("store")
    p.add_argument("--faces", type=int, default=64)
    p.add_argument("--size", type=int, default=200)
    p.set_defaults(run=bench_store)
    args = parser.parse_args()
    args.run(args)


if __name__ == "__main__":
    main()
