"""Reading images: grey levels deeper than 8 bits, and training sets with unreadable files."""
import numpy as np
import pytest
from PIL import Image

from dfi.core.image import first_readable, read_image, read_training_image


def test_deep_grey_images_keep_their_levels(tmp_path):
    levels = np.arange(256, dtype=np.uint8).reshape(16, 16)
    Image.fromarray(levels).save(tmp_path / "grey.png")
    files = {"i16.png": Image.fromarray(levels.astype(np.uint16) * 257),
             "i32.tif": Image.fromarray(levels.astype(np.int32) * 257),
             "f01.tif": Image.fromarray(levels.astype(np.float32) / 255),
             "f255.tif": Image.fromarray(levels.astype(np.float32))}
    expected = read_image(tmp_path / "grey.png")
    for name, picture in files.items():
        picture.save(tmp_path / name)
        assert np.abs(read_image(tmp_path / name) - expected).max() < 1e-3, name


@pytest.fixture
def folder(tmp_path):
    """a.png, b.png (not an image), c.png, d.png (truncated): two readable of four."""
    for name, value in (("a.png", 10), ("c.png", 30), ("d.png", 40)):
        Image.new("RGB", (20, 24), (value, value, value)).save(tmp_path / name)
    (tmp_path / "b.png").write_bytes(b"not an image")
    data = (tmp_path / "d.png").read_bytes()
    (tmp_path / "d.png").write_bytes(data[:len(data) // 2])
    return [tmp_path / n for n in ("a.png", "b.png", "c.png", "d.png")]


def test_an_unreadable_training_image_is_replaced_by_the_next_readable_one(folder):
    with pytest.warns(UserWarning) as caught:
        assert read_training_image(folder, 1)[0, 0, 0] == 30  # b → c
        assert read_training_image(folder, 1)[0, 0, 0] == 30  # the same substitute each time
        assert read_training_image(folder, 3)[0, 0, 0] == 10  # d → round to a
        assert read_training_image(folder, 2)[0, 0, 0] == 30
    skipped = [str(w.message) for w in caught]
    assert len(skipped) == 2 and "b.png" in skipped[0] and "d.png" in skipped[1]  # once per file
    indexes, images = first_readable(folder, 3)  # only two can be read
    assert indexes == [0, 2] and [int(i[0, 0, 0]) for i in images] == [10, 30]


def test_a_training_set_with_no_readable_image_is_refused(folder):
    with pytest.raises(ValueError, match=r"none of the 2 training images can be read \(the first: .*b\.png\)"):
        read_training_image([folder[1], folder[3]], 0)
