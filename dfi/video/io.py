"""Frames in and out: video files through PyAV, folders of images, and a resumable run.

A video is decoded one frame at a time (memory does not grow with its length), turned
upright by its display rotation, and its timestamps are kept; a folder's images are taken
in name order. Output frames are written as PNG, atomically, either into the output folder
(with the input frames' names) or into a work folder beside an output video; the video is
encoded from them at the end — same frame count, timestamps, frame rate, size and display
rotation as the input, the audio streams copied — and renamed into place, and the work
folder removed. A run that stops (an error, Ctrl-C) leaves its finished frames; running the
same command again continues after the last one.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Iterator, Optional, Sequence

import numpy as np
from PIL import Image

from data_tools.fsutil import atomic_path, write_text_atomic

from ..core.errors import SettingError
from ..core.image import IMAGE_SUFFIXES, image_files, read_image, write_image

VIDEO_SUFFIXES = (".mp4", ".mov", ".avi", ".mkv", ".webm")
#: frame rate given to a video made from a folder of frames
FOLDER_RATE = Fraction(25)


class VideoError(ValueError):
    """A video or frame folder that cannot be used; the message names it and says why."""


def _av():
    try:
        import av
    except ImportError:
        raise ImportError("video needs PyAV and OpenCV: pip install 'dfi[video]'") from None
    return av


def is_video(path: str | os.PathLike) -> bool:
    """A video file (by its extension) or a folder (of frames)."""
    path = Path(path)
    return path.suffix.lower() in VIDEO_SUFFIXES or path.is_dir()


@dataclass(frozen=True)
class VideoInfo:
    """What is known of an input before its frames are read.

    ``pts`` holds each frame's timestamp in ``time_base`` units (a folder's are 0, 1, 2…
    at :data:`FOLDER_RATE`), ``size`` is (H, W) upright, ``rotation`` the display rotation
    in degrees (counter-clockwise) that turned the coded frames upright.
    """

    path: Path
    kind: str  # "video" or "folder"
    names: tuple[str, ...]
    pts: tuple[int, ...]
    size: tuple[int, int]
    rate: Fraction
    time_base: Fraction
    rotation: int = 0
    audio: bool = False

    @property
    def count(self) -> int:
        return len(self.names)

    def identity(self) -> dict:
        """What makes two runs' inputs the same: the path, size on disk, modification time."""
        stat = self.path.stat()
        return {"path": str(self.path.resolve()), "bytes": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def probe(path: str | os.PathLike) -> VideoInfo:
    """Read a video's or frame folder's layout without decoding its pictures (a video's
    packets are read for the timestamps). Raises :class:`VideoError` for what cannot be used:
    a missing or unreadable file, no frames, folder frames of different sizes."""
    path = Path(path)
    if path.is_dir():
        return _probe_folder(path)
    if path.suffix.lower() not in VIDEO_SUFFIXES:
        raise SettingError(f"input {path}: not a video ({', '.join(VIDEO_SUFFIXES)}) or a folder of frames")
    if not path.is_file():
        raise FileNotFoundError(f"input {path}: no such file")
    av = _av()
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise VideoError(f"input {path}: has no video stream")
            stream = container.streams.video[0]
            packets = [p for p in container.demux(stream) if p.size]
            pts = sorted(p.pts for p in packets) if all(p.pts is not None for p in packets) else \
                list(range(len(packets)))  # (no timestamps: frame numbers at the stream's rate)
            audio = bool(container.streams.audio)
            rotation = 0
            container.seek(0)
            for frame in container.decode(stream):
                rotation = int(round(frame.rotation or 0)) % 360
                width, height = frame.width, frame.height
                break
            else:
                raise VideoError(f"input {path}: no frame could be decoded")
            rate = stream.average_rate or stream.guessed_rate or FOLDER_RATE
            time_base = stream.time_base
    except av.error.FFmpegError as exc:
        raise VideoError(f"input {path}: cannot be read as a video ({exc})") from None
    if not pts:
        raise VideoError(f"input {path}: has no frames")
    size = (width, height) if rotation in (90, 270) else (height, width)
    names = tuple(f"frame_{i:06d}.png" for i in range(1, len(pts) + 1))
    return VideoInfo(path, "video", names, tuple(pts), size, Fraction(rate), Fraction(time_base),
                     rotation, audio)


def _probe_folder(path: Path) -> VideoInfo:
    files = image_files(path, recursive=False)
    if not files:
        raise VideoError(f"input {path}: a folder with no frames ({', '.join(IMAGE_SUFFIXES)})")
    sizes = {}
    for file in files:
        try:
            with Image.open(file) as im:
                sizes.setdefault(im.size[::-1], file.name)
        except OSError as exc:
            raise VideoError(f"input {path}: frame {file.name} cannot be read ({exc})") from None
    if len(sizes) > 1:
        (first, a), (second, b) = list(sizes.items())[:2]
        raise VideoError(f"input {path}: frames differ in size ({a} is {first[1]}x{first[0]}, "
                         f"{b} is {second[1]}x{second[0]}); every frame must have one size")
    return VideoInfo(path, "folder", tuple(f.name for f in files), tuple(range(len(files))),
                     next(iter(sizes)), FOLDER_RATE, 1 / FOLDER_RATE)


def read_frames(info: VideoInfo, start: int = 0) -> Iterator[np.ndarray]:
    """The frames from number ``start`` on, upright, as CHW RGB float32 [0, 255]."""
    if info.kind == "folder":
        for name in info.names[start:]:
            yield read_image(info.path / name)
        return
    av = _av()
    turns = info.rotation // 90
    with av.open(str(info.path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        index = 0
        for frame in container.decode(stream):
            if index >= start:
                rgb = np.rot90(frame.to_ndarray(format="rgb24"), turns)
                yield np.ascontiguousarray(rgb.transpose(2, 0, 1), dtype=np.float32)
            index += 1
            if index >= info.count:
                return


def _run_key(settings: dict, info: VideoInfo) -> str:
    text = json.dumps({"settings": settings, "input": info.identity()}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass
class FrameStore:
    """Where a run's finished frames go: ``OUT`` itself when OUT is a folder, else a work
    folder beside the output video; with the run's key and its saved state (for a resume).

    Args:
        output: the output folder or video file.
        info: the input.
        settings: what the frames depend on (a resumed run must have the same).
    """

    output: Path
    info: VideoInfo
    settings: dict
    folder: Path = field(init=False)

    def __post_init__(self):
        self.output = Path(self.output)
        self.to_video = self.output.suffix.lower() in VIDEO_SUFFIXES
        if self.output.suffix and not self.to_video:
            raise SettingError(f"-o {self.output}: use a video ({', '.join(VIDEO_SUFFIXES)}) or a folder")
        self.folder = (self.output.with_name(f".{self.output.name}.dfi-frames") if self.to_video
                       else self.output)
        self.state = self.folder / ".dfi-state"
        self.key = _run_key(self.settings, self.info)

    def names(self) -> Sequence[str]:
        return self.info.names if self.info.kind == "folder" else [f"frame_{i:06d}.png"
                                                                    for i in range(1, self.info.count + 1)]

    def done(self) -> int:
        """How many frames a previous run of the same command finished (0 for a new run).

        Raises:
            SettingError: the folder holds frames of another run (other settings or input).
        """
        record = self.state / "run.json"
        if not record.is_file():
            if self.folder.is_dir() and any(self.folder.iterdir()) and not self.to_video:
                raise SettingError(f"-o {self.output}: the folder is not empty and holds no dfi run to "
                                   "continue; choose an empty or new folder")
            return 0
        if json.loads(record.read_text()).get("key") != self.key:
            raise SettingError(f"-o {self.output}: holds frames of a run with other settings or another "
                               f"input; remove {self.folder} or choose another output")
        names = self.names()
        count = 0
        while count < len(names) and (self.folder / names[count]).is_file():
            count += 1
        return count

    def begin(self) -> None:
        write_text_atomic(self.state / "run.json", json.dumps({"key": self.key, "settings": self.settings},
                                                                default=str, indent=1) + "\n")

    def write(self, index: int, image: np.ndarray, *, keep: Optional[np.ndarray] = None) -> None:
        """Frame ``index`` (CHW float, output size) as PNG; ``keep`` (any array) is saved as
        the state a resumed run needs to go on from this frame."""
        write_image(self.folder / self.names()[index], image)
        if keep is not None:
            with atomic_path(self.state / f"{index:06d}.npy") as tmp, open(tmp, "wb") as handle:
                np.save(handle, keep)
            old = self.state / f"{index - 8:06d}.npy"  # the temporal loss reaches at most 8 back
            old.unlink(missing_ok=True)

    def kept(self, index: int) -> Optional[np.ndarray]:
        path = self.state / f"{index:06d}.npy"
        return np.load(path) if path.is_file() else None

    def finish(self, *, grey: bool = False) -> Path:
        """Encode the video (for a video output) and remove the run's bookkeeping."""
        if self.to_video:
            encode(self.info, [self.folder / n for n in self.names()], self.output)
            shutil.rmtree(self.folder)
        else:
            shutil.rmtree(self.state, ignore_errors=True)
        return self.output


def encode(info: VideoInfo, frames: Sequence[Path], output: Path) -> None:
    """Encode ``frames`` (upright images of the input's size) into ``output`` with the input's
    timestamps, time base, frame rate and display rotation, copying its audio; atomically."""
    av = _av()
    turns = info.rotation // 90
    codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
    if output.suffix.lower() == ".webm":
        codec = "libvpx-vp9"
    with atomic_path(output, suffix=output.suffix) as tmp:
        with av.open(str(tmp), "w", format=_FORMATS[output.suffix.lower()]) as out:
            stream = out.add_stream(codec, rate=info.rate)
            height, width = info.size if turns % 2 == 0 else info.size[::-1]
            # 4:2:0 needs even sides; an odd-sized video keeps its size in 4:4:4
            stream.width, stream.height = width, height
            stream.pix_fmt = "yuv420p" if width % 2 == 0 and height % 2 == 0 else "yuv444p"
            stream.time_base = info.time_base
            stream.codec_context.time_base = info.time_base
            if codec == "libx264":
                stream.options = {"crf": "17", "preset": "medium"}
            if turns:
                stream.set_display_rotation(info.rotation)
            audio = _AudioCopy(av, info, out)
            for pts, path in zip(info.pts, frames):
                picture = np.rot90(np.asarray(Image.open(path).convert("RGB")), -turns)
                frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(picture), format="rgb24")
                frame.pts, frame.time_base = pts, info.time_base
                for packet in stream.encode(frame):
                    audio.until(packet)
                    out.mux(packet)
            for packet in stream.encode():
                audio.until(packet)
                out.mux(packet)
            audio.until(None)


_FORMATS = {".mp4": "mp4", ".mov": "mov", ".avi": "avi", ".mkv": "matroska", ".webm": "webm"}


class _AudioCopy:
    """The input's audio packets, muxed into ``out`` in step with the video (copied, not
    re-encoded), so the muxer never has to hold much of either."""

    def __init__(self, av, info: VideoInfo, out):
        self.out, self.streams, self.packets = out, {}, iter(())
        if info.kind != "video" or not info.audio:
            return
        self.container = av.open(str(info.path))
        for stream in self.container.streams.audio:
            self.streams[stream.index] = out.add_stream_from_template(stream)
        self.packets = (p for p in self.container.demux(*self.container.streams.audio) if p.dts is not None)
        self.pending = None

    def until(self, video_packet) -> None:
        """Mux the audio up to ``video_packet``'s time (all that is left when None)."""
        if not self.streams:
            return
        limit = None if video_packet is None or video_packet.dts is None else \
            float(video_packet.dts * video_packet.time_base)
        while True:
            packet = self.pending if self.pending is not None else next(self.packets, None)
            self.pending = None
            if packet is None:
                self.container.close()
                self.streams = {}
                return
            if limit is not None and float(packet.dts * packet.time_base) > limit:
                self.pending = packet
                return
            packet.stream = self.streams[packet.stream.index]
            self.out.mux(packet)
