"""The ledger: one JSON line per finished row (done or failed) with a hash of its settings,
so that a re-run skips the rows already done and touches none of their outputs."""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Mapping, Optional


def settings_hash(settings: Mapping, input_path: Optional[str] = None) -> str:
    """sha256 of the row's settings (canonical JSON) and, for an input file, its size and
    modification time: editing the input, like changing a setting, runs the row again."""
    state = dict(settings)
    if input_path is not None and os.path.isfile(input_path):
        stat = os.stat(input_path)
        state["__input__"] = [stat.st_size, stat.st_mtime_ns]
    text = json.dumps(state, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


class Ledger:
    """JSON lines beside the manifest (or at ``--ledger``); the newest line of an output wins.

    Only the process that runs the batch writes it, one whole line per row as the row
    ends (flushed and synced), so a run that is killed leaves at most a torn last line,
    which reading skips.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def read(self) -> dict[str, dict]:
        """``{output: newest record}``."""
        records: dict[str, dict] = {}
        if not self.path.is_file():
            return records
        with open(self.path, encoding="utf-8") as handle:
            for line in handle:
                try:
                    record = json.loads(line)
                except ValueError:
                    continue  # a line torn by a kill
                if isinstance(record, dict) and "output" in record:
                    records[record["output"]] = record
        return records

    def done(self, output: str, digest: str, records: Mapping[str, dict]) -> bool:
        """Whether ``output`` was made with these settings and is still there."""
        record = records.get(output)
        return (record is not None and record.get("status") == "done" and record.get("hash") == digest
                and os.path.exists(output))

    def append(self, record: Mapping) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(dict(record), sort_keys=True) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
