"""One check of everything dfi does on a GPU, for the day a GPU machine is at hand.

    python scripts/gpu_check.py [--json gpu_check.json] [--skip-tests]

On a machine with CuPy and a CUDA device it runs, in a few minutes (well under 8 on one
modern GPU): the GPU-marked tests (``pytest -m gpu``), then a short benchmark set, each
timed after a warm-up with the device synchronised:

- one VGG-19 forward + backward to conv5_1 at 200², batch 1 and batch 6 (the untrained
  full-width network: the real one's shapes and FLOPs);
- the default 5-α ``dfi sweep`` at 200² (K = 100, 100 iterations) on a synthetic LFW;
- ``dfi style`` at 512² (its default 300 iterations);
- ``dfi stylize``: images per second at 512² (the full-width network, untrained weights);
- a 2-row ``dfi batch edit`` on the GPU (needs Dask distributed; skipped without it);
- the feature decoder: ``dfi train-decoder`` seconds per step at 200², then the default
  sweep with it decoded only (``--fast``) and warm-started (issue "trained decoder");
- the kernel launches of one VGG pass and one stylisation, counted on the CPU
  (``scripts/count_launches.py``), beside the measured times.

It writes one JSON record (device name, CuPy / CUDA / driver versions, every figure or the
error that stopped it) that BENCHMARKS.md can cite. Without CuPy or a device it says so in
one line and exits 0 at once. It installs nothing: the machine needs what the README's
"GPU check" section lists (CuPy 14, NumPy 2, a Chainer 7.8.1 wheel built beforehand).
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
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def gpu_present() -> str | None:
    """The first device's name, or None without CuPy or a device (Chainer not loaded)."""
    try:
        import cupy

        if cupy.cuda.runtime.getDeviceCount() < 1:
            return None
        name = cupy.cuda.runtime.getDeviceProperties(0)["name"]
        return name.decode() if isinstance(name, bytes) else str(name)
    except Exception:  # no CuPy, no driver, no device
        return None


def versions() -> dict:
    import cupy
    import numpy

    runtime = cupy.cuda.runtime
    return {"python": platform.python_version(), "numpy": numpy.__version__, "cupy": cupy.__version__,
            "cuda_runtime": runtime.runtimeGetVersion(), "cuda_driver": runtime.driverGetVersion(),
            "chainer": _version("chainer"), "date": time.strftime("%Y-%m-%d %H:%M:%S %Z")}


def _version(module: str) -> str | None:
    try:
        return __import__(module).__version__
    except Exception:
        return None


def _timed(run, device, repeats: int = 5) -> float:
    """Median seconds of ``run()`` after one warm-up, the device synchronised around each."""
    from dfi.core.backend import synchronize

    run()
    synchronize(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def vgg_pass(device, size: int) -> dict:
    import numpy as np
    import chainer
    import chainer.functions as F

    from dfi.nets.vgg import untrained_vgg19

    net = untrained_vgg19(seed=0).to_device(device)
    out = {}
    for batch in (1, 6):
        x = device.send(np.random.default_rng(0).uniform(-100, 100, (batch, 3, size, size)).astype(np.float32))

        def run():
            xv = chainer.Variable(x)
            feats = net.pick(xv, ["conv3_1", "conv4_1", "conv5_1"])
            sum(F.sum(f * f) for f in feats.values()).backward()
        seconds = _timed(run, device)
        out[f"batch {batch}"] = {"seconds": round(seconds, 5), "per_image_s": round(seconds / batch, 5)}
    return out


def _cli(*argv) -> None:
    from dfi.cli import main

    code = main(["-q", *map(str, argv)])
    if code != 0:
        raise RuntimeError(f"dfi {' '.join(map(str, argv[:2]))} exited {code}")


def _dataset(folder: Path, people: int) -> tuple[str, Path]:
    """A synthetic LFW (large enough for K = 100 at 160 people) and its index; returns (a
    face, the index)."""
    from data_tools.index import build_index, load_index, save_index
    from data_tools.synth import make_synthetic_lfw

    result = make_synthetic_lfw(folder, n_people=people, seed=1)
    save_index(build_index(result.images_dir, result.attributes_file), folder / "index.csv")
    row = load_index(folder / "index.csv").table.iloc[0]
    return f"{row['person']}/{int(row['imagenum'])}", folder / "index.csv"


def sweep(folder: Path, spec: str, small: bool) -> dict:
    face, index = _dataset(folder, 30 if small else 160)
    common = ["--index", index, "--attribute", "smiling", "--weights", "untrained", "--device", spec]
    _cli("sweep", face, *common, "-o", folder / "warm.png", "--iterations", "2", "--k", "4",
         *(["--size", "32"] if small else []))  # CUDA and CuPy's kernels warmed
    start = time.perf_counter()
    _cli("sweep", face, *common, "-o", folder / "sweep.png", *(["--size", "32", "--k", "4", "--iterations", "2"]
                                                              if small else []))
    wall = time.perf_counter() - start
    record = json.loads((folder / "sweep.json").read_text())
    return {"wall_s": round(wall, 3), "timings_s": record["timings_s"], "iterations_run": record["iterations_run"],
            "evaluations": record["evaluations"], "losses": record["losses"]}


def style(folder: Path, spec: str, small: bool) -> dict:
    from data_tools.synth import make_style_image

    size = 32 if small else 512
    make_style_image((size, size), kind="strokes").save(folder / "style.png")
    make_style_image((size, size), kind="mosaic").save(folder / "content.png")
    common = [folder / "content.png", folder / "style.png", "--size", size, "--weights", "untrained", "--device", spec]
    _cli("style", *common, "--iterations", "2", "-o", folder / "warm.png")
    start = time.perf_counter()
    _cli("style", *common, *(["--iterations", "2"] if small else []), "-o", folder / "styled.png")
    return {"wall_s": round(time.perf_counter() - start, 3)}


def stylize(device, size: int) -> dict:
    import numpy as np

    from dfi.nets.stylizer import TransformNet
    from dfi.style.feedforward import Stylizer

    model = Stylizer(TransformNet(1), device=device)
    images = np.random.default_rng(0).uniform(0, 255, (4, 3, size, size)).astype(np.float32)
    one = _timed(lambda: model.stylize(images[0], style=0), device)
    four = _timed(lambda: model.stylize(images, style=0), device)
    return {"images_per_s_batch_1": round(1 / one, 2), "images_per_s_batch_4": round(4 / four, 2),
            "note": "host to host: upload, stylise, download"}


def batch_edit(folder: Path, spec: str, small: bool) -> dict:
    try:
        import distributed  # noqa: F401
    except ImportError:
        return {"skipped": "Dask distributed is not installed (pip install 'dfi[cluster]')"}
    from data_tools.index import load_index

    face_folder = folder / "faces"
    face_folder.mkdir()
    _, index = _dataset(face_folder, 30 if small else 160)
    table = load_index(index).table
    rows = [f"{r['person']}/{int(r['imagenum'])},out/{i}.png" for i, (_, r) in enumerate(table.head(2).iterrows())]
    (folder / "rows.csv").write_text("input,output\n" + "\n".join(rows) + "\n")
    start = time.perf_counter()
    _cli("batch", "edit", folder / "rows.csv", "--index", index, "--attribute", "smiling", "--weights", "untrained",
         "--device", spec, "--workers", "1", "--iterations", "2" if small else "20", "--k", "4" if small else "20",
         *(["--size", "32"] if small else []))
    ledger = [json.loads(line) for line in (folder / "rows.ledger.jsonl").read_text().splitlines()]
    return {"wall_s": round(time.perf_counter() - start, 3), "rows_done": sum(r.get("status") == "done" for r in ledger)}


def decoder(folder: Path, spec: str, small: bool) -> dict:
    """The feature decoder on the device: its training steps at 200² (the seconds per step
    from a 2-step and a 12-step run, so start-up cancels), then the default sweep with it,
    decoded only (``--fast``) and warm-started; the cold sweep is the "sweep" step's."""
    face, index = _dataset(folder, 30 if small else 160)
    size = ["--size", "32"] if small else []
    dec, walls = folder / "dec.npz", {}
    for steps in (2, 12):
        start = time.perf_counter()
        _cli("train-decoder", "--index", index, "-o", dec, "--weights", "untrained", "--device", spec,
             "--iterations", steps, "--checkpoint-every", 100, "--size", 32 if small else 200)
        walls[steps] = time.perf_counter() - start
    common = [face, "--index", index, "--attribute", "smiling", "--weights", "untrained", "--device", spec,
              "--decoder", dec, *size, *(["--k", "4"] if small else [])]
    out = {"train_size": 32 if small else 200, "train_s_per_step": round((walls[12] - walls[2]) / 10, 4)}
    for label, extra in (("fast", ["--fast"]), ("warm", ["--iterations", "2"] if small else [])):
        start = time.perf_counter()
        _cli("sweep", *common, *extra, "-o", folder / f"{label}.png")
        record = json.loads((folder / f"{label}.json").read_text())
        out[label] = {"wall_s": round(time.perf_counter() - start, 3), "init": record["init"],
                      "timings_s": record["timings_s"], "evaluations": record["evaluations"],
                      "losses": record["losses"]}
    return out


def launch_counts(small: bool) -> dict:
    sys.path.insert(0, str(ROOT / "scripts"))
    import count_launches

    vgg, stylizer = (32, 32) if small else (200, 512)
    return {f"vgg {vgg}² batch 1": count_launches.count_vgg(vgg, 1),
            f"stylizer {stylizer}² batch 1": count_launches.count_stylizer(stylizer, 1),
            f"decoder {vgg + 8}² batch 6": count_launches.count_decoder(vgg + 8, 6)}


def gpu_tests() -> dict:
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-m", "gpu", "-p", "no:cacheprovider",
                           str(ROOT / "tests")], cwd=ROOT, capture_output=True, text=True, timeout=240)
    tail = (done.stdout + done.stderr).strip().splitlines()[-15:]
    return {"exit": done.returncode, "seconds": round(time.perf_counter() - start, 1), "tail": tail}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", default="gpu_check.json", help="where the record goes (default gpu_check.json)")
    parser.add_argument("--skip-tests", action="store_true", help="only the benchmarks")
    parser.add_argument("--dry-run", action="store_true",
                        help="every step on the CPU at tiny sizes, no tests: checks this script, not a GPU")
    args = parser.parse_args(argv)
    name = "cpu (dry run)" if args.dry_run else gpu_present()
    if name is None:
        print("gpu_check: no CUDA device (or no CuPy) here; nothing to check")
        return 0
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DFI_HOME", tempfile.mkdtemp(prefix="dfi-home-"))
    import dfi._compat  # noqa: F401  (before Chainer)
    from dfi.core.backend import parse_device, use_device

    spec, small = ("cpu", True) if args.dry_run else ("gpu", False)
    record = {"device": name, "versions": versions() if not args.dry_run else {}, "results": {}}
    device = use_device(parse_device(spec))
    steps = [("gpu tests", gpu_tests)] if not (args.skip_tests or args.dry_run) else []
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        for step in ("sweep", "style", "batch", "decoder"):
            (scratch / step).mkdir()
        steps += [("vgg pass 200²", lambda: vgg_pass(device, 32 if small else 200)),
                  ("sweep 5 alphas 200²", lambda: sweep(scratch / "sweep", spec, small)),
                  ("style 512²", lambda: style(scratch / "style", spec, small)),
                  ("stylize 512²", lambda: stylize(device, 32 if small else 512)),
                  ("batch edit 2 rows", lambda: batch_edit(scratch / "batch", spec, small)),
                  ("decoder 200²: training, fast and warm sweeps", lambda: decoder(scratch / "decoder", spec, small)),
                  ("launches (counted)", lambda: launch_counts(small))]
        for label, step in steps:
            start = time.perf_counter()
            try:
                record["results"][label] = step()
            except Exception as exc:  # one failing step does not hide the others
                record["results"][label] = {"error": f"{type(exc).__name__}: {exc}".splitlines()[0],
                                            "traceback": traceback.format_exc(limit=6)}
            print(f"gpu_check: {label}: {time.perf_counter() - start:.1f} s", file=sys.stderr)
    Path(args.json).write_text(json.dumps(record, indent=1, default=str))
    failed = [label for label, result in record["results"].items()
              if "error" in result or result.get("exit", 0) != 0]
    print(f"gpu_check: {name}: wrote {args.json}" + (f"; failed: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
