"""Shared by tests/test_robustness.py and tests/test_fuzz.py: what each bad input shows the user.

The tests add rows as they run; when FILLGAP_ROBUSTNESS_RECORD names a folder, each module
saves its rows there as JSON at its end, and tools/robustness_table.py turns them into
docs/robustness.md. Without the variable nothing is written (a plain `make test`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path


class Recorder:
    def __init__(self, name: str):
        self.name = name
        self.rows: list[dict] = []

    def add(self, **row) -> None:
        self.rows.append(row)

    def save(self) -> Path | None:
        folder = os.environ.get("FILLGAP_ROBUSTNESS_RECORD")
        if not folder or not self.rows:
            return None
        path = Path(folder) / f"{self.name}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.rows, indent=1) + "\n")
        return path
