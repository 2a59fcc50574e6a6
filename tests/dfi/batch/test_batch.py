"""dfi batch and the feature store on local Dask clusters (127.0.0.1 only)."""
import json
import os
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from data_tools.index import load_index

pytest.importorskip("distributed")
pytest.importorskip("zarr")

FAST = ["--weights", "untrained", "--device", "cpu", "--size", "32", "--k", "4", "--iterations", "4"]


def _manifest(folder, index_file, count=6, *, extra_rows=(), alpha_column=True):
    """A manifest of ``count`` indexed faces (every other row overrides alpha)."""
    table = load_index(index_file).table
    lines = ["input,output,alpha" if alpha_column else "input,output"]
    for i in range(count):
        row = table.iloc[i]
        face = f"{row['person']}/{int(row['imagenum'])}"
        lines.append(f"{face},out/{i}.png" + ((",0.2" if i % 2 else ",") if alpha_column else ""))
    lines.extend(extra_rows)
    path = folder / "rows.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def _ledger(manifest):
    return [json.loads(line) for line in manifest.with_name("rows.ledger.jsonl").read_text().splitlines()]


def _valid(path):
    with Image.open(path) as image:
        image.load()
        return image.size == (250, 250)


def test_six_rows_on_two_workers_then_a_rerun_does_nothing(synth_lfw, tmp_path, cli):
    _, index_file = synth_lfw
    manifest = _manifest(tmp_path, index_file)
    code, _, err = cli("--quiet", "batch", "edit", manifest, "--index", index_file, "--attribute", "smiling",
                       *FAST, "--workers", "2")
    assert code == 0, err
    outputs = sorted((tmp_path / "out").iterdir())
    assert [p.name for p in outputs] == [f"{i}.png" for i in range(6)]
    assert all(_valid(p) for p in outputs)
    ledger = _ledger(manifest)
    assert sorted(r["output"] for r in ledger) == sorted(str(p) for p in outputs)
    assert all(r["status"] == "done" for r in ledger)
    assert {r["record"]["loss"]["alpha"] for r in ledger} == {0.2, 0.4}  # the alpha column overrides
    stamps = {p: p.stat().st_mtime_ns for p in outputs}

    code, _, err = cli("--quiet", "batch", "edit", manifest, "--index", index_file, "--attribute", "smiling",
                       *FAST, "--workers", "2")
    assert code == 0, err
    assert "0 done, 6 already done" in err
    assert {p: p.stat().st_mtime_ns for p in outputs} == stamps
    assert len(_ledger(manifest)) == 6

    # a changed setting runs the rows again
    code, _, err = cli("--quiet", "batch", "edit", manifest, "--index", index_file, "--attribute", "smiling",
                       *FAST[:-1], "5", "--workers", "2")
    assert code == 0, err
    assert "6 done, 0 already done" in err
    assert len(_ledger(manifest)) == 12


def test_a_worker_killed_mid_run_loses_and_repeats_nothing(synth_lfw, tmp_path, cli):
    from distributed import Client, LocalCluster

    _, index_file = synth_lfw
    manifest = _manifest(tmp_path, index_file)
    ledger_file = manifest.with_name("rows.ledger.jsonl")
    killed = []
    with LocalCluster(n_workers=2, threads_per_worker=1, host="127.0.0.1", dashboard_address=None,
                      scheduler_kwargs={"dashboard": False}) as cluster, Client(cluster) as client:

        pids = client.run(os.getpid)

        def kill_one():  # SIGKILL a worker that is running a row, once one row is done
            deadline = time.time() + 120
            while time.time() < deadline and not killed:
                busy = [w for w, keys in client.processing().items() if keys]
                if ledger_file.is_file() and ledger_file.read_text().count("\n") >= 1 and busy:
                    os.kill(pids[busy[0]], signal.SIGKILL)
                    killed.append(busy[0])
                time.sleep(0.05)

        thread = threading.Thread(target=kill_one, daemon=True)
        thread.start()
        code, _, err = cli("--quiet", "batch", "edit", manifest, "--index", index_file, "--attribute", "smiling",
                           *FAST, "--scheduler", cluster.scheduler_address)
        thread.join()
    assert killed, "no worker was killed: the rows ended too soon"
    assert code == 0, err
    outputs = sorted((tmp_path / "out").iterdir())
    ledger = _ledger(manifest)
    why = f"files {[p.name for p in outputs]}, ledger {ledger}"
    assert len(outputs) == 6 and all(_valid(p) for p in outputs), why  # no temporary file left either
    assert len(ledger) == 6 and len({r["output"] for r in ledger}) == 6, why  # each row recorded once
    assert not manifest.with_name("rows.ledger.jsonl.running").exists()


def test_a_row_that_ran_before_its_worker_died_is_not_run_again(tmp_path):
    from dfi.batch.runner import run_row

    calls = []

    def work(settings):
        calls.append(settings)
        (tmp_path / "out.png").write_bytes(b"x")
        return {"n": len(calls)}

    marker = str(tmp_path / "m.json")
    assert run_row(work, {"a": 1}, "h1", marker) == {"status": "done", "record": {"n": 1, "seconds": pytest.approx(0, abs=1)}}
    again = run_row(work, {"a": 1}, "h1", marker)
    assert again["again"] and again["record"]["n"] == 1 and len(calls) == 1
    assert run_row(work, {"a": 2}, "h2", marker)["record"]["n"] == 2  # other settings: a new run

    def broken(settings):
        raise FloatingPointError("the loss is not finite")

    failed = run_row(broken, {}, "h3", str(tmp_path / "n.json"))
    assert failed["status"] == "failed" and failed["error"] == "the loss is not finite"


def test_bad_rows_are_named_and_the_others_done(synth_lfw, tmp_path, cli):
    _, index_file = synth_lfw
    blank = tmp_path / "blank.png"
    Image.new("RGB", (120, 120), (128, 128, 128)).save(blank)
    manifest = _manifest(tmp_path, index_file, count=3, alpha_column=False,
                         extra_rows=["missing.jpg,out/m.png", "blank.png,out/b.png"])
    code, _, err = cli("--quiet", "batch", "edit", manifest, "--index", index_file, "--attribute", "smiling",
                       *FAST, "--workers", "1")
    assert code == 1
    line = err.strip().splitlines()[-1]
    assert "2 of 5 rows failed" in line and "missing.jpg" in line and "blank.png" in line
    assert "no such image file" in line
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["0.png", "1.png", "2.png"]
    by_status = {}
    for record in _ledger(manifest):
        by_status.setdefault(record["status"], []).append(record)
    assert len(by_status["done"]) == 3 and len(by_status["failed"]) == 2
    assert any("no face found" in r["error"] for r in by_status["failed"])


@pytest.mark.parametrize("text, message", [
    ("output\nx.png\n", "no 'input' column"),
    ("input,output,colour\na.png,b.png,red\n", "unknown column 'colour'"),
    ("input,output\na.png,o.png\nb.png,o.png\n", "also the output of line 2"),
    ("input,output\na.png,b.png\nb.png,c.png\n", "is the input of line 3"),
    ("input,output,alpha\na.png,b.png,strong\n", "column alpha: 'strong' is not a number"),
    ("input,output,k\na.png,b.png,2.5\n", "column k: '2.5' is not a whole number"),
    ("input,output,alpha\na.png,b.png,99\n", "out of range"),
    ("input,output,rule\na.png,b.png,nearest\n", "not one of chainer, paper"),
    ("input,output\na.png,b.txt\n", "use an image extension"),
    ("input,output,mask\na.png,b.png,\nc.png,d.png,b.png\n", "is the mask of line 3"),
    ("input,output\n", "no rows"),
])
def test_malformed_manifests_are_refused_before_any_work(synth_lfw, tmp_path, cli, text, message):
    _, index_file = synth_lfw
    manifest = tmp_path / "rows.csv"
    manifest.write_text(text)
    code, _, err = cli("batch", "edit", manifest, "--index", index_file, "--attribute", "smiling", *FAST,
                       "--scheduler", "tcp://127.0.0.1:9")  # never contacted: refused before
    assert code == 2, err
    assert message in err and len(err.strip().splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rows.csv"]


def test_an_unreachable_scheduler_is_one_line(synth_lfw, tmp_path, cli):
    from dfi.batch.cluster import open_client

    with pytest.raises(ConnectionError, match="tcp://127.0.0.1:9"):
        open_client("tcp://127.0.0.1:9", timeout=1)


def test_batch_style_rows(tmp_path, cli):
    rng = np.random.default_rng(0)
    for name in ("a", "b", "s1", "s2"):
        Image.fromarray(rng.integers(0, 255, (24, 24, 3), dtype=np.uint8)).save(tmp_path / f"{name}.png")
    manifest = tmp_path / "rows.csv"
    manifest.write_text("input,output,style,tv-weight\na.png,out/a.png,,\nb.png,out/b.png,s1.png;s2.png,0.01\n")
    code, _, err = cli("--quiet", "batch", "style", manifest, "--style", tmp_path / "s1.png",
                       "--weights", "untrained", "--device", "cpu", "--size", "24", "--iterations", "3",
                       "--workers", "1")
    assert code == 0, err
    for name in ("a", "b"):
        with Image.open(tmp_path / "out" / f"{name}.png") as image:
            assert image.size == (24, 24)
    records = {Path(r["output"]).name: r for r in _ledger(manifest)}
    assert set(records) == {"a.png", "b.png"} and all(r["status"] == "done" for r in records.values())
    # row b is exactly `dfi style b.png s1.png s2.png --tv-weight 0.01`
    code, _, err = cli("--quiet", "style", tmp_path / "b.png", tmp_path / "s1.png", tmp_path / "s2.png",
                       "--tv-weight", "0.01", "--weights", "untrained", "--device", "cpu", "--size", "24",
                       "--iterations", "3", "-o", tmp_path / "direct.png")
    assert code == 0, err
    batch, direct = (np.asarray(Image.open(p), dtype=np.float32) for p in (tmp_path / "out" / "b.png",
                                                                            tmp_path / "direct.png"))
    assert np.abs(batch - direct).max() <= 1.0


def test_the_store_gives_the_vector_of_direct_extraction(synth_lfw, tmp_path, cli):
    from dfi.edit.pipeline import EditConfig, compute_vector
    from dfi.edit.store import FeatureStore
    from dfi.nets.weights import load_vgg19

    _, index_file = synth_lfw
    layers = "conv3_1,conv4_1"
    for dtype in ("float32", "float16"):
        store = tmp_path / f"{dtype}.zarr"
        code, out, err = cli("--quiet", "data", "features", "--index", index_file, "--store", store,
                             "--size", "32", "--layers", layers, "--dtype", dtype, "--block", "8",
                             "--weights", "untrained", "--device", "cpu", "--workers", "2")
        assert code == 0, err
        assert out.strip() == str(store) and not store.with_name(store.name + ".partial").exists()
    index = load_index(index_file)
    net = load_vgg19("untrained")
    config = EditConfig(layers=tuple(layers.split(",")), size=32)
    sources, targets = list(index.table["path"][:10]), list(index.table["path"][10:25])
    direct = compute_vector(net, index, sources, targets, config)
    for dtype, tolerance in (("float32", 1e-5), ("float16", 3e-3)):
        store = FeatureStore(tmp_path / f"{dtype}.zarr", net_name=net.identity, layers=config.layers,
                             size=32, crop=config.crop)
        assert store.get(index.images_root / sources[0]) is not None
        stored = compute_vector(net, index, sources, targets, config, cache=store)
        for name in config.layers:
            scale = np.abs(direct[name]).max()
            np.testing.assert_allclose(stored[name], direct[name], atol=tolerance * scale)
    with pytest.raises(Exception, match="made with size 32, not 48"):
        FeatureStore(tmp_path / "float32.zarr", net_name=net.identity, layers=config.layers, size=48,
                     crop=config.crop)
    # a store that exists with the same settings is kept; other settings are refused
    code, _, err = cli("--quiet", "data", "features", "--index", index_file, "--store", tmp_path / "float32.zarr",
                       "--size", "48", "--layers", layers, "--weights", "untrained", "--device", "cpu",
                       "--workers", "1")
    assert code == 2 and "exists with other settings" in err


def test_edit_reads_the_store(synth_lfw, tmp_path, cli):
    _, index_file = synth_lfw
    store = tmp_path / "s.zarr"
    code, _, err = cli("--quiet", "data", "features", "--index", index_file, "--store", store, "--size", "32",
                       "--dtype", "float32", "--weights", "untrained", "--device", "cpu", "--workers", "1")
    assert code == 0, err
    table = load_index(index_file).table
    face = f"{table['person'].iloc[0]}/{int(table['imagenum'].iloc[0])}"
    results = []
    for extra in ([], ["--feature-store", store]):
        out = tmp_path / f"e{len(extra)}.png"
        code, _, err = cli("--quiet", "edit", face, "--index", index_file, "--attribute", "smiling", *FAST,
                           *extra, "-o", out)
        assert code == 0, err
        results.append(np.asarray(Image.open(out), dtype=np.float32))
    assert np.abs(results[0] - results[1]).max() <= 2.0  # float32 features: the same edit
    code, _, err = cli("--quiet", "edit", face, "--index", index_file, "--attribute", "smiling", *FAST,
                       "--feature-store", tmp_path / "nowhere.zarr", "-o", tmp_path / "x.png")
    assert code == 1 and "no such store" in err


def test_rows_that_share_neighbours_share_the_vector(synth_lfw, tmp_path, cli):
    _, index_file = synth_lfw
    table = load_index(index_file).table
    face = f"{table['person'].iloc[0]}/{int(table['imagenum'].iloc[0])}"
    manifest = tmp_path / "rows.csv"
    manifest.write_text(f"input,output,tv_weight\n{face},a.png,0.001\n{face},b.png,0.002\n")
    code, _, err = cli("--quiet", "batch", "edit", manifest, "--index", index_file, "--attribute", "smiling",
                       *FAST, "--workers", "1")
    assert code == 0, err
    reused = sorted(r["record"]["vectors_reused"] for r in _ledger(manifest))
    assert reused == [[], ["smiling"]]  # one worker: the second row used the first row's vector

    other = tmp_path / "seeds.csv"  # same neighbours, other (untrained, seeded) weights: no reuse
    other.write_text(f"input,output,seed\n{face},c.png,0\n{face},d.png,1\n")
    code, _, err = cli("--quiet", "batch", "edit", other, "--index", index_file, "--attribute", "smiling",
                       *FAST, "--workers", "1")
    assert code == 0, err
    rows = [json.loads(line) for line in other.with_name("seeds.ledger.jsonl").read_text().splitlines()]
    assert [r["record"].get("vectors_reused", []) for r in rows] == [[], []]


def test_rows_of_one_face_that_differ_in_alpha_run_as_one_sweep(synth_lfw, tmp_path, cli):
    _, index_file = synth_lfw
    table = load_index(index_file).table
    faces = [f"{table['person'].iloc[i]}/{int(table['imagenum'].iloc[i])}" for i in (0, 1)]
    manifest = tmp_path / "rows.csv"
    manifest.write_text(f"input,output,alpha\n{faces[0]},a.png,0.2\n{faces[1]},c.png,0.4\n{faces[0]},b.png,0.4\n")
    code, _, err = cli("--quiet", "batch", "edit", manifest, "--index", index_file, "--attribute", "smiling",
                       *FAST, "--workers", "1")
    assert code == 0, err
    together = {Path(r["output"]).name: r["record"]["alphas_together"] for r in _ledger(manifest)}
    assert together == {"a.png": 2, "b.png": 2, "c.png": 1}
    losses = {Path(r["output"]).name: r["record"]["loss"]["alpha"] for r in _ledger(manifest)}
    assert losses == {"a.png": 0.2, "b.png": 0.4, "c.png": 0.4}  # each output got its own alpha
    # the grouped row equals `dfi edit` of that row alone
    code, _, err = cli("--quiet", "edit", faces[0], "--index", index_file, "--attribute", "smiling", *FAST,
                       "--alpha", "0.4", "-o", tmp_path / "alone.png")
    assert code == 0, err
    grouped, alone = (np.asarray(Image.open(tmp_path / n), dtype=np.float32) for n in ("b.png", "alone.png"))
    assert np.abs(grouped - alone).mean() < 0.05 and np.abs(grouped - alone).max() <= 2


def test_each_gpu_worker_sees_its_own_gpu_first():
    from dfi.batch.cluster import worker_gpus

    assert worker_gpus(3, "") == ["0,1,2", "1,2,0", "2,0,1"]
    assert worker_gpus(2, "5, 7") == ["5,7", "7,5"]
    with pytest.raises(Exception, match="--workers 3: only 2 GPU"):
        worker_gpus(3, "5,7")


def test_a_local_cluster_without_dask_cuda_gives_each_worker_its_own_gpu(monkeypatch):
    """Two GPUs and no dask-cuda: two workers, CUDA_VISIBLE_DEVICES rotated (a plain
    LocalCluster gave every worker every GPU, so each resolved gpu:0 to the same one)."""
    import sys

    import dfi.core.backend as backend
    from dfi.batch.cluster import close_client, open_client

    monkeypatch.setattr(backend, "gpu_count", lambda: 2)
    monkeypatch.setitem(sys.modules, "dask_cuda", None)  # not installed
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    client = open_client(None, 4)
    try:
        seen = client.run(lambda: os.environ.get("CUDA_VISIBLE_DEVICES"))
    finally:
        close_client(client)
    assert sorted(seen.values()) == ["0,1", "1,0"]


def test_the_feature_store_driver_holds_no_network(synth_lfw, tmp_path, cli, monkeypatch):
    """dfi data features loads the weights on the host for their identity and shapes only,
    and never moves a network to a device (each worker loads its own)."""
    import dfi.nets.vgg as vgg

    _, index_file = synth_lfw
    moved = []
    original = vgg.VGG19.to_device
    monkeypatch.setattr(vgg.VGG19, "to_device", lambda self, device: moved.append(str(device)) or original(self, device))
    code, _, err = cli("-q", "data", "features", "--index", index_file, "--store", tmp_path / "s.zarr",
                       "--weights", "untrained", "--device", "cpu", "--size", "32", "--layers", "conv3_1",
                       "--workers", "1")
    assert code == 0, err
    assert moved == []  # the worker is another process: its to_device is not seen here


@pytest.mark.parametrize("command_line, cells, message", [
    (["--attribute", "smilng"], None, "unknown attribute 'smilng'"),
    ([], None, "give --attribute (with --index) or --vector"),
    (["--attribute", "smiling", "--device", "gpu"], None, "--device 'gpu'"),
    (["--attribute", "smiling"], "size\n100000", "--size 100000"),
    (["--attribute", "smiling"], "layers\nconv9_9", "unknown layer 'conv9_9'"),
])
def test_rows_go_through_the_single_commands_checks_before_the_cluster_starts(
        synth_lfw, tmp_path, cli, monkeypatch, command_line, cells, message):
    """What dfi edit refuses at once (exit 2) a batch refuses before starting its cluster,
    naming the manifest line, instead of recording every row as failed."""
    import dfi.batch.cluster as cluster
    from dfi.core import backend

    _, index_file = synth_lfw
    monkeypatch.setattr(backend, "gpu_count", lambda: 0)
    monkeypatch.setattr(cluster, "open_client", lambda *a, **k: pytest.fail("the cluster was started"))
    manifest = _manifest(tmp_path, index_file, count=2, alpha_column=False)
    if cells is not None:
        column, value = cells.split("\n")
        lines = manifest.read_text().splitlines()
        manifest.write_text("\n".join([lines[0] + f",{column}", lines[1] + ",", lines[2] + f",{value}"]) + "\n")
    index = [] if not command_line else ["--index", index_file]
    code, _, err = cli("-q", "batch", "edit", manifest, *index, *FAST, *command_line)
    assert code == 2, err
    assert message in err and err.count("\n") == 1 and "rows.csv:" in err, err


def test_a_workers_warnings_are_one_line_as_a_single_commands(synth_lfw, tmp_path, capfd):
    from dfi.cli import main

    _, index_file = synth_lfw
    manifest = _manifest(tmp_path, index_file, count=1, alpha_column=False)
    code = main(["-q", "batch", "edit", str(manifest), "--index", str(index_file), "--attribute", "smiling",
                 *FAST, "--workers", "1"])
    err = capfd.readouterr().err
    assert code == 0, err
    assert "dfi: warning: using an untrained" in err and "UserWarning" not in err, err
