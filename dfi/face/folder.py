"""Align a whole LFW-layout folder to the deep-funneled frame (``dfi data align``).

Plain LFW (``lfw/<Name>/<Name>_NNNN.jpg``, from figshare) and any folder laid out like it
become a folder with the same layout and file names whose faces sit where deep-funneled LFW
has them: every image goes through the path photo edits use (dlib detection, the least-
squares similarity fit to :data:`dfi.face.align.LFW_TEMPLATE`, the warp into the 250×250
frame). In an LFW image the labelled person is the face nearest the centre, so that face is
taken. Work is spread over processes (one per core by default); each output is written
atomically, so an interrupted run leaves only finished files, and a new run skips them.
"""
from __future__ import annotations

import datetime as _dt
import json
import logging
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional, Sequence

import numpy as np

from data_tools.fsutil import write_text_atomic

from ..core.errors import SettingError
from ..core.image import IMAGE_SUFFIXES, image_files, read_image, write_image
from .align import LFW_TEMPLATE, align_face
from .detect import MIN_SCORE, Detection, NoFaceError, detect_faces

REPORT = "align-report.json"


@dataclass(frozen=True)
class AlignOutcome:
    """What became of one image: ``aligned``, ``done`` (found finished), ``no_face`` or
    ``error`` (an unreadable file; ``message`` says why). ``weak`` marks a face taken from
    a weak detector score (worth a look)."""

    path: str  # relative to the source folder
    status: str
    message: str = ""
    weak: bool = False


def folder_images(root: Path) -> list[str]:
    """Relative paths (POSIX) of the images under ``root``, sorted."""
    return sorted(p.relative_to(root).as_posix() for p in image_files(root))


def central_first(detections: Sequence[Detection], shape: tuple[int, int]) -> list[Detection]:
    """Detections ordered by the distance of their box centre to the image centre."""
    height, width = shape

    def distance(d: Detection) -> float:
        left, top, right, bottom = d.box
        return float(np.hypot((left + right) / 2 - width / 2, (top + bottom) / 2 - height / 2))
    return sorted(detections, key=distance)


def _align_one(job: tuple[str, str, str]) -> AlignOutcome:
    """Worker: align one image of the source folder and write it to the destination."""
    src, dst, rel = job
    try:
        photo = read_image(Path(src) / rel)
    except (OSError, ValueError) as exc:
        return AlignOutcome(rel, "error", str(exc))
    detector_log = logging.getLogger(detect_faces.__module__)
    level = detector_log.level
    detector_log.setLevel(logging.ERROR)  # weak detections go to the report, not the terminal
    try:
        found = central_first(detect_faces(photo), photo.shape[1:])
    finally:
        detector_log.setLevel(level)
    try:
        alignment = align_face(photo, detections=found, template=LFW_TEMPLATE, name=rel)
    except NoFaceError:
        return AlignOutcome(rel, "no_face")
    write_image(Path(dst) / rel, alignment.frame)
    return AlignOutcome(rel, "aligned", weak=alignment.detection.score < MIN_SCORE)


def align_folder(src: str | os.PathLike, dst: str | os.PathLike, *,
                 workers: Optional[int] = None) -> Iterator[AlignOutcome]:
    """Align every image of ``src`` into ``dst`` (same relative paths), yielding one outcome
    per image as it finishes; images already in ``dst`` are skipped (``done``).

    Args:
        src: an LFW-layout folder (``<Name>/<Name>_NNNN.jpg``).
        dst: the output folder (created when the first image is written).
        workers: processes to use; default one per available core.

    Raises:
        FileNotFoundError: ``src`` is not a folder or holds no image.
        SettingError: ``dst`` is ``src`` or inside it.
    """
    src, dst = Path(src), Path(dst)
    if not src.is_dir():
        raise FileNotFoundError(f"SRC {src}: not a folder")
    if dst.resolve() == src.resolve() or src.resolve() in dst.resolve().parents:
        raise SettingError(f"-o {dst}: must not be SRC or inside it (SRC is never written to)")
    images = folder_images(src)
    if not images:
        raise FileNotFoundError(f"SRC {src}: no {', '.join(IMAGE_SUFFIXES)} images in it")
    todo = [rel for rel in images if not (dst / rel).is_file()]
    for rel in images:
        if (dst / rel).is_file():
            yield AlignOutcome(rel, "done")
    if not todo:
        return
    workers = workers or len(os.sched_getaffinity(0))
    jobs = [(str(src), str(dst), rel) for rel in todo]
    if workers == 1:
        yield from map(_align_one, jobs)
        return
    with ProcessPoolExecutor(max_workers=workers) as pool:
        try:
            yield from pool.map(_align_one, jobs, chunksize=4)
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            raise


def write_report(dst: Path, src: Path, outcomes: Sequence[AlignOutcome]) -> Path:
    """``dst/align-report.json``: counts, the images left out (no face, unreadable)."""
    counts = {s: sum(o.status == s for o in outcomes) for s in ("aligned", "done", "no_face", "error")}
    record = {"source": str(Path(src).resolve()), "template": LFW_TEMPLATE.tolist(),
              "frame": [250, 250], **counts,
              "no_face": [o.path for o in outcomes if o.status == "no_face"],
              "weak_detections": [o.path for o in outcomes if o.weak],
              "errors": [{"path": o.path, "error": o.message} for o in outcomes if o.status == "error"],
              "finished": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
    path = Path(dst) / REPORT
    write_text_atomic(path, json.dumps(record, indent=2) + "\n")
    return path
