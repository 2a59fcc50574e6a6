import hashlib
import io
import tarfile

import numpy as np
import pytest

from data_tools import download
from data_tools.download import Dataset, DownloadError, Mirror, UnsafeArchiveError, extract_tgz


def _tgz(members: dict, top="lfw-deepfunneled", extra=None) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(f"{top}/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        if extra is not None:
            tar.addfile(extra, io.BytesIO(b"x" * extra.size) if extra.size else None)
    return buf.getvalue()


@pytest.fixture
def fake_registry(monkeypatch, http_server):
    """Point the real registry's lfw entry at a local server holding a small archive."""
    base, files, log, cut = http_server
    payload = np.random.default_rng(0).bytes(60000)  # incompressible, so the .tgz is > 7000 bytes
    body = _tgz({"A_B/A_B_0001.jpg": payload, "C_D/C_D_0001.jpg": b"\xff\xd8" * 10})
    files["/lfw-deepfunneled.tgz"] = body
    md5 = hashlib.md5(body).hexdigest()
    entry = Dataset("lfw-deepfunneled", "lfw-deepfunneled.tgz",
                    (Mirror(base + "/lfw-deepfunneled.tgz", f"md5:{md5}"),), "lfw-deepfunneled")
    monkeypatch.setitem(download.DATASETS, "lfw-deepfunneled", entry)
    return base, files, log, cut, body


def test_download_verifies_and_extracts(fake_registry, tmp_path, cli):
    code, out, err = cli("--quiet", "data", "download", "lfw", "--data-dir", tmp_path)
    assert code == 0, err
    folder = tmp_path / "lfw-deepfunneled"
    assert out.strip() == str(folder)
    assert (folder / "A_B" / "A_B_0001.jpg").stat().st_size == 60000
    assert not list(tmp_path.glob(".*"))  # no temporary leftovers


def test_interrupted_download_resumes(fake_registry, tmp_path):
    base, files, log, cut, body = fake_registry
    cut["/lfw-deepfunneled.tgz"] = 40000
    with pytest.raises(DownloadError, match="bytes kept, run again to resume"):
        download.fetch("lfw", data_dir=tmp_path)
    kept = (tmp_path / "lfw-deepfunneled.tgz.part").stat().st_size
    assert 0 < kept <= 40000  # whole chunks received before the connection dropped
    assert not (tmp_path / "lfw-deepfunneled").exists()
    folder = download.fetch("lfw", data_dir=tmp_path)
    assert log[-1] == ("/lfw-deepfunneled.tgz", f"bytes={kept}-")
    assert (tmp_path / "lfw-deepfunneled.tgz").read_bytes() == body
    assert (folder / "C_D" / "C_D_0001.jpg").exists()
    assert not (tmp_path / "lfw-deepfunneled.tgz.part").exists()


def test_checksum_mismatch_deletes_file(fake_registry, tmp_path, cli):
    base, files, *_ = fake_registry
    files["/lfw-deepfunneled.tgz"] = b"corrupted" * 100
    code, out, err = cli("--quiet", "data", "download", "lfw", "--data-dir", tmp_path)
    assert code == 1
    assert err.startswith("dfi: error: checksum mismatch for lfw-deepfunneled.tgz") and err.count("\n") == 1
    assert "deleted" in err
    assert list(tmp_path.iterdir()) == []


def test_no_verify_accepts_other_file_with_warning(fake_registry, tmp_path, cli):
    base, files, *_ = fake_registry
    files["/lfw-deepfunneled.tgz"] = _tgz({"X/X_0001.jpg": b"other"})
    code, out, err = cli("--quiet", "data", "download", "lfw", "--data-dir", tmp_path, "--no-verify")
    assert code == 0
    assert "warning: --no-verify" in err
    assert (tmp_path / "lfw-deepfunneled" / "X" / "X_0001.jpg").read_bytes() == b"other"


def test_from_local_file_checks_known_checksum(fake_registry, tmp_path, cli):
    *_, body = fake_registry
    good = tmp_path / "mine.tgz"
    good.write_bytes(body)
    bad = tmp_path / "bad.tgz"
    bad.write_bytes(_tgz({"Y/Y_0001.jpg": b"y"}))
    data = tmp_path / "data"
    code, _, err = cli("--quiet", "data", "download", "lfw", "--data-dir", data, "--from", bad)
    assert code == 1 and "checksum differs from the known md5:" in err
    assert not data.exists() or list(data.iterdir()) == []
    code, out, err = cli("--quiet", "data", "download", "lfw", "--data-dir", data, "--from", good)
    assert code == 0, err
    assert (data / "lfw-deepfunneled" / "A_B" / "A_B_0001.jpg").exists()
    code, _, err = cli("--quiet", "data", "download", "lfw", "--data-dir", data, "--from", tmp_path / "nope.tgz")
    assert code == 1 and "no such file" in err


def test_from_url_uses_known_checksum(fake_registry, tmp_path):
    base, files, *_ = fake_registry
    files["/elsewhere.tgz"] = files["/lfw-deepfunneled.tgz"]
    folder = download.fetch("lfw", data_dir=tmp_path, source=base + "/elsewhere.tgz")
    assert (folder / "A_B").is_dir()


def _evil(kind):
    if kind == "traversal":
        info = tarfile.TarInfo("lfw-deepfunneled/../../escaped.txt")
        info.size = 1
    elif kind == "absolute":
        info = tarfile.TarInfo("/tmp/absolute.txt")
        info.size = 1
    elif kind == "symlink":
        info = tarfile.TarInfo("lfw-deepfunneled/link")
        info.type, info.linkname, info.size = tarfile.SYMTYPE, "/etc/passwd", 0
    else:
        info = tarfile.TarInfo("lfw-deepfunneled/dev")
        info.type, info.size = tarfile.CHRTYPE, 0
    return info


@pytest.mark.parametrize("kind, match", [("traversal", "outside the target"), ("absolute", "outside the target"),
                                         ("symlink", "refusing link member"), ("device", "refusing special file")])
def test_unsafe_archive_members_are_refused(tmp_path, kind, match):
    archive = tmp_path / "evil.tgz"
    archive.write_bytes(_tgz({"ok.jpg": b"fine"}, extra=_evil(kind)))
    dest = tmp_path / "dest"
    dest.mkdir()
    with pytest.raises(UnsafeArchiveError, match=match):
        extract_tgz(archive, dest, "lfw-deepfunneled")
    assert list(dest.iterdir()) == []  # nothing half-made
    assert not (tmp_path / "escaped.txt").exists()


def test_archive_without_expected_top_folder(tmp_path):
    archive = tmp_path / "other.tgz"
    archive.write_bytes(_tgz({"a.jpg": b"a"}, top="lfw_funneled"))
    with pytest.raises(ValueError, match="expected a top folder 'lfw-deepfunneled'"):
        extract_tgz(archive, tmp_path, "lfw-deepfunneled")
    assert not (tmp_path / "lfw-deepfunneled").exists()


def test_real_registry_matches_shared_formats():
    assert download.get_dataset("lfw").mirrors[0] == Mirror(
        "http://vis-www.cs.umass.edu/lfw/lfw-deepfunneled.tgz", "md5:68331da3eb755a505a502b5aacb3c201")
    assert download.get_dataset("lfw-plain").archive_top == "lfw"
    assert download.get_dataset("lfw-funneled").archive_top == "lfw_funneled"
    with pytest.raises(KeyError, match="unknown dataset 'lfw2'; known: celeba-attributes"):
        download.get_dataset("lfw2")


def test_attribute_file_is_format_checked(monkeypatch, http_server, tmp_path):
    base, files, *_ = http_server
    files["/lfw_attributes.txt"] = b"<html>Service moved</html>\n"
    entry = Dataset("lfw-attributes", "lfw_attributes.txt", (Mirror(base + "/lfw_attributes.txt", None),))
    monkeypatch.setitem(download.DATASETS, "lfw-attributes", entry)
    with pytest.raises(DownloadError, match="does not follow its format and was deleted"):
        download.fetch("lfw-attributes", data_dir=tmp_path)
    assert not (tmp_path / "lfw_attributes.txt").exists()
    files["/lfw_attributes.txt"] = b"# c\n#\tperson\timagenum\tMale\nA B\t1\t0.5\n"
    assert download.fetch("lfw-attributes", data_dir=tmp_path).is_file()
