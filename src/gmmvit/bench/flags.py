"""The bench commands' flag types (``python -m gmmvit.bench``, ``gmmvit.bench.packing``): each refuses
a value it cannot take before anything is timed, one line naming the flag (argparse's ``type=``,
through ``gmmvit.errors.CommandLine``), rather than a traceback or a silent stand-in minutes later."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Callable, Sequence

import torch

from gmmvit.run.compiling import compile_setting
from gmmvit.sweeps.folders import csv


def names(kind: str, known: Callable[[], Sequence[str]]) -> Callable[[str], list[str]]:
    """A comma list of ``kind`` names, each one of ``known()``."""
    def parse(text: str) -> list[str]:
        given = csv(text)
        unknown = [n for n in given if n not in known()]
        if unknown or not given:
            raise argparse.ArgumentTypeError(f"{(unknown or [text])[0]!r} is not a {kind} here "
                                             f"(give a comma list of {', '.join(known())})")
        return given
    return parse


def count(least: int) -> Callable[[str], int]:
    """A whole number >= ``least``."""
    def parse(text: str) -> int:
        if not text.strip().isdigit() or int(text) < least:
            raise argparse.ArgumentTypeError(f"{text!r}: give a whole number >= {least}")
        return int(text)
    return parse


def sizes(text: str) -> list[int]:
    """A comma list of group sizes (members, processes), each >= 1; '' is none."""
    if not all(t.isdigit() and int(t) >= 1 for t in csv(text)):
        raise argparse.ArgumentTypeError(f"{text!r}: give sizes as whole numbers >= 1, e.g. 1,2,4")
    return [int(t) for t in csv(text)]


def device(text: str) -> str:
    """auto, cpu, cuda or cuda:N, where this machine has it."""
    kind, _, index = text.partition(":")
    if not (text in ("auto", "cpu", "cuda") or (kind == "cuda" and index.isdigit())):
        raise argparse.ArgumentTypeError(f"{text!r}: give auto, cpu, cuda or cuda:N")
    if kind == "cuda" and not torch.cuda.is_available():
        raise argparse.ArgumentTypeError(f"{text}: no CUDA device here; use --device cpu (or auto)")
    return text


def out_file(text: str) -> Path:
    """A file to write the report to, in a folder that exists (checked before the minutes of timing)."""
    path = Path(text)
    if path.is_dir() or not path.parent.is_dir() or not os.access(path.parent, os.W_OK):
        raise argparse.ArgumentTypeError(f"{text}: give a file in a writable folder that exists")
    return path


def compile_mode(text: str) -> str:
    """A ``compile`` setting as ``cfg.compile`` takes it (``gmmvit.run.compiling.compile_setting``)."""
    try:
        compile_setting(text, torch.device("cpu"))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc))
    return text


__all__ = ["names", "count", "sizes", "device", "out_file", "compile_mode"]
