"""What the GPU check writes: its markdown lines as they come (``emit``), its results for the JSON
file (``RESULTS``), and the clock every phase's cap reads."""

from __future__ import annotations

import time
from pathlib import Path

T0 = time.time()
LINES: list[str] = []
RESULTS: dict = {}


def emit(*lines: str) -> None:
    for line in lines:
        LINES.append(line)
        print(line, flush=True)


def table(header, rows) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header),
            *("| " + " | ".join(str(c) for c in r) + " |" for r in rows), ""]


def elapsed() -> float:
    return time.time() - T0


def log_tail(path: Path, lines: int = 6) -> str:
    text = [t for t in path.read_text(errors="replace").splitlines() if t.strip()] if path.exists() else []
    return " / ".join(t.strip()[:200] for t in text[-lines:])
