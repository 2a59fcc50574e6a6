"""Images: read / write with Pillow, preprocess / deprocess per weight format, grids.

In the library an image is float32, CHW, RGB, values in [0, 255]; a batch is NCHW.
"""
from __future__ import annotations

import os
import threading
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterator, Sequence, TypeVar

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from data_tools.fsutil import atomic_path

from .backend import get_array_module
from .color import luminance
from .errors import SettingError

T = TypeVar("T")


@dataclass(frozen=True)
class InputConvention:
    """How a weight file expects its input: ``x = (channels(img) * scale / 255 - mean) / std``.

    ``order`` is ``"BGR"`` or ``"RGB"``; ``mean`` and ``std`` are in that order.
    """

    order: str = "BGR"
    scale: float = 255.0
    mean: tuple[float, float, float] = (103.939, 116.779, 123.68)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "InputConvention":
        if data.get("order") not in ("BGR", "RGB"):
            raise ValueError(f"input convention order {data.get('order')!r} is not BGR or RGB")
        return cls(data["order"], float(data["scale"]), tuple(map(float, data["mean"])),
                   tuple(map(float, data["std"])))


CAFFE = InputConvention()
TORCHVISION = InputConvention("RGB", 1.0, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


def _coefficients(convention: InputConvention, xp, ndim: int):
    shape = (1, 3, 1, 1) if ndim == 4 else (3, 1, 1)
    mean = xp.asarray(convention.mean, dtype=xp.float32).reshape(shape)
    std = xp.asarray(convention.std, dtype=xp.float32).reshape(shape)
    return mean, std


def _to_order(images, convention: InputConvention):
    """Swap RGB ↔ BGR along the channel axis when the convention is BGR (an involution)."""
    if convention.order == "RGB":
        return images
    return images[:, ::-1] if images.ndim == 4 else images[::-1]


def preprocess(images, convention: InputConvention):
    """RGB [0, 255] CHW/NCHW images → network input (same device, float32)."""
    xp = get_array_module(images)
    mean, std = _coefficients(convention, xp, images.ndim)
    x = _to_order(images, convention)
    return xp.ascontiguousarray(((x * (convention.scale / 255.0) - mean) / std).astype(xp.float32))


def deprocess(x, convention: InputConvention):
    """Inverse of :func:`preprocess`: network input → RGB [0, 255] (not clipped)."""
    xp = get_array_module(x)
    mean, std = _coefficients(convention, xp, x.ndim)
    images = _to_order((x * std + mean) * (255.0 / convention.scale), convention)
    return xp.ascontiguousarray(images.astype(xp.float32))


MIN_CROP = 16
#: Pillow modes of single-channel images: written back in grey
GREY_MODES = ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F")


def parse_crop(text: str) -> tuple[int, int, int, int]:
    """``"l,t,r,b"`` → a crop box of at least MIN_CROP² pixels; raises with the allowed form."""
    try:
        box = tuple(int(v) for v in text.split(","))
    except ValueError:
        box = ()
    if len(box) != 4 or box[0] >= box[2] or box[1] >= box[3] or min(box) < 0:
        raise SettingError(f"--crop {text!r} must be four whole numbers l,t,r,b with l<r and t<b")
    if box[2] - box[0] < MIN_CROP or box[3] - box[1] < MIN_CROP:
        raise SettingError(f"--crop {text!r} is {box[2] - box[0]}x{box[3] - box[1]} px; the box must be "
                           f"at least {MIN_CROP}x{MIN_CROP} px")
    return box  # type: ignore[return-value]


def _open(path: Path) -> Image.Image:
    """Pillow's image, with its decompression-bomb guard naming the file."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", Image.DecompressionBombWarning)
        try:
            im = Image.open(path)
        except Image.DecompressionBombError as exc:
            raise ValueError(f"image {path}: {exc} (Pillow's guard against decompression bombs; "
                             "raise PIL.Image.MAX_IMAGE_PIXELS if you trust the file)") from None
    for warning in caught:
        warnings.warn(f"image {path}: {warning.message}", stacklevel=3)
    return im


def is_greyscale(path: str | os.PathLike) -> bool:
    """Whether the image file has a single channel (written back in grey by the CLI)."""
    try:
        with _open(Path(path)) as im:
            return im.mode in GREY_MODES
    except (UnidentifiedImageError, OSError, ValueError):
        return False


#: the image files dfi reads and writes (Pillow's formats that keep a photo as it is)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


def image_files(folder: str | os.PathLike, suffixes: Sequence[str] = IMAGE_SUFFIXES, *,
                recursive: bool = True) -> list[Path]:
    """The image files under ``folder`` (in its subfolders too, unless not ``recursive``), sorted."""
    found = Path(folder).rglob("*") if recursive else Path(folder).iterdir()
    return sorted(p for p in found if p.suffix.lower() in suffixes and p.is_file())


def _deep_grey(im: Image.Image) -> np.ndarray | None:
    """A single-channel image of more than 8 bits as float32 levels in [0, 255], else None.

    Pillow's ``convert("RGB")`` clips such levels at 255 (a 16-bit photo turns white): 16-bit
    levels are divided by 257 (65535 → 255); 32-bit integers are taken as 16-bit levels when
    any exceeds 255, and floats as 0–1 when none exceeds 1.
    """
    if not (im.mode.startswith("I") or im.mode == "F"):
        return None
    levels = np.asarray(im, dtype=np.float32)
    peak = float(levels.max()) if levels.size else 0.0
    if im.mode.startswith("I;16") or (im.mode == "I" and peak > 255):
        levels = levels / 257
    elif im.mode == "F" and peak <= 1:
        levels = levels * 255
    return np.clip(levels, 0, 255)


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read any Pillow image as RGB float32 CHW in [0, 255] (EXIF rotation applied)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image {path}: no such file")
    try:
        with _open(path) as im:
            im = ImageOps.exif_transpose(im)
            if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
                background = Image.new("RGB", im.size, (255, 255, 255))
                background.paste(im.convert("RGBA"), mask=im.convert("RGBA").split()[-1])
                im = background
            grey = _deep_grey(im)
            rgb = (np.repeat(grey[:, :, None], 3, axis=2) if grey is not None
                   else np.asarray(im.convert("RGB"), dtype=np.float32))
    except (UnidentifiedImageError, OSError) as exc:
        raise ValueError(f"image {path}: cannot be read as an image ({exc})") from None
    return np.ascontiguousarray(rgb.transpose(2, 0, 1))


#: training images found unreadable in this process, skipped from then on (and warned once)
_UNREADABLE: set[Path] = set()
_UNREADABLE_LOCK = threading.Lock()


def read_training_image(files: Sequence[Path], index: int) -> np.ndarray:
    """``files[index]`` read, or, if it cannot be read, the next file that can (warned once
    per file). One corrupt, truncated or oversized image in a folder of thousands (WikiArt
    has some) skips itself instead of ending hours of training, and since the substitute
    depends only on the files, a resumed run still draws exactly what the first one did."""
    return _read_or_next(files, index)[1]


def first_readable(files: Sequence[Path], count: int) -> tuple[list[int], list[np.ndarray]]:
    """The indexes and images of the first ``count`` files that can be read
    (fewer if the files run out), the others skipped as by :func:`read_training_image`."""
    indexes, images = [], []
    while len(indexes) < min(count, len(files)):
        index, image = _read_or_next(files, indexes[-1] + 1 if indexes else 0)
        if indexes and index <= indexes[-1]:  # wrapped round: no more readable files
            break
        indexes.append(index)
        images.append(image)
    return indexes, images


def _read_or_next(files: Sequence[Path], index: int) -> tuple[int, np.ndarray]:
    for offset in range(len(files)):
        at = (index + offset) % len(files)
        path = Path(files[at])
        if path in _UNREADABLE:
            continue
        try:
            return at, read_image(path)
        except (ValueError, OSError) as exc:
            with _UNREADABLE_LOCK:
                if path not in _UNREADABLE:
                    _UNREADABLE.add(path)
                    warnings.warn(f"skipping a training image: {exc}", stacklevel=2)
    raise ValueError(f"none of the {len(files)} training images can be read (the first: {files[0]})")


#: the smallest side of an input image the networks can use: VGG-19's deepest layers see an
#: image through four 2×2 poolings, so a smaller one has not one conv5 pixel of its own and
#: would only be upscaled from nothing
MIN_SIDE = 16


def check_min_side(image: np.ndarray, what: str) -> np.ndarray:
    """``image`` (CHW) if both its sides are at least :data:`MIN_SIDE`; else a usage error
    naming ``what`` (e.g. ``"style image a.png"``) and the size."""
    _, height, width = image.shape
    if min(height, width) < MIN_SIDE:
        raise SettingError(f"{what} is {width}x{height}: smaller than {MIN_SIDE} px on a side, too small "
                           "to mean anything to the network; use a larger image")
    return image


def crop_and_resize(image: np.ndarray, box: tuple[int, int, int, int] | None,
                    size: tuple[int, int]) -> np.ndarray:
    """Crop ``box`` (l, t, r, b) out of a CHW image and resize to ``size`` (H, W)."""
    _, height, width = image.shape
    if box is not None:
        left, top, right, bottom = box
        if right > width or bottom > height:
            raise SettingError(f"--crop {left},{top},{right},{bottom} does not fit in the "
                             f"{width}x{height} image")
        image = image[:, top:bottom, left:right]
    return resize(image, size)


def resize(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize a CHW float image with Pillow's bicubic filter, per channel."""
    height, width = size
    if image.shape[1:] == (height, width):
        return image.astype(np.float32, copy=True)
    channels = [np.asarray(Image.fromarray(np.asarray(c, dtype=np.float32), mode="F")
                           .resize((width, height), Image.BICUBIC)) for c in image]
    return np.stack(channels).astype(np.float32)


def pad_to_multiple(image: np.ndarray, multiple: int) -> np.ndarray:
    """CHW ``image`` (or NCHW images) padded at the bottom and right to sides that are
    multiples of ``multiple``: by reflection, or by repeating the edge where the image is
    too small to reflect (crop the result back to the image's size)."""
    height, width = image.shape[-2:]
    pad_h, pad_w = -height % multiple, -width % multiple
    if not (pad_h or pad_w):
        return image
    mode = "reflect" if height > pad_h and width > pad_w else "edge"
    return np.pad(image, ((0, 0),) * (image.ndim - 2) + ((0, pad_h), (0, pad_w)), mode=mode)


def to_uint8(image: np.ndarray) -> np.ndarray:
    """CHW float [0, 255] → HWC uint8 (rounded and clipped)."""
    return np.clip(np.rint(np.asarray(image).transpose(1, 2, 0)), 0, 255).astype(np.uint8)


def to_pil(image: np.ndarray, *, grey: bool = False) -> Image.Image:
    """A CHW float image as a Pillow image (notebooks display these inline); ``grey``
    gives a single-channel image of its luminance."""
    if grey:
        return Image.fromarray(to_uint8(luminance(np.asarray(image)))[:, :, 0])
    return Image.fromarray(to_uint8(image))


def write_image(path: str | os.PathLike, image: np.ndarray, *, grey: bool = False) -> None:
    """Write a CHW float image atomically; the format follows the file extension
    (JPEG at quality 95, so re-encoding barely touches the unedited pixels). ``grey``
    writes its luminance as a single-channel image (a greyscale input stays greyscale)."""
    path = Path(path)
    kind = Image.registered_extensions().get(path.suffix.lower(), "PNG")
    with atomic_path(path, suffix=path.suffix) as tmp:
        to_pil(image, grey=grey).save(tmp, format=kind, **({"quality": 95} if kind == "JPEG" else {}))


def grid(images: Sequence[np.ndarray], *, columns: int | None = None, gap: int = 4) -> np.ndarray:
    """Tile same-size CHW images in rows of ``columns`` (default: one row), white gaps."""
    count = len(images)
    columns = columns or count
    rows = -(-count // columns)
    _, height, width = images[0].shape
    out = np.full((3, rows * height + (rows - 1) * gap, columns * width + (columns - 1) * gap),
                  255.0, dtype=np.float32)
    for i, image in enumerate(images):
        r, c = divmod(i, columns)
        out[:, r * (height + gap):r * (height + gap) + height,
            c * (width + gap):c * (width + gap) + width] = image
    return out


def read_ahead(loads: Sequence[Callable[[], T]]) -> Iterator[T]:
    """The results of ``loads`` in order; each next one runs in a thread while the caller
    works on the current one (image decoding overlaps the device's work)."""
    if not loads:
        return
    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = pool.submit(loads[0])
        for following in (*loads[1:], None):
            result = pending.result()
            if following is not None:
                pending = pool.submit(following)
            yield result


def write_gif(path: str | os.PathLike, frames: Sequence[np.ndarray], *, duration_ms: int = 400,
              grey: bool = False) -> None:
    """Write CHW float frames as a looping animated GIF, atomically."""
    path = Path(path)
    pictures = [to_pil(f, grey=grey) for f in frames]
    with atomic_path(path, suffix=".gif") as tmp:
        pictures[0].save(tmp, format="GIF", save_all=True, append_images=pictures[1:],
                         duration=duration_ms, loop=0)
