"""dfi train-decoder end to end, and dfi sweep / edit with --decoder (warm start, --fast)."""
import json

import numpy as np
import pytest
from PIL import Image

from data_tools.index import load_index

TRAIN = ["--weights", "untrained", "--device", "cpu", "--size", "32", "--batch-size", "2", "--width", "0.25"]
EDIT = ["--attribute", "smiling", "--weights", "untrained", "--device", "cpu", "--size", "32", "--k", "4"]


@pytest.fixture(scope="module")
def decoder(synth_lfw, tmp_path_factory):
    from dfi.cli import main

    _, index_file = synth_lfw
    out = tmp_path_factory.mktemp("decoder") / "dec.npz"
    code = main([str(a) for a in ["-q", "train-decoder", "--index", index_file, "-o", out, "--iterations", "4",
                                  "--checkpoint-every", "2", "--sample-every", "2", *TRAIN]])
    assert code == 0
    return out


def _face(index_file):
    table = load_index(index_file).table
    row = table.iloc[0]
    return f"{row['person']}/{int(row['imagenum'])}"


def test_training_writes_the_decoder_its_record_and_samples(decoder):
    from dfi.nets.decoder import load_decoder

    net, record = load_decoder(decoder)
    assert record["format"] == "dfi-decoder" and record["vgg"].startswith("untrained:max:")
    assert record["training"]["steps_done"] == 4 and record["architecture"]["inputs"][0][0] == "conv5_1"
    assert len(record["architecture"]["scales"]) == 3
    samples = sorted(p.name for p in decoder.parent.glob("dec_sample_*.png"))
    assert samples == ["dec_sample_000002.png", "dec_sample_000004.png"]
    with Image.open(decoder.parent / samples[0]) as im:
        assert im.size == (4 * 32 + 3 * 4, 2 * 32 + 4)  # input | D(φ(x)) | two edits, two faces
    assert not decoder.with_name("dec.npz.ckpt").exists()


def test_a_time_limit_stops_cleanly_and_resume_continues(synth_lfw, tmp_path, cli):
    _, index_file = synth_lfw
    out = tmp_path / "d.npz"
    code, _, err = cli("-q", "train-decoder", "--index", index_file, "-o", out, "--iterations", "3",
                       "--time-limit", "0.00001", *TRAIN)
    assert code == 0, err
    from dfi.nets.decoder import load_decoder

    assert load_decoder(out)[1]["training"]["steps_done"] == 1 and out.with_name("d.npz.ckpt").is_file()
    code, _, err = cli("-q", "train-decoder", "--index", index_file, "-o", out, "--iterations", "3", "--resume", *TRAIN)
    assert code == 0, err
    assert load_decoder(out)[1]["training"]["steps_done"] == 3 and not out.with_name("d.npz.ckpt").exists()


def test_fast_and_warm_edits_with_the_decoder(synth_lfw, decoder, tmp_path, cli):
    result, index_file = synth_lfw
    face = _face(index_file)
    code, _, err = cli("-q", "sweep", face, "--index", index_file, *EDIT, "--alphas", "0.2,0.4",
                       "--decoder", decoder, "--fast", "-o", tmp_path / "fast.png")
    assert code == 0, err
    record = json.loads((tmp_path / "fast.json").read_text())
    assert record["init"] == "decoder" and record["iterations_run"] == 0 and len(record["losses"]) == 2
    assert [(row["init"], row["start_share"]) for row in record["losses"]] == [("decoder", 1.0)] * 2
    index = load_index(index_file)
    original = np.asarray(Image.open(index.image_path(index.locate(*face.rsplit("/", 1)[:1], int(face.rsplit("/", 1)[1])))),
                          dtype=float)
    edited = np.asarray(Image.open(tmp_path / "fast_alpha0.4.png"), dtype=float)
    assert edited.shape == original.shape
    outside = np.ones(original.shape[:2], bool)
    outside[20:190, 40:210] = False  # the LFW crop: nothing outside it changes
    assert np.abs(edited - original)[outside].max() <= 1
    code, _, err = cli("-q", "sweep", face, "--index", index_file, *EDIT, "--alphas", "0.2,0.4",
                       "--decoder", decoder, "--iterations", "0", "-o", tmp_path / "zero.png")
    assert code == 0, err  # the other spelling of --fast: the same pictures and the same record
    assert np.array_equal(np.asarray(Image.open(tmp_path / "zero_alpha0.4.png")), edited.astype(np.uint8))
    zero = json.loads((tmp_path / "zero.json").read_text())
    assert zero["settings"]["iterations"] == record["settings"]["iterations"] == 0
    assert zero["losses"] == record["losses"] and zero["evaluations"] == record["evaluations"]
    code, _, err = cli("-q", "sweep", face, "--index", index_file, *EDIT, "--alphas", "0.2", "--iterations", "2",
                       "--decoder", decoder, "-o", tmp_path / "warm.png")
    assert code == 0, err
    record = json.loads((tmp_path / "warm.json").read_text())
    assert record["init"] == "decoder" and record["iterations_run"] >= 1
    (row,) = record["losses"]
    assert row["start_share"] in (0.0, 0.25, 0.5, 0.75, 1.0)
    assert row["init"] == ("input" if row["start_share"] == 0 else "decoder")


@pytest.mark.parametrize("argv, code, words", [
    (["--fast"], 2, "--fast decodes the edit in one pass: give --decoder"),
    (["--iterations", "0"], 2, "--iterations 0 decodes the edit in one pass: give --decoder DEC.npz "
                               "(dfi train-decoder), or an iteration cap of at least 1"),
    (["--decoder", "{decoder}", "--iterations", "-1"], 2, "argument --iterations: -1 must be at least 0"),
    (["--decoder", "{foreign}"], 2, "not a dfi decoder"),
    (["--decoder", "{decoder}", "--seed", "1"], 2, "decodes the features of VGG"),
    (["--decoder", "{decoder}", "--layers", "conv4_1"], 2, "decodes layers conv3_1, conv4_1, conv5_1, not conv4_1"),
])
def test_decoder_mistakes_are_one_line(synth_lfw, decoder, tmp_path, cli, argv, code, words):
    _, index_file = synth_lfw
    foreign = tmp_path / "f.npz"
    foreign.write_bytes(b"not a decoder")
    values = {"decoder": decoder, "foreign": foreign}
    got, _, err = cli("-q", "edit", _face(index_file), "--index", index_file, *EDIT, "--iterations", "2",
                      *[a.format(**values) for a in argv], "-o", tmp_path / "o.png")
    assert got == code and words in err.strip().splitlines()[-1] and err.count("dfi: error") == 1, err
    assert not (tmp_path / "o.png").exists()


def test_training_refuses_too_few_faces_and_bad_settings(tmp_path, cli):
    (tmp_path / "one").mkdir()
    Image.new("RGB", (40, 40)).save(tmp_path / "one" / "a.png")
    code, _, err = cli("-q", "train-decoder", "--images", tmp_path / "one", "-o", tmp_path / "d.npz", *TRAIN)
    assert code == 2 and "fewer than --batch-size 2" in err
    code, _, err = cli("-q", "train-decoder", "--images", tmp_path / "one", "-o", tmp_path / "d.pt", *TRAIN)
    assert code == 2 and "ends in .npz" in err
    code, _, err = cli("-q", "train-decoder", "-o", tmp_path / "d.npz", *TRAIN)
    assert code == 2 and "give one of --index" in err
    assert not (tmp_path / "d.npz").exists()


def test_training_that_will_not_fit_is_refused_naming_what_fits(synth_lfw, tmp_path, cli, monkeypatch):
    import dfi.core.backend as backend
    from dfi.cli.decoder import training_bytes
    from dfi.edit.settings import DecoderTrainConfig
    from dfi.nets.decoder import Decoder, dfi_spec
    from dfi.nets.vgg import untrained_vgg19

    _, index_file = synth_lfw
    vgg = untrained_vgg19()
    config = DecoderTrainConfig(size=32, batch_size=2, width=0.25)
    decoder = Decoder(dfi_spec({n: w.shape[0] for n, (w, _) in vgg.params.items()}, width=0.25))
    one, two = (training_bytes(vgg, decoder, config, batch=b) for b in (1, 2))
    larger = training_bytes(vgg, decoder, config, size=64)  # (the kept filters are a fixed part)
    assert 0 < one < two < larger and larger - one > 2.5 * (two - one)
    for kinds in (dict(norm="instance"), dict(upsample="bilinear")):  # their graphs keep more maps
        variant = Decoder(dfi_spec({n: w.shape[0] for n, (w, _) in vgg.params.items()}, width=0.25, **kinds))
        assert training_bytes(vgg, variant, config, batch=1) > one, kinds
    monkeypatch.setattr(backend, "available_memory", lambda device: (one + two) // 2)
    out = tmp_path / "d.npz"
    code, _, err = cli("-q", "train-decoder", "--index", index_file, "-o", out, "--iterations", "1", *TRAIN)
    assert code == 1 and "the largest that fit: --batch-size 1 or --size 16" in err, err
    assert not out.exists()


def test_batch_edit_rows_take_the_decoder(synth_lfw, decoder, tmp_path, cli):
    pytest.importorskip("distributed")
    _, index_file = synth_lfw
    face = _face(index_file)
    manifest = tmp_path / "rows.csv"
    manifest.write_text(f"input,output,alpha\n{face},a.png,0.2\n{face},b.png,0.4\n")
    code, _, err = cli("-q", "batch", "edit", manifest, "--index", index_file, *EDIT, "--decoder", decoder,
                       "--iterations", "0", "--workers", "1")
    assert code == 0, err
    rows = [json.loads(line) for line in (tmp_path / "rows.ledger.jsonl").read_text().splitlines()]
    assert [(r["status"], r["record"]["loss"]["init"], r["record"]["loss"]["start_share"]) for r in rows] == \
        [("done", "decoder", 1.0)] * 2
    code, _, err = cli("-q", "sweep", face, "--index", index_file, *EDIT, "--alphas", "0.2,0.4",
                       "--decoder", decoder, "--fast", "-o", tmp_path / "s.png")
    assert code == 0, err  # a batch's rows of one face are that face's fast sweep
    for name, alpha in (("a.png", "0.2"), ("b.png", "0.4")):
        batch, single = (np.asarray(Image.open(tmp_path / n)) for n in (name, f"s_alpha{alpha}.png"))
        assert np.array_equal(batch, single)


def test_training_skips_an_unreadable_image_of_a_folder(tmp_path, cli):
    rng = np.random.default_rng(0)
    (tmp_path / "photos").mkdir()
    for i in range(3):
        Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(tmp_path / "photos" / f"p{i}.png")
    (tmp_path / "photos" / "p1.png").write_bytes(b"\x89PNG broken")  # one file of the folder is corrupt
    code, _, err = cli("-q", "train-decoder", "--images", tmp_path / "photos", "-o", tmp_path / "d.npz",
                       "--iterations", "2", *TRAIN)
    assert code == 0, err
    skipped = [line for line in err.splitlines() if "skipping a training image" in line]
    assert len(skipped) == 1 and "p1.png" in skipped[0] and skipped[0].startswith("dfi: warning: "), err
    assert (tmp_path / "d.npz").exists()


def test_a_decoder_of_other_layer_kinds_trains_and_edits(synth_lfw, tmp_path, cli):
    """--padding zero --upsample bilinear --norm instance: recorded, and the edit decodes
    with that network (one for AdaIN's published decoder is refused)."""
    from dfi.nets.decoder import load_decoder

    _, index_file = synth_lfw
    out = tmp_path / "v.npz"
    kinds = ["--padding", "zero", "--upsample", "bilinear", "--norm", "instance"]
    code, _, err = cli("-q", "train-decoder", "--index", index_file, "-o", out, "--iterations", "2", *kinds, *TRAIN)
    assert code == 0, err
    architecture = load_decoder(out)[1]["architecture"]
    assert (architecture["padding"], architecture["upsample"], architecture["norm"]) == ("zero", "bilinear", "instance")
    code, _, err = cli("-q", "edit", _face(index_file), "--index", index_file, *EDIT, "--decoder", out, "--fast",
                       "--alpha", "0.4", "-o", tmp_path / "o.png")
    assert code == 0, err
    with Image.open(tmp_path / "o.png") as im:
        assert im.size[0] > 0
    code, _, err = cli("-q", "train-decoder", "--method", "adain", "-o", tmp_path / "a.npz", "--norm", "instance",
                       *TRAIN)
    assert code == 2 and "--norm instance: --method adain trains AdaIN's published decoder as it is" in err, err
    code, _, err = cli("-q", "train-decoder", "--index", index_file, "-o", out, "--upsample", "cubic", *TRAIN)
    assert code == 2 and "--upsample: invalid choice: 'cubic'" in err, err
