import hashlib
import io
import tarfile

import numpy as np
import pytest

from data_tools import download
from data_tools.download import Dataset, DownloadError, Mirror, UnsafeArchiveError, extract_archive


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
                    (Mirror(base + "/lfw-deepfunneled.tgz", (f"md5:{md5}",)),), "lfw-deepfunneled")
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
    lines = err.splitlines()
    assert lines[0] == "dfi: error: could not download lfw-deepfunneled; tried:"
    assert "checksum mismatch for lfw-deepfunneled.tgz, md5 " in lines[1] and "deleted" in lines[1]
    assert lines[2] == "have the file? dfi data download lfw-deepfunneled --from PATH"
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
        extract_archive(archive, dest, "lfw-deepfunneled")
    assert list(dest.iterdir()) == []  # nothing half-made
    assert not (tmp_path / "escaped.txt").exists()


def test_archive_without_expected_top_folder(tmp_path):
    archive = tmp_path / "other.tgz"
    archive.write_bytes(_tgz({"a.jpg": b"a"}, top="lfw_funneled"))
    with pytest.raises(ValueError, match="expected a top folder 'lfw-deepfunneled'"):
        extract_archive(archive, tmp_path, "lfw-deepfunneled")
    assert not (tmp_path / "lfw-deepfunneled").exists()


def test_real_registry_matches_shared_formats():
    deep = download.get_dataset("lfw").mirrors
    assert deep[0] == Mirror("https://huggingface.co/datasets/JimmyUnleashed/LFW/resolve/main/lfw-deepfunneled.zip",
                             ("md5:e782a3d6f143c8964f531d0a5af1201a",), "lfw-deepfunneled.zip")
    assert deep[-1] == Mirror("http://vis-www.cs.umass.edu/lfw/lfw-deepfunneled.tgz",
                              ("md5:68331da3eb755a505a502b5aacb3c201",))
    plain = download.get_dataset("lfw-plain")
    assert plain.archive_top == "lfw"
    assert [m.url for m in plain.mirrors] == ["https://ndownloader.figshare.com/files/5976018",
                                              "https://figshare.com/ndownloader/files/5976018",
                                              "http://vis-www.cs.umass.edu/lfw/lfw.tgz"]
    assert all(m.hashes == ("md5:a17d05bd522c52d84eca14327a23d494",
                            "sha256:055f7d9c632d7370e6fb4afc7468d40f970c34a80d4c6f50ffec63f5a8d536c0")
               for m in plain.mirrors)  # figshare's copy is the UMass file: both hashes on each
    funneled = download.get_dataset("lfw-funneled")
    assert funneled.archive_top == "lfw_funneled" and "umass" in funneled.mirrors[-1].url
    attrs = download.get_dataset("lfw-attributes").mirrors
    assert attrs[1].hashes == ("gitsha1:d5dbfdb86bfa8d3f36d6bea6872e675323707c46",)
    celeba = download.get_dataset("celeba-attributes").mirrors
    assert celeba[1].url.startswith("https://ftp.mi.fu-berlin.de/") and celeba[1].hashes == celeba[0].hashes
    coco = download.get_dataset("coco-train2014")
    assert coco.archive_top == "train2014" and coco.mirrors[0].url == "https://images.cocodataset.org/zips/train2014.zip"
    assert all(m.hashes == ("md5:0da8c0bd3d6becc4dcb32757491aca88",) for m in coco.mirrors)
    for dataset in download.DATASETS.values():  # https first wherever the host serves it
        assert dataset.mirrors[0].url.startswith("https://")
        assert all(m.url.startswith("https://") or "umass.edu" in m.url or m.url == "http://" + url[8:]
                   for m in dataset.mirrors for url in [dataset.mirrors[0].url])
    with pytest.raises(KeyError, match="unknown dataset 'lfw2'; known: celeba-attributes"):
        download.get_dataset("lfw2")


def test_attribute_file_is_format_checked(monkeypatch, http_server, tmp_path):
    base, files, *_ = http_server
    files["/lfw_attributes.txt"] = b"<html>Service moved</html>\n"
    entry = Dataset("lfw-attributes", "lfw_attributes.txt", (Mirror(base + "/lfw_attributes.txt"),))
    monkeypatch.setitem(download.DATASETS, "lfw-attributes", entry)
    with pytest.raises(DownloadError, match="does not follow its format .*the file was deleted"):
        download.fetch("lfw-attributes", data_dir=tmp_path)
    assert not (tmp_path / "lfw_attributes.txt").exists()
    files["/lfw_attributes.txt"] = b"# c\n#\tperson\timagenum\tMale\nA B\t1\t0.5\n"
    assert download.fetch("lfw-attributes", data_dir=tmp_path).is_file()


ATTRIBUTES = b"# c\n#\tperson\timagenum\tMale\nA B\t1\t0.5\n"


def test_next_mirror_after_a_dead_host_a_bad_page_and_a_bad_checksum(monkeypatch, http_server, tmp_path, cli):
    """The unpinned first mirror serves a web page (format check), the second a wrong file
    (checksum), the third is down; the fourth, pinned by its git blob id, is taken."""
    base, files, *_ = http_server
    files["/page.txt"] = (b"<html>Service moved</html>\n", "text/html")
    files["/wrong.txt"] = ATTRIBUTES + b"B C\t1\t0.1\n"
    files["/good.txt"] = ATTRIBUTES
    entry = Dataset("lfw-attributes", "lfw_attributes.txt", (
        Mirror(base + "/page.txt"),
        Mirror(base + "/wrong.txt", (f"md5:{hashlib.md5(ATTRIBUTES).hexdigest()}",)),
        Mirror("http://127.0.0.1:9/down.txt", ("md5:0",)),
        Mirror(base + "/good.txt", ("gitsha1:" + hashlib.sha1(b"blob %d\0" % len(ATTRIBUTES) + ATTRIBUTES).hexdigest(),))))
    monkeypatch.setitem(download.DATASETS, "lfw-attributes", entry)
    code, out, err = cli("--quiet", "data", "download", "lfw-attributes", "--data-dir", tmp_path)
    assert code == 0, err
    assert (tmp_path / "lfw_attributes.txt").read_bytes() == ATTRIBUTES
    # every mirror down: one line per URL with its reason, then the --from hint
    files.clear()
    code, out, err = cli("--quiet", "data", "download", "lfw-attributes", "--data-dir", tmp_path / "new")
    lines = err.splitlines()
    assert code == 1 and len(lines) == 6, err
    assert lines[0] == "dfi: error: could not download lfw-attributes; tried:"
    assert [line.split(": ", 1)[0].strip() for line in lines[1:5]] == [m.url for m in entry.mirrors]
    assert "404" in lines[1] and lines[5] == "have the file? dfi data download lfw-attributes --from PATH"


def test_git_blob_checksum_equals_git_hash_object(tmp_path):
    import shutil
    import subprocess

    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    path = tmp_path / "some.bin"
    path.write_bytes(np.random.default_rng(3).bytes(70_000))
    expected = subprocess.run(["git", "hash-object", str(path)], capture_output=True, text=True,
                              check=True).stdout.strip()
    assert download.file_hashes(path, ["gitsha1"])["gitsha1"] == expected
    assert download.mismatches(path, [f"gitsha1:{expected}", f"md5:{hashlib.md5(path.read_bytes()).hexdigest()}"]) == []
    assert download.mismatches(path, ["gitsha1:" + "0" * 40])[0].startswith("gitsha1 " + expected)


def _zip(members: dict, *, links=(), devices=()) -> bytes:
    import stat
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
        for name in links:
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, "/etc/passwd")
        for name in devices:
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFCHR | 0o600) << 16
            zf.writestr(info, "")
    return buf.getvalue()


def test_deep_funneled_zip_repack_is_unpacked_like_the_tgz(monkeypatch, http_server, tmp_path):
    base, files, *_ = http_server
    body = _zip({"lfw-deepfunneled/lfw-deepfunneled/A_B/A_B_0001.jpg": b"jpeg"})  # nested once more
    files["/lfw-deepfunneled.zip"] = body
    entry = Dataset("lfw-deepfunneled", "lfw-deepfunneled.tgz", (
        Mirror(base + "/lfw-deepfunneled.zip", (f"md5:{hashlib.md5(body).hexdigest()}",), "lfw-deepfunneled.zip"),
        Mirror(base + "/lfw-deepfunneled.tgz", ("md5:0",))), "lfw-deepfunneled")
    monkeypatch.setitem(download.DATASETS, "lfw-deepfunneled", entry)
    folder = download.fetch("lfw", data_dir=tmp_path)
    assert folder == tmp_path / "lfw-deepfunneled"
    assert (folder / "A_B" / "A_B_0001.jpg").read_bytes() == b"jpeg"
    assert (tmp_path / "lfw-deepfunneled.zip").is_file()
    # --from with the zip: recognised by its checksum, kept under the zip's name
    mine = tmp_path / "mine.zip"
    mine.write_bytes(body)
    other = tmp_path / "other"
    assert download.fetch("lfw", data_dir=other, source=str(mine)) == other / "lfw-deepfunneled"
    assert (other / "lfw-deepfunneled.zip").is_file() and mine.read_bytes() == body


@pytest.mark.parametrize("members, match", [
    (dict(members={"lfw-deepfunneled/../../escaped.txt": b"x"}), "outside the target"),
    (dict(members={"/abs.txt": b"x"}), "outside the target"),
    (dict(members={"C:/win.txt": b"x"}), "outside the target"),
    (dict(members={"lfw-deepfunneled/a.jpg": b"a"}, links=["lfw-deepfunneled/link"]), "refusing link member"),
    (dict(members={"lfw-deepfunneled/a.jpg": b"a"}, devices=["lfw-deepfunneled/dev"]), "refusing special file")])
def test_unsafe_zip_members_are_refused(tmp_path, members, match):
    archive = tmp_path / "evil.zip"
    archive.write_bytes(_zip(**members))
    dest = tmp_path / "dest"
    dest.mkdir()
    with pytest.raises(UnsafeArchiveError, match=match):
        extract_archive(archive, dest, "lfw-deepfunneled")
    assert list(dest.iterdir()) == []
    assert not (tmp_path / "escaped.txt").exists()


def test_google_drive_confirmation_page_is_followed(monkeypatch, http_server, tmp_path):
    base, files, log, _ = http_server
    monkeypatch.setattr(download, "_is_drive", lambda url: url.startswith(base + "/uc"))
    page = (f'<html><body>Google Drive can\'t scan this file for viruses.<form id="download-form" '
            f'action="{base}/download" method="get"><input type="submit" value="Download anyway"/>'
            '<input type="hidden" name="id" value="XYZ"><input type="hidden" name="export" value="download">'
            '<input type="hidden" name="confirm" value="t"><input type="hidden" name="uuid" value="u-1">'
            '</form></body></html>').encode()
    files["/uc?export=download&id=XYZ"] = (page, "text/html; charset=utf-8")
    files["/download?id=XYZ&export=download&confirm=t&uuid=u-1"] = ATTRIBUTES
    entry = Dataset("celeba-attributes", "list_attr_celeba.txt", (
        Mirror(base + "/uc?export=download&id=XYZ", (f"md5:{hashlib.md5(ATTRIBUTES).hexdigest()}",)),))
    monkeypatch.setitem(download.DATASETS, "celeba-attributes", entry)
    assert download.fetch("celeba-attributes", data_dir=tmp_path).read_bytes() == ATTRIBUTES
    files["/uc?export=download&id=XYZ"] = (b"<html>Sorry, you can't view or download this file at this "
                                            b"time. Too many users have viewed or downloaded this file "
                                            b"recently.</html>", "text/html")
    with pytest.raises(DownloadError, match="quota for this file is used up"):
        download.fetch("celeba-attributes", data_dir=tmp_path / "again")


def test_written_files_and_folders_follow_the_umask(fake_registry, tmp_path):
    import os
    import stat as st

    from data_tools.fsutil import write_text_atomic

    old = os.umask(0o027)
    try:
        folder = download.fetch("lfw", data_dir=tmp_path)
        write_text_atomic(tmp_path / "note.txt", "x")
    finally:
        os.umask(old)
    assert st.S_IMODE(folder.stat().st_mode) == 0o750
    assert st.S_IMODE((folder / "A_B" / "A_B_0001.jpg").stat().st_mode) == 0o640
    assert st.S_IMODE((tmp_path / "lfw-deepfunneled.tgz").stat().st_mode) == 0o640
    assert st.S_IMODE((tmp_path / "note.txt").stat().st_mode) == 0o640


def test_coco_train2014_falls_back_to_http_and_unpacks_to_its_folder(monkeypatch, http_server, tmp_path):
    """The registry's layout on a small zip: train2014/COCO_train2014_<12 digits>.jpg."""
    import io as bytes_io

    from PIL import Image

    base, files, log, _ = http_server
    photos = {}
    for number in (9, 25, 30):
        buf = bytes_io.BytesIO()
        Image.new("RGB", (64, 48), (number * 8, 100, 50)).save(buf, "JPEG")
        photos[f"train2014/COCO_train2014_{number:012d}.jpg"] = buf.getvalue()
    body = _zip(photos)
    files["/zips/train2014.zip"] = body
    real = download.get_dataset("coco-train2014")
    md5 = (f"md5:{hashlib.md5(body).hexdigest()}",)
    entry = Dataset(real.name, real.filename, (Mirror(base.replace("127.0.0.1", "localhost") + "/missing.zip", md5),
                                               Mirror(base + "/zips/train2014.zip", md5)), real.archive_top)
    monkeypatch.setitem(download.DATASETS, "coco-train2014", entry)
    folder = download.fetch("coco-train2014", data_dir=tmp_path)
    assert folder == tmp_path / "train2014"
    assert sorted(p.name for p in folder.iterdir()) == sorted(name.split("/")[1] for name in photos)
    from dfi.style.feedforward import content_images
    assert len(content_images(folder)) == 3
