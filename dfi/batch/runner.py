"""Run manifest rows on a Dask cluster: skip the rows the ledger has done, submit the rest,
record each as it ends (done or failed, with its error), never stop for one bad row.

A worker that dies takes its running rows with it; the scheduler runs them again on
another worker (Dask's ``allowed-failures``). A row's output is renamed into place only
when it is complete, and a row that finished before its worker died is not run twice:
the worker leaves a marker (``LEDGER.running/``) right after the rename, which the rerun
finds, returning the first run's record.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Optional

from data_tools.fsutil import partial_files, write_text_atomic

from .ledger import Ledger
from .manifest import Row


@dataclass(frozen=True)
class Job:
    """A row ready to run: its settings (JSON-able, the work function's only argument) and
    their hash."""

    row: Row
    settings: dict
    digest: str


@dataclass(frozen=True)
class Task:
    """What one worker call does: one job, or several jobs that one call serves together
    (e.g. the α values of one face, reconstructed in one batch). ``settings`` is the work
    function's argument; for several jobs, the work returns ``{"rows": [record per job]}``."""

    jobs: tuple
    settings: dict

    @classmethod
    def single(cls, job: Job) -> "Task":
        return cls((job,), job.settings)

    @property
    def digest(self) -> str:
        return self.jobs[0].digest if len(self.jobs) == 1 else \
            hashlib.sha256("|".join(job.digest for job in self.jobs).encode()).hexdigest()[:32]


@dataclass
class Summary:
    done: list = field(default_factory=list)
    skipped: list = field(default_factory=list)
    failed: list = field(default_factory=list)  # (Row, error)

    def line(self) -> str:
        text = f"{len(self.done)} done, {len(self.skipped)} already done, {len(self.failed)} failed"
        if self.failed:
            names = "; ".join(f"{row.input}: {error}" for row, error in self.failed[:5])
            more = f" (and {len(self.failed) - 5} more, see the ledger)" if len(self.failed) > 5 else ""
            text += f" - {names}{more}"
        return text


def _marker(folder: Path, output: str) -> Path:
    return folder / (hashlib.sha1(output.encode()).hexdigest() + ".json")


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:500]


def run_row(work: Callable[[dict], dict], settings: dict, digest: str, marker: str) -> dict:
    """What a worker runs for one row (a module-level function, so Dask can ship it)."""
    marker_path = Path(marker)
    try:
        earlier = json.loads(marker_path.read_text())
        if earlier.get("hash") == digest:  # this row ended before its worker died
            return {"status": "done", "record": earlier.get("record", {}), "again": True}
    except (OSError, ValueError):
        pass
    start = time.perf_counter()
    try:
        record = work(settings) or {}
    except Exception as exc:  # the row fails, not the batch
        return {"status": "failed", "error": _one_line(exc), "traceback": traceback.format_exc(limit=8)}
    record = dict(record, seconds=round(time.perf_counter() - start, 3))
    write_text_atomic(marker_path, json.dumps({"hash": digest, "record": record}))
    return {"status": "done", "record": record}


def _remove_partials(output: Path) -> None:
    """Temporary files a killed writer left beside ``output``."""
    for stale in partial_files(output):
        stale.unlink(missing_ok=True)


def split_jobs(jobs: Iterable[Job], ledger: Ledger) -> tuple[list[Job], list[Job]]:
    """(to run, already done with the same settings and still there)."""
    records, todo, done = ledger.read(), [], []
    for job in jobs:
        (done if ledger.done(str(job.row.output), job.digest, records) else todo).append(job)
    return todo, done


def run_jobs(client, tasks: Iterable, work: Callable[[dict], dict], ledger: Ledger, *,
             progress: Optional[Callable[[int], object]] = None) -> Summary:
    """Run ``work(task.settings)`` for every :class:`Task` (or :class:`Job`) on ``client``
    (give it what :func:`split_jobs` says to run); every job ends as one ledger line."""
    from distributed import as_completed

    summary = Summary()
    markers = ledger.path.with_name(ledger.path.name + ".running")
    futures = {}
    for task in tasks:
        task = task if isinstance(task, Task) else Task.single(task)
        first = task.jobs[0].row
        for job in task.jobs:
            _remove_partials(job.row.output)
        marker = _marker(markers, str(first.output))
        marker.unlink(missing_ok=True)  # from an earlier, interrupted run
        future = client.submit(run_row, work, task.settings, task.digest, str(marker),
                               key=f"dfi-row-{task.digest[:12]}-{first.line}", pure=False)
        futures[future] = task
    try:
        # results are fetched by the client's own event loop (a Future's result() from this
        # thread can meet an asyncio event bound to another loop when a worker dies)
        for future, outcome in as_completed(list(futures), with_results=True, raise_errors=False):
            task = futures.pop(future)
            if future.status == "error" or isinstance(outcome, BaseException):
                exc = outcome[1] if isinstance(outcome, tuple) else outcome
                # e.g. KilledWorker: the row killed every worker it ran on
                result = {"status": "failed", "error": f"{type(exc).__name__}: {_one_line(exc)}"}
            else:
                result = outcome
            record = result.get("record", {})
            records = record.get("rows") if len(task.jobs) > 1 else [record]
            for i, job in enumerate(task.jobs):
                _remove_partials(job.row.output)  # left by a run of this row whose worker was killed
                entry = {"output": str(job.row.output), "input": job.row.input, "line": job.row.line,
                         "hash": job.digest, "status": result["status"],
                         "finished": time.strftime("%Y-%m-%dT%H:%M:%S")}
                if result["status"] == "done":
                    entry["record"] = dict(records[i], seconds=record.get("seconds"))
                    summary.done.append(job.row)
                else:
                    entry["error"] = result["error"]
                    summary.failed.append((job.row, result["error"]))
                ledger.append(entry)
                if progress is not None:
                    progress(1)
    finally:
        for future in futures:  # interrupted: do not leave rows running on a shared cluster
            future.cancel()
        for task in futures.values():
            for job in task.jobs:
                _remove_partials(job.row.output)
    if markers.is_dir() and not futures:
        for marker in markers.iterdir():  # markers, and temporary ones a killed worker left
            marker.unlink(missing_ok=True)
        try:
            os.rmdir(markers)
        except OSError:
            pass
    return summary
